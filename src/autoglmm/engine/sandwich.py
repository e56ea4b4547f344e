"""Sandwich (robust) standard errors of pseudo-ML fits, from per-group scores.

A pseudo-likelihood is not a likelihood, so the inverse Hessian ("bread") alone does not
estimate the sampling variance. Rabe-Hesketh & Skrondal (2006, section 3.3) use

    V = H^-1 J H^-1,    J = m / (m - 1) sum_j s_j s_j',

with ``s_j`` the score of group j's weighted contribution ``w_j l_j`` at the estimates and
``H`` the Hessian of ``l_w``; groups are the primary sampling units. We follow WeMix's
``mix()`` in what ``H`` is:

- gaussian: ``H`` block diagonal, ``sigma2 (RX'RX)^-1`` for beta and the Hessian over
  (theta, sigma) at fixed beta for the variance components (WeMix ``analyticSolve``);
- binomial: the full Hessian over (beta, theta) (WeMix ``makeSandwich``).

The (co)variances ``G = sigma2 Lambda Lambda'`` and ``sigma2`` get their standard errors by
the delta method. ``V`` is invariant under a smooth reparameterisation at the same point,
so WeMix's variance parameterisation and our theta give the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from autoglmm.engine.design import lambda_from_theta, theta_positions
from autoglmm.engine.kernels import chol_lambda, chol_solve
from autoglmm.engine.weighted_glmm import WeightedGlmmFit
from autoglmm.engine.weighted_lmm import WeightedLMMEstimates, WeightedWorkspace

_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class Sandwich:
    """Robust covariance of the fixed effects and of the variance components.

    vcov_beta : (p, p) robust covariance of beta.
    vc_pairs : the (row, col) of each variance component in ``cov_re`` (row >= col),
        variances first; for gaussian models the residual variance follows as ``None``.
    vc_se : robust standard errors of those components (same order).
    n_groups : number of groups (primary sampling units) in J.
    """

    vcov_beta: np.ndarray
    vc_pairs: tuple
    vc_se: np.ndarray
    n_groups: int


def meat(scores: np.ndarray) -> np.ndarray:
    """``J = m / (m - 1) sum_j s_j s_j'`` from the (m, k) per-group scores."""
    m = scores.shape[0]
    return m / (m - 1.0) * scores.T @ scores


