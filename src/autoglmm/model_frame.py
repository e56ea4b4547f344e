"""Formula + DataFrame -> :class:`GroupedDesign`: the edge between pandas and the engine.

What lme4's ``lFormula`` does, for one grouping factor, with one term builder of our own
(R's grammar in :mod:`~autoglmm.formula_syntax`, R's term algebra in
:mod:`~autoglmm.formula_terms`, R's ``model.frame`` evaluation in :mod:`~autoglmm.variables`):

- evaluate every variable on all rows, then keep the rows that are complete in all of
  them, the offsets, the group and the weights (reported in messages); unused factor
  levels are dropped after that, as lme4's ``drop.unused.levels = TRUE``;
- code factors as R's ``model.matrix`` does: treatment contrasts with the first level as
  reference where the term without the factor is in the model (the intercept counts as
  the empty term), indicator columns otherwise; interaction columns vary the first factor
  fastest;
- drop fixed-effects columns that are linearly dependent on earlier ones, detected by a QR
  decomposition in column order (R's ``qr(X, tol = 1e-7)``, as lme4's ``chkRank.drop.cols``),
  and name them;
- fill the offset from ``offset(...)`` terms, and turn ``cbind(successes, failures)`` into
  proportions with prior weights ``successes + failures``, as R's binomial family does.

Column names follow formulaic's convention, which the report reads: ``x``, ``a:b``,
``sex[T.M]`` / ``C(sex)[T.M]`` / ``factor(k)[T.2]`` for a contrast, ``g[a]`` for an
indicator, ``I(x^2)``, ``poly(x, 2)1``.

Example
-------
>>> frame = build_model_frame(parse_formula("y ~ x + (1 | g)"), df)  # doctest: +SKIP
>>> frame.design.X.shape, frame.dropped_columns  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from autoglmm.engine.design import (
    MAX_ABS,
    GroupedDesign,
    gram_matrix,
    make_design,
    sorted_runs,
    within_limit,
)
from autoglmm.engine.kernels import chol_inplace
from autoglmm.errors import DataError, UsageError
from autoglmm.formula import ParsedFormula
from autoglmm.formula_syntax import BinOp, Call, Name, Paren, Unary, quote_name
from autoglmm.formula_terms import TermList, expand_terms, variables_in_order
from autoglmm.outcome_rule import non_numeric_outcome
from autoglmm.variables import CONSTANTS, Evaluator, Factor, Numeric, variable_label

RANK_TOL = 1e-7


@dataclass(frozen=True, eq=False)
class ModelFrame:
    """The design of one model plus what the user needs to know about how it was built."""

    design: GroupedDesign
    order: np.ndarray  # design row i is used-row order[i]
    row_index: pd.Index  # labels of the used rows of the input, in input order
    row_hash: RowIdentity  # the rows and response used (for lrt's same-rows guard)
    dropped_columns: tuple[str, ...]
    n_dropped_rows: int
    messages: tuple[str, ...]
    group_name: str
    response_name: str


# --- which columns the formula names -----------------------------------------------------

_FIRST_ARG_ONLY = {"factor", "as.factor", "C", "relevel", "poly", "scale"}


def _names(node, out: list[str]) -> None:
    """Column names a formula part refers to (function names and options excluded)."""
    if isinstance(node, Name):
        out.append(node.id)
    elif isinstance(node, Paren):
        _names(node.inner, out)
    elif isinstance(node, Unary):
        _names(node.operand, out)
    elif isinstance(node, BinOp):
        _names(node.lhs, out)
        _names(node.rhs, out)
    elif isinstance(node, Call):
        args = node.args[:1] if node.func in _FIRST_ARG_ONLY else node.args
        for arg in args:
            _names(arg, out)


def _check_columns(parsed: ParsedFormula, ev: Evaluator) -> None:
    """One error naming every unknown column (a typo is often not alone)."""
    names: list[str] = []
    for node in [parsed.response, parsed.fixed, *(t.expr for t in parsed.random)]:
        _names(node, names)
    missing = [n for n in dict.fromkeys(names) if not ev.has(n) and n not in CONSTANTS]
    if not ev.has(parsed.group):
        missing.append(parsed.group)
    if "." in missing:
        raise UsageError("'.' (all other columns) is not supported; list the predictors")
    if missing:
        hints = [h for h in (_close_name(n, ev.columns) for n in missing) if h]
        hint = f"; did you mean {', '.join(hints)}?" if hints else ""
        raise DataError(
            f"unknown column(s) {', '.join(missing)}{hint} (check the formula against the "
            "data's column names; put names with spaces or symbols in backticks)"
        )


def _r_key(name: str) -> str:
    """A spelling key: R's read.csv(check.names = TRUE) dots, '_' as '.', lower case."""
    return re.sub(r"[\W_]", ".", name).lower()


