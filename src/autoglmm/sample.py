"""The analysis sample: which rows and predictors every model of a search is fitted on.

Likelihood-ratio tests compare models fitted on the same rows, so the sample is fixed once,
before the first fit (SPEC section 2, step 1). :func:`build_sample` applies these steps in
order and records each in a :class:`SampleReport`:

1. drop rows whose outcome or group is missing;
2. exclude candidate predictors of an unsupported type (dates, times, complex), with more
   than ``max_missing`` of their values missing, or that are constant (one distinct value);
3. keep complete cases over the remaining predictors;
4. drop groups with fewer than ``min_group_size`` rows;
5. exclude predictors that became constant in the kept rows (rows are not added back);
6. detect level-2 predictors: those constant within every group.

Missing fractions and constancy are measured on the rows left after step 1.

Categorical rule
----------------
A predictor is *categorical* when its dtype is string/object, pandas ``category`` or
``bool``. Every numeric column is numeric, including SPSS items that carry value labels
(Likert items such as 1 = "agree a lot" ... 4 = "disagree a lot"): they are treated as
numeric ordinal scores, one coefficient each, as in the published analyses of TIMSS/PISA
questionnaires. To treat a labelled item as categorical, convert it first, e.g.
``df[col] = df[col].astype("category")``. Unused categories of a pandas categorical are
removed from the kept sample, so a level absent from the sample never becomes a column.

Examples
--------
>>> s = build_sample(df, "math", "school", min_group_size=10)      # doctest: +SKIP
>>> s.predictors, s.level2                                         # doctest: +SKIP
(('ses', 'gender', 'school_size'), ('school_size',))
>>> print(s.report.to_text())                                      # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from autoglmm.errors import DataError, UsageError

__all__ = [
    "FAMILIES",
    "AnalysisSample",
    "Exclusion",
    "SampleReport",
    "SampleStep",
    "build_sample",
    "validate_outcome",
]

#: The response families autoglmm fits.
FAMILIES: tuple[str, ...] = ("gaussian", "binomial", "poisson")


@dataclass(frozen=True)
class SampleStep:
    """One row-filtering step: rows and groups before and after it."""

    name: str
    description: str
    rows_before: int
    rows_after: int
    groups_before: int
    groups_after: int
    detail: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "rows_dropped": self.rows_before - self.rows_after,
            "groups_before": self.groups_before,
            "groups_after": self.groups_after,
            "groups_dropped": self.groups_before - self.groups_after,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Exclusion:
    """A candidate predictor left out of the sample, with the reason and its number.

    ``reason`` is one of ``"user"`` (listed in ``exclude``), ``"unsupported_type"``,
    ``"missing"`` (``value`` = fraction missing), ``"constant"`` (``value`` = number of
    distinct values, 0 or 1) and ``"constant_after_filtering"`` (same ``value``).
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


@dataclass(frozen=True)
class SampleReport:
    """Every count and reason behind an :class:`AnalysisSample` (the ``dropped`` of result.json)."""

    steps: tuple[SampleStep, ...]
    exclusions: tuple[Exclusion, ...]
    dropped_groups: tuple[tuple[object, int], ...]  # (group label, rows) below min_group_size
    n_obs: int
    n_groups: int
    max_missing: float
    min_group_size: int
    family: str

    def to_dict(self) -> dict:
        """JSON-ready dict: plain ints, floats and strings only."""
        return {
            "n_obs": self.n_obs,
            "n_groups": self.n_groups,
            "family": self.family,
            "max_missing": self.max_missing,
            "min_group_size": self.min_group_size,
            "steps": [s.to_dict() for s in self.steps],
            "excluded_predictors": [e.to_dict() for e in self.exclusions],
            "dropped_groups": [
                {"group": _json_scalar(g), "rows": int(n)} for g, n in self.dropped_groups
            ],
        }

    def to_text(self) -> str:
        """A short plain-text account, one line per step and per exclusion."""
        lines = [f"Analysis sample: {self.n_obs} rows in {self.n_groups} groups"]
        for s in self.steps:
            line = (
                f"  {s.description}: rows {s.rows_before} -> {s.rows_after}, "
                f"groups {s.groups_before} -> {s.groups_after}"
            )
            lines.append(line + (f" ({s.detail})" if s.detail else ""))
        if self.exclusions:
            lines.append(f"Excluded predictors ({len(self.exclusions)}):")
            lines.extend(f"  {e.column}: {e.detail}" for e in self.exclusions)
        if self.dropped_groups:
            shown = ", ".join(f"{g} ({n})" for g, n in self.dropped_groups[:10])
            more = len(self.dropped_groups) - 10
            tail = f", ... and {more} more" if more > 0 else ""
            lines.append(
                f"Groups below {self.min_group_size} rows ({len(self.dropped_groups)}): "
                + shown
                + tail
            )
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class AnalysisSample:
    """The fixed rows and predictors of a search.

    ``data`` holds the kept rows (original index) and the columns
    ``[outcome, group, *predictors]``; its ``attrs`` are empty (labels are in ``labels``),
    because pandas deep-copies ``attrs`` on every column access.
    """

    data: pd.DataFrame = field(repr=False)
    outcome: str
    group: str
    predictors: tuple[str, ...]
    categorical: tuple[str, ...]
    level2: tuple[str, ...]
    labels: dict[str, str]
    report: SampleReport = field(repr=False)

    @property
    def n_obs(self) -> int:
        return len(self.data)

    @property
    def n_groups(self) -> int:
        return self.report.n_groups


