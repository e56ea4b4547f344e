"""Linear mixed models: the profiled ML/REML deviance as a pure function of theta.

The model is ``y = X beta + Z b + e`` with ``b_j ~ N(0, sigma2 Lambda Lambda')`` per group
and ``e ~ N(0, sigma2 / w)``. As in lme4 (Bates et al. 2015, section 3), beta and sigma2 are
profiled out, leaving a deviance in theta alone. Z is block diagonal over groups, so every
quantity the deviance needs is a sum over groups of small products of the per-group
sufficient statistics ``Z_j'WZ_j, Z_j'WX_j, Z_j'Wy_j`` and the global ``X'WX, X'Wy, y'Wy``.
They are computed once per model (:func:`make_workspace`); one deviance evaluation then
costs O(m q^2 p + m q p^2 + p^3), independent of the number of rows, in one numba call
that loops over the groups' stacked ``(m, q, ...)`` arrays (no n x n or n x mq matrix is
ever formed; the workspace is O(m q^2 + m q p + p^2)).

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

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numba import njit

from autoglmm.engine.bfgs import (
    CompiledObjective,
    bfgs_point,
    bfgs_result,
    bfgs_start,
    bfgs_tell,
    bfgs_wants,
)
from autoglmm.engine.design import (
    GroupedDesign,
    check_design,
    constant_vector,
    fill_lambda,
    theta_canonical,
    theta_lower,
    theta_positions,
    theta_start,
)
from autoglmm.engine.estimates import EngineResult
from autoglmm.engine.kernels import chol_inplace, chol_solve
from autoglmm.engine.optimize import optimize, single_threaded_blas
from autoglmm.engine.small_linalg import triangular_inverse

_LOG2PI = float(np.log(2.0 * np.pi))
_UNWEIGHTED = np.empty(0)  # w2 of the kernels below: no level-2 weights (every w_j = 1)


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
    beta0: np.ndarray  # the statistics are of y - X beta0 (weighted least squares fit)
    _objectives: dict = field(default_factory=dict, repr=False)  # by reml, built once

    @property
    def m(self) -> int:
        return self.ZtZ.shape[0]

    @property
    def q(self) -> int:
        return self.ZtZ.shape[1]

    @property
    def p(self) -> int:
        return self.XtX.shape[0]

    def objective(self, reml: bool = False) -> CompiledObjective:
        """The compiled deviance-and-gradient objective of theta (for the optimizer)."""
        reml = bool(reml)
        if reml not in self._objectives:
            self._objectives[reml] = theta_objective(
                self.ZtZ, self.ZtX, self.Zty, self.XtX, self.Xty, _UNWEIGHTED, self.rows,
                self.cols, yty=self.yty, n=self.n, p=self.p, sum_log_w=self.sum_log_w, reml=reml,
            )  # fmt: skip
        return self._objectives[reml]


class ThetaData(NamedTuple):
    """What one evaluation of the profiled deviance reads: the per-group statistics, the
    level-2 weights ``w2`` (empty: none), theta's positions in Lambda and the scalars."""

    ZtZ: np.ndarray
    ZtX: np.ndarray
    Zty: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    w2: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    yty: float
    n: float  # (weighted) number of observations
    p: float
    sum_log_w: float
    reml: bool


def theta_objective(ZtZ, ZtX, Zty, XtX, Xty, w2, rows, cols, *, yty, n, p, sum_log_w, reml):
    """The optimizer's objective on these statistics (contiguous arrays and Python
    scalars: one set of types, one compiled kernel)."""
    data = ThetaData(
        *(np.ascontiguousarray(a, dtype=float) for a in (ZtZ, ZtX, Zty, XtX, Xty, w2)),
        np.ascontiguousarray(rows, dtype=np.int64), np.ascontiguousarray(cols, dtype=np.int64),
        float(yty), float(n), float(p), float(sum_log_w), bool(reml),
    )  # fmt: skip
    return CompiledObjective(_evaluation, data, _minimize_theta)


