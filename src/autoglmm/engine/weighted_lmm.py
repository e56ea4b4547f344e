"""Linear mixed models by pseudo-maximum likelihood with weights at two levels.

With level-1 weights ``w_{i|j}`` (conditional on the group) and level-2 weights ``w_j``
(see :mod:`autoglmm.engine.weights`), the pseudo-log-likelihood of a gaussian model is
exact (no approximation) and has the same algebra as the unweighted one:

    -2 l_w = sum_j w_j log|M_j| + N_w log(2 pi sigma2) + r2(beta, theta) / sigma2,

``M_j = Lambda' Z_j'W_j Z_j Lambda + I`` with ``W_j = diag(w_{i|j})``,
``N_w = sum_j w_j sum_i w_{i|j}`` and ``r2`` the penalised residual sum of squares
``sum_j w_j min_u (|y_j - X_j beta - Z_j Lambda u|^2_{W_j} + |u|^2)``. ``r2`` is quadratic
in beta and sigma2 enters only as above, so both are still profiled out exactly
(``sigma2 = r2 / N_w``, beta by weighted generalised least squares) and the objective
is a pure function of theta over per-group statistics computed once:
``Z_j'W_jZ_j, Z_j'W_jX_j, Z_j'W_jy_j`` (and ``X_j'W_jX_j, X_j'W_jy_j, y_j'W_jy_j`` for the
per-group scores of the sandwich). The level-2 weights only multiply each group's
contribution inside the kernel. This is the likelihood WeMix's ``mix()`` maximises
(its ``analyticSolve``: ``2 lndetLz + nx log(2 pi sigma^2) + discrep / sigma^2``).

With all weights equal to 1 the objective is lme4's ML deviance exactly. REML has no
accepted pseudo-likelihood version and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from autoglmm.engine.design import (
    GroupedDesign,
    theta_canonical,
    theta_lower,
    theta_positions,
    theta_start,
)
from autoglmm.engine.estimates import EngineResult
from autoglmm.engine.optimize import optimize, single_threaded_blas
from autoglmm.engine.weights import SamplingWeights

_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class WeightedWorkspace:
    """Per-group statistics with conditional level-1 weights, and the level-2 weights.

    The statistics are those of ``e0 = y - offset - X beta0`` (``beta0`` the weighted least
    squares fit), which keeps ``r2`` from cancelling large numbers when y has a large mean.
    """

    ZtZ: np.ndarray  # (m, q, q)
    ZtX: np.ndarray  # (m, q, p)
    Zty: np.ndarray  # (m, q)
    XtX: np.ndarray  # (m, p, p)
    Xty: np.ndarray  # (m, p)
    yty: np.ndarray  # (m,)
    nw: np.ndarray  # (m,) sum_i w_{i|j}
    w2: np.ndarray  # (m,) level-2 weights
    n_weighted: float  # N_w
    re_blocks: tuple[int, ...]
    rows: np.ndarray
    cols: np.ndarray
    beta0: np.ndarray

    @property
    def m(self) -> int:
        return self.ZtZ.shape[0]

    @property
    def q(self) -> int:
        return self.ZtZ.shape[1]

    @property
    def p(self) -> int:
        return self.XtX.shape[1]


@njit(cache=True)
def _group_stats(X, Z, e, w, starts):  # pragma: no cover - numba
    """Per-group weighted cross-products of Z, X and e in one pass over the rows."""
    n, p = X.shape
    q = Z.shape[1]
    m = len(starts) - 1
    ZtZ = np.zeros((m, q, q))
    ZtX = np.zeros((m, q, p))
    Zty = np.zeros((m, q))
    XtX = np.zeros((m, p, p))
    Xty = np.zeros((m, p))
    yty = np.zeros(m)
    for j in range(m):
        for i in range(starts[j], starts[j + 1]):
            wi = w[i]
            yty[j] += wi * e[i] * e[i]
            for k in range(p):
                xk = X[i, k] * wi
                Xty[j, k] += xk * e[i]
                for l in range(p):
                    XtX[j, k, l] += xk * X[i, l]
            for a in range(q):
                za = Z[i, a] * wi
                Zty[j, a] += za * e[i]
                for b in range(q):
                    ZtZ[j, a, b] += za * Z[i, b]
                for k in range(p):
                    ZtX[j, a, k] += za * X[i, k]
    return ZtZ, ZtX, Zty, XtX, Xty, yty


def make_weighted_workspace(design: GroupedDesign, sw: SamplingWeights) -> WeightedWorkspace:
    """Reduce the design to per-group weighted statistics, once per model."""
    w1 = np.ascontiguousarray(sw.level1, dtype=float)
    wt = sw.total(design.group)
    X = np.ascontiguousarray(design.X)
    y = design.y - design.offset
    s = np.sqrt(wt)
    beta0 = np.linalg.lstsq(X * s[:, None], y * s, rcond=None)[0]
    e0 = np.ascontiguousarray(y - X @ beta0)
    stats = _group_stats(X, np.ascontiguousarray(design.Z), e0, w1, design.starts)
    rows, cols = theta_positions(design.re_blocks)
    nw = np.add.reduceat(w1, design.starts[:-1])
    w2 = np.ascontiguousarray(sw.level2, dtype=float)
    return WeightedWorkspace(
        *stats,
        nw=nw,
        w2=w2,
        n_weighted=float(np.dot(w2, nw)),
        re_blocks=design.re_blocks,
        rows=rows,
        cols=cols,
        beta0=beta0,
    )


@njit(cache=True)
def _chol_group(lam, ZtZ_j, L):  # pragma: no cover - numba
    """L L' = Lambda' Z'WZ Lambda + I (lower, in place); returns log|M| or inf."""
    q = lam.shape[0]
    A = np.zeros((q, q))
    for a in range(q):
        for b in range(q):
            acc = 0.0
            for c in range(q):
                acc += ZtZ_j[a, c] * lam[c, b]
            A[a, b] = acc
    logdet = 0.0
    for a in range(q):
        for b in range(a + 1):
            acc = 1.0 if a == b else 0.0
            for c in range(q):
                acc += lam[c, a] * A[c, b]
            for c in range(b):
                acc -= L[a, c] * L[b, c]
            if a == b:
                if acc <= 0.0:
                    return np.inf
                L[a, a] = np.sqrt(acc)
                logdet += 2.0 * np.log(L[a, a])
            else:
                L[a, b] = acc / L[b, b]
    return logdet


