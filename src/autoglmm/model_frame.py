"""Formula + DataFrame -> :class:`GroupedDesign`: the edge between pandas and the engine.

What lme4's ``lFormula`` does, for one grouping factor:

- keep the rows that are complete in every column the model uses (reported in messages);
- build the fixed-effects matrix with formulaic (treatment coding, first level as
  reference; string columns get sorted levels, as R's ``factor()``; a pandas Categorical
  keeps its category order);
- drop fixed-effects columns that are linearly dependent on earlier ones, detected by a QR
  decomposition in column order (R's ``qr(X, tol = 1e-7)``, as lme4's ``chkRank.drop.cols``),
  and name them;
- build each random term's columns with formulaic, and the group codes in sorted level order.

Example
-------
>>> frame = build_model_frame(parse_formula("y ~ x + (1 | g)"), df)  # doctest: +SKIP
>>> frame.design.X.shape, frame.dropped_columns  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from autoglmm.engine.design import GroupedDesign, make_design
from autoglmm.errors import DataError, UsageError
from autoglmm.formula import ParsedFormula
from autoglmm.outcome_rule import binary_text_outcome, non_numeric_outcome

RANK_TOL = 1e-7


@dataclass(frozen=True, eq=False)
class ModelFrame:
    """The design of one model plus what the user needs to know about how it was built."""

    design: GroupedDesign
    order: np.ndarray  # design row i is used-row order[i]
    row_index: pd.Index  # labels of the used rows of the input, in input order
    row_hash: str  # identity of the rows and response used (for lrt's same-rows guard)
    dropped_columns: tuple[str, ...]
    n_dropped_rows: int
    messages: tuple[str, ...]
    group_name: str
    response_name: str


def _rename(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name


def _is_number(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


class _Columns:
    """The input frame seen column by column: dtypes and float arrays looked up once.

    pandas label lookups cost tens of microseconds each (string indexes in pandas 3), and
    the search builds hundreds of frames, so plain numeric terms go through numpy arrays
    and formulaic only sees a sub-frame when a term needs it (C(), I(), a:b, ...).
    """

    def __init__(self, data: pd.DataFrame):
        self.data = data
        self.dtypes = dict(zip(data.columns, data.dtypes, strict=True))
        self._float: dict[str, np.ndarray] = {}
        self._numeric: dict[str, bool] = {}
        self.terms: dict[str, tuple[bool, list[_Term]] | None] = {}
        self.mask: np.ndarray | None = None
        self._sub: pd.DataFrame | None = None
        self.used: list[str] = []

    def numeric(self, name: str) -> bool:
        if name not in self._numeric:
            self._numeric[name] = name in self.dtypes and _is_number(self.dtypes[name])
        return self._numeric[name]

    def floats(self, name: str) -> np.ndarray:
        if name not in self._float:
            self._float[name] = self.data[name].to_numpy(dtype=float, na_value=np.nan)
        return self._float[name]

    def sub(self) -> pd.DataFrame:
        """The used columns of the complete rows (built only when formulaic needs it)."""
        if self._sub is None:
            self._sub = self.data.loc[self.mask, self.used]
        return self._sub


_TOKEN = re.compile(
    r"^(?:C\((?P<cat>[A-Za-z_][\w.]*)\)|`(?P<quoted>[^`]+)`|(?P<name>[A-Za-z_.][\w.]*))$"
)


@dataclass(frozen=True)
class _Term:
    """One fixed-effect term numpy can build: a product of numeric columns, or one
    categorical column in treatment coding. ``label`` is formulaic's column name (prefix)."""

    kind: str  # "num" | "cat"
    columns: tuple[str, ...]
    label: str


def _factor(token: str, cols: _Columns) -> _Term | None:
    match = _TOKEN.match(token)
    if match is None:
        return None
    name = match["cat"] or match["quoted"] or match["name"]
    if name not in cols.dtypes:
        return None
    dtype = cols.dtypes[name]
    if _is_number(dtype) and not match["cat"]:
        return _Term("num", (name,), name)
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return None  # category order / bool coding: formulaic decides
    if match["cat"] or pd.api.types.is_string_dtype(dtype):
        return _Term("cat", (name,), f"C({name})" if match["cat"] else name)
    return None


def _simple_terms(expr: str, cols: _Columns) -> tuple[bool, list[_Term]] | None:
    """:func:`_parse_simple`, once per expression and frame."""
    if expr not in cols.terms:
        cols.terms[expr] = _parse_simple(expr, cols)
    return cols.terms[expr]