@njit(cache=True)
def _crossproducts_by_column(XT, ZT, y, w, starts):  # pragma: no cover - numba
    """Per-group Z'WZ, Z'WX, Z'Wy from the transposed matrices (one row per column).

    Every entry is a sum over the group's rows in row order (the same additions as a
    pass row by row). A sum over a group's 40 or so rows waits on its own additions, so
    Z'WX takes four columns of X per pass over a weighted Z column: four independent
    sums. Measured at 8,681 rows in 229 groups: 0.14 to 0.10 ms for 19 columns, 0.58 to
    0.29 ms with 3 random effects and 20 columns (accumulating row by row into the
    stacked arrays waited on memory).
    """
    p, n = XT.shape
    q = ZT.shape[0]
    m = len(starts) - 1
    ZtZ = np.empty((m, q, q))
    ZtX = np.empty((m, q, p))
    Zty = np.empty((m, q))
    zw = np.empty(n)
    for j in range(m):
        lo, hi = starts[j], starts[j + 1]
        for a in range(q):  # (2-d indexing: a row view per column costs its refcount)
            zz = zy = 0.0  # the weighted column, with its square and Z'Wy on the way
            for i in range(lo, hi):
                zi = ZT[a, i] * w[i]
                zw[i] = zi
                zz += zi * ZT[a, i]
                zy += zi * y[i]
            ZtZ[j, a, a] = zz
            Zty[j, a] = zy
            for b in range(a):
                acc = 0.0
                for i in range(lo, hi):
                    acc += zw[i] * ZT[b, i]
                ZtZ[j, a, b] = acc
                ZtZ[j, b, a] = acc
            k = 0
            while k + 4 <= p:
                s0 = s1 = s2 = s3 = 0.0
                for i in range(lo, hi):
                    zi = zw[i]
                    s0 += zi * XT[k, i]
                    s1 += zi * XT[k + 1, i]
                    s2 += zi * XT[k + 2, i]
                    s3 += zi * XT[k + 3, i]
                ZtX[j, a, k] = s0
                ZtX[j, a, k + 1] = s1
                ZtX[j, a, k + 2] = s2
                ZtX[j, a, k + 3] = s3
                k += 4
            for kk in range(k, p):
                acc = 0.0
                for i in range(lo, hi):
                    acc += zw[i] * XT[kk, i]
                ZtX[j, a, kk] = acc
    return ZtZ, ZtX, Zty


def _group_crossproducts(X, Z, y, w, starts):
    """Per-group Z'WZ, Z'WX, Z'Wy (rows sorted by group), for X and Z in either layout
    (the model frame's are column-major, whose transposes are row-major: no copy)."""
    XT, ZT = (np.ascontiguousarray(M.T) for M in (X, Z))
    return _crossproducts_by_column(XT, ZT, np.ascontiguousarray(y), np.ascontiguousarray(w),
                                    starts)  # fmt: skip


def make_workspace(design: GroupedDesign) -> LMMWorkspace:
    """Reduce the design to per-group cross-products, once per model.

    The statistics are those of ``e0 = y - X beta0`` with ``beta0`` the weighted least
    squares fit: the deviance is unchanged (X beta0 lies in the fixed-effects space and
    beta absorbs it), but ``r2 = e0'We0 - ...`` no longer subtracts two large numbers when
    y has a large mean (measured: y + 1e6 cost 3e-5 in the log-likelihood without it).
    Without prior weights, X'X comes from the design when its builder computed it.
    """
    w = design.weights
    X = design.X  # either layout: one pass over the rows, then cross-products only
    none = design.offset is constant_vector(design.n, 0.0)  # no offset given
    y = design.y if none else design.y - design.offset
    unit = w is constant_vector(design.n, 1.0) or bool(np.all(w == 1.0))
    Xw = X if unit else X * w[:, None]
    XtX = design.xtx if unit and design.xtx is not None else Xw.T @ X
    XtX = np.ascontiguousarray(XtX, dtype=float)
    e0, beta0, Xte, ete, ok = _centred_response(X, Xw, XtX, y, w, unit)
    if not ok:  # X'X not numerically positive definite: least squares by SVD
        sw = np.sqrt(w)
        beta0 = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
        e0 = np.ascontiguousarray(y - X @ beta0)
        Xte, ete = Xw.T @ e0, float(np.dot(e0 * w, e0))
    ZtZ, ZtX, Zty = _group_crossproducts(X, design.Z, e0, w, design.starts)
    rows, cols = theta_positions(design.re_blocks)
    return LMMWorkspace(
        ZtZ=ZtZ,
        ZtX=ZtX,
        Zty=Zty,
        XtX=XtX,
        Xty=Xte,
        yty=float(ete),
        n=design.n,
        sum_log_w=0.0 if unit else float(np.sum(np.log(w))),
        re_blocks=design.re_blocks,
        rows=rows,
        cols=cols,
        beta0=beta0,
    )


@njit(cache=True)
def _centred_response(X, Xw, XtX, y, w, unit):  # pragma: no cover - numba
    """``(e0, beta0, X'We0, e0'We0, ok)``: the residual of the weighted least-squares
    beta0 that centres the statistics (any beta0 is exact; a good one avoids
    cancellation). From the normal equations, refined once; ``ok`` False when X'WX is not
    numerically positive definite (the caller falls back to an SVD, which costs more
    than the rest of a small fit's workspace). One compiled call: in Python the dozen
    small products and solves cost 0.07 ms of glue for an intercept-only model."""
    p = XtX.shape[0]
    R = XtX.copy()  # lower, X'WX = R R'
    if not chol_inplace(R):
        return y, np.zeros(p), np.zeros(p), 0.0, False
    beta0 = Xw.T @ y
    chol_solve(R, beta0.reshape(p, 1))  # in place, through a (p, 1) view
    r = y - X @ beta0
    xtr = Xw.T @ r
    step = xtr.copy()
    chol_solve(R, step.reshape(p, 1))
    e0 = r - X @ step
    ete = e0 @ e0 if unit else e0 @ (w * e0)
    # X'We0 = X'Wr - X'WX step: rounding either way (e0 is orthogonal to X), a pass saved
    return e0, beta0 + step, xtr - XtX @ step, ete, True