def validate_outcome(y: np.ndarray, family: str, *, allow_proportions: bool = False) -> None:
    """Check that an outcome fits its family, so a fit never starts on impossible data.

    Parameters
    ----------
    y : array of the outcome, without missing values.
    family : ``"gaussian"``, ``"binomial"`` or ``"poisson"``.
    allow_proportions : for binomial with prior weights: accept values in [0, 1].

    Raises
    ------
    DataError
        Missing or non-finite values, a binomial outcome not 0/1, or a Poisson outcome that is
        not a non-negative integer count. The message names the fix.
    UsageError
        ``family`` is not one of :data:`FAMILIES`.
    """
    family = _check_family(family)
    y = np.asarray(y, dtype=float)
    if np.isnan(y).any():
        raise DataError(
            f"the outcome has {int(np.isnan(y).sum())} missing values; drop those rows first"
        )
    if np.isinf(y).any():
        raise DataError(
            f"the outcome has {int(np.isinf(y).sum())} infinite values; "
            "replace them with valid numbers or drop those rows"
        )
    if family == "binomial":
        bad = (y < 0) | (y > 1) if allow_proportions else (y != 0) & (y != 1)
        if bad.any():
            wanted = "proportions in [0, 1]" if allow_proportions else "0 or 1"
            raise DataError(
                f"a binomial outcome must be {wanted}, but {int(bad.sum())} values are not "
                f"(e.g. {_fmt(y[bad][0])}); recode it to 0/1 or use family='gaussian'"
            )
    elif family == "poisson":
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            raise DataError(
                f"a poisson outcome must be non-negative integer counts, but {int(bad.sum())} "
                f"values are not (e.g. {_fmt(y[bad][0])}); use counts or family='gaussian'"
            )