def _close_name(name: str, columns: pd.Index) -> str | None:
    """The column a typo, a case slip or R's make.names most likely meant, backticked."""
    names = [str(c) for c in columns]
    same = [c for c in names if _r_key(c) == _r_key(name)]
    close = same or difflib.get_close_matches(name, names, n=1, cutoff=0.8)
    return quote_name(close[0]) if len(close) == 1 else None


# --- the rows used -----------------------------------------------------------------------


def _complete(ev: Evaluator, value, label: str) -> np.ndarray | None:
    """Rows where ``value`` is present (None: all of them)."""
    if isinstance(value, Factor):
        ok = value.codes >= 0
        return None if ok.all() else ok
    values = value.values if isinstance(value, Numeric) else np.asarray(value)
    if values.dtype.kind == "f" and values.size:  # the common case in one compiled pass:
        if within_limit(values.ravel(order="K"), MAX_ABS):  # finite, |value| <= MAX_ABS
            return None
    what = f"column '{label}'" if ev.has(label) else f"'{label}'"
    if values.dtype.kind == "f" and values.size:  # before the rank test, which they fool
        with np.errstate(over="ignore", invalid="ignore"):
            big = max(np.fmax.reduce(values, axis=None), -np.fmin.reduce(values, axis=None))
        if np.isfinite(big) and big > MAX_ABS:
            raise DataError(
                f"{what} has values as large as {big:.3g} (limit {MAX_ABS:g}); "
                "recode them as missing or rescale the column"
            )
    finite = np.isfinite(values)
    if finite.all():
        return None
    if np.isinf(values).any():
        raise DataError(f"{what} has infinite values; replace them with missing or finite values")
    return finite.all(axis=1)


# --- the model matrix of one right-hand side ---------------------------------------------


class _Builder:
    """Columns of the terms of one model, on the complete rows ``mask`` (None: all)."""

    def __init__(self, ev: Evaluator, mask: np.ndarray | None):
        self.ev = ev
        self.levels: dict = {}
        # row selection by index (faster than a boolean mask on 2-d arrays); none if all
        self.rows = None if mask is None else np.flatnonzero(mask)
        self.n = len(ev.data) if mask is None else len(self.rows)

    def used(self, values: np.ndarray) -> np.ndarray:
        """``values`` on the used rows."""
        return values if self.rows is None else values.take(self.rows, axis=0)

    def factor(self, node) -> tuple[np.ndarray, tuple]:
        """Codes on the used rows with unused levels dropped (lme4's drop.unused.levels)."""
        if node not in self.levels:
            value = self.ev.variable(node)
            codes = self.used(value.codes)
            present = np.bincount(codes, minlength=len(value.levels)) > 0
            remap = np.cumsum(present) - 1
            levels = tuple(v for v, p in zip(value.levels, present, strict=True) if p)
            self.levels[node] = (remap[codes], levels)
        return self.levels[node]

    def variable_columns(self, node, contrast: bool) -> tuple[np.ndarray, list[str]]:
        value = self.ev.variable(node)
        label = variable_label(node)
        if isinstance(value, Numeric):
            return self.used(value.values), [label + s for s in value.suffixes]
        codes, levels = self.factor(node)
        first = 1 if contrast else 0
        block = (codes[:, None] == np.arange(first, len(levels))[None, :]).astype(float)
        fmt = "{}[T.{}]" if contrast else "{}[{}]"
        return block, [fmt.format(label, _level_text(v)) for v in levels[first:]]

    def matrix(self, terms: TermList) -> tuple[np.ndarray, list[str]]:
        """R's model.matrix for ``terms`` (coding decided by :func:`_codings`)."""
        if terms.intercept and not terms.terms:  # (1 | g), y ~ 1: the column of ones
            return np.ones((self.n, 1)), ["(Intercept)"]
        codings = _codings(terms, lambda v: isinstance(self.ev.variable(v), Factor))
        blocks = [np.ones((self.n, 1))] if terms.intercept else []
        names = ["(Intercept)"] if terms.intercept else []
        for term, coding in zip(terms.terms, codings, strict=True):
            block, block_names = self.term_block(term, coding)
            blocks.append(block)
            names.extend(block_names)
        return _column_major(blocks, self.n), names

    def term_block(self, term: tuple, coding: list[bool]) -> tuple[np.ndarray, list[str]]:
        """The columns of one term under its coding (one of :func:`_codings`' lists)."""
        block, block_names = self.variable_columns(term[0], coding[0])
        for var, contrast in zip(term[1:], coding[1:], strict=True):
            cols, col_names = self.variable_columns(var, contrast)
            # the earlier variables vary fastest, as in R's model.matrix
            block = (block[:, None, :] * cols[:, :, None]).reshape(self.n, -1)
            block_names = [f"{a}:{b}" for b in col_names for a in block_names]
        return block, block_names


