"""Closed-form EM updates of a MERF (Hajjem, Bellavance & Larocque 2014), vectorised.

The model is ``y_i = f(X_i) + Z_i b_i + e_i`` with ``b_i ~ N(0, G)`` and
``e_i ~ N(0, sigma2 W_i^{-1})`` for group ``i`` (``W = I`` for a gaussian outcome; the
PQL working weights otherwise). Given the forest's fixed part ``f``, one EM step is:

- ``b_i = M_i Z_i' W_i r_i`` with ``r = y - f`` and ``M_i = G (sigma2 I + Z_i'W_i Z_i G)^-1``
  (the push-through form of ``G Z_i' V_i^-1``: it never inverts ``G``, so a variance may
  reach 0);
- ``sigma2 = sum_i [e_i' W_i e_i + sigma2 tr(M_i Z_i'W_i Z_i)] / N``;
- ``G = sum_i [b_i b_i' + G - G Z_i' V_i^-1 Z_i G] / m``.

Every group is handled at once through stacked ``(m, q, q)`` arrays: rows are sorted by
group and per-group sums are ``np.add.reduceat`` calls, so there is no Python loop over groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EMState", "em_step", "group_sums", "generalized_loglik"]


@dataclass(frozen=True)
class EMState:
    """Random effects ``b`` (m, q), residual variance ``sigma2`` and covariance ``G`` (q, q)."""

    b: np.ndarray
    sigma2: float
    G: np.ndarray


def group_sums(Z: np.ndarray, w: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per-group ``Z_i' W_i Z_i`` as an (m, q, q) array; rows must be sorted by group."""
    outer = Z[:, :, None] * (Z * w[:, None])[:, None, :]
    return np.add.reduceat(outer, starts[:-1], axis=0)


def em_step(
    r: np.ndarray,
    Z: np.ndarray,
    w: np.ndarray,
    starts: np.ndarray,
    ZtWZ: np.ndarray,
    state: EMState,
    *,
    update_sigma2: bool = True,
) -> EMState:
    """One EM update of ``b``, ``sigma2`` and ``G`` for residuals ``r = y - f(X)``."""
    m, q = ZtWZ.shape[0], ZtWZ.shape[1]
    G, s2 = state.G, state.sigma2
    ZtWr = np.add.reduceat(Z * (w * r)[:, None], starts[:-1], axis=0)  # (m, q)
    A = s2 * np.eye(q) + ZtWZ @ G  # (m, q, q)
    # M = G A^-1  <=>  A' M' = G'
    M = np.linalg.solve(np.swapaxes(A, 1, 2), np.broadcast_to(G.T, (m, q, q)))
    M = np.swapaxes(M, 1, 2)
    b = np.einsum("mij,mj->mi", M, ZtWr)
    sizes = np.diff(starts)
    e = r - np.einsum("nq,nq->n", Z, np.repeat(b, sizes, axis=0))
    trace = np.einsum("mij,mji->m", M, ZtWZ)
    if update_sigma2:
        s2_new = (np.sum(w * e * e) + s2 * trace.sum()) / len(r)
    else:
        s2_new = s2
    # Cov(b_i | y) = G - G Z'V^-1 Z G with Z'V^-1 Z = (ZtWZ - ZtWZ M ZtWZ) / sigma2
    ZVZ = (ZtWZ - ZtWZ @ M @ ZtWZ) / s2
    cond = G[None] - G[None] @ ZVZ @ G[None]
    G_new = (np.einsum("mi,mj->ij", b, b) + cond.sum(axis=0)) / m
    G_new = (G_new + G_new.T) / 2.0
    return EMState(b=b, sigma2=float(s2_new), G=G_new)


def generalized_loglik(
    r: np.ndarray, Z: np.ndarray, w: np.ndarray, starts: np.ndarray, state: EMState
) -> float:
    """Hajjem et al.'s generalised log-likelihood, as ``-GLL / 2`` (higher is better).

    ``GLL = sum_i [e_i' R_i^-1 e_i + b_i' G^-1 b_i + log|G| + log|R_i|]`` with
    ``R_i = sigma2 W_i^-1``. A singular ``G`` uses its pseudo-inverse and pseudo-determinant.
    """
    sizes = np.diff(starts)
    m = len(sizes)
    b = state.b
    e = r - np.einsum("nq,nq->n", Z, np.repeat(b, sizes, axis=0))
    s2 = state.sigma2
    vals, vecs = np.linalg.eigh(state.G)
    keep = vals > 1e-12 * max(vals.max(), 1e-300)
    proj = b @ vecs[:, keep]
    quad_b = np.sum(proj * proj / vals[keep])
    logdet_g = np.sum(np.log(vals[keep]))
    gll = np.sum(w * e * e) / s2 + quad_b + m * logdet_g + len(r) * np.log(s2) - np.sum(np.log(w))
    return float(-gll / 2.0)
