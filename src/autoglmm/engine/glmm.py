"""GLMM engine: Laplace and adaptive Gauss-Hermite deviance, optimisation, lme4's vcov.

The objective is lme4's glmer deviance. For the Laplace approximation (``nagq=1``)

    D(theta, beta) = sum_i -2 log p(y_i | u_hat)  +  |u_hat|^2  +  log det(L L'),

with the normalising constants of the family included (lme4 uses ``family$aic()``),
``u_hat`` the conditional modes found by PIRLS and ``L L' = Lambda' Z' W Z Lambda + I``.
For ``nagq > 1`` each group's integral is a product Gauss-Hermite rule centred at the
mode, with covariance ``H^{-1}`` and aligned with the random effects' axes (see
:mod:`autoglmm.engine.quadrature`); ``nagq=1`` is the Laplace value exactly.
``loglik = -D / 2``. ``D`` is a pure function of (theta, beta) over a workspace that never
changes (:class:`GlmmWorkspace`); the caller passes the previous modes as a warm start.
Where PIRLS fails (iteration limit, failed step-halving, ``H`` not positive definite) the
deviance is ``inf``: the optimizer backs off, and at the estimate the fit is not
converged, with the reason in its messages.

For nAGQ > 1 lme4 uses the sum of deviance residuals instead of the absolute
``-2 log p`` (lme4 issue #161): for 0/1 data the two agree, for proportions and counts
lme4's AGQ log-likelihood lacks the saturated model's constant; ours keeps it, so AGQ
and Laplace log-likelihoods stay comparable.

Fitting (``fit_glmm``): ``D`` is minimised over ``(theta, beta)`` jointly with the
analytic Laplace gradient (computed with PIRLS in one loop over the groups,
:func:`autoglmm.engine.pirls.pirls_modes`), in coordinates where beta is whitened by
lme4's ``RX`` at the start and each theta scaled by its curvature. Newton steps with a
structured Hessian (exact theta columns, ``2 RX'RX`` for beta;
:mod:`autoglmm.engine.glmm_newton`) take the start to the optimum, then the shared
:func:`autoglmm.engine.optimize.optimize` (L-BFGS-B, which stops at once there or
finishes where Newton could not, e.g. on a bound; boundary snapping, Newton steps with
the check's Hessian where only lme4's gradient check fails, restart, lme4's checks,
computed in (theta, beta) as lme4 does) finishes. AGQ fits continue from the
Laplace optimum with central-difference gradients. ``vcov(beta)`` is lme4's
``use.hessian=TRUE``: the beta block of ``(H/2)^-1`` with ``H`` the Hessian of ``D`` over
(theta, beta); where that is not positive definite, lme4's fallback ``(RX'RX)^-1``, said in
the messages. The convergence record, the estimates and the vcov are built once, from the
same final point (``_finish``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from autoglmm.engine.design import (
    GroupedDesign,
    check_design,
    lambda_from_theta,
    theta_lower,
    theta_positions,
    theta_start,
)
from autoglmm.engine.estimates import EngineResult
from autoglmm.engine.families import (
    check_response,
    deviance_constant,
    family_code,
    glm_start,
    linkinv,
)
from autoglmm.engine.glmm_newton import newton
from autoglmm.engine.optimize import (
    CountedObjective,
    RunRecord,
    assess,
    build_report,
    derivatives,
    optimize,
)
from autoglmm.engine.pirls import pirls_modes, random_effects_share
from autoglmm.engine.quadrature import MAX_AGQ_DIM, agq_deviance, product_rule
from autoglmm.errors import UsageError

PIRLS_TOL = 1e-24  # Newton decrement (squared step length in the H metric)
GRAD_TOL = 2e-3  # lme4's check.conv.grad tolerance (scaled gradient)
SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on theta
PIRLS_FAILURES = {1: "iteration limit", 2: "step-halving failed", 3: "H not positive definite"}


@dataclass(frozen=True, eq=False)
class Modes:
    """PIRLS at one (theta, beta): the conditional modes ``u`` and what the deviance needs.

    ``status`` per group: 0 converged, 1 iteration limit, 2 step-halving failed, 3 ``H``
    not positive definite. ``rows`` (4, n) holds (s, s2, w, w1) of each row at the modes.
    ``Z`` is the design's (not a copy); ``A = Z Lambda`` is formed only when asked for
    (quadrature, lme4's ``RX``): PIRLS and the gradient work with ``Z`` and ``Lambda``.
    """

    eta0: np.ndarray
    Z: np.ndarray
    lam: np.ndarray
    dev: np.ndarray
    usq: np.ndarray
    logdet: np.ndarray
    L: np.ndarray
    status: np.ndarray
    rows: np.ndarray
    u: np.ndarray

    @functools.cached_property
    def A(self) -> np.ndarray:
        """(n, q) rows ``a_i = Lambda' z_i``."""
        return self.Z @ self.lam

    @property
    def ok(self) -> bool:
        return bool(np.all(self.status == 0) and np.all(np.isfinite(self.u)))

    def failure(self) -> str | None:
        """A one-line description of the groups where PIRLS failed, or None."""
        if self.ok:
            return None
        parts = [
            f"{int(np.sum(self.status == code))} group(s) {what}"
            for code, what in PIRLS_FAILURES.items()
            if np.any(self.status == code)
        ]
        return "PIRLS did not find the conditional modes: " + (", ".join(parts) or "not finite")


class GlmmWorkspace:
    """Everything a deviance evaluation needs, prepared once per model and never changed.

    The deviance is a pure function of (theta, beta); the conditional modes of a nearby
    point may be passed as ``u0`` to warm-start PIRLS (MixedModels.jl's ``objective!`` keeps
    them in the model; here the caller keeps them). ``n_eval`` only counts evaluations.
    """

    def __init__(self, design: GroupedDesign, code: int, nagq: int = 1) -> None:
        self.design = design
        self.code = code
        self.nagq = nagq
        self.const = deviance_constant(code, design.y, design.weights)
        self.theta_rows, self.theta_cols = theta_positions(design.re_blocks)
        self.rule = product_rule(nagq, design.q) if nagq > 1 else None
        self.n_eval = 0

    def lam(self, theta: np.ndarray) -> np.ndarray:
        return lambda_from_theta(theta, self.design.re_blocks)

    def modes(self, theta: np.ndarray, beta: np.ndarray, u0: np.ndarray | None = None) -> Modes:
        """PIRLS at (theta, beta) from the warm start ``u0`` (zeros when None; not changed)."""
        return self._pirls(theta, beta, u0, False)[0]

    def _pirls(self, theta, beta, u0, gradient: bool) -> tuple[Modes, np.ndarray, np.ndarray]:
        """The modes and, with ``gradient``, the gradient pieces ``r`` and ``G`` of
        :func:`~autoglmm.engine.pirls.pirls_modes` (one loop over the groups)."""
        d = self.design
        lam = self.lam(theta)
        eta0 = d.X @ beta + d.offset
        u = np.zeros((d.m, d.q)) if u0 is None else np.array(u0, dtype=float)
        args = (self.code, eta0, d.Z, lam, d.y, d.weights, d.starts)
        out = pirls_modes(*args, u, PIRLS_TOL, gradient)
        if u0 is not None and (np.any(out[4] != 0) or not np.all(np.isfinite(u))):
            u = np.zeros((d.m, d.q))  # a failed warm start: retry from zero once
            out = pirls_modes(*args, u, PIRLS_TOL, gradient)
        self.n_eval += 1
        return Modes(eta0, d.Z, lam, *out[:4], out[4], out[5], u), out[6], out[7]

    def deviance_at(self, md: Modes) -> float:
        """lme4's glmer deviance at the modes ``md`` (Laplace for nagq=1, AGQ otherwise);
        ``inf`` when PIRLS failed there (its value would not be the deviance)."""
        if not md.ok:
            return np.inf
        return float(self.per_group(md).sum() + self.const)

    def per_group(self, md: Modes) -> np.ndarray:
        """(m,) each group's deviance at the modes ``md`` without the family's constant:
        ``F_j(u_hat) + log det H_j`` (Laplace) or its adaptive quadrature value."""
        if self.rule is None:
            return md.dev + md.usq + md.logdet
        d = self.design
        nodes, logw = self.rule
        inner = agq_deviance(
            self.code, md.eta0, md.A, md.rows[3], d.y, d.weights, d.starts, md.u, md.L,
            md.dev + md.usq, nodes, logw,
        )  # fmt: skip
        return inner + md.logdet

    def deviance(self, theta: np.ndarray, beta: np.ndarray, u0: np.ndarray | None = None) -> float:
        """lme4's glmer deviance at (theta, beta) (see :meth:`deviance_at`)."""
        return self.deviance_at(self.modes(theta, beta, u0))

    def beta_information(
        self, theta: np.ndarray, beta: np.ndarray, u0: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Cholesky factor of lme4's ``RX' RX = X'WX - X'WA H^{-1} A'WX`` at (theta, beta):
        the information on beta with the random effects integrated out (Laplace, Fisher).
        None when it is not positive definite (or PIRLS failed)."""
        return self.information_at(self.modes(theta, beta, u0))

    def information_at(self, md: Modes) -> np.ndarray | None:
        """:meth:`beta_information` at the modes ``md`` (no PIRLS)."""
        if not md.ok:
            return None
        d = self.design
        w = md.rows[2]
        share = random_effects_share(d.X, d.Z, md.lam, w, d.starts, md.L)
        info = (d.X * w[:, None]).T @ d.X - share
        try:
            return np.linalg.cholesky(0.5 * (info + info.T))
        except np.linalg.LinAlgError:
            return None

    def laplace_and_gradient(
        self, theta: np.ndarray, beta: np.ndarray, u0: np.ndarray | None = None
    ) -> tuple[float, np.ndarray, Modes]:
        """Laplace deviance, its gradient w.r.t. (theta, beta), and the modes.

        ``inf`` (and a zero gradient) where PIRLS failed (the implicit derivative of the
        modes uses PIRLS's own factor of the curvature at the mode, so it exists wherever
        PIRLS converged). PIRLS and the gradient share one loop over the groups.
        """
        md, r, G = self._pirls(theta, beta, u0, True)
        f = float(md.dev.sum() + md.usq.sum() + md.logdet.sum() + self.const)
        if not md.ok or not np.isfinite(f):
            return np.inf, np.zeros(len(theta) + len(beta)), md
        g_theta = G[self.theta_rows, self.theta_cols]
        return f, np.concatenate([g_theta, self.design.X.T @ r]), md


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
    check_design(design, gaussian=False)
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

    def beta_curvature(self, R: np.ndarray) -> np.ndarray:
        """``2 R R'`` (a curvature in beta, ``R`` lower triangular) in the whitened
        coordinates ``gamma = R0' (beta - b0)``: ``2 (R0^{-1} R)(R0^{-1} R)'``."""
        M = np.linalg.solve(self.R, R)
        return 2.0 * M @ M.T

    def jacobian(self) -> np.ndarray:
        """d x / d (theta, beta): the matrix T with x = T (theta, beta) + const."""
        p = len(self.b0)
        T = np.eye(self.nt + p)
        T[: self.nt, : self.nt] = np.diag(self.c)
        T[self.nt :, self.nt :] = self.R.T
        return T


@dataclass(frozen=True)
class _Start:
    """The Laplace deviance at the start, its gradient and the Hessian's theta columns
    there (in (theta, beta)), and ``c``: sqrt of half the curvature in each theta."""

    f: float
    g: np.ndarray
    columns: np.ndarray
    c: np.ndarray

    def newton_columns(self, wh: _Whitened) -> np.ndarray | None:
        """The theta columns in the optimizer's coordinates (None if not finite)."""
        cols = np.column_stack([wh.grad(col) for col in self.columns.T]) / self.c
        return cols if np.all(np.isfinite(cols)) else None


def _theta_scale(ws: GlmmWorkspace, theta: np.ndarray, beta: np.ndarray, u0) -> _Start:
    """The theta scales of the optimizer's coordinates, from forward differences of the
    gradient (every PIRLS warm-started from the modes ``u0`` at (theta, beta)); the same
    differences are the first Newton step's theta columns."""
    f0, g0, _ = ws.laplace_and_gradient(theta, beta, u0)
    c = np.ones(len(theta))
    columns = np.empty((len(g0), len(theta)))
    for k in range(len(theta)):
        t = theta.copy()
        t[k] += 1e-3
        columns[:, k] = (ws.laplace_and_gradient(t, beta, u0)[1] - g0) / 1e-3
        curv = columns[k, k]
        if np.isfinite(curv) and curv > 0:
            c[k] = np.sqrt(curv / 2)
    return _Start(f0, g0, columns, np.clip(c, 1e-2, 1e3))


def _final_derivatives(fun, jac: bool, x: np.ndarray, lower: np.ndarray):
    """Value, gradient and Hessian at ``x`` over all parameters, with the one
    implementation of :func:`autoglmm.engine.optimize.derivatives` (the points its check
    already evaluated, so a memoised ``fun`` pays for them once)."""
    obj = CountedObjective(fun, jac)
    f = obj.both(x)[0] if jac else obj.value(x)
    k = len(x)
    g, H = derivatives(obj, x, f, lower, np.full(k, np.inf), np.ones(k, bool))
    return f, g, H


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


class _Warm:
    """The last finite evaluation: its modes are the next PIRLS's warm start, and (with
    the point's key) the Newton steps' source of lme4's ``RX`` at that point.

    Central differences (lme4's check) evaluate ``c + h e_i`` and then ``c - h e_i`` about
    the point ``c`` with the smallest gradient so far (the optimum); the second starts from
    ``2 u(c) - u(c + h e_i)``, the modes extrapolated linearly, which are off by O(h^2)
    instead of O(h): PIRLS then needs one pass over the rows less.
    """

    def __init__(self, m: int, q: int) -> None:
        self.u = np.zeros((m, q))
        self.md: Modes | None = None
        self.key: bytes | None = None
        self.x: np.ndarray | None = None
        self.anchor: tuple[float, np.ndarray, np.ndarray] | None = None  # (max|g|, x, u)

    def keep(self, f: float, md: Modes, key=None, x=None, g=None) -> None:
        if not np.isfinite(f):
            return
        self.u, self.md, self.key = md.u, md, key
        self.x = None if x is None else np.array(x, dtype=float)  # the optimizer reuses x
        if g is not None:
            size = float(np.max(np.abs(g)))
            if self.anchor is None or size < self.anchor[0]:
                self.anchor = (size, self.x, md.u)

    def start(self, x: np.ndarray) -> np.ndarray:
        """The warm start for ``x``: extrapolated when ``x`` mirrors the last point about
        the anchor, else the last modes."""
        if self.anchor is None or self.x is None:
            return self.u
        _, xc, uc = self.anchor
        mid = 0.5 * (x + self.x)
        if np.max(np.abs(mid - xc)) <= 1e-12 * (1.0 + np.max(np.abs(xc))):
            return 2.0 * uc - self.u
        return self.u


def _fit(design, code, family, link, nagq, start) -> EngineResult:
    nt, p = design.n_theta, design.p
    lap = GlmmWorkspace(design, code, 1)
    warm = _Warm(design.m, design.q)
    b0, _ = glm_start(code, design.X, design.y, design.weights, design.offset)
    theta0 = np.asarray(start.get("theta", theta_start(design.re_blocks)), dtype=float)
    beta0 = np.asarray(start.get("beta", b0), dtype=float)
    md0 = lap.modes(theta0, beta0)  # one cold PIRLS: every later one is warm-started
    warm.keep(lap.deviance_at(md0), md0)
    R0 = _start_information(lap, md0)
    st = _theta_scale(lap, theta0, beta0, warm.u)
    wh = _Whitened(nt, beta0, R0, st.c)
    T = wh.jacobian()
    lower = np.concatenate([theta_lower(design.re_blocks), np.full(p, -np.inf)])
    cov_mask = np.arange(nt + p) < nt
    cache: dict[bytes, tuple[float, np.ndarray]] = {}

    def laplace(x: np.ndarray):
        # memoised: the final Hessian below reuses the optimizer's finite-difference points
        key = x.tobytes()
        if key not in cache:
            f, g, md = lap.laplace_and_gradient(*wh.split(x), warm.start(x))
            cache[key] = (f, wh.grad(g))
            warm.keep(f, md, key, x, cache[key][1])
        return cache[key]

    def beta_block(x: np.ndarray) -> np.ndarray | None:
        # 2 RX'RX in the optimizer's coordinates, from the modes of the last evaluation
        if warm.key != x.tobytes() or warm.md is None:
            return None
        R = lap.information_at(warm.md)
        return None if R is None else wh.beta_curvature(R)

    x0 = wh.to_x(theta0, beta0)
    cache[x0.tobytes()] = (st.f, wh.grad(st.g))
    x0 = newton(laplace, x0, lower, nt, beta_block, st.newton_columns(wh))
    x, _, report = optimize(
        laplace, x0, lower, jac=True, cov_mask=cov_mask, transform=T, polish=True
    )
    work, fun, jac = lap, laplace, True
    if nagq > 1:
        work = GlmmWorkspace(design, code, nagq)
        values: dict[bytes, float] = {}

        def agq_value(x: np.ndarray) -> float:
            # memoised: the Hessian below reuses the optimizer's finite-difference points
            key = x.tobytes()
            if key not in values:
                md = work.modes(*wh.split(x), warm.u)
                values[key] = work.deviance_at(md)
                warm.keep(values[key], md)
            return values[key]

        # Newton steps with the Laplace Hessian (close to AGQ's) from the Laplace optimum;
        # then the optimizer value-only: its Hessian check costs O(k^2) deviances, not
        # O(k^2) central-difference gradients (each 2k + 1 deviances) as with jac=True
        x = _quasi_newton(agq_value, x, lower, _final_derivatives(laplace, True, x, lower)[2])
        x, _, report = optimize(
            agq_value, x, lower, jac=False, method="L-BFGS-B", cov_mask=cov_mask, transform=T
        )
        fun, jac = agq_value, False
    # the optimizer's check evaluated these points already (memoised): the record, the
    # estimates and the vcov all describe this one final point
    f, g, H = _final_derivatives(fun, jac, x, lower)
    n_eval = lap.n_eval + (work.n_eval if nagq > 1 else 0)
    run = RunRecord.from_report(report, n_eval)
    return _finish(design, work, warm, x, g, H, wh, lower, run, family, link, nagq)


def _start_information(lap: GlmmWorkspace, md: Modes) -> np.ndarray:
    """lme4's ``RX`` at the start (modes ``md``), for the optimizer's coordinates only (no
    reported number depends on it); X'WX with unit weights' scale when RX'RX is not
    positive definite."""
    R = lap.information_at(md)
    if R is not None:
        return R
    X = lap.design.X
    return np.linalg.cholesky(X.T @ X / max(lap.design.n, 1) + 1e-8 * np.eye(X.shape[1]))


def _finish(design, work, warm, x, g, H, wh, lower, run, family, link, nagq) -> EngineResult:
    """Estimates and the convergence record, built once from the final state."""
    theta, beta = wh.split(x)
    md = work.modes(theta, beta, warm.u)
    f = work.deviance_at(md)
    nt = wh.nt
    cov_mask = np.arange(len(x)) < nt
    free = ~(np.isfinite(lower) & (x <= lower))
    singular = bool(np.any(theta[np.isfinite(lower[:nt])] < SINGULAR_TOL))
    chk = assess(
        g[free], H[np.ix_(free, free)], free, cov_mask, GRAD_TOL,
        singular=singular, transform=wh.jacobian(),
    )  # fmt: skip
    extra = []
    if md.failure():
        extra.append(md.failure() + " at the estimate")
    if not np.isfinite(f):
        extra.append("the deviance is not finite at the estimate")
    vcov, note = _vcov_beta(H, wh, work, theta, beta, md.u)
    notes = tuple(n for n in (note, _quadrature_note(work, theta, beta, md.u, f)) if n)
    report = build_report(
        run, chk, singular=singular, grad_tol=GRAD_TOL, extra=tuple(extra), notes=notes
    )
    lam = md.lam
    ranef = md.u @ lam.T
    eta = md.eta0 + np.einsum("ij,ij->i", design.Z, ranef[design.group])
    return EngineResult(
        theta=theta,
        beta=beta,
        vcov_beta=vcov,
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


QUADRATURE_TOL = 0.01  # log-likelihood units


def _quadrature_note(work: GlmmWorkspace, theta, beta, u, f: float) -> str | None:
    """Say so when the AGQ log-likelihood at the estimate moves by more than
    ``QUADRATURE_TOL`` under a finer rule (``2 nagq + 1`` points, at most ~4000 nodes).

    A Gauss-Hermite rule can be off by tenths on data with large random-intercept
    variances and few binary rows per group, because groups with the same responses add
    the same error: lme4's own scalar rule at nAGQ=9 is off by 0.27 on the Ohio wheeze
    random-intercept model (posteriors skewed by the children who never wheeze). The
    estimate is still reported; the note tells the user to raise nagq before comparing
    log-likelihoods.
    """
    nagq, q = work.nagq, work.design.q
    finer = min(2 * nagq + 1, int(4000 ** (1.0 / q)))
    if nagq == 1 or finer <= nagq or not np.isfinite(f):
        return None
    f_fine = GlmmWorkspace(work.design, work.code, finer).deviance(theta, beta, u)
    change = 0.5 * abs(f_fine - f)
    if not change > QUADRATURE_TOL:
        return None
    return (
        f"adaptive quadrature with nagq={nagq} is not accurate here: nagq={finer} changes the "
        f"log-likelihood at the estimate by {change:.3g}; refit with a larger nagq"
    )


def _vcov_beta(H, wh: _Whitened, work, theta, beta, u) -> tuple[np.ndarray, str | None]:
    """lme4's ``vcov`` (use.hessian=TRUE): beta block of the inverse of half the Hessian of
    the deviance over (theta, beta). Where that is not positive definite, lme4's fallback
    ``(RX'RX)^{-1}`` at the estimate (it ignores the uncertainty in theta), said in a note;
    NaN if that fails too."""
    T = wh.jacobian()
    Hb = T.T @ H @ T
    nt = wh.nt
    try:
        inv = np.linalg.inv(0.5 * Hb)
        vc = inv[nt:, nt:]
        np.linalg.cholesky(vc)
        return 0.5 * (vc + vc.T), None
    except np.linalg.LinAlgError:
        pass
    note = (
        "the Hessian over (theta, beta) is not positive definite: standard errors from "
        "lme4's fallback (RX'RX)^-1, which ignores the uncertainty in theta"
    )
    R = work.beta_information(theta, beta, u)
    if R is None:
        p = len(beta)
        return np.full((p, p), np.nan), note.split(":")[0] + ": standard errors unavailable"
    Rinv = np.linalg.inv(R)
    return Rinv.T @ Rinv, note