@njit(cache=True)
def _solve_lower(L, b, out):  # pragma: no cover - numba
    q = L.shape[0]
    for a in range(q):
        acc = b[a]
        for c in range(a):
            acc -= L[a, c] * out[c]
        out[a] = acc / L[a, a]


@njit(cache=True)
def _solve_upper(L, b, out):  # pragma: no cover - numba
    """Solve L' x = b."""
    q = L.shape[0]
    for a in range(q - 1, -1, -1):
        acc = b[a]
        for c in range(a + 1, q):
            acc -= L[c, a] * out[c]
        out[a] = acc / L[a, a]


@njit(cache=True)
def _factor(lam, ZtZ, ZtX, Zty, XtX, Xty, yty, w2):  # pragma: no cover - numba
    """Per-group factors and the weighted fixed-effects system at one theta.

    Returns L (m,q,q), RZX (m,q,p), cu (m,q), sum_j w_j log|M_j|, the weighted
    ``RX'RX = sum_j w_j (X'WX - RZX'RZX)``, its right side and ``sum_j w_j (y'Wy - |cu|^2)``.
    """
    m, q, p = ZtX.shape
    L = np.zeros((m, q, q))
    RZX = np.zeros((m, q, p))
    cu = np.zeros((m, q))
    A = np.zeros((p, p))
    c = np.zeros(p)
    r2 = 0.0
    logdet = 0.0
    v = np.empty(q)
    col = np.empty(q)
    for j in range(m):
        ld = _chol_group(lam, ZtZ[j], L[j])
        if not np.isfinite(ld):
            return L, RZX, cu, np.inf, A, c, r2
        logdet += w2[j] * ld
        for k in range(p):  # RZX = L^-1 Lambda' Z'WX, column by column
            for a in range(q):
                acc = 0.0
                for d in range(a, q):
                    acc += lam[d, a] * ZtX[j, d, k]
                col[a] = acc
            _solve_lower(L[j], col, v)
            for a in range(q):
                RZX[j, a, k] = v[a]
        for a in range(q):
            acc = 0.0
            for d in range(a, q):
                acc += lam[d, a] * Zty[j, d]
            col[a] = acc
        _solve_lower(L[j], col, cu[j])
        wj = w2[j]
        r2 += wj * yty[j]
        for k in range(p):
            c[k] += wj * Xty[j, k]
            for l in range(p):
                A[k, l] += wj * XtX[j, k, l]
        for a in range(q):
            r2 -= wj * cu[j, a] * cu[j, a]
            for k in range(p):
                c[k] -= wj * RZX[j, a, k] * cu[j, a]
                for l in range(p):
                    A[k, l] -= wj * RZX[j, a, k] * RZX[j, a, l]
    return L, RZX, cu, logdet, A, c, r2