@njit(cache=True)
def _factor_groups(lam, ZtZ, ZtX, Zty, w2):  # pragma: no cover - numba
    """Per group: L_j = chol(Lambda' Z'Z Lambda + I), RZX_j, cu_j; and sum_j w_j log|L_j|^2
    (unweighted: the log of a running product of the pivots, one log per 1e200 instead of
    one per group, 2 of a null model's 5 microseconds).

    ``w2`` holds level-2 weights (:mod:`autoglmm.engine.weighted_lmm`); empty means 1.
    The Cholesky factor and the solves are written out on the stacked arrays, not calls
    to :mod:`autoglmm.engine.kernels`: numba reference-counts every per-group view passed
    to a function, which made this objective 1.9x slower with one random effect. The
    solves run over the p columns in the innermost loop (contiguous, vectorised): with
    the short q loops innermost they took twice as long as the whole fixed block.

    Two and three random effects get the body compiled with q a constant (its loops
    unrolled): 35 -> 25 microseconds at q = 3, p = 19, 229 groups, the same arithmetic.
    """
    q = ZtX.shape[1]
    if q == 1:
        return _factor_intercepts(lam[0, 0], ZtZ, ZtX, Zty, w2)
    if q == 2:
        return _factor_blocks(lam, ZtZ, ZtX, Zty, w2, 2)
    if q == 3:
        return _factor_blocks(lam, ZtZ, ZtX, Zty, w2, 3)
    return _factor_blocks(lam, ZtZ, ZtX, Zty, w2, q)


@njit(inline="always")
def _factor_blocks(lam, ZtZ, ZtX, Zty, w2, q):  # pragma: no cover - numba
    """:func:`_factor_groups`' body for q random effects (inlined where q is a constant)."""
    m, _, p = ZtX.shape
    L = np.zeros((m, q, q))
    RZX = np.empty((m, q, p))
    cu = np.empty((m, q))
    A = np.empty((q, q))
    logdet = 0.0
    weighted = w2.shape[0] != 0
    diag = 1.0  # a product of pivots (each >= 1, as M >= I): a log per 1e200, not per pivot
    for j in range(m):
        wj = w2[j] if weighted else 1.0
        for a in range(q):  # A = Z'Z Lambda
            for b in range(q):
                acc = 0.0
                for c in range(q):
                    acc += ZtZ[j, a, c] * lam[c, b]
                A[a, b] = acc
        for a in range(q):  # Cholesky of M = Lambda' A + I, row by row
            for b in range(a + 1):
                acc = 1.0 if a == b else 0.0
                for c in range(q):
                    acc += lam[c, a] * A[c, b]
                for c in range(b):
                    acc -= L[j, a, c] * L[j, b, c]
                if a == b:
                    if acc <= 0.0:
                        return L, RZX, cu, np.inf
                    L[j, a, a] = np.sqrt(acc)
                    if acc > 1e100:  # the product could overflow: this one alone
                        logdet += wj * np.log(acc)
                    else:
                        diag *= acc
                        if diag > 1e200:
                            logdet += wj * np.log(diag)
                            diag = 1.0
                else:
                    L[j, a, b] = acc / L[j, b, b]
        if weighted:  # each group's log carries its weight
            logdet += wj * np.log(diag)
            diag = 1.0
        for a in range(q):  # forward solves L RZX = Lambda' Z'X and L cu = Lambda' Z'y
            inv = 1.0 / L[j, a, a]
            lca = lam[a, a]
            for k in range(p):
                RZX[j, a, k] = lca * ZtX[j, a, k]
            acc = lca * Zty[j, a]
            for c in range(a + 1, q):
                lca = lam[c, a]
                for k in range(p):
                    RZX[j, a, k] += lca * ZtX[j, c, k]
                acc += lca * Zty[j, c]
            for c in range(a):
                lac = L[j, a, c]
                for k in range(p):
                    RZX[j, a, k] -= lac * RZX[j, c, k]
                acc -= lac * cu[j, c]
            for k in range(p):
                RZX[j, a, k] *= inv
            cu[j, a] = acc * inv
    return L, RZX, cu, logdet + np.log(diag)


