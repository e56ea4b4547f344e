"""Binomial (logit/probit) GLMMs by pseudo-maximum likelihood with weights at two levels.

Group j contributes ``w_j D_j(theta, beta)`` to the weighted deviance, where ``D_j`` is
``-2 log`` of the group's integrated likelihood with every row's log density multiplied
by its conditional level-1 weight ``w_{i|j}`` (Rabe-Hesketh & Skrondal 2006):

- ``nagq=1``: Laplace, ``D_j = F_j(u_hat) + log det H_j`` (PIRLS modes and Hessian);
- ``nagq>1``: adaptive Gauss-Hermite quadrature centred at the mode and scaled by H_j
  (WeMix's ``mix()`` uses 13 points).

Both reuse the unweighted engine's per-group kernels (:class:`~autoglmm.engine.glmm.
GlmmWorkspace` on a design whose prior weights are the conditional level-1 weights, so
PIRLS finds the pseudo-likelihood modes); the level-2 weights multiply the per-group
deviances. For a 0/1 outcome the row deviance has no normalising constant, as WeMix's
``w * dbinom(y, 1, mu, log = TRUE)``.

Optimisation: start from the engine's fit without the level-2 weights, then quasi-Newton
steps on (theta, beta) (BFGS updates of a finite-difference Hessian, central-difference
gradients: ``2 k + 1`` deviances per step for k parameters, each a compiled pass over the
rows), Laplace first and then AGQ from the Laplace optimum. The Hessian at the optimum is
also the sandwich's bread. theta is optimised
without bounds (the deviance is even in each column of Lambda) and mapped back with
``theta_canonical``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from threadpoolctl import threadpool_limits

from autoglmm.engine.design import GroupedDesign, theta_canonical, theta_lower
from autoglmm.engine.estimates import ConvergenceReport, EngineResult
from autoglmm.engine.families import family_code, linkinv
from autoglmm.engine.glmm import GlmmWorkspace, fit_glmm
from autoglmm.engine.quadrature import MAX_AGQ_DIM
from autoglmm.engine.weights import SamplingWeights
from autoglmm.errors import DataError, UsageError

GRAD_TOL = 2e-3  # lme4's scaled-gradient tolerance, as the unweighted engine
NEWTON_TOL = 1e-10  # Newton decrement g'H^-1 g of the normalised deviance
MAX_NEWTON = 50


class WeightedGlmmObjective:
    """Per-group deviances ``D_j`` at (theta, beta), and their weighted sum.

    ``norm`` (the mean level-2 weight) divides the weighted sum so that the optimiser
    sees numbers of the unweighted deviance's size.
    """

    def __init__(self, design: GroupedDesign, sw: SamplingWeights, code: int, nagq: int):
        self.design = replace(design, weights=np.ascontiguousarray(sw.level1, dtype=float))
        self.w2 = np.asarray(sw.level2, dtype=float)
        self.norm = float(self.w2.mean())
        self.nt = design.n_theta
        self.ws = GlmmWorkspace(self.design, code, nagq)
        self.code = code
        # the modes of the last evaluation where PIRLS succeeded: the next one's warm start
        self.u = np.zeros((design.m, design.q))

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x[: self.nt], x[self.nt :]

    def per_group(self, x: np.ndarray) -> np.ndarray:
        """(m,) deviances D_j (without the level-2 weight); inf where PIRLS fails."""
        theta, beta = self.split(x)
        md = self.ws.modes(theta, beta, self.u)
        if not md.ok:  # PIRLS failed somewhere: no deviance (glmm.Modes.failure)
            return np.full(len(self.w2), np.inf)
        self.u = md.u
        return self.ws.per_group(md)

    def total(self, x: np.ndarray) -> float:
        """The weighted deviance ``sum_j w_j D_j`` (not normalised)."""
        return float(self.w2 @ self.per_group(x))

    def __call__(self, x: np.ndarray) -> float:
        f = self.total(x) / self.norm
        return f if np.isfinite(f) else np.inf


def _steps(x: np.ndarray, rel: float) -> np.ndarray:
    return rel * np.maximum(1.0, np.abs(x))


def value_grad(fun, x: np.ndarray, rel: float = 1e-5) -> tuple[float, np.ndarray]:
    """Value and central-difference gradient (``2 k + 1`` evaluations)."""
    h = _steps(x, rel)
    g = np.empty(len(x))
    for i in range(len(x)):
        e = np.zeros(len(x))
        e[i] = h[i]
        g[i] = (fun(x + e) - fun(x - e)) / (2 * h[i])
    return fun(x), g


def hessian(fun, x: np.ndarray, rel: float = 1e-4) -> np.ndarray:
    """Hessian from values: central second differences on the diagonal, forward mixed
    differences off it (``k (k + 3) / 2 + 1`` evaluations, as the unweighted engine)."""
    k = len(x)
    h = _steps(x, rel)
    f0 = fun(x)
    fp = np.empty(k)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        fp[i] = fun(x + e)
        H[i, i] = (fp[i] - 2 * f0 + fun(x - e)) / h[i] ** 2
    for i in range(k):
        for j in range(i):
            e = np.zeros(k)
            e[i], e[j] = h[i], h[j]
            H[i, j] = H[j, i] = (fun(x + e) - fp[i] - fp[j] + f0) / (h[i] * h[j])
    return H


def _newton_step(g: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Saddle-free Newton step: |eigenvalues| of H, floored."""
    vals, vecs = np.linalg.eigh(0.5 * (H + H.T))
    return -(vecs @ ((vecs.T @ g) / np.maximum(np.abs(vals), 1e-8)))


