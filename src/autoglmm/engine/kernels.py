"""Small dense kernels shared by the engines: Cholesky factors and triangular solves.

Every per-group computation of the engines works on q x q blocks (q <= a few random
effects) or on the p x p fixed-effects block, inside numba loops over groups. These are
the one implementation of each operation, used by :mod:`~autoglmm.engine.lmm`,
:mod:`~autoglmm.engine.weighted_lmm`, :mod:`~autoglmm.engine.sandwich`,
:mod:`~autoglmm.engine.pirls` and :mod:`~autoglmm.engine.quadrature`. They write into
arrays the caller owns, so that a loop over groups allocates nothing; ``L`` is always
lower triangular (only its lower triangle is read).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, _nrt=False)
def chol_inplace(H: np.ndarray) -> bool:
    """Lower Cholesky factor of a small SPD matrix, in place (upper part zeroed).

    False (and ``H`` partly overwritten) when ``H`` is not positive definite.
    """
    q = H.shape[0]
    for j in range(q):
        d = H[j, j]
        for k in range(j):
            d -= H[j, k] * H[j, k]
        if d <= 0.0:
            return False
        d = np.sqrt(d)
        H[j, j] = d
        for i in range(j + 1, q):
            v = H[i, j]
            for k in range(j):
                v -= H[i, k] * H[j, k]
            H[i, j] = v / d
        for i in range(j):
            H[i, j] = 0.0
    return True


@njit(cache=True, _nrt=False)
def chol_lambda(lam: np.ndarray, ZtZ: np.ndarray, A: np.ndarray, L: np.ndarray) -> float:
    """``L L' = Lambda' Z'Z Lambda + I`` (one group's system matrix), into the lower
    triangle of ``L``; returns ``log det = 2 sum log L_aa``, or ``inf`` when it is not
    positive definite. ``A`` (q, q) is scratch for ``Z'Z Lambda``."""
    q = lam.shape[0]
    for a in range(q):
        for b in range(q):
            acc = 0.0
            for c in range(q):
                acc += ZtZ[a, c] * lam[c, b]
            A[a, b] = acc
    logdet = 0.0
    for a in range(q):  # row by row: M[a, b] = (Lambda' A)[a, b] + I
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


@njit(cache=True, _nrt=False)
def forward(L: np.ndarray, B: np.ndarray) -> None:
    """Solve ``L X = B`` in place (forward substitution; ``B`` is (q, k): k right sides).

    In place and on whole blocks because the engines' hot loops solve for many columns
    per group: a call per column, with copies in and out, cost 2-3x (measured on the LMM
    objective). A vector ``b`` is passed as ``b.reshape((q, 1))``.
    """
    q, k = B.shape
    for c in range(k):
        for a in range(q):
            acc = B[a, c]
            for d in range(a):
                acc -= L[a, d] * B[d, c]
            B[a, c] = acc / L[a, a]


@njit(cache=True, _nrt=False)
def backward(L: np.ndarray, B: np.ndarray) -> None:
    """Solve ``L' X = B`` in place (back substitution with the lower factor; ``B`` (q, k))."""
    q, k = B.shape
    for c in range(k):
        for a in range(q - 1, -1, -1):
            acc = B[a, c]
            for d in range(a + 1, q):
                acc -= L[d, a] * B[d, c]
            B[a, c] = acc / L[a, a]


@njit(cache=True, _nrt=False)
def chol_solve(L: np.ndarray, B: np.ndarray) -> None:
    """Solve ``L L' X = B`` in place (``B`` (q, k))."""
    forward(L, B)
    backward(L, B)
