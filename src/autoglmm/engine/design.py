"""The grouped design of a two-level model: rows sorted by group, as stacked arrays.

Both engines (LMM and GLMM) work on a :class:`GroupedDesign`. Rows are sorted by group
once, so the rows of group ``j`` are ``slice(starts[j], starts[j + 1])`` and per-group
reductions are ``np.add.reduceat`` calls or numba loops over contiguous blocks.

The random-effects covariance is block diagonal over ``re_blocks``: ``(2,)`` means one
correlated 2x2 block (``(1 + x | g)``), ``(1, 1)`` means two uncorrelated terms
(``(1 | g) + (0 + x | g)``). Its relative Cholesky factor Lambda has
``theta`` = the lower triangles of the blocks, column-major as lme4 stores them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import njit

from autoglmm.errors import DataError

# Largest magnitude accepted in any model column. Sums of squares of n values below it stay
# far from overflow (1e200 * n < 1.8e308), and real measurements never come near it: such
# values are codes (SPSS writes 1e244-like numbers for some missing values) or errors.
MAX_ABS = 1e100


@dataclass(frozen=True, eq=False)
class GroupedDesign:
    """Arrays of one model, rows sorted by group.

    Attributes
    ----------
    X : (n, p) fixed-effects design, full column rank (row- or column-major).
    y : (n,) response (for binomial proportions: the proportion).
    Z : (n, q) random-effects covariates of each row (the columns of one group's block).
    weights : (n,) prior weights (ones when none were given).
    offset : (n,) linear-predictor offset (zeros when none).
    group : (n,) int group code 0..m-1, non-decreasing.
    starts : (m + 1,) row offsets: group j is rows starts[j]:starts[j+1].
    re_blocks : sizes of the correlated blocks of Z's columns; sum == q.
    x_names, z_names : column names; group_levels : the m original group labels.
    xtx : (p, p) the unweighted X'X when the builder already has it (the model frame's
        rank check computes it), else None; a workspace then needs no pass for it.
    """

    X: np.ndarray
    y: np.ndarray
    Z: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    group: np.ndarray
    starts: np.ndarray
    re_blocks: tuple[int, ...]
    x_names: tuple[str, ...]
    z_names: tuple[str, ...]
    group_levels: tuple
    xtx: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return self.Z.shape[1]

    @property
    def m(self) -> int:
        return len(self.starts) - 1

    @property
    def n_theta(self) -> int:
        return sum(k * (k + 1) // 2 for k in self.re_blocks)


@functools.lru_cache(maxsize=8)
def constant_vector(n: int, value: float) -> np.ndarray:
    """A shared, read-only vector of ``n`` times ``value``: the weights (1) and the offset
    (0) of a design that has none, which a workspace then recognises without a pass."""
    out = np.full(n, value)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def identity_order(n: int) -> np.ndarray:
    """The shared, read-only ``arange(n)``: the row order of a design whose rows were
    already sorted by group (results then need no reordering to the input's order)."""
    out = np.arange(n)
    out.flags.writeable = False
    return out


def make_design(
    X: np.ndarray,
    y: np.ndarray,
    Z: np.ndarray,
    group_codes: np.ndarray,
    *,
    re_blocks: tuple[int, ...],
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    x_names: tuple[str, ...] = (),
    z_names: tuple[str, ...] = (),
    group_levels: tuple = (),
    xtx: np.ndarray | None = None,
    starts: np.ndarray | None = None,
) -> tuple[GroupedDesign, np.ndarray]:
    """Sort rows by group (stable) and pack a :class:`GroupedDesign`.

    ``group_codes`` are ints 0..m-1 (every code present). Returns the design and the
    permutation ``order`` with ``design.y == y[order]``, so callers can map per-row
    results back to the original row order. Data already sorted by group (the usual
    layout of assessment files) are used as they are, without a copy of every column.
    ``xtx``: the unweighted X'X, if known (row order does not change it). ``starts``:
    the first row of each group and n, when the caller knows the codes are sorted
    (:func:`sorted_runs`).
    """
    group_codes = np.asarray(group_codes, dtype=np.int64)
    n = len(group_codes)
    w = constant_vector(n, 1.0) if weights is None else np.asarray(weights, dtype=float)
    off = constant_vector(n, 0.0) if offset is None else np.asarray(offset, dtype=float)
    X, y, Z = (np.asarray(a, dtype=float) for a in (X, y, Z))
    if starts is not None:
        order, g = identity_order(n), group_codes
    else:
        if np.all(group_codes[1:] >= group_codes[:-1]):
            order, g = identity_order(n), group_codes
        else:
            order = np.argsort(group_codes, kind="stable")
            g, X, y, Z, w, off = (a[order] for a in (group_codes, X, y, Z, w, off))
        m = int(g[-1]) + 1 if g.size else 0
        counts = np.bincount(g, minlength=m)
        if np.any(counts == 0):
            raise ValueError("group codes must be 0..m-1 with every code present")
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    m = len(starts) - 1
    if sum(re_blocks) != Z.shape[1]:
        raise ValueError(f"re_blocks {re_blocks} do not add up to q={Z.shape[1]}")
    design = GroupedDesign(
        X=_contiguous(X),
        y=np.ascontiguousarray(y),
        Z=_contiguous(Z),
        weights=np.ascontiguousarray(w),
        offset=np.ascontiguousarray(off),
        group=g,
        starts=starts,
        re_blocks=tuple(int(k) for k in re_blocks),
        x_names=tuple(x_names) or tuple(f"x{i}" for i in range(X.shape[1])),
        z_names=tuple(z_names) or tuple(f"z{i}" for i in range(Z.shape[1])),
        group_levels=tuple(group_levels) or tuple(range(m)),
        xtx=xtx,
    )
    return design, order


@njit(cache=True)
def sorted_runs(values):  # pragma: no cover - numba
    """``(sorted, codes, starts)`` of group ids: whether they never decrease, and then
    codes 0..m-1 and the first row of each run plus n, in one pass (numpy's cumsum over
    a boolean mask took 0.04 ms at 8,681 rows)."""
    n = len(values)
    codes = np.empty(n, dtype=np.int64)
    starts = np.empty(n + 1, dtype=np.int64)
    m = 0
    for i in range(n):
        if i == 0 or values[i] != values[i - 1]:
            if i > 0 and values[i] < values[i - 1]:
                return False, codes, starts[:0]
            starts[m] = i
            m += 1
        codes[i] = m - 1
    starts[m] = n
    return True, codes, starts[: m + 1]


def gram_matrix(X: np.ndarray) -> np.ndarray:
    """``X'X``. For a column-major X with 8 or more columns, 4 x 4 blocks of sums in
    registers over the rows (:func:`_gram_tiles`): single-threaded OpenBLAS took 0.26 ms
    for 19 columns of 8,681 rows, a shape its kernels are not made for; this takes 0.10."""
    if X.shape[1] >= 8 and X.flags.f_contiguous:
        return _gram_tiles(X.T)
    return X.T @ X


@njit(cache=True, fastmath={"reassoc", "nsz", "contract"})
def _gram_tiles(XT):  # pragma: no cover - numba
    """``X'X`` from the (p, n) row-major transpose, a 4 x 4 block at a time: 16 sums over
    the rows in registers, reassociated so that they run in vector lanes (the rounding of
    a BLAS product, not of a sum in row order). Indices past p repeat the last column;
    those sums are not stored."""
    p, n = XT.shape
    G = np.empty((p, p))
    last = p - 1
    for a0 in range(0, p, 4):
        a1, a2, a3 = min(a0 + 1, last), min(a0 + 2, last), min(a0 + 3, last)
        for b0 in range(a0, p, 4):
            b1, b2, b3 = min(b0 + 1, last), min(b0 + 2, last), min(b0 + 3, last)
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = 0.0
            for i in range(n):
                x0, x1, x2, x3 = XT[a0, i], XT[a1, i], XT[a2, i], XT[a3, i]
                y0, y1, y2, y3 = XT[b0, i], XT[b1, i], XT[b2, i], XT[b3, i]
                s00 += x0 * y0
                s01 += x0 * y1
                s02 += x0 * y2
                s03 += x0 * y3
                s10 += x1 * y0
                s11 += x1 * y1
                s12 += x1 * y2
                s13 += x1 * y3
                s20 += x2 * y0
                s21 += x2 * y1
                s22 += x2 * y2
                s23 += x2 * y3
                s30 += x3 * y0
                s31 += x3 * y1
                s32 += x3 * y2
                s33 += x3 * y3
            tile = ((s00, s01, s02, s03), (s10, s11, s12, s13), (s20, s21, s22, s23),
                    (s30, s31, s32, s33))  # fmt: skip
            for r in range(min(4, p - a0)):
                for c in range(min(4, p - b0)):
                    G[a0 + r, b0 + c] = tile[r][c]
                    G[b0 + c, a0 + r] = tile[r][c]
    return G


def _contiguous(M: np.ndarray) -> np.ndarray:
    """``M`` as it is when stored contiguously in either order (the model frame builds
    column-major matrices; see ``model_frame._column_major``), else a row-major copy."""
    return M if M.flags.f_contiguous or M.flags.c_contiguous else np.ascontiguousarray(M)


def theta_lower(re_blocks: tuple[int, ...]) -> np.ndarray:
    """Lower bounds of theta: 0 on each block's diagonal, -inf below it (lme4's convention)."""
    return np.array(_theta_diagonal(tuple(re_blocks))[0])


def theta_start(re_blocks: tuple[int, ...]) -> np.ndarray:
    """lme4's default start: identity Lambda (1 on diagonals, 0 below)."""
    return np.array(_theta_diagonal(tuple(re_blocks))[1])


@functools.lru_cache(maxsize=64)
def _theta_diagonal(re_blocks: tuple[int, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """:func:`theta_lower`'s and :func:`theta_start`'s values (every fit asks for them)."""
    diagonal = [row == col for k in re_blocks for col in range(k) for row in range(col, k)]
    return (tuple(0.0 if d else -np.inf for d in diagonal),
            tuple(1.0 if d else 0.0 for d in diagonal))  # fmt: skip


def theta_positions(re_blocks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of Lambda for each theta element (column-major lower triangles).

    Computed once per block structure (cached; the arrays are read-only).
    """
    return _positions(tuple(int(k) for k in re_blocks))


@functools.lru_cache(maxsize=64)
def _positions(re_blocks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols, offset = [], [], 0
    for k in re_blocks:
        for col in range(k):
            for row in range(col, k):
                rows.append(offset + row)
                cols.append(offset + col)
        offset += k
    out = np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)
    for a in out:
        a.setflags(write=False)
    return out


def lambda_from_theta(theta: np.ndarray, re_blocks: tuple[int, ...]) -> np.ndarray:
    """The q x q lower-triangular relative covariance factor Lambda (block diagonal).

    The one theta -> Lambda map of the package: every engine builds Lambda here, as
    ``lam[rows, cols] = theta`` with :func:`theta_positions`.
    """
    rows, cols = theta_positions(re_blocks)
    return fill_lambda(np.asarray(theta, dtype=float), rows, cols, sum(re_blocks))


@njit(cache=True)
def fill_lambda(theta, rows, cols, q):  # pragma: no cover - numba
    """``Lambda`` (q x q, zeros elsewhere) with ``Lambda[rows[k], cols[k]] = theta[k]``;
    compiled so that the LMM's objective builds it inside its own numba call."""
    lam = np.zeros((q, q))
    for k in range(len(theta)):
        lam[rows[k], cols[k]] = theta[k]
    return lam


def theta_from_cov(cov: np.ndarray, scale: float, re_blocks: tuple[int, ...]) -> np.ndarray:
    """Inverse of the map theta -> G = scale * Lambda Lambda' (for starts and tests).

    ``scale`` is sigma^2 for gaussian models and 1 for binomial/poisson.
    """
    theta = []
    offset = 0
    for k in re_blocks:
        block = np.asarray(cov, dtype=float)[offset : offset + k, offset : offset + k] / scale
        try:
            chol = np.linalg.cholesky(block)
        except np.linalg.LinAlgError:  # singular block: pivot-free fallback via eigen
            vals, vecs = np.linalg.eigh(block)
            half = vecs * np.sqrt(np.clip(vals, 0, None))
            _, r = np.linalg.qr(half.T)
            chol = r.T
            signs = np.where(np.diag(chol) < 0, -1.0, 1.0)
            chol = chol * signs[None, :]  # flip columns: chol @ chol.T is unchanged
        for col in range(k):
            for row in range(col, k):
                theta.append(chol[row, col])
        offset += k
    return np.array(theta)


def theta_canonical(theta: np.ndarray, re_blocks: tuple[int, ...]) -> np.ndarray:
    """Flip the sign of each Lambda column whose diagonal is negative.

    G = Lambda Lambda' does not change when a column of Lambda changes sign, so a deviance
    is symmetric under these flips; an optimizer may run without the lower bounds of 0 and
    map its result back with this function (lme4's convention: diagonals >= 0).
    """
    theta = np.array(theta, dtype=float)
    pos = 0
    for k in re_blocks:
        for col in range(k):
            length = k - col  # column col of the block: diagonal first, then below
            if theta[pos] < 0:
                theta[pos : pos + length] *= -1.0
            pos += length
    return theta


def _check_columns(values: np.ndarray, names, squares: np.ndarray | None = None) -> None:
    """Finite and at most MAX_ABS in every column; the message names the first offending
    column. ``names``: one per column, or ``(template, names)`` formatted only for a
    message.

    This runs before every fit, so the common case is one compiled pass without copies
    (:func:`within_limit`), or none when the caller has the column sums of squares
    (``squares``: finite and at most MAX_ABS**2 only if every value is finite and at most
    MAX_ABS in magnitude; n values of 1e100 sum to n 1e200, no overflow). Column maxima
    and minima are computed only when that quick test fails.
    """
    M = values.reshape(len(values), -1)
    if M.size == 0:
        return
    if squares is not None and np.all(squares <= MAX_ABS * MAX_ABS):  # False for NaN, inf
        return
    if squares is None and within_limit(M.ravel(order="K"), MAX_ABS):
        return
    hi, lo = M.max(axis=0), M.min(axis=0)  # NaN and inf propagate into these
    bad = ~(np.isfinite(hi) & np.isfinite(lo)) | (hi > MAX_ABS) | (lo < -MAX_ABS)
    if not bad.any():
        return
    j = int(np.flatnonzero(bad)[0])
    name = names[1][j] if isinstance(names, tuple) else names[j]
    name = names[0].format(name) if isinstance(names, tuple) else name
    if not (np.isfinite(hi[j]) and np.isfinite(lo[j])):
        raise DataError(f"{name} has infinite or missing values; fix or drop those rows")
    big = max(abs(float(hi[j])), abs(float(lo[j])))
    raise DataError(
        f"{name} has values as large as {big:.3g} (limit {MAX_ABS:g}); "
        "such values overflow the model's sums of squares: recode them as missing or rescale"
    )


@njit(cache=True, fastmath={"reassoc", "nsz"})
def within_limit(flat, limit):  # pragma: no cover - numba
    """Every value finite and at most ``limit`` (<= 1e150) in magnitude: the sum of squares
    is at most ``limit**2`` only then (NaN and inf propagate into it). Reassociated (and
    indexed: numba does not vectorise ``for v in flat``), the sum runs in vector
    registers: 1.7 against 7 microseconds at 8,681 values."""
    acc = 0.0
    for i in range(len(flat)):
        acc += flat[i] * flat[i]
    return acc <= limit * limit


_NOTHING = np.empty(0)


@njit(cache=True)
def _vectors_ok(y, z, offset, weights):  # pragma: no cover - numba
    """:func:`within_limit` on the outcome, Z, the offset and the weights, in one call (the
    common case of :func:`check_design`; its column checks name the culprit otherwise)."""
    return (within_limit(y, MAX_ABS) and within_limit(z, MAX_ABS)
            and within_limit(offset, MAX_ABS) and within_limit(weights, MAX_ABS))  # fmt: skip


def check_design(design: GroupedDesign, *, gaussian: bool) -> None:
    """Refuse a design the likelihood cannot be evaluated on, or cannot identify.

    - every value finite and at most :data:`MAX_ABS` in magnitude (columns named);
    - prior weights positive: a weight of 0 puts ``log 0`` into the gaussian likelihood
      (lme4 reports a log-likelihood of -Inf there); drop those rows instead;
    - identifiability as lme4 checks it (``check.nobs.vs.nlev``, ``check.nobs.vs.nRE``):
      for a gaussian model the number of groups, and the number of random effects of
      each correlated term (levels x its size), must be fewer than the observations,
      otherwise they cannot be told apart from the residual; for binomial/poisson (no
      residual variance) they may equal it (an observation-level random effect).

    Raises :class:`~autoglmm.errors.DataError` (CLI exit 1) with a one-line message.
    """
    n = design.n
    unit = design.weights is constant_vector(n, 1.0)  # none given: nothing to check
    offset = _NOTHING if design.offset is constant_vector(n, 0.0) else design.offset
    ok = _vectors_ok(design.y, design.Z.ravel(order="K"), offset,
                     _NOTHING if unit else design.weights)  # fmt: skip
    if not ok:  # which one, named
        _check_columns(design.y, ["the outcome"])
    x_squares = None if design.xtx is None else np.diag(design.xtx)
    _check_columns(design.X, ("fixed-effect column '{}'", design.x_names), x_squares)
    if not ok:
        _check_columns(design.Z, ("random-effect column '{}'", design.z_names))
        _check_columns(design.offset, ["the offset"])
        _check_columns(design.weights, ["the prior weights"])
    if n and not unit and design.weights.min() <= 0:
        n_bad = int(np.sum(design.weights <= 0))
        raise DataError(
            f"prior weights must be positive: {n_bad} row(s) have weight <= 0; drop those rows"
        )
    check_sizes(design.n, design.m, design.re_blocks, design.z_names, gaussian=gaussian)


def check_sizes(
    n: int, m: int, re_blocks: tuple[int, ...], z_names: tuple[str, ...], *, gaussian: bool
) -> None:
    """The identifiability part of :func:`check_design`, from the sizes alone (no rows)."""
    too_many = (lambda k: k >= n) if gaussian else (lambda k: k > n)
    relation = "fewer than" if gaussian else "at most"
    if too_many(m):
        raise DataError(
            f"the grouping factor has {m} levels for {n} observations; the number of levels "
            f"must be {relation} the number of observations (as lme4 requires): group by a "
            "higher-level unit, not by a row identifier"
        )
    names = iter(z_names)
    for k in re_blocks:
        term = ", ".join(next(names) for _ in range(k))
        if too_many(m * k):
            raise DataError(
                f"random effects ({term}) x {m} groups = {m * k} random effects for {n} "
                f"observations; they must be {relation} the observations (as lme4 requires): "
                "drop random slopes or use larger groups"
            )