@njit(cache=True)
def _factor_intercepts(lam, ZtZ, ZtX, Zty, w2):  # pragma: no cover - numba
    """:func:`_factor_groups` for one random effect (q = 1, the search's most common
    model), the same operations written for scalars: 2 against 5 microseconds at 229
    groups, as every loop over q had its own set-up."""
    m, _, p = ZtX.shape
    L = np.empty((m, 1, 1))
    RZX = np.empty((m, 1, p))
    cu = np.empty((m, 1))
    weighted = w2.shape[0] != 0
    logdet = 0.0
    diag = 1.0
    for j in range(m):
        acc = 1.0 + lam * (ZtZ[j, 0, 0] * lam)
        if acc <= 0.0:
            return L, RZX, cu, np.inf
        root = np.sqrt(acc)
        L[j, 0, 0] = root
        if weighted:
            logdet += w2[j] * np.log(acc)
        elif acc > 1e100:
            logdet += np.log(acc)
        else:
            diag *= acc
            if diag > 1e200:
                logdet += np.log(diag)
                diag = 1.0
        inv = 1.0 / root
        for k in range(p):
            RZX[j, 0, k] = (lam * ZtX[j, 0, k]) * inv
        cu[j, 0] = (lam * Zty[j, 0]) * inv
    return L, RZX, cu, logdet + np.log(diag)


@njit(cache=True)
def _back_solve(L, B):  # pragma: no cover - numba
    """Per group: solve L_j' X_j = B_j (B is (m, q, k))."""
    m, q, k = B.shape
    out = np.empty((m, q, k))
    for j in range(m):
        for col in range(k):
            for a in range(q - 1, -1, -1):
                acc = B[j, a, col]
                for c in range(a + 1, q):
                    acc -= L[j, c, a] * out[j, c, col]
                out[j, a, col] = acc / L[j, a, a]
    return out


@njit(cache=True)
def _gradient_sums(lam, ZtZ, ZtX, Zty, L, u, beta, K, KC, reml, w2):  # pragma: no cover
    """Sums over groups: G = sum_j w_j (Z_j'e_j) u_j' and T = sum_j w_j d log det terms
    (q x q); ``w2`` empty means every w_j = 1. Specialised as :func:`_factor_groups` (at
    q = 3: 45 -> 20 microseconds)."""
    q = ZtX.shape[1]
    if q == 1 and not reml:
        return _intercept_gradient_sums(lam[0, 0], ZtZ, Zty, L, u, _stacked_times(ZtX, beta), w2)
    if q == 2:
        return _block_gradient_sums(lam, ZtZ, ZtX, Zty, L, u, beta, K, KC, reml, w2, 2)
    if q == 3:
        return _block_gradient_sums(lam, ZtZ, ZtX, Zty, L, u, beta, K, KC, reml, w2, 3)
    return _block_gradient_sums(lam, ZtZ, ZtX, Zty, L, u, beta, K, KC, reml, w2, q)


@njit(inline="always")
def _block_gradient_sums(lam, ZtZ, ZtX, Zty, L, u, beta, K, KC, reml, w2, q):  # pragma: no cover
    """:func:`_gradient_sums`' body for q random effects (inlined where q is a constant)."""
    m, _, p = ZtX.shape
    ztxb = _stacked_times(ZtX, beta)
    G = np.zeros((q, q))
    T = np.zeros((q, q))
    b = np.empty(q)
    N = np.empty((q, q))
    S = np.empty((q, q))
    zte = np.empty(q)
    for j in range(m):
        wj = 1.0 if w2.shape[0] == 0 else w2[j]
        for a in range(q):
            acc = 0.0
            for c in range(q):
                acc += lam[a, c] * u[j, c]
            b[a] = acc
        for a in range(q):
            acc = Zty[j, a] - ztxb[j, a]
            for c in range(q):
                acc -= ZtZ[j, a, c] * b[c]
            zte[a] = acc
        for a in range(q):
            for c in range(q):
                G[a, c] += wj * zte[a] * u[j, c]
        for a in range(q):  # N = Lambda' Z'Z
            for c in range(q):
                acc = 0.0
                for d in range(q):
                    acc += lam[d, a] * ZtZ[j, d, c]
                N[a, c] = acc
        for c in range(q):  # S = M^-1 N: forward then back substitution per column
            for a in range(q):
                acc = N[a, c]
                for d in range(a):
                    acc -= L[j, a, d] * S[d, c]
                S[a, c] = acc / L[j, a, a]
            for a in range(q - 1, -1, -1):
                acc = S[a, c]
                for d in range(a + 1, q):
                    acc -= L[j, d, a] * S[d, c]
                S[a, c] = acc / L[j, a, a]
        for a in range(q):
            for c in range(q):
                T[a, c] += wj * S[a, c]
        if reml:  # + KC_j (K_j' N - Z_j'X_j')
            for a in range(q):
                for c in range(q):
                    acc = 0.0
                    for k in range(p):
                        w = -ZtX[j, c, k]
                        for d in range(q):
                            w += K[j, d, k] * N[d, c]
                        acc += KC[j, a, k] * w
                    T[a, c] += acc
    return G, T