def build_sample(
    data: pd.DataFrame,
    outcome: str,
    group: str,
    predictors: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    max_missing: float = 0.2,
    min_group_size: int = 20,
    family: str = "gaussian",
) -> AnalysisSample:
    """Fix the rows and candidate predictors of a search (SPEC section 2, step 1).

    Parameters
    ----------
    data : the full data set (e.g. from :func:`autoglmm.read_data`); it is not modified.
    outcome, group : column names of the response and the grouping factor (level-2 unit).
    predictors : candidate predictors; ``None`` means every other column. ``[]`` gives a
        null-model-only sample. The order given never matters: the sample is the same.
    exclude : columns removed from the candidates.
    max_missing : a predictor with a larger fraction of missing values is excluded.
    min_group_size : groups with fewer kept rows are dropped.
    family : the response family the outcome must fit.

    Returns
    -------
    AnalysisSample
        Kept rows and predictors, categorical and level-2 predictors, labels and the report.

    Raises
    ------
    DataError
        Unknown column, outcome not fitting the family, non-finite values, a constant group
        column, fewer than 2 groups after filtering, or no usable predictors.
    UsageError
        Unknown family or an invalid setting.
    """
    family = _check_family(family)
    _check_settings(data, max_missing, min_group_size)
    candidates, user_excluded = _candidate_columns(data, outcome, group, predictors, exclude)
    need_predictors = predictors is None or len(predictors) > 0
    work = data.copy(deep=False)
    work.attrs = {}  # pandas deep-copies attrs on every column access: keep the loops cheap

    g_codes, g_levels = _group_codes(work[group], group)
    y = _outcome_values(work[outcome], outcome)
    track = _StepLog(g_codes)
    renamed = data.attrs.get("renamed_columns") or {}
    detail = "; ".join(f"repeated column '{old}' renamed '{new}'" for new, old in renamed.items())
    track.record("input", "input data", np.ones(len(work), dtype=bool), detail)
    rows = (g_codes >= 0) & ~np.isnan(y)
    n_missing = (
        f"{int(np.isnan(y).sum())} missing outcome, {int((g_codes < 0).sum())} missing group"
    )
    track.record("missing_outcome_or_group", "rows with outcome and group", rows, n_missing)
    if not rows.any():
        raise DataError(
            f"no row has both the outcome '{outcome}' and the group '{group}'; "
            "check that these are the right columns"
        )
    validate_outcome(y[rows], family)

    idx = np.flatnonzero(rows)
    usable, exclusions = _screen_predictors(work, candidates, idx, max_missing)
    exclusions = [Exclusion(c, "user", "excluded by the user") for c in user_excluded] + exclusions
    kept = [c for c in candidates if c in usable]
    if need_predictors and not kept:
        raise DataError(_no_predictors_message(candidates, exclusions, max_missing))
    detail = f"{len(kept)} of {len(candidates)} candidate predictors kept"
    track.record("exclude_predictors", "predictor exclusion", rows, detail)

    codes = np.column_stack([usable[c] for c in kept]) if kept else np.zeros((len(idx), 0), int)
    rows, codes, sizes = _filter_rows(codes, idx, g_codes, len(g_levels), min_group_size, track)
    if track.steps[-1].groups_after < 2:
        raise DataError(_few_groups_message(group, track.steps, len(kept), min_group_size))
    kept, codes, late = _drop_late_constants(kept, codes)
    exclusions += late
    if need_predictors and not kept:
        raise DataError(_no_predictors_message(candidates, exclusions, max_missing))
    if np.ptp(y[rows]) == 0:
        raise DataError(
            f"the outcome '{outcome}' is constant ({_fmt(y[rows][0])}) in the analysis sample; "
            "there is nothing to model, check the outcome column"
        )

    sample_data = _sample_frame(work, rows, outcome, group, kept)
    variable_labels = data.attrs.get("variable_labels") or {}
    small = np.flatnonzero((sizes > 0) & (sizes < min_group_size))
    report = SampleReport(
        steps=tuple(track.steps),
        exclusions=tuple(exclusions),
        dropped_groups=tuple((g_levels[j], int(sizes[j])) for j in small),
        n_obs=int(rows.sum()),
        n_groups=track.steps[-1].groups_after,
        max_missing=float(max_missing),
        min_group_size=int(min_group_size),
        family=family,
    )
    return AnalysisSample(
        data=sample_data,
        outcome=outcome,
        group=group,
        predictors=tuple(kept),
        categorical=tuple(c for c in kept if _is_categorical(sample_data[c])),
        level2=_level2(codes, g_codes[rows], kept),
        labels={c: str(variable_labels[c]) for c in kept if variable_labels.get(c)},
        report=report,
    )


class _StepLog:
    """Records each row-filtering step with rows and groups before and after it."""

    def __init__(self, g_codes: np.ndarray) -> None:
        self.g_codes = g_codes
        self.steps: list[SampleStep] = []

    def record(self, name: str, description: str, rows: np.ndarray, detail: str = "") -> None:
        g = self.g_codes[rows]
        n_groups = int(np.unique(g[g >= 0]).size)
        n_rows = int(rows.sum())
        prev = self.steps[-1] if self.steps else None
        before = (prev.rows_after, prev.groups_after) if prev else (n_rows, n_groups)
        self.steps.append(
            SampleStep(name, description, before[0], n_rows, before[1], n_groups, detail)
        )