def quasi_newton(
    fun, x: np.ndarray, H: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray, int, bool]:
    """Quasi-Newton iterations from the Hessian ``H`` (BFGS updates) with central-difference
    gradients: ``2 k + 1`` evaluations per step instead of a new Hessian's ``O(k^2)``.

    Returns (x, f, g, iterations, converged); converged means the Newton decrement of the
    normalised deviance fell below ``NEWTON_TOL``.
    """
    f, g = value_grad(fun, x)
    for it in range(MAX_NEWTON):
        step = _newton_step(g, H)
        if -(g @ step) < NEWTON_TOL:
            return x, f, g, it, True
        t = 1.0
        while t > 1e-6:
            fn = fun(x + t * step)
            if np.isfinite(fn) and fn <= f:
                break
            t *= 0.5
        else:
            return x, f, g, it, False
        x_new = x + t * step
        f, g_new = value_grad(fun, x_new)
        s, y = x_new - x, g_new - g
        if s @ y > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y):
            Hs = H @ s
            H = H + np.outer(y, y) / (y @ s) - np.outer(Hs, Hs) / (s @ Hs)
        x, g = x_new, g_new
    return x, f, g, MAX_NEWTON, False


def _optimum(fun, x: np.ndarray, H: np.ndarray):
    """Quasi-Newton to the optimum, then the Hessian there (the sandwich's bread) and exact
    Newton steps with it until the decrement is small (usually none are needed)."""
    x, f, g, iters, ok = quasi_newton(fun, x, H)
    H = hessian(fun, x)
    for _ in range(3):
        step = _newton_step(g, H)
        if -(g @ step) < NEWTON_TOL:
            break
        trial = fun(x + step)
        if not (np.isfinite(trial) and trial <= f):
            break
        x = x + step
        f, g = value_grad(fun, x)
        H = hessian(fun, x)
        iters += 1
    ok = ok or -(g @ _newton_step(g, H)) < NEWTON_TOL
    return x, f, g, H, iters, ok


def _report(x, g, H, nt, lower, iterations, converged) -> ConvergenceReport:
    try:
        scaled = float(np.max(np.minimum(np.abs(np.linalg.solve(H, g)), np.abs(g))))
    except np.linalg.LinAlgError:
        scaled = np.inf
    cov_eig = float(np.linalg.eigvalsh(H[:nt, :nt]).min()) if nt else np.nan
    singular = bool(np.any(np.isfinite(lower) & (np.abs(x[:nt]) < 1e-4)))
    ok = converged and scaled < GRAD_TOL and (singular or cov_eig > 0)
    messages = (
        () if ok else (f"pseudo-ML Newton iterations did not converge (|H^-1 g| = {scaled:.2g})",)
    )
    return ConvergenceReport(
        converged=bool(ok),
        singular=singular,
        optimizer="newton (central differences)",
        optimizer_status="converged" if converged else "stopped",
        n_evaluations=int(iterations * (2 * len(x) + 2)),
        restarted=False,
        scaled_gradient=scaled,
        hessian_min_eigenvalue=cov_eig,
        grad_tol=GRAD_TOL,
        messages=messages,
    )


