"""GLMM engine: Laplace and adaptive Gauss-Hermite deviance, optimisation, lme4's vcov.

The objective is lme4's glmer deviance. For the Laplace approximation (``nagq=1``)

    D(theta, beta) = sum_i -2 log p(y_i | u_hat)  +  |u_hat|^2  +  log det(L L'),

with the normalising constants of the family included (lme4 uses ``family$aic()``),
``u_hat`` the conditional modes found by PIRLS and ``L L' = Lambda' Z' W Z Lambda + I``.
For ``nagq > 1`` each group's integral is a product Gauss-Hermite rule centred at the
mode and scaled by ``L^{-T}`` (see :mod:`autoglmm.engine.quadrature`); ``nagq=1`` is the
Laplace value exactly. ``loglik = -D / 2``.

For nAGQ > 1 lme4 uses the sum of deviance residuals instead of the absolute
``-2 log p`` (lme4 issue #161): for 0/1 data the two agree, for proportions and counts
lme4's AGQ log-likelihood lacks the saturated model's constant; ours keeps it, so AGQ
and Laplace log-likelihoods stay comparable.

Fitting (``fit_glmm``): ``D`` is minimised over ``(theta, beta)`` jointly with the
analytic Laplace gradient of :func:`autoglmm.engine.pirls.laplace_gradient`, in
coordinates where beta is whitened by lme4's ``RX`` at the start and each theta scaled by
its curvature; a few saddle-free Newton steps bring the start close, then the shared
:func:`autoglmm.engine.optimize.optimize` (L-BFGS-B, boundary snapping, restart, lme4's
checks) finishes. AGQ fits continue from the Laplace optimum with central-difference
gradients. ``vcov(beta)`` is lme4's ``use.hessian=TRUE``: the beta block of ``(H/2)^-1``
with ``H`` the Hessian of ``D`` over (theta, beta) (central differences of the gradient).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits

from autoglmm.engine.design import GroupedDesign, lambda_from_theta, theta_lower, theta_start
from autoglmm.engine.estimates import EngineResult
from autoglmm.engine.families import (
    check_response,
    deviance_constant,
    family_code,
    glm_start,
    linkinv,
)
from autoglmm.engine.optimize import optimize
from autoglmm.engine.pirls import laplace_gradient, pirls_modes
from autoglmm.engine.quadrature import MAX_AGQ_DIM, agq_deviance, product_rule
from autoglmm.errors import UsageError

PIRLS_TOL = 1e-24  # Newton decrement (squared step length in the H metric)
GRAD_TOL = 2e-3  # lme4's check.conv.grad tolerance (scaled gradient)


class GlmmWorkspace:
    """Everything a deviance evaluation needs, prepared once per model.

    ``u`` holds the conditional modes of the last evaluation and warm-starts the next.
    """

    def __init__(self, design: GroupedDesign, code: int, nagq: int = 1) -> None:
        self.design = design
        self.code = code
        self.nagq = nagq
        self.const = deviance_constant(code, design.y, design.weights)
        self.u = np.zeros((design.m, design.q))
        pos = lambda_from_theta(np.arange(1, design.n_theta + 1.0), design.re_blocks)
        rows, cols = np.nonzero(pos)
        order = np.argsort(pos[rows, cols])
        self.theta_rows, self.theta_cols = rows[order], cols[order]
        self.rule = product_rule(nagq, design.q) if nagq > 1 else None
        self.n_eval = 0

    def lam(self, theta: np.ndarray) -> np.ndarray:
        lam = np.zeros((self.design.q, self.design.q))
        lam[self.theta_rows, self.theta_cols] = theta
        return lam

    def modes(self, theta: np.ndarray, beta: np.ndarray):
        """PIRLS at (theta, beta): (eta0, A, lam, dev, usq, logdet, L, status, rows)."""
        d = self.design
        lam = self.lam(theta)
        eta0 = d.X @ beta + d.offset
        A = d.Z @ lam
        out = pirls_modes(self.code, eta0, A, d.y, d.weights, d.starts, self.u, PIRLS_TOL)
        if np.any(out[4] > 1) or not np.all(np.isfinite(self.u)):
            self.u[:] = 0.0  # a failed warm start: retry from zero once
            out = pirls_modes(self.code, eta0, A, d.y, d.weights, d.starts, self.u, PIRLS_TOL)
        self.n_eval += 1
        return (eta0, A, lam, *out)

    def deviance(self, theta: np.ndarray, beta: np.ndarray) -> float:
        """lme4's glmer deviance (Laplace for nagq=1, AGQ otherwise)."""
        eta0, A, _, dev, usq, logdet, L, status, _ = self.modes(theta, beta)
        if np.any(status == 3):
            return np.inf
        if self.rule is None:
            return float(dev.sum() + usq.sum() + logdet.sum() + self.const)
        d = self.design
        nodes, logw = self.rule
        per_group = agq_deviance(
            self.code, eta0, A, d.y, d.weights, d.starts, self.u, L, dev + usq, nodes, logw
        )
        return float(per_group.sum() + logdet.sum() + self.const)

    def beta_information(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Cholesky factor of lme4's ``RX' RX = X'WX - X'WA H^{-1} A'WX`` at (theta, beta):
        the information on beta with the random effects integrated out (Laplace, Fisher)."""
        d = self.design
        _, A, _, _, _, _, L, _, rows = self.modes(theta, beta)
        w = rows[2]
        XtWA = np.add.reduceat(d.X[:, :, None] * (w[:, None] * A)[:, None, :], d.starts[:-1])
        half = np.linalg.solve(L, XtWA.transpose(0, 2, 1))  # L^{-1} A'WX per group
        info = d.X.T @ (d.X * w[:, None]) - np.einsum("gqp,gqr->pr", half, half)
        info += 1e-10 * np.trace(info) / d.p * np.eye(d.p)
        try:
            return np.linalg.cholesky(info)
        except np.linalg.LinAlgError:
            return np.linalg.cholesky(d.X.T @ (d.X * w[:, None]) + 1e-8 * np.eye(d.p))

    def laplace_and_gradient(self, theta: np.ndarray, beta: np.ndarray):
        """Laplace deviance and its gradient w.r.t. (theta, beta)."""
        d = self.design
        _, A, lam, dev, usq, logdet, L, status, rows = self.modes(theta, beta)
        f = float(dev.sum() + usq.sum() + logdet.sum() + self.const)
        if np.any(status == 3) or not np.isfinite(f):
            return np.inf, np.zeros(len(theta) + len(beta))
        r, G = laplace_gradient(A, d.Z, lam, d.starts, self.u, L, rows)
        g_theta = G[self.theta_rows, self.theta_cols]
        return f, np.concatenate([g_theta, d.X.T @ r])


def validate(design: GroupedDesign, family: str, link: str | None, nagq: int) -> tuple[int, str]:
    """Check family, link, nagq and the response; return (kernel code, link name)."""
    code, link = family_code(family, link)
    if int(nagq) != nagq or nagq < 1:
        raise UsageError(f"nagq must be a positive integer, got {nagq}; use nagq=1 for Laplace")
    if nagq > 1 and design.q > MAX_AGQ_DIM:
        raise UsageError(
            f"nagq > 1 needs at most {MAX_AGQ_DIM} random effects per group, the model has "
            f"{design.q}; use nagq=1 (Laplace) or fewer random slopes"
        )
    if nagq > 25:
        raise UsageError(f"nagq={nagq} is more than 25 quadrature points; use nagq <= 25")
    check_response(family, design.y, design.weights)
    return code, link


class _Whitened:
    """Coordinates of the optimisation: ``x = (theta * c, gamma)``, ``beta = b0 + R^{-T} gamma``.

    ``R R'`` is the information on beta at the start (lme4's ``RX' RX``) and ``c`` the square
    root of half the deviance's curvature in each theta, so every direction has curvature
    about 2 whatever the predictors' units (L-BFGS needs far fewer steps). Scaling theta by
    a positive diagonal keeps its bounds at 0.
    """

    def __init__(self, n_theta: int, b0: np.ndarray, R: np.ndarray, c: np.ndarray) -> None:
        self.nt, self.b0, self.R, self.c = n_theta, b0, R, c

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta = x[: self.nt] / self.c
        beta = self.b0 + np.linalg.solve(self.R.T, x[self.nt :])
        return theta, beta

    def to_x(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        return np.concatenate([theta * self.c, self.R.T @ (beta - self.b0)])

    def grad(self, g: np.ndarray) -> np.ndarray:
        """Gradient in x from the gradient in (theta, beta)."""
        return np.concatenate([g[: self.nt] / self.c, np.linalg.solve(self.R, g[self.nt :])])

    def jacobian(self) -> np.ndarray:
        """d x / d (theta, beta): the matrix T with x = T (theta, beta) + const."""
        p = len(self.b0)
        T = np.eye(self.nt + p)
        T[: self.nt, : self.nt] = np.diag(self.c)
        T[self.nt :, self.nt :] = self.R.T
        return T


def _theta_scale(ws: GlmmWorkspace, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """sqrt of half the curvature of the deviance in each theta (forward differences)."""
    g0 = ws.laplace_and_gradient(theta, beta)[1]
    c = np.ones(len(theta))
    for k in range(len(theta)):
        t = theta.copy()
        t[k] += 1e-3
        curv = (ws.laplace_and_gradient(t, beta)[1][k] - g0[k]) / 1e-3
        if np.isfinite(curv) and curv > 0:
            c[k] = np.sqrt(curv / 2)
    return np.clip(c, 1e-2, 1e3)


def _newton_start(fun, x: np.ndarray, lower: np.ndarray, nt: int, iters: int = 8) -> np.ndarray:
    """Safeguarded Newton steps that bring the start close to the optimum.

    The Hessian is exact in the theta columns (forward differences of the analytic
    gradient, ``nt`` gradients) and ``2 I`` in the whitened beta block. Steps stay
    strictly inside the bounds: L-BFGS-B started far away tends to hit a bound on a
    diagonal theta, where the deviance is even in that theta and so looks stationary.
    """
    k = len(x)
    f, g = fun(x)
    bounded = np.isfinite(lower)
    for _ in range(iters):
        H = 2.0 * np.eye(k)
        for i in range(nt):
            e = np.zeros(k)
            e[i] = 1e-4
            col = (fun(x + e)[1] - g) / 1e-4
            H[:, i] = col
            H[i, :] = col
        vals, vecs = np.linalg.eigh(0.5 * (H + H.T))
        # saddle-free Newton: |curvature| (the start can be concave in a theta), floored
        vals = np.maximum(np.abs(vals), 0.1)
        step = -(vecs @ ((vecs.T @ g) / vals))
        if -(g @ step) < 1.0:  # close enough: L-BFGS-B takes over
            break
        t = min(1.0, 10.0 / np.linalg.norm(step))  # trust radius (curvature is ~2 per unit)
        out = bounded & (x + step <= lower)
        if out.any():
            t = min(t, 0.9 * float(np.min((x - lower)[out] / -step[out])))
        while t > 1e-4:
            fn, gn = fun(x + t * step)
            if np.isfinite(fn) and fn < f:
                break
            t *= 0.5
        else:
            break
        x, f, g = x + t * step, fn, gn
    return x


def _newton_polish(fun, x: np.ndarray, lower: np.ndarray, H: np.ndarray, report):
    """One Newton step on the free parameters with the final Hessian, kept if it lowers
    the deviance: L-BFGS-B stops at a relative change of the deviance, a Newton step from
    there reaches rounding level. The report's scaled gradient is updated to the new point.
    """
    free = ~(np.isfinite(lower) & (x <= lower))
    f, g = fun(x)
    try:
        step = np.linalg.solve(H[np.ix_(free, free)], g[free])
    except np.linalg.LinAlgError:
        return x, report
    trial = x.copy()
    trial[free] -= step
    if np.any(trial < lower):
        return x, report
    f_new, g_new = fun(trial)
    if not f_new < f:
        return x, report
    newton = np.linalg.solve(H[np.ix_(free, free)], g_new[free])
    scaled = float(np.max(np.minimum(np.abs(newton), np.abs(g_new[free]))))
    return trial, replace(report, scaled_gradient=scaled)


def _hessian(fun_grad, x: np.ndarray, lower: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Hessian by central differences of an analytic gradient (one-sided at a bound)."""
    k = len(x)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h * max(1.0, abs(x[i]))
        if x[i] - e[i] >= lower[i]:
            H[:, i] = (fun_grad(x + e)[1] - fun_grad(x - e)[1]) / (2 * e[i])
        else:
            H[:, i] = (fun_grad(x + e)[1] - fun_grad(x)[1]) / e[i]
    return 0.5 * (H + H.T)


def _quasi_newton(fun, x: np.ndarray, lower: np.ndarray, H: np.ndarray, iters: int = 5):
    """Newton steps with a fixed Hessian and central-difference gradients of ``fun``."""
    free = ~(np.isfinite(lower) & (x <= lower))
    Hf = H[np.ix_(free, free)]
    for _ in range(iters):
        f0, g = _fd_gradient(fun, x, lower)
        try:
            step = np.linalg.solve(Hf, g[free])
        except np.linalg.LinAlgError:
            break
        trial = x.copy()
        trial[free] -= step
        if np.any(trial < lower) or not fun(trial) < f0:
            break
        x = trial
        if g[free] @ step < 1e-8:
            break
    return x


def _hessian_values(fun, x: np.ndarray, lower: np.ndarray, delta: float = 1e-4) -> np.ndarray:
    """Hessian from deviance values: central second differences on the diagonal, forward
    mixed differences off it (the points ``optimize``'s own check evaluates, so memoised
    values are reused); one-sided in a parameter that sits on its bound."""
    k = len(x)
    h = delta * np.maximum(np.abs(x), 1.0)
    f0 = fun(x)
    fp = np.empty(k)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        fp[i] = fun(x + e)
        if x[i] - h[i] >= lower[i]:
            H[i, i] = (fp[i] - 2 * f0 + fun(x - e)) / h[i] ** 2
        else:
            H[i, i] = (fun(x + 2 * e) - 2 * fp[i] + f0) / h[i] ** 2
    for i in range(k):
        for j in range(i):
            e = np.zeros(k)
            e[i], e[j] = h[i], h[j]
            H[i, j] = H[j, i] = (fun(x + e) - fp[i] - fp[j] + f0) / (h[i] * h[j])
    return H


def _fd_gradient(fun, x: np.ndarray, lower: np.ndarray, h: float = 1e-5):
    """Value and central-difference gradient of a value-only objective (for AGQ)."""
    f0 = fun(x)
    g = np.empty(len(x))
    for i in range(len(x)):
        e = np.zeros(len(x))
        e[i] = h * max(1.0, abs(x[i]))
        if x[i] - e[i] >= lower[i]:
            g[i] = (fun(x + e) - fun(x - e)) / (2 * e[i])
        else:
            g[i] = (fun(x + e) - f0) / e[i]
    return f0, g


def fit_glmm(
    design: GroupedDesign,
    *,
    family: str,
    link: str | None = None,
    nagq: int = 1,
    start: dict | None = None,
) -> EngineResult:
    """Fit a binomial or poisson GLMM by maximum likelihood (Laplace or AGQ), as lme4's glmer.

    Parameters
    ----------
    design : the grouped design; for binomial proportions ``y`` is the proportion and
        ``weights`` the number of trials (lme4's ``weights=size``).
    family : ``"binomial"`` or ``"poisson"``; link : ``"logit"``/``"probit"`` or ``"log"``.
    nagq : 1 for the Laplace approximation, > 1 for adaptive Gauss-Hermite quadrature with
        that many points per random effect (product rule, at most 3 random effects).
    start : optional ``{"theta": ..., "beta": ...}`` starting values.

    Example
    -------
    >>> res = fit_glmm(design, family="binomial")  # doctest: +SKIP
    >>> res.loglik, res.beta, res.convergence.converged  # doctest: +SKIP
    """
    code, link = validate(design, family, link, nagq)
    # the matrices are small: BLAS threads only spin against each other (2x slower)
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(design, code, family, link, nagq, start or {})


def _fit(design, code, family, link, nagq, start) -> EngineResult:
    nt, p = design.n_theta, design.p
    lap = GlmmWorkspace(design, code, 1)
    b0, _ = glm_start(code, design.X, design.y, design.weights, design.offset)
    theta0 = np.asarray(start.get("theta", theta_start(design.re_blocks)), dtype=float)
    beta0 = np.asarray(start.get("beta", b0), dtype=float)
    R = lap.beta_information(theta0, beta0)
    wh = _Whitened(nt, beta0, R, _theta_scale(lap, theta0, beta0))
    lower = np.concatenate([theta_lower(design.re_blocks), np.full(p, -np.inf)])
    cov_mask = np.arange(nt + p) < nt

    cache: dict[bytes, tuple[float, np.ndarray]] = {}

    def laplace(x: np.ndarray):
        # memoised: the final Hessian below reuses the optimizer's finite-difference points
        key = x.tobytes()
        if key not in cache:
            f, g = lap.laplace_and_gradient(*wh.split(x))
            cache[key] = (f, wh.grad(g))
        return cache[key]

    x0 = _newton_start(laplace, wh.to_x(theta0, beta0), lower, nt)
    x, f, report = optimize(laplace, x0, lower, jac=True, cov_mask=cov_mask)
    work, fun = lap, laplace
    if nagq > 1:
        work = GlmmWorkspace(design, code, nagq)
        work.u[:] = lap.u
        values: dict[bytes, float] = {}

        def agq_value(x: np.ndarray) -> float:
            # memoised: the Hessian below reuses the optimizer's finite-difference points
            key = x.tobytes()
            if key not in values:
                values[key] = work.deviance(*wh.split(x))
            return values[key]

        # Newton steps with the Laplace Hessian (close to AGQ's) from the Laplace optimum;
        # then the optimizer value-only: its Hessian check costs O(k^2) deviances, not
        # O(k^2) central-difference gradients (each 2k + 1 deviances) as with jac=True
        x = _quasi_newton(agq_value, x, lower, _hessian(fun, x, lower))
        x, f, report = optimize(
            agq_value, x, lower, jac=False, method="L-BFGS-B", cov_mask=cov_mask
        )
        H = _hessian_values(agq_value, x, lower)

        def fun(z: np.ndarray):
            return _fd_gradient(agq_value, z, lower)

    else:
        H = _hessian(fun, x, lower)
    x, report = _newton_polish(fun, x, lower, H, report)
    theta, beta = wh.split(x)
    f = work.deviance(theta, beta)  # also leaves the modes of the optimum in work.u
    # count every deviance evaluation (start-up Newton steps, AGQ differences included)
    report = replace(report, n_evaluations=lap.n_eval + (work.n_eval if nagq > 1 else 0))
    return _result(design, work, theta, beta, f, H, wh, report, family, link, nagq)


def _vcov_beta(H: np.ndarray, wh: _Whitened) -> np.ndarray:
    """lme4's ``vcov`` (use.hessian=TRUE): beta block of the inverse of half the Hessian of
    the deviance over (theta, beta); falls back to the beta block alone if that fails."""
    T = wh.jacobian()
    Hb = T.T @ H @ T
    nt = wh.nt
    try:
        inv = np.linalg.inv(0.5 * Hb)
        vc = inv[nt:, nt:]
        np.linalg.cholesky(vc)
    except np.linalg.LinAlgError:
        vc = np.linalg.inv(0.5 * Hb[nt:, nt:])
    return 0.5 * (vc + vc.T)


def _result(design, work, theta, beta, f, H, wh, report, family, link, nagq) -> EngineResult:
    lam = work.lam(theta)
    ranef = work.u @ lam.T
    eta = design.X @ beta + design.offset + np.einsum("ij,ij->i", design.Z, ranef[design.group])
    return EngineResult(
        theta=theta,
        beta=beta,
        vcov_beta=_vcov_beta(H, wh),
        cov_re=lam @ lam.T,
        sigma2=None,
        ranef=ranef,
        loglik=-0.5 * f,
        deviance=f,
        n_params=design.p + design.n_theta,
        family=family,
        link=link,
        nagq=int(nagq),
        reml=False,
        convergence=report,
        fitted=linkinv(work.code, eta),
    )
