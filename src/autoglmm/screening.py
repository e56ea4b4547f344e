"""Column screening: which columns may be candidate predictors, and why the others may not.

This is the column half of the analysis sample (SPEC section 2, step 1); the row half is
:mod:`autoglmm.sample`. It decides, column by column:

- the candidates: every column but the outcome and group, or the user's ``predictors``,
  minus ``exclude`` and minus the columns an assessment convention rules out (IDs,
  weights, plausible values; :mod:`autoglmm.lsa.conventions`);
- which text columns are really numeric: a numeric column with a few missing-value tokens
  (``.``, ``NA``, ``-``, blanks) is read as numbers with missing values, with a warning,
  never as a categorical predictor with one dummy per distinct number;
- which candidates are excluded: unsupported types, more than ``max_missing`` missing,
  constant, or categorical with more than :data:`MAX_CATEGORIES` levels (hundreds of
  dummies would swamp every likelihood-ratio test and the fit).

Categorical rule: a predictor is *categorical* when its dtype is string/object, pandas
``category`` or ``bool``. Numeric columns, including SPSS items with value labels (Likert
items), are numeric scores.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from autoglmm.errors import DataError, UsageError

__all__ = [
    "MAX_CATEGORIES",
    "MISSING_TOKENS",
    "Exclusion",
    "candidate_columns",
    "coerce_numeric_tokens",
    "drop_late_constants",
    "is_categorical",
    "is_real_numeric",
    "no_predictors_message",
    "screen_predictors",
]

#: A categorical candidate with more levels than this is excluded (SPEC 6.2).
MAX_CATEGORIES = 50

#: Text that means "missing" in exported numeric columns (SPSS ".", R "NA", dashes, blanks).
MISSING_TOKENS = frozenset(
    {"", ".", "-", "--", "NA", "N/A", "na", "n/a", "NaN", "nan", "NULL", "null", "?", "*"}
)
# Other non-numeric text is read as missing only when it is this rare and this varied.
_RARE_SHARE, _RARE_DISTINCT = 0.05, 3


@dataclass(frozen=True)
class Exclusion:
    """A candidate predictor left out of the sample, with the reason and its number.

    ``reason`` is one of ``"user"`` (listed in ``exclude``), ``"convention"`` (an ID,
    weight, plausible value... of an assessment file), ``"unsupported_type"``, ``"missing"``
    (``value`` = fraction missing), ``"constant"`` (``value`` = number of distinct values,
    0 or 1), ``"too_many_categories"`` (``value`` = number of levels) and
    ``"constant_after_filtering"``.
    """

    column: str
    reason: str
    detail: str
    value: float | None = None

    def to_dict(self) -> dict:
        return {
            "column": self.column,
            "reason": self.reason,
            "detail": self.detail,
            "value": self.value,
        }


def candidate_columns(
    data: pd.DataFrame,
    outcome: str,
    group: str,
    predictors: Sequence[str] | None,
    exclude: Sequence[str],
    conventional: Mapping[str, str] | None = None,
) -> tuple[list, list[Exclusion]]:
    """Candidate predictors in the data's column order, and the exclusions by name.

    ``conventional`` maps columns ruled out by an assessment convention to the reason. They
    leave the default candidate set; a column the user names in ``predictors`` stays.
    """
    columns = list(data.columns)
    require_columns(columns, [outcome], "outcome")
    require_columns(columns, [group], "group")
    if outcome == group:
        raise UsageError(f"outcome and group are the same column '{outcome}'; choose two columns")
    if isinstance(predictors, str) or isinstance(exclude, str):
        raise UsageError("predictors and exclude must be lists of column names, not one string")
    exclude = list(exclude)
    require_columns(columns, exclude, "excluded")
    conventional = dict(conventional or {})
    if predictors is None:
        wanted = {c for c in columns if c not in (outcome, group)}
    else:
        require_columns(columns, list(predictors), "predictor")
        for role, name in (("outcome", outcome), ("group", group)):
            if name in predictors:
                raise UsageError(
                    f"'{name}' is the {role}; it cannot also be a predictor, remove it from "
                    "predictors"
                )
        wanted = set(predictors)
        conventional = {c: r for c, r in conventional.items() if c not in wanted}
    excluded = set(exclude)
    out = []
    for c in columns:
        if c not in wanted:
            continue
        if c in excluded:
            out.append(Exclusion(c, "user", "excluded by the user"))
        elif c in conventional:
            out.append(Exclusion(c, "convention", conventional[c]))
    gone = {e.column for e in out}
    return [c for c in columns if c in wanted and c not in gone], out


def require_columns(columns: list, names: Sequence[str], role: str) -> None:
    """Raise a DataError naming unknown columns, with the closest matches as hints."""
    missing = [n for n in names if n not in columns]
    if not missing:
        return
    text = [str(c) for c in columns]
    hints = []
    for name in missing[:3]:
        close = [c for c in text if c.lower() == str(name).lower()] or difflib.get_close_matches(
            str(name), text, n=3, cutoff=0.6
        )
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "no close match"
        hints.append(f"'{name}' ({hint})")
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    noun = "column" if len(missing) == 1 else "columns"
    raise DataError(
        f"unknown {role} {noun}: {', '.join(hints)}{more}; the data has {len(columns)} columns, "
        "check the spelling (names are case-sensitive)"
    )


# --- numbers written as text ---------------------------------------------------------------


def coerce_numeric_tokens(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Turn text columns that are numbers plus a few missing tokens into numbers, in place.

    A CSV export writes SPSS system-missing as ``.`` and R's as ``NA``; pandas then reads
    the whole column as text, and a search would expand it into one dummy per distinct
    number. A text column is converted when at least half of its values are numbers and
    the rest are :data:`MISSING_TOKENS` or at most 3 distinct strings covering at most 5%
    of the values. A text column of numbers only is left alone: without a token, the text
    type was chosen on purpose (codes meant as categories). Returns one warning per
    converted column.
    """
    warnings = []
    for col in columns:
        series = frame[col]
        if not (pd.api.types.is_object_dtype(series.dtype) or _is_text(series.dtype)):
            continue
        numbers, tokens = _numeric_split(series)
        if numbers is None:
            continue
        frame[col] = numbers
        counts = ", ".join(f"'{t}' x{n}" for t, n in tokens.items())
        warnings.append(
            f"column '{col}' is numeric with non-numeric tokens read as missing ({counts})"
        )
    return warnings