@njit(cache=True)
def _modes_and_grad(lam, ZtZ, ZtX, Zty, L, RZX, cu, beta, w2):  # pragma: no cover
    """Spherical modes u_j and the gradient sums G = sum w_j (Z'We) u', T = sum w_j S_j."""
    m, q, p = ZtX.shape
    u = np.zeros((m, q))
    G = np.zeros((q, q))
    T = np.zeros((q, q))
    rhs = np.empty(q)
    b = np.empty(q)
    zte = np.empty(q)
    N = np.empty(q)
    S = np.empty(q)
    for j in range(m):
        for a in range(q):
            acc = cu[j, a]
            for k in range(p):
                acc -= RZX[j, a, k] * beta[k]
            rhs[a] = acc
        _solve_upper(L[j], rhs, u[j])
        for a in range(q):
            acc = 0.0
            for c in range(q):
                acc += lam[a, c] * u[j, c]
            b[a] = acc
        for a in range(q):
            acc = Zty[j, a]
            for k in range(p):
                acc -= ZtX[j, a, k] * beta[k]
            for c in range(q):
                acc -= ZtZ[j, a, c] * b[c]
            zte[a] = acc
        wj = w2[j]
        for a in range(q):
            for c in range(q):
                G[a, c] += wj * zte[a] * u[j, c]
        for c in range(q):  # column c of S = M^-1 Lambda' Z'WZ
            for a in range(q):
                acc = 0.0
                for d in range(q):
                    acc += lam[d, a] * ZtZ[j, d, c]
                N[a] = acc
            _solve_lower(L[j], N, rhs)
            _solve_upper(L[j], rhs, S)
            for a in range(q):
                T[a, c] += wj * S[a]
    return u, G, T


def _lambda(theta: np.ndarray, ws: WeightedWorkspace) -> np.ndarray:
    lam = np.zeros((ws.q, ws.q))
    lam[ws.rows, ws.cols] = theta
    return lam


@dataclass(frozen=True, eq=False)
class _State:
    lam: np.ndarray
    L: np.ndarray
    RZX: np.ndarray
    cu: np.ndarray
    RXtRX: np.ndarray
    beta: np.ndarray  # in the shifted coordinates (beta - beta0)
    r2: float
    deviance: float


def _state(theta: np.ndarray, ws: WeightedWorkspace) -> _State | None:
    lam = _lambda(np.asarray(theta, dtype=float), ws)
    L, RZX, cu, logdet, A, c, r2 = _factor(
        lam, ws.ZtZ, ws.ZtX, ws.Zty, ws.XtX, ws.Xty, ws.yty, ws.w2
    )
    if not np.isfinite(logdet):
        return None
    try:
        R = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return None
    z = np.linalg.solve(R, c)
    beta = np.linalg.solve(R.T, z)
    r2 = max(float(r2 - z @ z), 1e-300)
    nw = ws.n_weighted
    dev = logdet + nw * (1.0 + _LOG2PI + np.log(r2 / nw))
    return _State(lam, L, RZX, cu, A, beta, r2, float(dev))


def deviance_and_gradient(theta: np.ndarray, ws: WeightedWorkspace) -> tuple[float, np.ndarray]:
    """Profiled pseudo-deviance (-2 l_w at the profiled beta, sigma2) and its gradient."""
    s = _state(theta, ws)
    if s is None:
        return np.inf, np.full(len(theta), np.nan)
    _, G, T = _modes_and_grad(s.lam, ws.ZtZ, ws.ZtX, ws.Zty, s.L, s.RZX, s.cu, s.beta, ws.w2)
    grad = 2.0 * T[ws.cols, ws.rows] - 2.0 * ws.n_weighted / s.r2 * G[ws.rows, ws.cols]
    return s.deviance, grad