@njit(cache=True)
def _intercept_gradient_sums(lam, ZtZ, Zty, L, u, ztxb, w2):  # pragma: no cover - numba
    """:func:`_gradient_sums` for one random effect (ML), the same operations on scalars."""
    weighted = w2.shape[0] != 0
    g = 0.0
    t = 0.0
    for j in range(len(u)):
        wj = w2[j] if weighted else 1.0
        uj = u[j, 0]
        zte = (Zty[j, 0] - ztxb[j, 0]) - ZtZ[j, 0, 0] * (lam * uj)
        g += wj * zte * uj
        t += wj * ((lam * ZtZ[j, 0, 0] / L[j, 0, 0]) / L[j, 0, 0])
    G = np.full((1, 1), g)
    T = np.full((1, 1), t)
    return G, T


@njit(cache=True)
def _fixed_block(RZX, cu, XtX, Xty, yty, w2):  # pragma: no cover - numba
    """RX (lower Cholesky of X'X - sum w_j RZX_j'RZX_j), beta, r2 and log|RX|^2.

    ``w2`` empty means every w_j = 1 (``XtX``, ``Xty``, ``yty`` are then the plain sums;
    with level-2 weights, their weighted sums). The sum over groups is one product of the
    stacked (m q, p) matrix with itself (BLAS, 4-8x faster than a loop over groups); the
    p x p Cholesky and solves stay in numba, where a threaded BLAS would cost more in
    start-up than the arithmetic (measured: 2-10x slower on a busy machine).
    """
    m, q, p = RZX.shape
    R2 = RZX.reshape(m * q, p)
    c2 = cu.reshape(m * q)
    if w2.shape[0] != 0:
        R2 = R2.copy()
        c2 = c2.copy()
        for j in range(m):
            s = np.sqrt(w2[j])
            for a in range(q):
                c2[j * q + a] *= s
                for k in range(p):
                    R2[j * q + a, k] *= s
    A = XtX - R2.T @ R2
    c = Xty - R2.T @ c2
    cu2 = np.dot(c2, c2)
    R = np.zeros((p, p))
    logdet = 0.0
    for k in range(p):
        for l in range(k + 1):
            acc = A[k, l]
            for d in range(l):
                acc -= R[k, d] * R[l, d]
            if k == l:
                if acc <= 0.0:
                    return R, c, np.inf, np.inf
                R[k, k] = np.sqrt(acc)
                logdet += 2.0 * np.log(R[k, k])
            else:
                R[k, l] = acc / R[l, l]
    z = np.empty(p)  # R z = c, then R' beta = z
    for k in range(p):
        acc = c[k]
        for d in range(k):
            acc -= R[k, d] * z[d]
        z[k] = acc / R[k, k]
    beta = np.empty(p)
    for k in range(p - 1, -1, -1):
        acc = z[k]
        for d in range(k + 1, p):
            acc -= R[d, k] * beta[d]
        beta[k] = acc / R[k, k]
    r2 = yty - cu2
    for k in range(p):
        r2 -= z[k] * z[k]
    return R, beta, r2, logdet


@njit(cache=True)
def _criterion(logdet_L, logdet_RX, r2, n, p, sum_log_w, reml):  # pragma: no cover - numba
    """-2 log-likelihood (ML) or the REML criterion from the factorisation's pieces."""
    if reml:
        return profiled_deviance(logdet_L, r2, n - p, sum_log_w) + logdet_RX
    return profiled_deviance(logdet_L, r2, n, sum_log_w)


@njit(cache=True)
def profiled_deviance(logdet_L: float, r2: float, n: float, sum_log_w: float = 0.0) -> float:
    """``log|L|^2 - sum log w + n (1 + log(2 pi r2 / n))``: -2 log-likelihood at the
    profiled beta and ``sigma2 = r2 / n`` (``n`` the (weighted) number of observations).
    Compiled, so that one evaluation of the optimizer stays in one numba call."""
    return logdet_L - sum_log_w + n * (1.0 + _LOG2PI + np.log(max(r2, 1e-300) / n))


@njit(cache=True)
def _modes(L, RZX, cu, beta):  # pragma: no cover - numba
    """u_j solving M_j u_j = Lambda' Z_j'W(y_j - X_j beta): L_j' u_j = cu_j - RZX_j beta."""
    m, q, p = RZX.shape
    if q == 1:  # a loop: array expressions (one on L's strided view) took 2 microseconds
        xb = _stacked_times(RZX, beta)
        u = np.empty((m, 1))
        for j in range(m):
            u[j, 0] = (cu[j, 0] - xb[j, 0]) / L[j, 0, 0]
        return u
    v = cu - _stacked_times(RZX, beta)
    if q == 2:
        return _block_back_solve(L, v, 2)
    if q == 3:
        return _block_back_solve(L, v, 3)
    return _block_back_solve(L, v, q)