def _numeric_split(series: pd.Series) -> tuple[pd.Series | None, dict[str, int]]:
    """(numeric series, {token: count}) when ``series`` is numbers plus missing tokens."""
    present = series.dropna()
    if present.empty or not all(isinstance(v, str | int | float) for v in present.head(100)):
        return None, {}
    text = present.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    bad = text[numbers.isna()]
    if len(bad) == len(text) or numbers.notna().sum() < len(text) / 2:
        return None, {}
    tokens = bad.value_counts().to_dict()
    if not tokens:  # numbers stored as text on purpose (e.g. year codes as categories)
        return None, {}
    known = all(t in MISSING_TOKENS for t in tokens)
    rare = len(tokens) <= _RARE_DISTINCT and len(bad) <= _RARE_SHARE * len(text)
    if not (known or rare):
        return None, {}
    out = pd.Series(np.nan, index=series.index, dtype=float)
    out.loc[numbers.index] = numbers.to_numpy(dtype=float)
    return out, {str(k): int(v) for k, v in tokens.items()}


def _is_text(dtype: object) -> bool:
    return pd.api.types.is_string_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)


# --- screening -----------------------------------------------------------------------------


def screen_predictors(
    work: pd.DataFrame, candidates: list, idx: np.ndarray, max_missing: float
) -> tuple[dict, list[Exclusion]]:
    """Integer codes (-1 = missing) of each usable candidate, and the exclusions.

    Missing shares and levels are counted over the rows ``idx`` (outcome and group present).
    """
    usable: dict = {}
    dropped: list[Exclusion] = []
    for col in candidates:
        series = work[col]
        if not (is_categorical(series) or is_real_numeric(series.dtype)):
            detail = f"unsupported type {series.dtype}; convert it to numbers or categories"
            dropped.append(Exclusion(col, "unsupported_type", detail))
            continue
        values = series.iloc[idx]
        _check_finite(values, col)
        codes, _ = pd.factorize(values, use_na_sentinel=True)
        why = _exclusion(col, codes, is_categorical(series), max_missing)
        if why is None:
            usable[col] = codes
        else:
            dropped.append(why)
    return usable, dropped