def _column_major(blocks: list[np.ndarray], n: int) -> np.ndarray:
    """The (n, k) matrix of the column ``blocks``, stored column by column (Fortran order).

    Each column is one contiguous copy of a DataFrame column: 3x faster than
    ``np.column_stack``'s strided writes into a row-major matrix (0.09 against 0.30 ms for
    19 columns of 8,681 rows). The LMM reduces X to cross-products once, in any layout;
    :func:`build_model_frame` makes the matrices row-major for a GLMM, which passes over
    the rows at every evaluation.
    """
    out = np.empty((sum(b.shape[1] for b in blocks), n))
    row = 0
    for block in blocks:
        out[row : row + block.shape[1]] = block.T
        row += block.shape[1]
    return out.T


def _codings(terms: TermList, is_factor) -> list[list[bool]]:
    """Per term and variable: True = contrasts, False = indicator columns (R's TermCode).

    A variable is coded by contrasts when the term without it is empty or contained in an
    earlier term; otherwise by indicators. Without an intercept, the first factor of the
    first term that has one is coded by indicators (R's model.matrix).
    """
    codings, earlier = [], []  # earlier: the variable sets of the terms before this one
    for term in terms.terms:
        codings.append(
            [not (margin := set(term) - {var}) or any(margin <= t for t in earlier) for var in term]
        )
        earlier.append(set(term))
    if not terms.intercept:
        for term, coding in zip(terms.terms, codings, strict=True):
            first = next((i for i, var in enumerate(term) if is_factor(var)), None)
            if first is not None:
                coding[first] = False
                break
    return codings


def _level_text(value) -> str:
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"  # R's names: flagTRUE
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def independent_columns(
    X: np.ndarray, tol: float = RANK_TOL, gram: np.ndarray | None = None
) -> np.ndarray:
    """Boolean mask of the columns kept, scanning columns in order.

    A column is dropped when its residual after projection on the earlier kept columns is
    below ``tol`` times its own norm: R's LINPACK ``qr`` with limited pivoting, which lme4
    uses to drop rank-deficient columns, so the later of two collinear columns goes.
    Cost O(n p^2); the loop is over columns, never rows. ``gram``: X'X, if the caller has it.
    """
    gram = X.T @ X if gram is None else gram
    if X.shape[1] and _clearly_full_rank(np.ascontiguousarray(gram, dtype=float)):
        return np.ones(X.shape[1], bool)
    keep = np.zeros(X.shape[1], bool)
    basis = np.empty((X.shape[0], 0))
    for j in range(X.shape[1]):
        col = X[:, j]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        res = col - basis @ (basis.T @ col)
        res = res - basis @ (basis.T @ res)  # re-orthogonalise (Gram-Schmidt twice)
        rnorm = np.linalg.norm(res)
        if rnorm > tol * norm:
            keep[j] = True
            basis = np.column_stack([basis, res / rnorm])
    return keep