@njit(inline="always")
def _block_back_solve(L, v, q):  # pragma: no cover - numba
    """Per group: solve L_j' u_j = v_j for q random effects (inlined where q is a
    constant, as :func:`_factor_blocks`)."""
    m = v.shape[0]
    u = np.empty((m, q))
    for j in range(m):
        for a in range(q - 1, -1, -1):
            acc = v[j, a]
            for c in range(a + 1, q):
                acc -= L[j, c, a] * u[j, c]
            u[j, a] = acc / L[j, a, a]
    return u


@njit(cache=True)
def _stacked_times(A, beta):  # pragma: no cover - numba
    """``A_j beta`` for every group of a stacked (m, q, p) array, as one (m q, p) matrix
    times a vector (BLAS): a sum over p per row otherwise waits on each addition."""
    m, q, p = A.shape
    if p < 8:  # a few columns: a loop (BLAS's call cost 2 of a null model's 9 us)
        out = np.empty((m, q))
        for j in range(m):
            for a in range(q):
                acc = 0.0
                for k in range(p):
                    acc += A[j, a, k] * beta[k]
                out[j, a] = acc
        return out
    return (np.ascontiguousarray(A).reshape(m * q, p) @ beta).reshape(m, q)


@njit(cache=True)
def _reml_factors(L, RZX, R):  # pragma: no cover - numba
    """K_j = M_j^-1 Lambda' Z_j'X_j and K_j C with C = (RX'RX)^-1 = R'^-1 R^-1 (R lower)."""
    m, q, p = RZX.shape
    K = _back_solve(L, RZX)
    Rinv = np.zeros((p, p))
    for col in range(p):
        for a in range(col, p):
            acc = 1.0 if a == col else 0.0
            for d in range(col, a):
                acc -= R[a, d] * Rinv[d, col]
            Rinv[a, col] = acc / R[a, a]
    C = np.zeros((p, p))
    for a in range(p):
        for b in range(p):
            acc = 0.0
            for d in range(max(a, b), p):
                acc += Rinv[d, a] * Rinv[d, b]
            C[a, b] = acc
    KC = np.zeros((m, q, p))
    for j in range(m):
        for a in range(q):
            for d in range(p):
                kd = K[j, a, d]
                for b in range(p):
                    KC[j, a, b] += kd * C[d, b]
    return K, KC


@njit(cache=True)
def _objective(lam, ZtZ, ZtX, Zty, XtX, Xty, yty, reml, w2):  # pragma: no cover - numba
    """One evaluation in one call: log|L|^2, log|RX|^2, r2 and the gradient sums G, T.

    Fusing the steps keeps Python out of the optimizer's inner loop (measured: half of an
    evaluation's time was call overhead with separate kernels).
    """
    q = lam.shape[0]
    G = np.zeros((q, q))
    T = np.zeros((q, q))
    L, RZX, cu, logdet_L = _factor_groups(lam, ZtZ, ZtX, Zty, w2)
    if not np.isfinite(logdet_L):
        return logdet_L, np.inf, 1.0, G, T
    R, beta, r2, logdet_RX = _fixed_block(RZX, cu, XtX, Xty, yty, w2)
    if not np.isfinite(logdet_RX):
        return logdet_L, logdet_RX, r2, G, T
    u = _modes(L, RZX, cu, beta)
    if reml:
        K, KC = _reml_factors(L, RZX, R)
    else:
        K = np.empty((0, 0, 0))
        KC = np.empty((0, 0, 0))
    G, T = _gradient_sums(lam, ZtZ, ZtX, Zty, L, u, beta, K, KC, reml, w2)
    return logdet_L, logdet_RX, r2, G, T


@njit(cache=True)
def theta_gradient(T, G, r2: float, n: float, rows, cols) -> np.ndarray:
    """d deviance / d theta from the sums of :func:`_gradient_sums`: theta_k sits at
    Lambda[r, c]; d r2 = -2 sum_j w_j (Z_j'W e_j)_r u_jc (envelope theorem) and
    d log|M| = 2 tr(M^-1 Lambda' Z'Z E_rc) (+ the REML fixed-effects block)."""
    scale = 2.0 * n / max(r2, 1e-300)
    out = np.empty(len(rows))
    for k in range(len(rows)):
        out[k] = 2.0 * T[cols[k], rows[k]] - scale * G[rows[k], cols[k]]
    return out


