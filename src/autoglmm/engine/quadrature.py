"""Adaptive Gauss-Hermite quadrature per group, for scalar and vector random effects.

Group ``j``'s contribution to the deviance is ``-2 log`` of

    int exp(-(F_j(u)) / 2) du / (2 pi)^(k/2),   F_j(u) = sum_i -2 log p(y_i | u) + |u|^2.

With the mode ``u_hat`` and ``H = L L'`` (PIRLS's ``A'WA + I`` at the mode) any change of
variables ``u = u_hat + S z`` with ``S S' = H^{-1}`` gives

    -2 log(...) = F_j(u_hat) + log det H - 2 log sum_k w_k exp(|z_k|^2 / 2 - Delta_k / 2),

with ``Delta_k = F_j(u_hat + S z_k) - F_j(u_hat)`` and ``(z_k, w_k)`` the product rule of
the standard-normal Gauss-Hermite rule (weights sum to 1). One node (z=0, w=1) gives the
Laplace approximation exactly. lme4 does the same for a scalar random effect
(``glmerAGQ``); the product rule extends it to 2 or 3 random effects per group.

Which ``S``: a product rule is not rotation invariant, and its error depends on it. The
rule here is aligned with the Cholesky factor of the conditional-mode Hessian *on the
scale of the random effects* ``b = Lambda u``: ``Lambda S`` is the upper-triangular factor
of ``Lambda H^{-1} Lambda'`` (``b - b_hat = L_b^{-T} z`` with ``H_b = L_b L_b'``), so the
first axis of the rule is the random intercept's. The likelihood's sharp bends run along
the linear predictor, which the intercept dominates, so aligning one axis with it is what
makes the product rule accurate: on the Ohio wheeze data (geepack, 537 children,
``resp ~ age + smoke + (age | id)``) at nagq=9 this gives -797.5565 against -797.5629 from a
601 x 601 grid, where ``S = L^{-T}`` gives -797.2962 (and needs nagq >= 21 for 0.01).
``S = L^{-T} Q`` with ``Q`` orthogonal from the RQ decomposition ``Lambda L^{-T} = R Q'``
(Givens rotations), so no inverse of Lambda is needed (a singular Lambda is fine).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numba import njit

from autoglmm.engine.families import row_dev

MAX_AGQ_DIM = 3


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point rule for the standard normal (weights sum to 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    z = (z - z[::-1]) / 2.0  # exact symmetry, as lme4's GHrule
    w = (w + w[::-1]) / 2.0
    return z, w


def product_rule(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Product rule in k dimensions: nodes (n^k, k) and ``log w + |z|^2 / 2`` (n^k,)."""
    z, w = gauss_hermite(n)
    idx = np.array(list(itertools.product(range(n), repeat=k)), dtype=np.int64)
    nodes = z[idx]
    logw = np.log(w[idx]).sum(axis=1) + 0.5 * (nodes**2).sum(axis=1)
    return np.ascontiguousarray(nodes), logw


@njit(cache=True)
def _aligned_rotation(lam, L, M, Q):
    """``Q`` orthogonal with ``Lambda L^{-T} Q`` upper triangular (RQ by Givens rotations).

    ``M`` is scratch. The rows are cleared from the bottom up: rotating columns ``j`` and
    ``i`` (``j < i``) zeroes ``M[i, j]`` and leaves the zeros of the rows below intact.
    """
    q = L.shape[0]
    for c in range(q):  # M' = L^{-1} Lambda' (forward substitution, column by column)
        for a in range(q):
            v = lam[c, a]
            for b in range(a):
                v -= L[a, b] * M[c, b]
            M[c, a] = v / L[a, a]
    for a in range(q):
        for b in range(q):
            Q[a, b] = 1.0 if a == b else 0.0
    for i in range(q - 1, 0, -1):
        for j in range(i):
            x, y = M[i, j], M[i, i]
            r = math.hypot(x, y)
            if r == 0.0:
                continue
            c, s = y / r, x / r
            for a in range(q):
                mj, mi = M[a, j], M[a, i]
                M[a, j], M[a, i] = c * mj - s * mi, s * mj + c * mi
                qj, qi = Q[a, j], Q[a, i]
                Q[a, j], Q[a, i] = c * qj - s * qi, s * qj + c * qi


@njit(cache=True)
def agq_deviance(code, eta0, A, lam, y, wt, starts, u, Ls, devc0, nodes, logw):
    """Per-group ``F_j(u_hat) - 2 log sum_k w_k exp(|z_k|^2/2 - Delta_k/2)``.

    Add ``log det H_j`` and the deviance constant to get the AGQ deviance.
    """
    m, q = u.shape
    K = nodes.shape[0]
    out = np.empty(m)
    x = np.empty(q)
    w = np.empty(q)
    M = np.empty((q, q))
    Q = np.empty((q, q))
    terms = np.empty(K)
    for j in range(m):
        lo, hi = starts[j], starts[j + 1]
        L = Ls[j]
        _aligned_rotation(lam, L, M, Q)
        for k in range(K):
            for a in range(q):  # w = Q z_k
                v = 0.0
                for b in range(q):
                    v += Q[a, b] * nodes[k, b]
                w[a] = v
            # x = L^{-T} w (back substitution with the lower factor)
            for a in range(q - 1, -1, -1):
                v = w[a]
                for b in range(a + 1, q):
                    v -= L[b, a] * x[b]
                x[a] = v / L[a, a]
            F = 0.0
            for a in range(q):
                x[a] += u[j, a]
                F += x[a] * x[a]
            for i in range(lo, hi):
                eta = eta0[i]
                for a in range(q):
                    eta += A[i, a] * x[a]
                F += row_dev(code, eta, y[i], wt[i])
            terms[k] = logw[k] - 0.5 * (F - devc0[j])
        mx = terms.max()
        acc = 0.0
        for k in range(K):
            acc += math.exp(terms[k] - mx)
        out[j] = devc0[j] - 2.0 * (mx + math.log(acc))
    return out