@dataclass(frozen=True, eq=False)
class WeightedGlmmFit:
    """What the sandwich needs besides the engine result."""

    objective: WeightedGlmmObjective
    x: np.ndarray  # (theta, beta) at the optimum
    hessian: np.ndarray  # of the normalised weighted deviance at x


def check_weighted_binomial(design: GroupedDesign, family: str, nagq: int) -> None:
    """The weighted GLMM handles a 0/1 binomial outcome with at most 3 random effects."""
    if family != "binomial":
        raise UsageError(
            f"sampling weights are implemented for gaussian and binomial models, not {family}"
        )
    if np.any((design.y != 0) & (design.y != 1)):
        raise DataError("weighted binomial fits need a 0/1 outcome; recode the outcome")
    if nagq > 1 and design.q > MAX_AGQ_DIM:
        raise UsageError(
            f"nagq > 1 needs at most {MAX_AGQ_DIM} random effects per group; use nagq=1"
        )


def fit_weighted_glmm(
    design: GroupedDesign,
    sw: SamplingWeights,
    *,
    family: str = "binomial",
    link: str | None = None,
    nagq: int = 1,
) -> tuple[EngineResult, WeightedGlmmFit]:
    """Fit a binomial GLMM by pseudo-ML (Laplace or AGQ); see the module docstring.

    Example
    -------
    >>> res, extra = fit_weighted_glmm(design, sw, nagq=13)  # doctest: +SKIP
    """
    check_weighted_binomial(design, family, nagq)
    code, link = family_code(family, link)
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(design, sw, code, family, link, int(nagq))


def _fit(design, sw, code, family, link, nagq) -> tuple[EngineResult, WeightedGlmmFit]:
    lap = WeightedGlmmObjective(design, sw, code, 1)
    start = fit_glmm(lap.design, family=family, link=link, nagq=1)
    x = np.concatenate([start.theta, start.beta])
    # Laplace first (cheap), from the fit without level-2 weights; AGQ then starts at the
    # Laplace optimum with the Laplace Hessian, which is close to its own
    x, _, g, H, iters, ok = _optimum(lap, x, hessian(lap, x))
    obj = lap
    if nagq > 1:
        obj = WeightedGlmmObjective(design, sw, code, nagq)
        obj.u = lap.u.copy()
        x, _, g, H, more, ok = _optimum(obj, x, H)
        iters += more
    nt = design.n_theta
    canon = theta_canonical(x[:nt], design.re_blocks)
    if np.any(canon != x[:nt]):  # a column of Lambda flipped: derivatives at the new point
        x[:nt] = canon
        _, g = value_grad(obj, x)
        H = hessian(obj, x)
    lower = theta_lower(design.re_blocks)
    report = _report(x, g, H, nt, lower, iters, ok)
    theta, beta = obj.split(x)
    dev = obj.total(x)  # leaves the modes of the optimum in obj.u
    lam = obj.ws.lam(theta)
    ranef = obj.u @ lam.T
    eta = design.X @ beta + design.offset + np.einsum("ij,ij->i", design.Z, ranef[design.group])
    try:
        vcov = np.linalg.inv(0.5 * H * obj.norm)[nt:, nt:]
    except np.linalg.LinAlgError:
        vcov = np.full((design.p, design.p), np.nan)
    result = EngineResult(
        theta=theta,
        beta=beta,
        vcov_beta=0.5 * (vcov + vcov.T),
        cov_re=lam @ lam.T,
        sigma2=None,
        ranef=ranef,
        loglik=-0.5 * dev,
        deviance=dev,
        n_params=design.p + nt,
        family=family,
        link=link,
        nagq=nagq,
        reml=False,
        convergence=report,
        fitted=linkinv(code, eta),
    )
    return result, WeightedGlmmFit(objective=obj, x=x, hessian=H)


__all__ = [
    "WeightedGlmmFit",
    "WeightedGlmmObjective",
    "fit_weighted_glmm",
    "hessian",
    "quasi_newton",
    "value_grad",
]
