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
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

from autoglmm.engine.design import GroupedDesign, make_design
from autoglmm.errors import DataError, UsageError
from autoglmm.formula import ParsedFormula

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


def _required(parsed: ParsedFormula, data: pd.DataFrame) -> list[str]:
    """Columns used by the model (formulaic's view of each part, plus the group)."""
    needed: list[str] = []
    parts = [f"{parsed.response} ~ {parsed.fixed}"] + [t.expr for t in parsed.random]
    for part in parts:
        try:
            variables = Formula(part).required_variables
        except Exception as err:  # formulaic raises several parser error types
            raise UsageError(f"cannot parse formula part {part!r}: {err}") from None
        needed.extend(str(v) for v in variables)
    needed.append(parsed.group)
    out = []
    for name in needed:
        if name not in out:
            out.append(name)
    missing = [c for c in out if c not in data.columns]
    # formulaic also reports names of transforms/constants it could not resolve; only
    # report those that look like columns.
    missing = [c for c in missing if c.isidentifier() or c in (parsed.group, parsed.response)]
    if missing:
        raise DataError(
            f"unknown column(s) {', '.join(missing)}; check the formula against the data's "
            "column names"
        )
    return [c for c in out if c in data.columns]


def independent_columns(X: np.ndarray, tol: float = RANK_TOL) -> np.ndarray:
    """Boolean mask of the columns kept, scanning columns in order.

    A column is dropped when its residual after projection on the earlier kept columns is
    below ``tol`` times its own norm: R's LINPACK ``qr`` with limited pivoting, which lme4
    uses to drop rank-deficient columns, so the later of two collinear columns goes.
    Cost O(n p^2); the loop is over columns, never rows.
    """
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


def _response(parsed: ParsedFormula, sub: pd.DataFrame, family: str, fixed_mm) -> np.ndarray:
    name = parsed.response
    if name in sub.columns and not pd.api.types.is_numeric_dtype(sub[name]):
        levels = (
            sorted(pd.unique(sub[name]).tolist())
            if not isinstance(sub[name].dtype, pd.CategoricalDtype)
            else list(sub[name].cat.categories)
        )
        if family == "binomial" and len(levels) == 2:
            return (sub[name] == levels[1]).to_numpy(dtype=float)
        raise DataError(
            f"response '{name}' is not numeric; for family={family!r} give a numeric column"
            + (" (or a two-level column for binomial)" if family != "binomial" else "")
        )
    y = np.asarray(fixed_mm.lhs, dtype=float)
    if y.ndim == 2:
        if y.shape[1] != 1:
            raise UsageError(f"response '{name}' must be one column")
        y = y[:, 0]
    return y


def _random_matrix(parsed: ParsedFormula, sub: pd.DataFrame):
    cols, names, blocks = [], [], []
    for term in parsed.random:
        mm = model_matrix(term.expr, sub, na_action="ignore")
        if mm.shape[1] == 0:
            raise UsageError(f"random term {term.text} has no columns")
        cols.append(np.asarray(mm, dtype=float))
        names.extend(_rename(str(c)) for c in mm.columns)
        blocks.append(mm.shape[1])
    if len(set(names)) != len(names):
        raise UsageError(
            f"random terms repeat a column ({', '.join(names)}); list each covariate once"
        )
    return np.column_stack(cols), tuple(names), tuple(blocks)


def _weights(weights, data: pd.DataFrame, mask: np.ndarray) -> np.ndarray | None:
    if weights is None:
        return None
    if isinstance(weights, str):
        w = data[weights].to_numpy(dtype=float)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(data),):
            raise UsageError(f"weights must have one value per row ({len(data)}), got {w.shape}")
    w = w[mask]
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DataError("weights must be finite and non-negative; fix or drop those rows")
    return w


def _complete_rows(data: pd.DataFrame, used: list[str], weights) -> np.ndarray:
    cols = list(used) + ([weights] if isinstance(weights, str) else [])
    mask = data[cols].notna().all(axis=1).to_numpy()
    for c in cols:
        s = data[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            vals = s.to_numpy(dtype=float, na_value=np.nan)
            if np.isinf(vals).any():
                raise DataError(
                    f"column '{c}' has infinite values; replace them with missing or finite values"
                )
    return mask


def _row_hash(data: pd.DataFrame, mask: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha1()
    h.update(np.flatnonzero(mask).astype(np.int64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=float).tobytes())
    return h.hexdigest()[:16]


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
    used = _required(parsed, data)
    mask = _complete_rows(data, used, weights)
    n_dropped = int(len(mask) - mask.sum())
    sub = data.loc[mask, used]
    messages = []
    if n_dropped:
        messages.append(f"{n_dropped} row(s) with missing values in model columns dropped")
    if len(sub) == 0:
        raise DataError("no complete rows for the model's columns; check for missing values")
    try:
        fixed_mm = model_matrix(f"{parsed.response} ~ {parsed.fixed}", sub, na_action="ignore")
    except Exception as err:
        raise UsageError(f"cannot build the fixed effects of {parsed.fixed!r}: {err}") from None
    X = np.asarray(fixed_mm.rhs, dtype=float)
    x_names = [_rename(str(c)) for c in fixed_mm.rhs.columns]
    y = _response(parsed, sub, family, fixed_mm)
    keep = independent_columns(X)
    dropped = tuple(n for n, k in zip(x_names, keep, strict=True) if not k)
    if dropped:
        messages.append(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} column(s): {', '.join(dropped)}"
        )
    Z, z_names, blocks = _random_matrix(parsed, sub)
    codes, levels = pd.factorize(sub[parsed.group], sort=True)
    if len(levels) < 2:
        raise DataError(
            f"grouping factor '{parsed.group}' has {len(levels)} level(s); "
            "a mixed model needs at least 2 groups"
        )
    w = _weights(weights, data, mask)
    design, order = make_design(
        X[:, keep], y, Z, codes, re_blocks=blocks, weights=w,
        x_names=tuple(n for n, k in zip(x_names, keep, strict=True) if k),
        z_names=z_names, group_levels=tuple(levels.tolist()),
    )  # fmt: skip
    return ModelFrame(
        design=design,
        order=order,
        row_index=sub.index,
        row_hash=_row_hash(data, mask, y),
        dropped_columns=dropped,
        n_dropped_rows=n_dropped,
        messages=tuple(messages),
        group_name=parsed.group,
        response_name=parsed.response,
    )
