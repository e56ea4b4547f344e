"""The analysis sample: which rows and predictors every model of a search is fitted on.

Likelihood-ratio tests compare models fitted on the same rows, so the sample is fixed once,
before the first fit (SPEC section 2, step 1). :func:`build_sample` applies these steps in
order and records each in a :class:`SampleReport`:

1. drop rows whose outcome or group is missing;
2. screen the candidate predictors (:mod:`autoglmm.screening`): numbers written with
   missing tokens become numbers, and unsupported types, more than ``max_missing``
   missing, constant columns and categoricals with more than 50 levels are excluded;
3. keep complete cases over the remaining predictors;
4. drop groups with fewer than ``min_group_size`` rows;
5. exclude predictors that became constant in the kept rows (rows are not added back);
6. detect level-2 predictors: those constant within every group.

Missing fractions and constancy are measured on the rows left after step 1. When complete
cases cost more than 20% of the rows, or of the groups that pass the size rule, the report
carries a loud warning (SPEC 6.2): a search on 2% of the data must never pass in silence.

Examples
--------
>>> s = build_sample(df, "math", "school", min_group_size=10)      # doctest: +SKIP
>>> s.predictors, s.level2                                         # doctest: +SKIP
(('ses', 'gender', 'school_size'), ('school_size',))
>>> print(s.report.to_text())                                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from autoglmm.errors import DataError, UsageError
from autoglmm.outcome_rule import binary_text_outcome, non_numeric_outcome
from autoglmm.screening import (
    Exclusion,
    candidate_columns,
    coerce_numeric_tokens,
    drop_late_constants,
    is_categorical,
    is_real_numeric,
    no_predictors_message,
    screen_predictors,
)

__all__ = [
    "FAMILIES",
    "AnalysisSample",
    "Exclusion",
    "SampleReport",
    "SampleStep",
    "build_sample",
    "LOSS_WARNING_SHARE",
    "validate_outcome",
]

#: Complete cases losing more than this share of rows or groups raise a warning (SPEC 6.2).
LOSS_WARNING_SHARE = 0.2

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
    warnings: tuple[str, ...] = ()

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
            "warnings": list(self.warnings),
        }

    def to_text(self) -> str:
        """A short plain-text account, one line per step and per exclusion."""
        lines = [f"Analysis sample: {self.n_obs} rows in {self.n_groups} groups"]
        lines.extend(f"WARNING: {w}" for w in self.warnings)
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
    conventional: Mapping[str, str] | None = None,
    warnings: Sequence[str] = (),
) -> AnalysisSample:
    """Fix the rows and candidate predictors of a search (SPEC section 2, step 1).

    Parameters
    ----------
    data : the data (any columns; only the outcome, group and candidates are used).
    outcome, group : the response and the grouping column.
    predictors : candidate predictors (default: every other column). An empty list gives a
        null-model-only sample. The order given never matters: the sample is the same.
    exclude : columns removed from the candidates.
    max_missing : a predictor with a larger fraction of missing values is excluded.
    min_group_size : groups with fewer kept rows are dropped.
    family : the response family the outcome must fit.
    conventional : columns an assessment convention rules out, mapped to the reason
        (:func:`autoglmm.lsa.conventions.classify`); listed in the report as exclusions.
    warnings : warnings from earlier steps (reading, merging), kept in the report.

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
    candidates, named_out = candidate_columns(
        data, outcome, group, predictors, exclude, conventional
    )
    need_predictors = predictors is None or len(predictors) > 0
    work = data.copy(deep=False)
    work.attrs = {}  # pandas deep-copies attrs on every column access: keep the loops cheap
    notes = list(warnings) + coerce_numeric_tokens(work, [outcome, *candidates])

    g_codes, g_levels = _group_codes(work[group], group)
    track = _StepLog(g_codes)
    renamed = data.attrs.get("renamed_columns") or {}
    detail = "; ".join(f"repeated column '{old}' renamed '{new}'" for new, old in renamed.items())
    rows, y = _rows_with_outcome(work, outcome, group, g_codes, family, track, detail)
    idx = np.flatnonzero(rows)
    usable, exclusions = screen_predictors(work, candidates, idx, max_missing)
    exclusions = named_out + exclusions
    kept = [c for c in candidates if c in usable]
    if need_predictors and not kept:
        raise DataError(no_predictors_message(candidates, exclusions, max_missing))
    detail = f"{len(kept)} of {len(candidates)} candidate predictors kept"
    track.record("exclude_predictors", "predictor exclusion", rows, detail)

    columns = [usable[c] for c in kept]
    rows, codes, sizes = _filter_rows(columns, idx, g_codes, len(g_levels), min_group_size, track)
    if track.steps[-1].groups_after < 2:
        raise DataError(_few_groups_message(group, track.steps, len(kept), min_group_size))
    kept, codes, late = drop_late_constants(kept, codes)
    exclusions += late
    if need_predictors and not kept:
        raise DataError(no_predictors_message(candidates, exclusions, max_missing))
    if np.ptp(y[rows]) == 0:
        raise DataError(
            f"the outcome '{outcome}' is constant ({_fmt(y[rows][0])}) in the analysis sample; "
            "there is nothing to model, check the outcome column"
        )
    notes += loss_warnings(track.steps, g_codes[idx], len(g_levels), min_group_size)
    return _assemble(
        data, work, rows, codes, g_codes, (outcome, group, family), kept, track,
        exclusions, (g_levels, sizes, min_group_size, max_missing), notes,
    )  # fmt: skip


def _rows_with_outcome(work, outcome, group, g_codes, family, track, detail) -> tuple:
    """Step 1: the rows with both outcome and group, after checking the outcome's values."""
    y = _outcome_values(work[outcome], outcome, family)
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
    return rows, y