def _check_finite(values: pd.Series, col: str) -> None:
    if not is_real_numeric(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return
    n_inf = int(np.isinf(values.to_numpy(dtype=float, na_value=np.nan)).sum())
    if n_inf:
        raise DataError(
            f"predictor '{col}' has {n_inf} infinite values; replace them with valid "
            f"numbers or NaN, or exclude the column (exclude=['{col}'])"
        )


def _exclusion(col: str, codes: np.ndarray, categorical: bool, max_missing: float):
    """The reason to exclude a screened column (None to keep it)."""
    n = len(codes)
    n_missing = int((codes < 0).sum())
    frac = n_missing / n if n else 0.0
    if frac > max_missing:
        detail = f"{frac:.1%} missing ({n_missing} of {n} rows) > max_missing {max_missing:.0%}"
        return Exclusion(col, "missing", detail, frac)
    n_levels = int(codes.max()) + 1 if n else 0
    if n_levels <= 1:
        return Exclusion(col, "constant", _constant_detail(n_levels), n_levels)
    if categorical and n_levels > MAX_CATEGORIES:
        detail = (
            f"categorical with {n_levels} levels (> {MAX_CATEGORIES}): it would add "
            f"{n_levels - 1} dummies; recode it to numbers or group its levels"
        )
        return Exclusion(col, "too_many_categories", detail, n_levels)
    return None


def drop_late_constants(kept: list, codes: np.ndarray) -> tuple[list, np.ndarray, list[Exclusion]]:
    """Exclude predictors that became constant once rows and groups were filtered."""
    if not kept:
        return kept, codes, []
    constant = (codes == codes[:1]).all(axis=0)
    late = [
        Exclusion(c, "constant_after_filtering", "constant in the kept rows", 1)
        for c, is_const in zip(kept, constant, strict=True)
        if is_const
    ]
    kept = [c for c, is_const in zip(kept, constant, strict=True) if not is_const]
    return kept, codes[:, ~constant], late


def is_categorical(series: pd.Series) -> bool:
    """String/object, pandas category or bool: a predictor with one dummy per level."""
    dtype = series.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    )


def is_real_numeric(dtype: object) -> bool:
    """Numeric and not complex."""
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)


def _constant_detail(n_levels: int) -> str:
    return "no non-missing values" if n_levels == 0 else "constant (a single value)"


def no_predictors_message(candidates: list, exclusions: list[Exclusion], max_missing) -> str:
    """The one-line error when every candidate was excluded, naming the likely fix."""
    if not candidates:
        return (
            "no candidate predictors: the data has only the outcome and group columns (or all "
            "were excluded); add predictor columns, or pass predictors=[] for a null model only"
        )
    counts: dict[str, int] = {}
    for e in exclusions:
        counts[e.reason] = counts.get(e.reason, 0) + 1
    summary = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in counts.items())
    fixes = [fix for reason, fix in _NO_PREDICTOR_FIXES.items() if reason in counts]
    fix = "; ".join(fixes or ["check the predictor columns"]).replace(
        "{max_missing}", str(max_missing)
    )
    n = len(candidates)
    return f"no usable predictors: all {n} candidates were excluded ({summary}); {fix}"


#: What to do about each reason a candidate was excluded (the message names the real cause).
_NO_PREDICTOR_FIXES = {
    "missing": "raise max_missing (now {max_missing}) to keep the columns with missing values",
    "constant": "constant columns carry no information: pass other predictors",
    "constant_after_filtering": "some columns are constant once small groups are dropped: "
    "lower min_group_size or pass other predictors",
    "unsupported_type": "convert text or date columns to numbers or categories",
    "user": "check exclude=",
}
