"""Linear mixed models: the profiled ML/REML deviance as a pure function of theta.

The model is ``y = X beta + Z b + e`` with ``b_j ~ N(0, sigma2 Lambda Lambda')`` per group
and ``e ~ N(0, sigma2 / w)``. As in lme4 (Bates et al. 2015, section 3), beta and sigma2 are
profiled out, leaving a deviance in theta alone. Z is block diagonal over groups, so every
quantity the deviance needs is a sum over groups of small products of the per-group
sufficient statistics ``Z_j'WZ_j, Z_j'WX_j, Z_j'Wy_j`` and the global ``X'WX, X'Wy, y'Wy``.
They are computed once per model (:func:`make_workspace`); one deviance evaluation then
costs O(m q^2 p + m q p^2 + p^3), independent of the number of rows, with the groups
stacked into ``(m, q, ...)`` arrays and processed by batched LAPACK calls.

Per group ``M_j = Lambda' Z_j'WZ_j Lambda + I = L_j L_j'``; with
``RZX_j = L_j^-1 Lambda' Z_j'WX_j`` and ``cu_j = L_j^-1 Lambda' Z_j'Wy_j``:

- ``RX'RX = X'WX - sum_j RZX_j' RZX_j``, ``beta = (RX'RX)^-1 (X'Wy - sum_j RZX_j' cu_j)``;
- ``r2 = y'Wy - sum_j |cu_j|^2 - beta'(X'Wy - sum_j RZX_j' cu_j)`` (penalised RSS);
- ML deviance ``log|L|^2 - sum log w + n (1 + log(2 pi r2 / n))``;
- REML criterion ``log|L|^2 + log|RX|^2 - sum log w + (n-p)(1 + log(2 pi r2 / (n-p)))``.

The analytic gradient in theta follows from the envelope theorem for ``r2`` and from
``d log det`` of the (REML: augmented) system matrix; see :func:`deviance_and_gradient`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from autoglmm.engine.design import GroupedDesign, theta_lower, theta_start
from autoglmm.engine.estimates import ConvergenceReport, EngineResult
from autoglmm.engine.optimize import optimize

_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class LMMWorkspace:
    """Per-group sufficient statistics of one model (weighted by the prior weights)."""

    ZtZ: np.ndarray  # (m, q, q)
    ZtX: np.ndarray  # (m, q, p)
    Zty: np.ndarray  # (m, q)
    XtX: np.ndarray  # (p, p)
    Xty: np.ndarray  # (p,)
    yty: float
    n: int
    sum_log_w: float
    re_blocks: tuple[int, ...]
    rows: np.ndarray  # theta k sits at Lambda[rows[k], cols[k]]
    cols: np.ndarray

    @property
    def m(self) -> int:
        return self.ZtZ.shape[0]

    @property
    def q(self) -> int:
        return self.ZtZ.shape[1]

    @property
    def p(self) -> int:
        return self.XtX.shape[0]


def theta_positions(re_blocks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of Lambda for each theta element (column-major lower triangles)."""
    rows, cols, offset = [], [], 0
    for k in re_blocks:
        for col in range(k):
            for row in range(col, k):
                rows.append(offset + row)
                cols.append(offset + col)
        offset += k
    return np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)


def make_workspace(design: GroupedDesign) -> LMMWorkspace:
    """Reduce the design to per-group cross-products, once per model."""
    w = design.weights
    y = design.y - design.offset
    X, Z = design.X, design.Z
    starts = design.starts[:-1]
    Zw = Z * w[:, None]
    ZtZ = np.add.reduceat(Zw[:, :, None] * Z[:, None, :], starts, axis=0)
    ZtX = np.add.reduceat(Zw[:, :, None] * X[:, None, :], starts, axis=0)
    Zty = np.add.reduceat(Zw * y[:, None], starts, axis=0)
    Xw = X * w[:, None]
    rows, cols = theta_positions(design.re_blocks)
    return LMMWorkspace(
        ZtZ=np.ascontiguousarray(ZtZ),
        ZtX=np.ascontiguousarray(ZtX),
        Zty=np.ascontiguousarray(Zty),
        XtX=Xw.T @ X,
        Xty=Xw.T @ y,
        yty=float(np.dot(w * y, y)),
        n=design.n,
        sum_log_w=float(np.sum(np.log(w))),
        re_blocks=design.re_blocks,
        rows=rows,
        cols=cols,
    )