def vc_pairs(re_blocks: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Variance components in reporting order: variances, then covariances within blocks."""
    diag, off, offset = [], [], 0
    for k in re_blocks:
        diag += [(offset + i, offset + i) for i in range(k)]
        off += [(offset + i, offset + j) for j in range(k) for i in range(j + 1, k)]
        offset += k
    return tuple(diag + off)


def _inverse(H: np.ndarray) -> np.ndarray:
    """Inverse of a Hessian, NaN when it is singular (a fit on the boundary)."""
    try:
        return np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return np.full_like(H, np.nan)


def boundary_nan(vc_se: np.ndarray, pairs, cov: np.ndarray, scale: float) -> np.ndarray:
    """NaN for the components of a random effect whose variance is 0 (a singular fit):
    the delta method gives 0 there, which is not a standard error (WeMix reports NA).
    ``scale`` is the level-1 variance (sigma2, or 1 for binomial models)."""
    zero = np.diag(cov) <= 1e-8 * max(float(np.max(np.diag(cov), initial=0.0)), scale)
    out = vc_se.copy()
    for k, pair in enumerate(pairs):
        if pair is not None and (zero[pair[0]] or zero[pair[1]]):
            out[k] = np.nan
    return out


def vc_jacobian(
    theta: np.ndarray, scale: float, re_blocks: tuple[int, ...], with_sigma: bool
) -> np.ndarray:
    """d (G entries [, sigma2]) / d (theta [, sigma]) with ``G = scale Lambda Lambda'``.

    ``scale`` is sigma2 (gaussian, then sigma is a parameter) or 1 (binomial).
    """
    q = sum(re_blocks)
    lam = lambda_from_theta(theta, re_blocks)
    rows, cols = theta_positions(re_blocks)
    pairs = vc_pairs(re_blocks)
    nt = len(theta)
    out = np.zeros((len(pairs) + with_sigma, nt + with_sigma))
    for k in range(nt):
        E = np.zeros((q, q))
        E[rows[k], cols[k]] = 1.0
        dG = scale * (E @ lam.T + lam @ E.T)
        out[: len(pairs), k] = [dG[a, b] for a, b in pairs]
    if with_sigma:
        sigma = np.sqrt(scale)
        G1 = lam @ lam.T
        out[: len(pairs), nt] = [2.0 * sigma * G1[a, b] for a, b in pairs]
        out[len(pairs), nt] = 2.0 * sigma
    return out


@njit(cache=True)
def _lmm_group_scores(lam, beta, sigma, ZtZ, ZtX, Zty, XtX, Xty, yty, nw, w2, rows, cols):
    """Per-group ``w_j l_j`` and its scores in (beta, theta, sigma) at any beta.

    ``l_j = -(nw_j log(2 pi sigma2) + log|M_j| + prss_j / sigma2) / 2`` with
    ``prss_j = r'Wr - rhs'M^-1 rhs``, ``rhs = Lambda'Z'W r``, ``r = y - X beta``; the scores
    use the envelope theorem in u_j (the conditional mode) as the unweighted gradient does.
    """
    m, q, p = ZtX.shape
    nt = len(rows)
    s2 = sigma * sigma
    out = np.zeros((m, p + nt + 1))
    ll = np.zeros(m)
    L = np.zeros((q, q))
    A = np.empty((q, q))
    Ztr = np.empty(q)
    rhs = np.empty(q)
    u = np.empty(q)
    b = np.empty(q)
    zte = np.empty(q)
    S = np.zeros((q, q))
    for j in range(m):
        L[:, :] = 0.0
        logdet = chol_lambda(lam, ZtZ[j], A, L)
        rtr = yty[j]
        for k in range(p):
            rtr -= 2.0 * beta[k] * Xty[j, k]
            for l in range(p):
                rtr += beta[k] * XtX[j, k, l] * beta[l]
        for a in range(q):
            acc = Zty[j, a]
            for k in range(p):
                acc -= ZtX[j, a, k] * beta[k]
            Ztr[a] = acc
        for a in range(q):
            acc = 0.0
            for d in range(a, q):
                acc += lam[d, a] * Ztr[d]
            rhs[a] = acc
        for a in range(q):
            u[a] = rhs[a]
        chol_solve(L, u.reshape((q, 1)))
        prss = rtr
        for a in range(q):
            prss -= rhs[a] * u[a]
        for a in range(q):  # b = Lambda u, zte = Z'W e, S = M^-1 Lambda' Z'WZ
            acc = 0.0
            for c in range(q):
                acc += lam[a, c] * u[c]
            b[a] = acc
        for a in range(q):
            acc = Ztr[a]
            for c in range(q):
                acc -= ZtZ[j, a, c] * b[c]
            zte[a] = acc
        for a in range(q):
            for c in range(q):
                acc = 0.0
                for d in range(q):
                    acc += lam[d, a] * ZtZ[j, d, c]
                S[a, c] = acc
        chol_solve(L, S)
        wj = w2[j]
        ll[j] = -0.5 * wj * (nw[j] * (_LOG2PI + np.log(s2)) + logdet + prss / s2)
        for k in range(p):  # X'We = X'Wr - X'WZ Lambda u
            acc = Xty[j, k]
            for l in range(p):
                acc -= XtX[j, k, l] * beta[l]
            for a in range(q):
                acc -= ZtX[j, a, k] * b[a]
            out[j, k] = wj * acc / s2
        for t in range(nt):
            r, c = rows[t], cols[t]
            out[j, p + t] = -wj * (S[c, r] - zte[r] * u[c] / s2)
        out[j, p + nt] = wj * (-nw[j] / sigma + prss / (s2 * sigma))
    return ll, out


def lmm_group_scores(
    theta: np.ndarray, beta: np.ndarray, sigma: float, ws: WeightedWorkspace
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group weighted log-likelihoods (m,) and scores (m, p + n_theta + 1)."""
    lam = lambda_from_theta(np.asarray(theta, dtype=float), ws.re_blocks)
    return _lmm_group_scores(
        lam, np.asarray(beta, dtype=float) - ws.beta0, float(sigma), ws.ZtZ, ws.ZtX, ws.Zty,
        ws.XtX, ws.Xty, ws.yty, ws.nw, ws.w2, ws.rows, ws.cols,
    )  # fmt: skip


def _hessian_from_scores(grad, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Hessian by central differences of an analytic gradient."""
    k = len(x)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h * max(1.0, abs(x[i]))
        H[:, i] = (grad(x + e) - grad(x - e)) / (2.0 * e[i])
    return 0.5 * (H + H.T)


def lmm_sandwich(ws: WeightedWorkspace, est: WeightedLMMEstimates) -> Sandwich:
    """WeMix's robust covariance for a gaussian pseudo-ML fit (see module docstring)."""
    p, nt = ws.p, len(est.theta)
    sigma = float(np.sqrt(est.sigma2))
    _, scores = lmm_group_scores(est.theta, est.beta, sigma, ws)
    J = meat(scores)
    bread_b = est.vcov_model
    vcov_beta = bread_b @ J[:p, :p] @ bread_b

    def grad_ts(x: np.ndarray) -> np.ndarray:
        return lmm_group_scores(x[:nt], est.beta, x[nt], ws)[1][:, p:].sum(axis=0)

    H = _hessian_from_scores(grad_ts, np.append(est.theta, sigma))
    Hinv = _inverse(H)
    V = Hinv @ J[p:, p:] @ Hinv
    D = vc_jacobian(est.theta, est.sigma2, ws.re_blocks, with_sigma=True)
    vc_se = np.sqrt(np.clip(np.diag(D @ V @ D.T), 0.0, None))
    pairs = vc_pairs(ws.re_blocks) + (None,)
    return Sandwich(
        vcov_beta=0.5 * (vcov_beta + vcov_beta.T),
        vc_pairs=pairs,
        vc_se=boundary_nan(vc_se, pairs, est.cov_re, est.sigma2),
        n_groups=ws.m,
    )


def glmm_group_scores(fit: WeightedGlmmFit, rel: float = 1e-5) -> np.ndarray:
    """Per-group scores of ``w_j l_j = -w_j D_j / 2`` in (theta, beta): central differences
    of the vector of group deviances (2k evaluations)."""
    obj, x = fit.objective, fit.x
    k = len(x)
    scores = np.empty((len(obj.w2), k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = rel * max(1.0, abs(x[i]))
        scores[:, i] = (obj.per_group(x + e) - obj.per_group(x - e)) / (2.0 * e[i])
    return -0.5 * obj.w2[:, None] * scores


def glmm_sandwich(fit: WeightedGlmmFit) -> Sandwich:
    """WeMix's robust covariance for a binomial pseudo-ML fit: the full (theta, beta)
    Hessian as bread, per-group scores as meat, delta method for G = Lambda Lambda'."""
    obj = fit.objective
    nt = obj.nt
    J = meat(glmm_group_scores(fit))
    H = -0.5 * obj.norm * fit.hessian  # Hessian of the pseudo-log-likelihood
    Hinv = _inverse(H)
    V = Hinv @ J @ Hinv
    blocks = obj.design.re_blocks
    D = np.zeros((len(vc_pairs(blocks)), len(fit.x)))
    D[:, :nt] = vc_jacobian(fit.x[:nt], 1.0, blocks, with_sigma=False)
    vcov_beta = V[nt:, nt:]
    lam = lambda_from_theta(fit.x[:nt], blocks)
    vc_se = np.sqrt(np.clip(np.diag(D @ V @ D.T), 0.0, None))
    return Sandwich(
        vcov_beta=0.5 * (vcov_beta + vcov_beta.T),
        vc_pairs=vc_pairs(blocks),
        vc_se=boundary_nan(vc_se, vc_pairs(blocks), lam @ lam.T, 1.0),
        n_groups=len(obj.w2),
    )


__all__ = [
    "Sandwich",
    "glmm_group_scores",
    "glmm_sandwich",
    "lmm_group_scores",
    "lmm_sandwich",
    "meat",
    "vc_jacobian",
    "vc_pairs",
]