@njit(cache=True)
def _evaluation(theta, data):  # pragma: no cover - numba
    """The deviance (or REML criterion) and its gradient at theta, in one compiled call:
    the optimizer evaluates 10-40 times per fit and Python glue cost as much as the
    arithmetic. ``(inf, nan...)`` where the system is not positive definite."""
    lam = fill_lambda(theta, data.rows, data.cols, data.ZtZ.shape[1])
    logdet_L, logdet_RX, r2, G, T = _objective(
        lam, data.ZtZ, data.ZtX, data.Zty, data.XtX, data.Xty, data.yty, data.reml, data.w2
    )
    grad = np.full(len(theta), np.nan)
    if not (np.isfinite(logdet_L) and np.isfinite(logdet_RX)):
        return np.inf, grad
    n = data.n - data.p if data.reml else data.n
    dev = _criterion(logdet_L, logdet_RX, r2, data.n, data.p, data.sum_log_w, data.reml)
    return dev, theta_gradient(T, G, r2, n, data.rows, data.cols)


@njit(cache=True)
def _minimize_theta(data, x0, gtol, ftol, max_iter, f0, g0, have_start):  # pragma: no cover
    """engine.bfgs's minimiser on :func:`_evaluation`, one compiled call per fit."""
    run = bfgs_start(x0, gtol, ftol, max_iter, f0, g0, have_start)
    while bfgs_wants(run):
        value, gradient = _evaluation(bfgs_point(run), data)
        bfgs_tell(run, value, gradient)
    return bfgs_result(run)


def _evaluate(theta: np.ndarray, ws: LMMWorkspace, reml: bool):
    dev, grad = ws.objective(reml)(np.ascontiguousarray(theta, dtype=float))
    return float(dev), grad


def deviance(theta: np.ndarray, ws: LMMWorkspace, reml: bool = False) -> float:
    """Profiled deviance (ML) or REML criterion at ``theta``: -2 log-likelihood.

    Returns ``inf`` where the system is not positive definite (it always is for finite
    theta; the guard keeps an optimizer probing wild points safe).
    """
    return _evaluate(theta, ws, reml)[0]


def deviance_and_gradient(
    theta: np.ndarray, ws: LMMWorkspace, reml: bool = False
) -> tuple[float, np.ndarray]:
    """Deviance and its analytic gradient in theta.

    ML: ``d/dtheta [log|L|^2 + n log r2]``; REML: ``log|L|^2 + log|RX|^2`` is the log
    determinant of the augmented system, whose derivative brings in
    ``K_j = M_j^-1 Lambda' Z_j'X_j`` and ``C = (RX'RX)^-1``.
    """
    return _evaluate(theta, ws, reml)


@dataclass(frozen=True, eq=False)
class Solution:
    """The profiled quantities at one theta: what the estimates are read from."""

    lam: np.ndarray
    u: np.ndarray  # (m, q) spherical modes
    RX: np.ndarray  # (p, p) upper Cholesky factor of RX'RX
    beta: np.ndarray  # in the workspace's centred coordinates (beta - beta0)
    r2: float
    deviance: float  # the criterion (ML, REML or the weighted pseudo-deviance)


@njit(cache=True)
def _solution(theta, data):  # pragma: no cover - numba
    """Lambda, the modes, RX, beta, r2 and the criterion at theta in one compiled call
    (``ok`` False where a system is not positive definite)."""
    q = data.ZtZ.shape[1]
    lam = fill_lambda(theta, data.rows, data.cols, q)
    L, RZX, cu, logdet_L = _factor_groups(lam, data.ZtZ, data.ZtX, data.Zty, data.w2)
    R, beta, r2, logdet_RX = _fixed_block(RZX, cu, data.XtX, data.Xty, data.yty, data.w2)
    ok = np.isfinite(logdet_L) and np.isfinite(logdet_RX)
    u = _modes(L, RZX, cu, beta) if ok else np.zeros(cu.shape)
    r2 = max(r2, 1e-300)
    dev = _criterion(logdet_L, logdet_RX, r2, data.n, data.p, data.sum_log_w, data.reml)
    return lam, u, R, beta, r2, dev, ok


