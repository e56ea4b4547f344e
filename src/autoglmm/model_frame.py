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


def _simple_terms(expr: str, data: pd.DataFrame) -> tuple[bool, list[str]] | None:
    """``(intercept, columns)`` when ``expr`` is only '1'/'0'/'-1' and numeric column names.

    Such terms (the search's formulas) are built directly with numpy, in the order and with
    the names formulaic would give, skipping formulaic's parser (about 10 ms per part).
    """
    intercept, cols = True, []
    for token in (t.strip() for t in expr.split("+")):
        if token == "1":
            continue
        if token in ("0", "-1"):
            intercept = False
        elif (
            token in data.columns
            and pd.api.types.is_numeric_dtype(data[token])
            and not pd.api.types.is_bool_dtype(data[token])
            and token not in cols
        ):
            cols.append(token)
        else:
            return None
    return intercept, cols


def _required(parsed: ParsedFormula, data: pd.DataFrame) -> list[str]:
    """Columns used by the model (formulaic's view of each part, plus the group)."""
    needed: list[str] = [parsed.response] if parsed.response in data.columns else []
    for part in [parsed.fixed] + [t.expr for t in parsed.random]:
        simple = _simple_terms(part, data)
        if simple is not None:
            needed.extend(simple[1])
            continue
        try:
            variables = Formula(part).required_variables
        except Exception as err:  # formulaic raises several parser error types
            raise UsageError(f"cannot parse formula part {part!r}: {err}") from None
        needed.extend(str(v) for v in variables)
    if parsed.response not in data.columns:
        needed.extend(str(v) for v in Formula(parsed.response).required_variables)
    needed.append(parsed.group)
    out = list(dict.fromkeys(needed))
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


def _matrix(expr: str, sub: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Model matrix of a right-hand side: numpy for simple terms, formulaic otherwise."""
    simple = _simple_terms(expr, sub)
    if simple is not None:
        intercept, cols = simple
        parts = ([np.ones(len(sub))] if intercept else []) + [
            sub[c].to_numpy(dtype=float) for c in cols
        ]
        names = (["(Intercept)"] if intercept else []) + cols
        X = np.column_stack(parts) if parts else np.empty((len(sub), 0))
        return X, names
    try:
        mm = model_matrix(expr, sub, na_action="ignore")
    except Exception as err:
        raise UsageError(f"cannot build model terms {expr!r}: {err}") from None
    return np.asarray(mm, dtype=float), [_rename(str(c)) for c in mm.columns]


def independent_columns(X: np.ndarray, tol: float = RANK_TOL) -> np.ndarray:
    """Boolean mask of the columns kept, scanning columns in order.

    A column is dropped when its residual after projection on the earlier kept columns is
    below ``tol`` times its own norm: R's LINPACK ``qr`` with limited pivoting, which lme4
    uses to drop rank-deficient columns, so the later of two collinear columns goes.
    Cost O(n p^2); the loop is over columns, never rows.
    """
    norms = np.linalg.norm(X, axis=0)
    if X.shape[1] and np.all(norms > 0):
        # Householder QR: |R_jj| is the residual of column j on all earlier columns. With
        # no deficiency that is the criterion itself; otherwise scan column by column.
        r = np.abs(np.diag(np.linalg.qr(X, mode="r")))
        if np.all(r > tol * norms):
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


def _response(parsed: ParsedFormula, sub: pd.DataFrame, family: str) -> np.ndarray:
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
    if name in sub.columns:
        return sub[name].to_numpy(dtype=float)
    y, _ = _matrix(f"0 + {name}", sub)
    if y.shape[1] != 1:
        raise UsageError(f"response '{name}' must be one column")
    return y[:, 0]


def _random_matrix(parsed: ParsedFormula, sub: pd.DataFrame):
    cols, names, blocks = [], [], []
    for term in parsed.random:
        Z, term_names = _matrix(term.expr, sub)
        if Z.shape[1] == 0:
            raise UsageError(f"random term {term.text} has no columns")
        cols.append(Z)
        names.extend(term_names)
        blocks.append(Z.shape[1])
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
    X, x_names = _matrix(parsed.fixed, sub)
    if X.shape[1] == 0:
        raise UsageError(f"the fixed part {parsed.fixed!r} has no columns; add '1' at least")
    y = _response(parsed, sub, family)
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