@njit(cache=True)
def _clearly_full_rank(gram):  # pragma: no cover - numba
    """Quick accept for :func:`independent_columns`: the Cholesky pivots of the
    column-scaled X'X are the squared relative residuals of each column on the earlier
    ones; all above 1e-10 (residual > 1e-5, far from the 1e-7 cut) means full rank.
    Anything closer, or a zero column, is decided by the exact scan. Compiled: numpy's
    Cholesky and the scaling around it cost 0.03 ms of a small fit."""
    k = gram.shape[0]
    norms = np.empty(k)
    for j in range(k):
        if not gram[j, j] > 0.0:
            return False
        norms[j] = np.sqrt(gram[j, j])
    L = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            L[i, j] = gram[i, j] / (norms[i] * norms[j])
    if not chol_inplace(L):
        return False
    for j in range(k):
        if not L[j, j] * L[j, j] > 1e-10:
            return False
    return True


def _response(parsed: ParsedFormula, ev: Evaluator, family: str) -> tuple[list, object]:
    """The response's pieces (for the complete-rows check) and how to finish it."""
    node = parsed.response
    if isinstance(node, Call) and node.func == "cbind":
        if family != "binomial":
            raise UsageError(
                f"{parsed.response_text} is a binomial count response; use family='binomial'"
            )
        if len(node.args) != 2 or node.kwargs:
            raise UsageError(
                f"{parsed.response_text}: write cbind(successes, failures), two columns"
            )
        parts = [ev.numeric(a, "cbind() column") for a in node.args]
        return [(parsed.response_text, p[:, None]) for p in parts], parts
    value = ev.variable(node)
    return [(parsed.response_text, value)], value