def _parse_simple(expr: str, cols: _Columns) -> tuple[bool, list[_Term]] | None:
    """``(intercept, terms)`` when numpy can build ``expr`` exactly as formulaic would.

    Accepted: '1', '0', '-1', numeric columns (backticks allowed), ``C(col)`` and string
    columns (treatment coding, sorted levels), and ``a:b`` products of numeric columns.
    Terms are ordered by degree, as formulaic orders them. Anything else returns None and
    goes to formulaic (about 10-50 ms per formula, which the search would pay hundreds of
    times).
    """
    intercept, terms = True, []
    for token in (t.strip() for t in expr.split("+")):
        if token == "1":
            continue
        if token in ("0", "-1"):
            intercept = False
            continue
        parts = [_factor(f.strip(), cols) for f in token.split(":")]
        if any(p is None for p in parts) or (
            len(parts) > 1 and any(p.kind != "num" for p in parts)
        ):
            return None
        term = (
            parts[0]
            if len(parts) == 1
            else _Term(
                "num", tuple(c for p in parts for c in p.columns), ":".join(p.label for p in parts)
            )
        )
        if any(t.label == term.label for t in terms):
            return None
        terms.append(term)
    if not intercept and any(t.kind == "cat" for t in terms):
        return None  # without an intercept formulaic codes a factor in full: its business
    return intercept, sorted(terms, key=lambda t: len(t.columns))


def _required(parsed: ParsedFormula, cols: _Columns) -> list[str]:
    """Columns used by the model (formulaic's view of each part, plus the group)."""
    known = cols.dtypes
    needed: list[str] = [parsed.response] if parsed.response in known else []
    for part in [parsed.fixed] + [t.expr for t in parsed.random]:
        simple = _simple_terms(part, cols)
        if simple is not None:
            needed.extend(c for term in simple[1] for c in term.columns)
            continue
        from formulaic import Formula

        try:
            variables = Formula(part).required_variables
        except Exception as err:  # formulaic raises several parser error types
            raise UsageError(f"cannot parse formula part {part!r}: {err}") from None
        needed.extend(str(v) for v in variables)
    if parsed.response not in known:
        from formulaic import Formula

        needed.extend(str(v) for v in Formula(parsed.response).required_variables)
    needed.append(parsed.group)
    out = list(dict.fromkeys(needed))
    # formulaic also reports names of transforms/constants it could not resolve; only
    # report those that look like columns.
    missing = [
        c
        for c in out
        if c not in known and (c.isidentifier() or c in (parsed.group, parsed.response))
    ]
    if missing:
        raise DataError(
            f"unknown column(s) {', '.join(missing)}; check the formula against the data's "
            "column names"
        )
    return [c for c in out if c in known]


def _term_columns(term: _Term, cols: _Columns) -> tuple[np.ndarray, list[str]]:
    if term.kind == "num":
        col = cols.floats(term.columns[0])[cols.mask]
        for name in term.columns[1:]:
            col = col * cols.floats(name)[cols.mask]
        return col[:, None], [term.label]
    values = cols.data[term.columns[0]].to_numpy()[cols.mask]
    codes, levels = pd.factorize(values, sort=True)
    dummies = (codes[:, None] == np.arange(1, len(levels))[None, :]).astype(float)
    return dummies, [f"{term.label}[T.{level}]" for level in levels[1:]]


def _numpy_matrix(expr: str, cols: _Columns) -> tuple[np.ndarray, list[str]] | None:
    """The fast path of :func:`_matrix`; None when the terms need formulaic."""
    simple = _simple_terms(expr, cols)
    if simple is None:
        return None
    intercept, terms = simple
    n = int(cols.mask.sum())
    blocks = [np.ones((n, 1))] if intercept else []
    names = ["(Intercept)"] if intercept else []
    try:
        for term in terms:
            block, block_names = _term_columns(term, cols)
            blocks.append(block)
            names.extend(block_names)
    except TypeError:  # unsortable mixed-type levels: let formulaic decide
        return None
    return (np.column_stack(blocks) if blocks else np.empty((n, 0))), names


def _formulaic_matrix(expr: str, cols: _Columns) -> tuple[np.ndarray, list[str]]:
    from formulaic import model_matrix  # imported only for terms numpy cannot build

    try:
        mm = model_matrix(expr, cols.sub(), na_action="ignore")
    except Exception as err:
        raise UsageError(f"cannot build model terms {expr!r}: {err}") from None
    return np.asarray(mm, dtype=float), [_rename(str(c)) for c in mm.columns]


def _matrix(expr: str, cols: _Columns) -> tuple[np.ndarray, list[str]]:
    """Model matrix of a right-hand side: numpy for simple terms, formulaic otherwise."""
    fast = _numpy_matrix(expr, cols)
    return fast if fast is not None else _formulaic_matrix(expr, cols)


def independent_columns(X: np.ndarray, tol: float = RANK_TOL) -> np.ndarray:
    """Boolean mask of the columns kept, scanning columns in order.

    A column is dropped when its residual after projection on the earlier kept columns is
    below ``tol`` times its own norm: R's LINPACK ``qr`` with limited pivoting, which lme4
    uses to drop rank-deficient columns, so the later of two collinear columns goes.
    Cost O(n p^2); the loop is over columns, never rows.
    """
    norms = np.linalg.norm(X, axis=0)
    if X.shape[1] and np.all(norms > 0):
        # Quick accept: the Cholesky pivots of the column-scaled X'X are the squared
        # relative residuals; all above 1e-10 (residual > 1e-5, far from the 1e-7 cut)
        # means full rank. Anything closer is decided by the exact scan below.
        try:
            chol = np.linalg.cholesky((X.T @ X) / np.outer(norms, norms))
            if np.min(np.diag(chol)) ** 2 > 1e-10:
                return np.ones(X.shape[1], bool)
        except np.linalg.LinAlgError:
            pass
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