def solution_at(theta: np.ndarray, objective: CompiledObjective) -> Solution:
    """:class:`Solution` at ``theta`` on the data of a workspace's ``objective()``."""
    lam, u, R, beta, r2, dev, ok = _solution(np.ascontiguousarray(theta, dtype=float),
                                             objective.data)  # fmt: skip
    if not ok:
        raise np.linalg.LinAlgError("the mixed model equations are not positive definite")
    return Solution(lam, u, R.T, beta, float(r2), float(dev))


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
    s = solution_at(theta, ws.objective(reml))
    sigma2 = s.r2 / (ws.n - ws.p if reml else ws.n)
    rx_inv = triangular_inverse(s.RX)
    return LMMEstimates(
        beta=s.beta + ws.beta0,
        vcov_beta=sigma2 * rx_inv @ rx_inv.T,
        sigma2=sigma2,
        cov_re=sigma2 * s.lam @ s.lam.T,
        ranef=s.u @ s.lam.T,
        deviance=s.deviance,
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
    theta is optimised without bounds and mapped back by ``theta_canonical`` (see
    ``engine.optimize``), with the analytic gradient.
    """
    with single_threaded_blas():
        return _fit_lmm(design, reml, start, rng_seed)


def _fit_lmm(design: GroupedDesign, reml: bool, start, rng_seed: int) -> EngineResult:
    check_design(design, gaussian=True)
    return _fit_workspace(make_workspace(design), reml, start, rng_seed, design)


def fitted_values(design: GroupedDesign, beta: np.ndarray, ranef: np.ndarray) -> np.ndarray:
    """``offset + X beta + Z_j b_j`` on the design's (sorted) rows."""
    beta, ranef = (np.ascontiguousarray(a, dtype=float) for a in (beta, ranef))
    return _fitted(design.X, beta, design.Z, ranef, design.starts, design.offset)


@njit(cache=True)
def _fitted(X, beta, Z, ranef, starts, offset):  # pragma: no cover - numba
    """Column by column, of X and of Z (contiguous in the model frame's column-major
    matrices, and vectorised): a loop over q per row, and BLAS for X beta, took 48
    microseconds for a null model's 8,800 rows, this 13."""
    n, p = X.shape
    out = offset.copy()
    for k in range(p):
        b = beta[k]
        for i in range(n):
            out[i] += X[i, k] * b
    for a in range(Z.shape[1]):
        for j in range(len(starts) - 1):
            r = ranef[j, a]
            for i in range(starts[j], starts[j + 1]):
                out[i] += Z[i, a] * r
    return out


def fit_lmm_workspace(
    ws: LMMWorkspace, reml: bool = False, start: np.ndarray | None = None, *, rng_seed: int = 0
) -> EngineResult:
    """Fit from prepared sufficient statistics (no rows): :func:`fit_lmm` without the design.

    For callers that build ``ws`` themselves, e.g. a search updating one prepared design
    (``autoglmm.prepared``); the result has no fitted values (``fitted`` is None).
    """
    with single_threaded_blas():
        return _fit_workspace(ws, reml, start, rng_seed)


def _fit_workspace(ws: LMMWorkspace, reml: bool, start, rng_seed: int, design=None):
    """The fit on ``ws``, with the fitted values of ``design`` if given."""
    theta, report = optimize_theta(ws.objective(reml), ws.re_blocks, start, rng_seed)
    est = estimates_at(theta, ws, reml)
    fitted = None if design is None else fitted_values(design, est.beta, est.ranef)
    return gaussian_result(theta, est, ws.p, reml, report, fitted=fitted)


def optimize_theta(objective: CompiledObjective, re_blocks: tuple[int, ...], start, rng_seed: int):
    """Minimise the compiled (deviance, gradient) objective over theta from lme4's start
    (or ``start``) with the shared optimizer and its checks; returns (theta, report)."""
    lower = theta_lower(re_blocks)
    x0 = theta_start(re_blocks)
    if start is not None and len(start) == len(x0) and np.all(np.isfinite(start)):
        x0 = theta_canonical(np.asarray(start, dtype=float), re_blocks)
        # a zero diagonal (a singular smaller model) is a stationary point of the deviance
        # in that coordinate by symmetry: start just inside instead
        diag = np.isfinite(lower)
        x0[diag] = np.maximum(x0[diag], 0.1)
    theta, _, report = optimize(
        objective,
        x0,
        lower,
        jac=True,
        canonical=lambda t: theta_canonical(t, re_blocks),
        rng_seed=rng_seed,
        method="BFGS",
    )
    return theta, report


def gaussian_result(
    theta, est, p: int, reml: bool, report, vcov_beta=None, fitted=None
) -> EngineResult:
    """The engine result of a gaussian fit from its estimates (``est`` has ``beta``,
    ``sigma2``, ``cov_re``, ``ranef``, ``deviance``; ``vcov_beta`` defaults to theirs)."""
    return EngineResult(
        theta=theta,
        beta=est.beta,
        vcov_beta=est.vcov_beta if vcov_beta is None else vcov_beta,
        cov_re=est.cov_re,
        sigma2=float(est.sigma2),
        ranef=est.ranef,
        loglik=-0.5 * est.deviance,
        deviance=est.deviance,
        n_params=p + len(theta) + 1,
        family="gaussian",
        link="identity",
        nagq=1,
        reml=reml,
        convergence=report,
        fitted=fitted,
    )


__all__ = [
    "LMMWorkspace",
    "deviance",
    "deviance_and_gradient",
    "estimates_at",
    "fit_lmm",
    "fit_lmm_workspace",
    "make_workspace",
]