def _finish_response(
    parsed: ParsedFormula, value, builder: _Builder, family: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(y, binomial trials or None)`` on the used rows."""
    if isinstance(value, list):  # cbind(successes, failures), as R's binomial()$initialize
        s, f = builder.used(value[0]), builder.used(value[1])
        if np.any(s < 0) or np.any(f < 0):
            raise DataError(f"{parsed.response_text}: counts must be non-negative")
        n = s + f
        with np.errstate(all="ignore"):
            return np.where(n == 0, 0.0, s / n), n
    if isinstance(value, Factor):
        codes, levels = builder.factor(parsed.response)
        if family == "binomial" and len(levels) == 2:
            return codes.astype(float), None
        # the rule search() applies too (autoglmm.outcome_rule): same coding, same message
        raise non_numeric_outcome(parsed.response_name, list(levels))
    if value.values.shape[1] != 1:
        raise UsageError(f"response '{parsed.response_text}' must be one column")
    return builder.used(value.values[:, 0]), None


def _weights(weights, ev: Evaluator) -> np.ndarray | None:
    if weights is None:
        return None
    if isinstance(weights, str):
        return ev.column(weights).to_numpy(dtype=float, na_value=np.nan)
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(ev.data),):
        raise UsageError(f"weights must have one value per row ({len(ev.data)}), got {w.shape}")
    return w


def _check_weights(w: np.ndarray | None, weights, rows: pd.Index) -> None:
    """Prior weights must be finite and positive (on the rows the model uses).

    A weight of 0 is refused here rather than dropped: lme4 keeps such a row and reports a
    log-likelihood of -Inf for a gaussian model (its residual variance there is infinite),
    and silently dropping rows would change the sample every model of a search shares.
    """
    if w is None:
        return
    what = f"weights column '{weights}'" if isinstance(weights, str) else "weights"
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise DataError(f"{what} must be finite and non-negative; fix or drop those rows")
    zero = w == 0
    if zero.any():
        raise DataError(
            f"{what} has {int(zero.sum())} zero weight(s) (first at row "
            f"{rows[int(np.flatnonzero(zero)[0])]}); prior weights must be positive: drop "
            "those rows or give them a positive weight"
        )


class RowIdentity:
    """Identity of the rows and response a model used (lrt's same-rows guard): their
    positions (just their number when all are used) and the response on them, hashed on
    first comparison. Hashing the response cost 0.06 ms, 4% of a small fit, and most
    fits are never compared."""

    __slots__ = ("_digest", "_positions", "_y")

    def __init__(self, mask: np.ndarray | None, y: np.ndarray):
        self._positions = None if mask is None else np.flatnonzero(mask)
        self._y = y
        self._digest = f"all {len(y)}"

    @property
    def digest(self) -> str:
        if self._y is not None:
            h = hashlib.sha1()
            if self._positions is None:
                h.update(self._digest.encode())
            else:
                h.update(self._positions.astype(np.int64).tobytes())
            h.update(np.ascontiguousarray(self._y, dtype=float).tobytes())
            self._digest, self._positions, self._y = h.hexdigest()[:16], None, None
        return self._digest

    def __eq__(self, other: object) -> bool:
        return self.digest == (other.digest if isinstance(other, RowIdentity) else other)

    def __hash__(self) -> int:
        return hash(self.digest)

    def __str__(self) -> str:
        return self.digest

    __repr__ = __str__


def _group_codes(ev: Evaluator, group: str, builder: _Builder):
    """Codes 0..m-1 of the group labels on the used rows, in sorted label order, their
    levels, and the first row of each group (plus n) when the rows are sorted by group
    (else None)."""
    values = ev.array(group)
    values = builder.used(ev.column(group).to_numpy() if values is None else values)
    starts = None
    if values.dtype.kind in "iu":  # rows sorted by an integer id (the usual file layout)
        in_order, codes, starts = sorted_runs(values)  # one pass, no hashing
        levels = values[starts[:-1]] if in_order else None
        starts = starts if in_order else None
    if starts is None:
        codes, levels = pd.factorize(values, sort=True)
    if len(levels) < 2:
        raise DataError(
            f"grouping factor '{group}' has {len(levels)} level(s); "
            "a mixed model needs at least 2 groups"
        )
    return codes, tuple(np.asarray(levels).tolist()), starts


def _random_matrix(parsed: ParsedFormula, builder: _Builder, random: list[TermList]):
    blocks_z, names, blocks = [], [], []
    for term, terms in zip(parsed.random, random, strict=True):
        Z, term_names = builder.matrix(terms)
        if Z.shape[1] == 0:
            raise UsageError(f"random term {term.text} has no columns")
        blocks_z.append(Z)
        names.extend(term_names)
        blocks.append(Z.shape[1])
    if len(set(names)) != len(names):
        raise UsageError(
            f"random terms repeat a column ({', '.join(names)}); list each covariate once"
        )
    Z = blocks_z[0] if len(blocks_z) == 1 else np.column_stack(blocks_z)
    return Z, tuple(names), tuple(blocks)


def _expand(parsed: ParsedFormula) -> tuple[TermList, list[TermList]]:
    fixed = expand_terms(parsed.fixed)
    random = [expand_terms(t.expr) for t in parsed.random]
    for term, terms in zip(parsed.random, random, strict=True):
        if terms.offsets:
            raise UsageError(f"offset() belongs in the fixed part, not in {term.text}")
    return fixed, random


def _pieces(parsed: ParsedFormula, ev: Evaluator, fixed: TermList, response: list) -> list:
    """Everything whose missing values drop a row: response, variables, offsets, group."""
    nodes = variables_in_order(parsed.fixed)
    for term in parsed.random:
        nodes += [v for v in variables_in_order(term.expr) if v not in nodes]
    pieces = list(response)
    pieces += [(variable_label(v), ev.variable(v)) for v in nodes]
    pieces += [(variable_label(o), ev.numeric(o, "offset")[:, None]) for o in fixed.offsets]
    values = ev.array(parsed.group)
    if values is None or values.dtype.kind not in "iub":  # integer ids cannot be missing
        missing = ev.column(parsed.group).isna().to_numpy()
        pieces.append((parsed.group, Factor(np.where(missing, -1, 0), (0,))))
    return pieces


def _complete_rows(ev: Evaluator, pieces: list) -> np.ndarray | None:
    """Rows complete in every piece (R's na.omit; None: all are); infinite numbers are an
    error."""
    mask = None
    for label, value in pieces:
        ok = _complete(ev, value, label)
        if ok is not None:
            mask = ok if mask is None else mask & ok
    if mask is not None and not mask.any():
        raise DataError("no complete rows for the model's columns; check for missing values")
    return mask


def _without_attrs(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` without ``attrs``, sharing its columns.

    pandas deep-copies ``DataFrame.attrs`` on every column access; a caller's frame with a
    plain dict of labels there (hundreds of SPSS items) made the column reads of a small fit
    cost more than the fit itself. The model frame never reads ``attrs``.
    """
    if not data.attrs:
        return data
    out = data.copy(deep=False)
    out.attrs = {}
    return out


def build_model_frame(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    *,
    family: str = "gaussian",
    weights: str | np.ndarray | None = None,
) -> ModelFrame:
    """Build the grouped design of ``parsed`` on ``data`` (see module docstring)."""
    ev = Evaluator(_without_attrs(data))
    if isinstance(weights, str) and not ev.has(weights):
        raise DataError(f"unknown weights column '{weights}'; check the column names")
    _check_columns(parsed, ev)
    fixed, random = _expand(parsed)
    response, response_value = _response(parsed, ev, family)
    pieces = _pieces(parsed, ev, fixed, response)
    w = _weights(weights, ev)
    if w is not None:
        pieces.append(("weights", w[:, None]))
    mask = _complete_rows(ev, pieces)
    n_dropped = 0 if mask is None else int(len(mask) - mask.sum())
    messages = list(fixed.notes) + [n for t in random for n in t.notes]
    if n_dropped:
        messages.append(f"{n_dropped} row(s) with missing values in model columns dropped")
    builder = _Builder(ev, mask)
    X, x_names = builder.matrix(fixed)
    if X.shape[1] == 0:
        raise UsageError(f"the fixed part {parsed.fixed_text!r} has no columns; add '1' at least")
    y, trials = _finish_response(parsed, response_value, builder, family)
    w = None if w is None else builder.used(w)
    row_index = data.index if builder.rows is None else data.index.take(builder.rows)
    _check_weights(w, weights, row_index)
    if trials is not None:
        w = trials if w is None else w * trials
    offset = sum(
        (builder.used(ev.numeric(o, "offset")) for o in fixed.offsets), np.zeros(builder.n)
    )
    gram = gram_matrix(X)  # the rank check's, and the workspace's X'X without weights
    keep = independent_columns(X, gram=gram)
    dropped = tuple(n for n, k in zip(x_names, keep, strict=True) if not k)
    if dropped:
        messages.append(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} column(s): {', '.join(dropped)}"
        )
    Z, z_names, blocks = _random_matrix(parsed, builder, random)
    codes, levels, starts = _group_codes(ev, parsed.group, builder)
    if family != "gaussian":  # PIRLS reads X and Z row by row at every evaluation
        X, Z = np.ascontiguousarray(X), np.ascontiguousarray(Z)
    design, order = make_design(
        X if keep.all() else X[:, keep], y, Z, codes, re_blocks=blocks, weights=w,
        offset=offset if fixed.offsets else None,
        x_names=tuple(n for n, k in zip(x_names, keep, strict=True) if k),
        z_names=z_names, group_levels=levels, starts=starts,
        xtx=gram if keep.all() else gram[np.ix_(keep, keep)],
    )  # fmt: skip
    return ModelFrame(
        design=design,
        order=order,
        row_index=row_index,
        row_hash=RowIdentity(mask, y),
        dropped_columns=dropped,
        n_dropped_rows=n_dropped,
        messages=tuple(messages),
        group_name=parsed.group,
        response_name=parsed.response_name,
    )