def _lambda(theta: np.ndarray, ws: LMMWorkspace) -> np.ndarray:
    lam = np.zeros((ws.q, ws.q))
    lam[ws.rows, ws.cols] = theta
    return lam


@dataclass(frozen=True, eq=False)
class _Solution:
    """Everything the deviance, its gradient and the estimates need at one theta."""

    lam: np.ndarray
    L: np.ndarray  # (m, q, q) Cholesky factors of M_j
    RZX: np.ndarray  # (m, q, p)
    cu: np.ndarray  # (m, q)
    RX: np.ndarray  # (p, p) upper Cholesky factor of RX'RX
    beta: np.ndarray
    r2: float
    logdet_L: float
    logdet_RX: float


def _solve(theta: np.ndarray, ws: LMMWorkspace) -> _Solution:
    lam = _lambda(np.asarray(theta, dtype=float), ws)
    lam_t = lam.T
    M = lam_t @ ws.ZtZ @ lam
    M[:, np.arange(ws.q), np.arange(ws.q)] += 1.0
    L = np.linalg.cholesky(M)
    rhs = np.concatenate([lam_t @ ws.ZtX, (ws.Zty @ lam)[:, :, None]], axis=2)
    sol = np.linalg.solve(L, rhs)
    RZX, cu = sol[:, :, : ws.p], sol[:, :, ws.p]
    RZXf = RZX.reshape(-1, ws.p)
    A = ws.XtX - RZXf.T @ RZXf
    c = ws.Xty - RZXf.T @ cu.ravel()
    RX = linalg.cholesky(A, lower=False, check_finite=False)
    beta = linalg.cho_solve((RX, False), c, check_finite=False)
    r2 = ws.yty - float(np.dot(cu.ravel(), cu.ravel())) - float(np.dot(c, beta))
    logdet_L = 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
    logdet_RX = 2.0 * float(np.sum(np.log(np.abs(np.diag(RX)))))
    return _Solution(lam, L, RZX, cu, RX, beta, max(r2, 1e-300), logdet_L, logdet_RX)


def _deviance_from(s: _Solution, ws: LMMWorkspace, reml: bool) -> float:
    n = ws.n - ws.p if reml else ws.n
    dev = s.logdet_L - ws.sum_log_w + n * (1.0 + _LOG2PI + np.log(s.r2 / n))
    return float(dev + s.logdet_RX) if reml else float(dev)


def deviance(theta: np.ndarray, ws: LMMWorkspace, reml: bool = False) -> float:
    """Profiled deviance (ML) or REML criterion at ``theta``: -2 log-likelihood.

    Returns ``inf`` where the system is not positive definite (it always is for finite
    theta; the guard keeps an optimizer probing wild points safe).
    """
    try:
        return _deviance_from(_solve(theta, ws), ws, reml)
    except (np.linalg.LinAlgError, linalg.LinAlgError):
        return np.inf


def _spherical_modes(s: _Solution, ws: LMMWorkspace) -> np.ndarray:
    """u_j solving M_j u_j = Lambda' Z_j'W(y_j - X_j beta), i.e. L_j' u_j = cu_j - RZX_j beta."""
    v = s.cu - s.RZX @ s.beta
    return np.linalg.solve(np.swapaxes(s.L, 1, 2), v[:, :, None])[:, :, 0]