def loss_warnings(
    steps: Sequence[SampleStep], g_present: np.ndarray, n_levels: int, min_group_size: int
) -> list[str]:
    """Warn when complete cases cost more than 20% of rows or of the groups that pass the size rule.

    ``g_present`` holds the group codes of the rows that have outcome and group: the groups
    that would pass ``min_group_size`` without missing predictor values are the reference,
    so a sample that keeps 8 of 229 schools is reported even when the size rule, not the
    complete-case step itself, removed the schools.
    """
    by_name = {s.name: s for s in steps}
    cc, final = by_name["complete_cases"], by_name["min_group_size"]
    eligible = int((np.bincount(g_present, minlength=n_levels) >= min_group_size).sum())
    row_loss = 1 - cc.rows_after / cc.rows_before if cc.rows_before else 0.0
    group_loss = 1 - final.groups_after / eligible if eligible else 0.0
    if max(row_loss, group_loss) <= LOSS_WARNING_SHARE:
        return []
    return [
        f"complete cases keep {cc.rows_after:,} of {cc.rows_before:,} rows ({1 - row_loss:.1%}) "
        f"and {final.groups_after:,} of the {eligible:,} groups with at least {min_group_size} "
        f"rows ({1 - group_loss:.1%}); missing predictor values cost more than "
        f"{LOSS_WARNING_SHARE:.0%}: use multiple imputation (impute=N, --impute N), or lower "
        "max_missing to exclude the items with most missing values"
    ]


def _assemble(data, work, rows, codes, g_codes, roles, kept, track, exclusions, rules, notes):
    """The frozen AnalysisSample and its report from the filtered rows and predictors."""
    outcome, group, family = roles
    g_levels, sizes, min_group_size, max_missing = rules
    sample_data = _sample_frame(work, rows, outcome, group, kept)
    if not is_real_numeric(sample_data[outcome].dtype):  # a two-level text outcome, coded 0/1
        sample_data[outcome] = binary_text_outcome(sample_data[outcome], family)
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
        warnings=tuple(notes),
    )
    return AnalysisSample(
        data=sample_data,
        outcome=outcome,
        group=group,
        predictors=tuple(kept),
        categorical=tuple(c for c in kept if is_categorical(sample_data[c])),
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
    columns: list[np.ndarray],
    idx: np.ndarray,
    g_codes: np.ndarray,
    n_levels: int,
    min_group_size: int,
    track: _StepLog,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete cases, then the group-size filter: kept-row mask, their codes, group sizes.

    ``columns`` are the candidates' codes on the rows ``idx`` (-1 = missing). Only the
    kept rows are stacked, column by column into one (rows x predictors) int32 array:
    stacking every row first cost most of the sample step at 128k rows.
    """
    n = len(g_codes)
    complete = np.ones(len(idx), dtype=bool)
    for codes in columns:
        complete &= codes >= 0
    sel = np.flatnonzero(complete)
    idx = idx[sel]
    rows = _scatter(n, idx)
    track.record("complete_cases", "complete cases", rows)
    sizes = np.bincount(g_codes[idx], minlength=n_levels)
    keep = sizes[g_codes[idx]] >= min_group_size
    rows = _scatter(n, idx[keep])
    track.record("min_group_size", f"groups with at least {min_group_size} rows", rows)
    sel = sel[keep]
    kept = np.empty((len(sel), len(columns)), dtype=np.int32, order="F")
    for j, codes in enumerate(columns):
        kept[:, j] = codes[sel]
    return rows, kept, sizes


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


# --- the steps -----------------------------------------------------------------------------


def _group_codes(column: pd.Series, group: str) -> tuple[np.ndarray, list]:
    if is_real_numeric(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        n_inf = int(np.isinf(column.to_numpy(dtype=float, na_value=np.nan)).sum())
        if n_inf:
            raise DataError(
                f"the group column '{group}' has {n_inf} infinite values; replace them with "
                "valid group IDs or drop those rows"
            )
    codes, levels = pd.factorize(column, use_na_sentinel=True)
    if len(levels) < 2:
        what = "has no values" if len(levels) == 0 else f"has a single value ({_level(levels[0])})"
        raise DataError(
            f"the group column '{group}' {what}; a mixed model needs at least 2 groups, "
            "choose the column that identifies the groups (e.g. the school ID)"
        )
    return codes.astype(np.int64), list(levels)


def _outcome_values(column: pd.Series, outcome: str, family: str) -> np.ndarray:
    dtype = column.dtype
    if not (pd.api.types.is_bool_dtype(dtype) or is_real_numeric(dtype)):
        coded = binary_text_outcome(column, family)  # the rule fit() uses too
        if coded is None:
            raise non_numeric_outcome(outcome, column)
        return coded
    return column.to_numpy(dtype=float, na_value=np.nan)


def _level2(codes: np.ndarray, g: np.ndarray, kept: list) -> tuple[str, ...]:
    """Predictors constant within every group: each row equals its group's first row."""
    if not kept:
        return ()
    _, first = np.unique(g, return_index=True)
    first_of_group = np.zeros(g.max() + 1, dtype=np.int64)
    first_of_group[g[first]] = first
    rows = first_of_group[g]
    # column by column: contiguous in the (rows x predictors) Fortran-ordered codes
    return tuple(c for j, c in enumerate(kept) if np.array_equal(codes[:, j], codes[rows, j]))


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


def _level(value: object) -> str:
    """A group level as a user wrote it: 7 or 'A', never np.int64(7)."""
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value) if isinstance(value, str) else str(value)


def _json_scalar(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)
