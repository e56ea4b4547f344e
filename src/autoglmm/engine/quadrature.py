"""Adaptive Gauss-Hermite quadrature per group, for scalar and vector random effects.

Group ``j``'s contribution to the deviance is ``-2 log`` of

    int exp(-(F_j(u)) / 2) du / (2 pi)^(k/2),   F_j(u) = sum_i -2 log p(y_i | u) + |u|^2.

With the mode ``u_hat`` and ``H = L L'`` (PIRLS's ``A'WA + I`` at the mode) the change of
variables ``u = u_hat + L^{-T} z`` gives

    -2 log(...) = F_j(u_hat) + log det H - 2 log sum_k w_k exp(|z_k|^2 / 2 - Delta_k / 2),

with ``Delta_k = F_j(u_hat + L^{-T} z_k) - F_j(u_hat)`` and ``(z_k, w_k)`` the product
rule of the standard-normal Gauss-Hermite rule (weights sum to 1). One node (z=0, w=1)
gives the Laplace approximation exactly. lme4 does the same for a scalar random effect
(``glmerAGQ``); the product rule extends it to 2 or 3 random effects per group.
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
def agq_deviance(code, eta0, A, y, wt, starts, u, Ls, devc0, nodes, logw):
    """Per-group ``F_j(u_hat) - 2 log sum_k w_k exp(|z_k|^2/2 - Delta_k/2)``.

    Add ``log det H_j`` and the deviance constant to get the AGQ deviance.
    """
    m, q = u.shape
    K = nodes.shape[0]
    out = np.empty(m)
    x = np.empty(q)
    terms = np.empty(K)
    for j in range(m):
        lo, hi = starts[j], starts[j + 1]
        L = Ls[j]
        for k in range(K):
            # x = L^{-T} z_k (back substitution with the lower factor)
            for a in range(q - 1, -1, -1):
                v = nodes[k, a]
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