def _gradient(s: _Solution, ws: LMMWorkspace, reml: bool) -> np.ndarray:
    u = _spherical_modes(s, ws)
    b = u @ s.lam.T
    zte = ws.Zty - ws.ZtX @ s.beta - np.einsum("jab,jb->ja", ws.ZtZ, b)
    dr2 = -2.0 * (zte.T @ u)[ws.rows, ws.cols]
    Lt = np.swapaxes(s.L, 1, 2)
    lt_ztz = s.lam.T @ ws.ZtZ
    minv_lt_ztz = np.linalg.solve(Lt, np.linalg.solve(s.L, lt_ztz))
    term = minv_lt_ztz
    if reml:
        K = np.linalg.solve(Lt, s.RZX)  # M_j^-1 Lambda' Z_j'X_j, (m, q, p)
        C = linalg.cho_solve((s.RX, False), np.eye(ws.p), check_finite=False)
        KC = K @ C
        W = np.swapaxes(K, 1, 2) @ lt_ztz - np.swapaxes(ws.ZtX, 1, 2)
        term = term + KC @ W
    dlogdet = 2.0 * term.sum(axis=0)[ws.cols, ws.rows]
    n = ws.n - ws.p if reml else ws.n
    return dlogdet + n / s.r2 * dr2


def deviance_and_gradient(
    theta: np.ndarray, ws: LMMWorkspace, reml: bool = False
) -> tuple[float, np.ndarray]:
    """Deviance and its analytic gradient in theta (envelope theorem for r2)."""
    try:
        s = _solve(theta, ws)
    except (np.linalg.LinAlgError, linalg.LinAlgError):
        return np.inf, np.full(len(theta), np.nan)
    return _deviance_from(s, ws, reml), _gradient(s, ws, reml)


@dataclass(frozen=True, eq=False)
class LMMEstimates:
    """Estimates at one theta (the optimum, for a fit)."""

    beta: np.ndarray
    vcov_beta: np.ndarray
    sigma2: float
    cov_re: np.ndarray
    ranef: np.ndarray
    deviance: float


def estimates_at(theta: np.ndarray, ws: LMMWorkspace, reml: bool = False) -> LMMEstimates:
    """beta, its covariance, sigma2, G and the conditional modes at ``theta``."""
    s = _solve(theta, ws)
    sigma2 = s.r2 / (ws.n - ws.p if reml else ws.n)
    rx_inv = linalg.solve_triangular(s.RX, np.eye(ws.p), check_finite=False)
    b = _spherical_modes(s, ws) @ s.lam.T
    return LMMEstimates(
        beta=s.beta,
        vcov_beta=sigma2 * rx_inv @ rx_inv.T,
        sigma2=sigma2,
        cov_re=sigma2 * s.lam @ s.lam.T,
        ranef=b,
        deviance=_deviance_from(s, ws, reml),
    )


def fit_lmm(
    design: GroupedDesign,
    reml: bool = False,
    start: np.ndarray | None = None,
    *,
    rng_seed: int = 0,
) -> EngineResult:
    """Fit a linear mixed model by (RE)ML: optimise theta, then read off the estimates.

    ``start`` is an initial theta (lme4's identity default when None or the wrong size).
    """
    ws = make_workspace(design)
    lower = theta_lower(design.re_blocks)
    x0 = theta_start(design.re_blocks)
    if start is not None and len(start) == len(x0) and np.all(np.isfinite(start)):
        x0 = np.maximum(np.asarray(start, dtype=float), lower)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        return deviance_and_gradient(theta, ws, reml)

    theta, _, report = optimize(
        objective, x0, lower, jac=True, cov_mask=np.ones(len(x0), bool), rng_seed=rng_seed
    )
    est = estimates_at(theta, ws, reml)
    fitted = (
        design.offset
        + design.X @ est.beta
        + np.einsum("ij,ij->i", design.Z, est.ranef[design.group])
    )
    return EngineResult(
        theta=theta,
        beta=est.beta,
        vcov_beta=est.vcov_beta,
        cov_re=est.cov_re,
        sigma2=float(est.sigma2),
        ranef=est.ranef,
        loglik=-0.5 * est.deviance,
        deviance=est.deviance,
        n_params=design.p + len(theta) + 1,
        family="gaussian",
        link="identity",
        nagq=1,
        reml=reml,
        convergence=report,
        fitted=fitted,
    )


__all__ = [
    "ConvergenceReport",
    "LMMWorkspace",
    "deviance",
    "deviance_and_gradient",
    "estimates_at",
    "fit_lmm",
    "make_workspace",
]