def deviance(theta: np.ndarray, ws: WeightedWorkspace) -> float:
    """Profiled pseudo-deviance at ``theta`` (``inf`` where it cannot be evaluated)."""
    s = _state(theta, ws)
    return np.inf if s is None else s.deviance


@dataclass(frozen=True, eq=False)
class WeightedLMMEstimates:
    """Estimates at one theta, and what the sandwich needs."""

    theta: np.ndarray
    beta: np.ndarray  # on the original scale
    sigma2: float
    cov_re: np.ndarray
    u: np.ndarray  # (m, q) spherical modes
    ranef: np.ndarray  # (m, q) b_j = Lambda u_j
    vcov_model: np.ndarray  # sigma2 (RX'RX)^-1: the inverse information on beta
    deviance: float


def estimates_at(theta: np.ndarray, ws: WeightedWorkspace) -> WeightedLMMEstimates:
    """beta, sigma2, G and the modes at ``theta`` (the optimum, for a fit)."""
    s = _state(theta, ws)
    if s is None:
        raise np.linalg.LinAlgError("the weighted system is not positive definite")
    u, _, _ = _modes_and_grad(s.lam, ws.ZtZ, ws.ZtX, ws.Zty, s.L, s.RZX, s.cu, s.beta, ws.w2)
    sigma2 = s.r2 / ws.n_weighted
    return WeightedLMMEstimates(
        theta=np.asarray(theta, dtype=float),
        beta=s.beta + ws.beta0,
        sigma2=sigma2,
        cov_re=sigma2 * s.lam @ s.lam.T,
        u=u,
        ranef=u @ s.lam.T,
        vcov_model=sigma2 * np.linalg.inv(s.RXtRX),
        deviance=s.deviance,
    )


def fit_weighted_lmm(
    design: GroupedDesign,
    sw: SamplingWeights,
    start: np.ndarray | None = None,
    *,
    rng_seed: int = 0,
) -> tuple[EngineResult, WeightedWorkspace, WeightedLMMEstimates]:
    """Fit a gaussian LMM by pseudo-ML; returns the engine result, workspace and estimates.

    The optimisation is the unweighted engine's: theta only, analytic gradient, the shared
    :func:`~autoglmm.engine.optimize.optimize` with its convergence checks. ``vcov_beta`` of
    the result is the model-based one; the sandwich lives in
    :mod:`autoglmm.engine.sandwich`.
    """
    with single_threaded_blas():
        ws = make_weighted_workspace(design, sw)
        lower = theta_lower(design.re_blocks)
        x0 = theta_start(design.re_blocks)
        if start is not None and len(start) == len(x0) and np.all(np.isfinite(start)):
            x0 = theta_canonical(np.asarray(start, dtype=float), design.re_blocks)
            diag = np.isfinite(lower)
            x0[diag] = np.maximum(x0[diag], 0.1)
        theta, _, report = optimize(
            lambda t: deviance_and_gradient(t, ws),
            x0,
            lower,
            jac=True,
            canonical=lambda t: theta_canonical(t, design.re_blocks),
            rng_seed=rng_seed,
        )
        est = estimates_at(theta, ws)
    fitted = (
        design.offset
        + design.X @ est.beta
        + np.einsum("ij,ij->i", design.Z, est.ranef[design.group])
    )
    result = EngineResult(
        theta=theta,
        beta=est.beta,
        vcov_beta=est.vcov_model,
        cov_re=est.cov_re,
        sigma2=float(est.sigma2),
        ranef=est.ranef,
        loglik=-0.5 * est.deviance,
        deviance=est.deviance,
        n_params=design.p + len(theta) + 1,
        family="gaussian",
        link="identity",
        nagq=1,
        reml=False,
        convergence=report,
        fitted=fitted,
    )
    return result, ws, est


__all__ = [
    "WeightedLMMEstimates",
    "WeightedWorkspace",
    "deviance",
    "deviance_and_gradient",
    "estimates_at",
    "fit_weighted_lmm",
    "make_weighted_workspace",
]