def _filter_rows(
    codes: np.ndarray,
    idx: np.ndarray,
    g_codes: np.ndarray,
    n_levels: int,
    min_group_size: int,
    track: _StepLog,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete cases, then the group-size filter: kept-row mask, their codes, group sizes."""
    n = len(g_codes)
    complete = (codes >= 0).all(axis=1)
    idx, codes = idx[complete], codes[complete]
    rows = _scatter(n, idx)
    track.record("complete_cases", "complete cases", rows)
    sizes = np.bincount(g_codes[idx], minlength=n_levels)
    keep = sizes[g_codes[idx]] >= min_group_size
    rows = _scatter(n, idx[keep])
    track.record("min_group_size", f"groups with at least {min_group_size} rows", rows)
    return rows, codes[keep], sizes


# --- argument checks -----------------------------------------------------------------------


def _check_family(family: str) -> str:
    name = family.lower() if isinstance(family, str) else family
    if name not in FAMILIES:
        raise UsageError(f"unknown family {family!r}; use one of {', '.join(FAMILIES)}")
    return name


def _check_settings(data: object, max_missing: float, min_group_size: int) -> None:
    if not isinstance(data, pd.DataFrame):
        raise UsageError(
            f"data must be a pandas DataFrame, not {type(data).__name__}; "
            "load files with autoglmm.read_data(path)"
        )
    if not (isinstance(max_missing, int | float) and 0 <= max_missing <= 1):
        raise UsageError(f"max_missing must be a fraction in [0, 1], got {max_missing!r}")
    if isinstance(min_group_size, bool) or not isinstance(min_group_size, int | np.integer):
        raise UsageError(f"min_group_size must be a whole number, got {min_group_size!r}")
    if min_group_size < 1:
        raise UsageError(f"min_group_size must be at least 1, got {min_group_size}")
    if data.columns.has_duplicates:
        dup = ", ".join(map(str, data.columns[data.columns.duplicated()].unique()[:5]))
        raise DataError(f"the data has duplicate column names ({dup}); rename them")


def _candidate_columns(
    data: pd.DataFrame,
    outcome: str,
    group: str,
    predictors: Sequence[str] | None,
    exclude: Sequence[str],
) -> tuple[list, list]:
    """Candidate predictors in the data's column order, and the user-excluded candidates."""
    columns = list(data.columns)
    _require_columns(columns, [outcome], "outcome")
    _require_columns(columns, [group], "group")
    if outcome == group:
        raise UsageError(f"outcome and group are the same column '{outcome}'; choose two columns")
    if isinstance(predictors, str) or isinstance(exclude, str):
        raise UsageError("predictors and exclude must be lists of column names, not one string")
    exclude = list(exclude)
    _require_columns(columns, exclude, "excluded")
    if predictors is None:
        wanted = {c for c in columns if c not in (outcome, group)}
    else:
        _require_columns(columns, list(predictors), "predictor")
        for role, name in (("outcome", outcome), ("group", group)):
            if name in predictors:
                raise UsageError(
                    f"'{name}' is the {role}; it cannot also be a predictor, remove it from "
                    "predictors"
                )
        wanted = set(predictors)
    excluded = set(exclude)
    candidates = [c for c in columns if c in wanted and c not in excluded]
    user_excluded = [c for c in columns if c in wanted and c in excluded]
    return candidates, user_excluded


def _require_columns(columns: list, names: Sequence[str], role: str) -> None:
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


# --- the steps -----------------------------------------------------------------------------


def _group_codes(column: pd.Series, group: str) -> tuple[np.ndarray, list]:
    codes, levels = pd.factorize(column, use_na_sentinel=True)
    if len(levels) < 2:
        what = "has no values" if len(levels) == 0 else f"has a single value ({levels[0]!r})"
        raise DataError(
            f"the group column '{group}' {what}; a mixed model needs at least 2 groups, "
            "choose the column that identifies the groups (e.g. the school ID)"
        )
    return codes.astype(np.int64), list(levels)


def _outcome_values(column: pd.Series, outcome: str) -> np.ndarray:
    dtype = column.dtype
    if not (pd.api.types.is_bool_dtype(dtype) or _is_real_numeric(dtype)):
        raise DataError(
            f"the outcome '{outcome}' is not numeric (dtype {dtype}); recode it as numbers "
            "(0/1 for a binary outcome)"
        )
    return column.to_numpy(dtype=float, na_value=np.nan)


def _screen_predictors(
    work: pd.DataFrame, candidates: list, idx: np.ndarray, max_missing: float
) -> tuple[dict, list[Exclusion]]:
    """Integer codes (-1 = missing) of each usable candidate, and the exclusions."""
    usable: dict = {}
    dropped: list[Exclusion] = []
    n = len(idx)
    for col in candidates:
        series = work[col]
        if not (_is_categorical(series) or _is_real_numeric(series.dtype)):
            dropped.append(
                Exclusion(
                    col,
                    "unsupported_type",
                    f"unsupported type {series.dtype}; convert it to numbers or categories",
                )
            )
            continue
        values = series.iloc[idx]
        if _is_real_numeric(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
            arr = values.to_numpy(dtype=float, na_value=np.nan)
            n_inf = int(np.isinf(arr).sum())
            if n_inf:
                raise DataError(
                    f"predictor '{col}' has {n_inf} infinite values; replace them with valid "
                    f"numbers or NaN, or exclude the column (exclude=['{col}'])"
                )
        codes, _ = pd.factorize(values, use_na_sentinel=True)
        frac = float((codes < 0).sum() / n)
        if frac > max_missing:
            dropped.append(
                Exclusion(
                    col,
                    "missing",
                    f"{frac:.1%} missing ({int((codes < 0).sum())} of {n} rows) "
                    f"> max_missing {max_missing:.0%}",
                    frac,
                )
            )
            continue
        n_levels = int(codes.max()) + 1 if n else 0
        if n_levels <= 1:
            dropped.append(Exclusion(col, "constant", _constant_detail(n_levels), n_levels))
            continue
        usable[col] = codes
    return usable, dropped


def _drop_late_constants(kept: list, codes: np.ndarray) -> tuple[list, np.ndarray, list[Exclusion]]:
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


def _level2(codes: np.ndarray, g: np.ndarray, kept: list) -> tuple[str, ...]:
    """Predictors constant within every group: each row equals its group's first row."""
    if not kept:
        return ()
    _, first = np.unique(g, return_index=True)
    first_of_group = np.zeros(g.max() + 1, dtype=np.int64)
    first_of_group[g[first]] = first
    same = (codes == codes[first_of_group[g]]).all(axis=0)
    return tuple(c for c, s in zip(kept, same, strict=True) if s)


def _sample_frame(
    work: pd.DataFrame, rows: np.ndarray, outcome: str, group: str, kept: list
) -> pd.DataFrame:
    out = work.loc[rows, [outcome, group, *kept]].copy()
    out.attrs = {}
    if pd.api.types.is_bool_dtype(out[outcome].dtype):
        out[outcome] = out[outcome].astype(np.int64)
    for col in kept:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].cat.remove_unused_categories()
    return out


# --- small helpers -------------------------------------------------------------------------


def _scatter(n: int, idx: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    return mask


def _is_categorical(series: pd.Series) -> bool:
    dtype = series.dtype
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    )


def _is_real_numeric(dtype: object) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)


def _constant_detail(n_levels: int) -> str:
    return "no non-missing values" if n_levels == 0 else "constant (a single value)"


def _no_predictors_message(candidates: list, exclusions: list[Exclusion], max_missing) -> str:
    if not candidates:
        return (
            "no candidate predictors: the data has only the outcome and group columns (or all "
            "were excluded); add predictor columns, or pass predictors=[] for a null model only"
        )
    counts: dict[str, int] = {}
    for e in exclusions:
        counts[e.reason] = counts.get(e.reason, 0) + 1
    summary = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in counts.items())
    return (
        f"no usable predictors: all {len(candidates)} candidates were excluded ({summary}); "
        f"raise max_missing (now {max_missing}) or check the predictor columns"
    )


def _few_groups_message(
    group: str, steps: list[SampleStep], n_predictors: int, min_size: int
) -> str:
    return (
        f"only {steps[-1].groups_after} group(s) of '{group}' left after filtering "
        f"({steps[-2].rows_after} complete rows over {n_predictors} predictors, "
        f"min_group_size={min_size}); a mixed model needs at least 2: lower min_group_size "
        "or max_missing, or pass fewer predictors"
    )


def _fmt(value: float) -> str:
    return f"{value:g}"


def _json_scalar(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)