def _response(parsed: ParsedFormula, cols: _Columns, family: str) -> np.ndarray:
    name = parsed.response
    if name in cols.dtypes and not cols.numeric(name):
        values = cols.data[name][cols.mask]
        coded = binary_text_outcome(values, family)
        if coded is None:
            raise non_numeric_outcome(name, values)
        return coded
    if name in cols.dtypes:
        return cols.floats(name)[cols.mask]
    y, _ = _matrix(f"0 + {name}", cols)
    if y.shape[1] != 1:
        raise UsageError(f"response '{name}' must be one column")
    return y[:, 0]


def _random_matrix(parsed: ParsedFormula, cols: _Columns):
    blocks_z, names, blocks = [], [], []
    for term in parsed.random:
        Z, term_names = _matrix(term.expr, cols)
        if Z.shape[1] == 0:
            raise UsageError(f"random term {term.text} has no columns")
        blocks_z.append(Z)
        names.extend(term_names)
        blocks.append(Z.shape[1])
    if len(set(names)) != len(names):
        raise UsageError(
            f"random terms repeat a column ({', '.join(names)}); list each covariate once"
        )
    return np.column_stack(blocks_z), tuple(names), tuple(blocks)


def _weights(weights, cols: _Columns) -> np.ndarray | None:
    if weights is None:
        return None
    if isinstance(weights, str):
        w = cols.floats(weights)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(cols.data),):
            raise UsageError(
                f"weights must have one value per row ({len(cols.data)}), got {w.shape}"
            )
    w = w[cols.mask]
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DataError("weights must be finite and non-negative; fix or drop those rows")
    return w


def _complete_rows(cols: _Columns, used: list[str], weights) -> np.ndarray:
    """Rows complete in every used column; infinite numbers are an error, not missing."""
    names = list(dict.fromkeys(list(used) + ([weights] if isinstance(weights, str) else [])))
    mask = np.ones(len(cols.data), bool)
    other = []
    for name in names:
        if not cols.numeric(name):
            other.append(name)
            continue
        vals = cols.floats(name)
        if np.isinf(vals).any():
            raise DataError(
                f"column '{name}' has infinite values; replace them with missing or finite values"
            )
        mask &= ~np.isnan(vals)
    if other:
        mask &= cols.data[other].notna().all(axis=1).to_numpy()
    return mask


def _row_hash(mask: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha1()
    h.update(np.flatnonzero(mask).astype(np.int64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=float).tobytes())
    return h.hexdigest()[:16]


def _group_codes(cols: _Columns, group: str) -> tuple[np.ndarray, tuple]:
    codes, levels = pd.factorize(cols.data[group].to_numpy()[cols.mask], sort=True)
    if len(levels) < 2:
        raise DataError(
            f"grouping factor '{group}' has {len(levels)} level(s); "
            "a mixed model needs at least 2 groups"
        )
    return codes, tuple(np.asarray(levels).tolist())


def build_model_frame(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    *,
    family: str = "gaussian",
    weights: str | np.ndarray | None = None,
) -> ModelFrame:
    """Build the grouped design of ``parsed`` on ``data`` (see module docstring)."""
    if isinstance(weights, str) and weights not in data.columns:
        raise DataError(f"unknown weights column '{weights}'; check the column names")
    cols = _Columns(data)
    cols.used = _required(parsed, cols)
    cols.mask = mask = _complete_rows(cols, cols.used, weights)
    n_dropped = int(len(mask) - mask.sum())
    messages = []
    if n_dropped:
        messages.append(f"{n_dropped} row(s) with missing values in model columns dropped")
    if n_dropped == len(mask):
        raise DataError("no complete rows for the model's columns; check for missing values")
    X, x_names = _matrix(parsed.fixed, cols)
    if X.shape[1] == 0:
        raise UsageError(f"the fixed part {parsed.fixed!r} has no columns; add '1' at least")
    y = _response(parsed, cols, family)
    keep = independent_columns(X)
    dropped = tuple(n for n, k in zip(x_names, keep, strict=True) if not k)
    if dropped:
        messages.append(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} column(s): {', '.join(dropped)}"
        )
    Z, z_names, blocks = _random_matrix(parsed, cols)
    codes, levels = _group_codes(cols, parsed.group)
    design, order = make_design(
        X[:, keep], y, Z, codes, re_blocks=blocks, weights=_weights(weights, cols),
        x_names=tuple(n for n, k in zip(x_names, keep, strict=True) if k),
        z_names=z_names, group_levels=levels,
    )  # fmt: skip
    return ModelFrame(
        design=design,
        order=order,
        row_index=data.index[mask],
        row_hash=_row_hash(mask, y),
        dropped_columns=dropped,
        n_dropped_rows=n_dropped,
        messages=tuple(messages),
        group_name=parsed.group,
        response_name=parsed.response,
    )
