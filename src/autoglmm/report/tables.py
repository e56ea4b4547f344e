"""The report's tables: the paper's Tables 1-3, the fitted model, the trace and the sample.

The functions named in the search contract return pandas frames (:func:`comparison_table`,
:func:`variable_map`); the ``*_table`` functions and :func:`comparison` return
:class:`~autoglmm.report.table_model.Table` objects, which render themselves to text,
Markdown, HTML and LaTeX from the same formatted cells.

Example
-------
>>> print(comparison(result, "fixed", number=2).to_text())      # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from autoglmm.report.table_model import (
    MISSING,
    Column,
    Table,
    format_number,
    format_p,
    format_value,
    latex_escape,
)
from autoglmm.report.terms import (
    is_intercept,
    model_fits,
    ranking_frame,
    term_parts,
    v_numbers,
)

__all__ = [
    "MISSING",
    "Column",
    "Table",
    "format_number",
    "format_value",
    "format_p",
    "latex_escape",
    "STAGES",
    "comparison_table",
    "comparison_frame",
    "ComparisonFrame",
    "comparison",
    "variable_map",
    "variable_table",
    "fixed_effects_table",
    "random_effects_table",
    "r2_table",
    "trace_table",
    "sample_table",
    "exclusions_table",
    "term_label",
]

#: Stage name -> (model the stage starts from, its display name, the table's title).
STAGES: dict[str, tuple[str, str, str]] = {
    "fixed": ("null", "Null model", "Forward selection of fixed effects"),
    "interaction": ("base", "Base model", "Interactions among the essential predictors"),
    "slope": ("preliminary", "Preliminary model", "Random slopes"),
}

COMPARISON_COLUMNS = ["Model", "df", "AIC", "logLik", "Δχ²", "p", "status", "term", "test_df"]


# --- labels --------------------------------------------------------------------------------


def term_label(name: str, result: Any, sep: str = "×") -> str:
    """A coefficient or trace term in V-numbers: ``a:b`` -> ``V1×V2``, ``C(s)[T.b]`` -> V3[b]."""
    if is_intercept(name):
        return "Intercept"
    vmap = v_numbers(result)
    labels = []
    for predictor, level in term_parts(name, vmap):
        label = vmap.get(predictor, predictor)
        labels.append(f"{label}[{level}]" if level is not None else label)
    return sep.join(labels)


def _term_names(name: str, result: Any) -> str:
    if is_intercept(name):
        return ""
    parts = term_parts(name, v_numbers(result))
    return " × ".join(p if lv is None else f"{p} = {lv}" for p, lv in parts)


# --- comparison tables (the paper's Tables 2 and 3) ----------------------------------------


def comparison_table(result: Any, stage: str) -> pd.DataFrame:
    """The model comparison of one stage, in the layout of the paper's Tables 2 and 3.

    Rows: the model the stage starts from (null, base or preliminary), then each fitted
    candidate of the stage in trace order (skipped candidates were never fitted and appear only
    in the trace). Columns: ``Model, df, AIC, logLik, Δχ², p, status, term, test_df``; Δχ² and
    p compare each candidate with the current model at the time it was tried.

    Examples
    --------
    >>> comparison_table(result, "fixed")[["Model", "logLik", "Δχ²", "p"]]   # doctest: +SKIP
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    start_attr, start_name, _ = STAGES[stage]
    start = getattr(result, start_attr, None)
    rows: list[list[Any]] = []
    if start is not None:
        rows.append(
            [start_name, int(start.df), float(start.aic), float(start.loglik)]
            + [None, None, "start", "", None]
        )
        for step in result.steps:
            if step.stage != stage or step.status == "skipped":
                continue
            prefix = "+ slope " if stage == "slope" else "+ "
            rows.append(
                [
                    prefix + term_label(step.term, result),
                    step.df,
                    step.aic,
                    step.loglik,
                    step.chisq,
                    step.p,
                    step.status,
                    step.term,
                    step.test_df,
                ]
            )
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    for col in ("df", "test_df"):
        frame[col] = frame[col].astype("Int64")
    for col in ("AIC", "logLik", "Δχ²", "p"):
        frame[col] = pd.to_numeric(frame[col]).astype(float)
    return frame


class ComparisonFrame(pd.DataFrame):
    """:func:`comparison_table`'s frame whose ``repr`` is the formatted table of the report.

    ``print(result.comparison_table("fixed"))`` in a script shows the same table as the
    console and the report; the columns and values are those of :func:`comparison_table`.
    Anything derived from it (a slice, a copy) is a plain DataFrame again.
    """

    _metadata = ["table"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def __repr__(self) -> str:
        table = getattr(self, "table", None)
        return table.to_text() if table is not None else super().__repr__()

    def __str__(self) -> str:
        return self.__repr__()

    def _repr_html_(self) -> str:
        table = getattr(self, "table", None)
        return table.to_html() if table is not None else super()._repr_html_()


def comparison_frame(result: Any, stage: str) -> ComparisonFrame:
    """:func:`comparison_table` that prints as :func:`comparison` (what users see)."""
    frame = ComparisonFrame(comparison_table(result, stage))
    frame.table = comparison(result, stage)
    return frame


def comparison(result: Any, stage: str, number: int | None = None) -> Table:
    """:func:`comparison_table` as a renderable :class:`Table` (the report's Tables 2-4)."""
    frame = comparison_table(result, stage)
    title = STAGES[stage][2]
    if number is not None:
        title = f"Table {number}. {title}"
    columns = (
        Column("Model"),
        Column("Variable"),
        Column("df", "int"),
        Column("AIC", "float", 2),
        Column("logLik", "float", 2),
        Column("Δχ²", "float", 2, r"$\Delta\chi^2$"),
        Column("Δdf", "int", latex=r"$\Delta$df"),
        Column("p", "p", latex=r"$p$"),
        Column("Decision", css="nowrap"),
    )
    rows = []
    for rec in frame.itertuples(index=False):
        row = dict(zip(frame.columns, rec, strict=True))
        rows.append(
            (
                row["Model"],
                _term_names(row["term"], result) if row["term"] else "",
                _na(row["df"]),
                row["AIC"],
                row["logLik"],
                row["Δχ²"],
                _na(row["test_df"]),
                row["p"],
                "" if row["status"] == "start" else _status_text(row["status"]),
            )
        )
    note = {
        "fixed": "Each candidate adds one predictor to the current model; Δχ² = 2·ΔlogLik.",
        "interaction": "Pairwise products of the essential predictors of the base model.",
        "slope": "Each row adds a random slope: the test compares variances, i.e. whether the "
        "slope's variance (and its covariances with the q random effects already in the "
        "model) is zero; p from the 50:50 mixture of χ²(q) and χ²(q+1).",
    }[stage]
    return Table(
        columns,
        tuple(rows),
        title=title,
        note=note,
        row_classes=tuple(str(r) for r in frame["status"]),
    )


def _na(value: Any) -> Any:
    return None if value is None or value is pd.NA else value


def _status_text(status: str) -> str:
    """The decision in the words of result.json and steps.csv (one vocabulary everywhere)."""
    return {"not_converged": "not converged"}.get(status, status)


# --- variable map (the paper's Table 1) ----------------------------------------------------


def variable_map(result: Any) -> pd.DataFrame:
    """V-number -> predictor, SPSS label and importance, in ranking order (the paper's Table 1).

    Columns ``V`` ("V1", ...), ``predictor``, ``label`` ("" when the file had none) and
    ``importance`` (NaN for a user-supplied ranking). Empty when no ranking was made.
    """
    ranked = ranking_frame(getattr(result, "ranking", None))
    vmap = v_numbers(result)
    labels = getattr(getattr(result, "sample", None), "labels", None) or {}
    return pd.DataFrame(
        {
            "V": [vmap[p] for p in ranked["predictor"]],
            "predictor": ranked["predictor"].to_numpy(dtype=object),
            "label": [str(labels.get(p, "") or "") for p in ranked["predictor"]],
            "importance": ranked["importance"].to_numpy(dtype=float),
        }
    )


def variable_table(
    result: Any,
    predictors: Sequence[str] | None = None,
    number: int = 1,
    title: str | None = None,
) -> Table:
    """:func:`variable_map` as a :class:`Table`, optionally limited to some predictors."""
    frame = variable_map(result)
    if predictors is not None:
        frame = frame[frame["predictor"].isin(set(predictors))]
    in_model = set(optimal_predictors(result))
    level2 = set(getattr(getattr(result, "sample", None), "level2", ()) or ())
    rows = tuple(
        (
            r.V,
            r.predictor,
            r.label,
            "2" if r.predictor in level2 else "1",
            r.importance,
            "yes" if r.predictor in in_model else "",
        )
        for r in frame.itertuples(index=False)
    )
    values = np.abs(frame["importance"].to_numpy(dtype=float))
    note = "Importance: MERF out-of-bag permutation importance (increase in MSE)."
    if len(values) and not np.isfinite(values).any():
        note = "The ranking was supplied by the user, so there are no importances."
    columns = (
        Column("V"),
        Column("Variable"),
        Column("Label"),
        Column("Level", "text"),
        Column("Importance", "importance"),
        Column("In model"),
    )
    classes = tuple("in-model" if r[5] else "" for r in rows)
    return Table(
        columns,
        rows,
        title=title or f"Table {number}. Predictors in ranking order",
        note=note,
        row_classes=classes,
    )


def optimal_predictors(result: Any) -> list[str]:
    """Predictors that appear in the optimal model (fixed effects, interactions or slopes)."""
    terms = getattr(result, "optimal_terms", None) or {}
    names: list[str] = list(terms.get("fixed", []))
    for inter in terms.get("interactions", []):
        names += str(inter).split(":")
    names += list(terms.get("random_slopes", []))
    return list(dict.fromkeys(names))


# --- the fitted model ----------------------------------------------------------------------


def fixed_effects_table(fit: Any, result: Any, title: str = "Fixed effects") -> Table:
    """Estimate, standard error, Wald statistic and two-sided p of each fixed effect."""
    fixef = pd.Series(fit.fixef, dtype=float)
    se = pd.Series(fit.se, dtype=float).reindex(fixef.index)
    stat = fixef / se
    p = pd.Series(2.0 * stats.norm.sf(np.abs(stat.to_numpy())), index=fixef.index)
    rows = tuple(
        (term_label(name, result), _term_names(name, result), fixef[name], se[name], stat[name])
        + (p[name],)
        for name in fixef.index
    )
    columns = (
        Column("Term"),
        Column("Variable"),
        Column("Estimate", "auto"),
        Column("SE", "auto"),
        Column("z", "float", 2, r"$z$"),
        Column("p", "p", latex=r"$p$"),
    )
    note = "z = Estimate / SE (Wald); two-sided p from the standard normal distribution."
    return Table(columns, rows, title=title, note=note)


def random_effects_table(fit: Any, result: Any, title: str = "Random effects") -> Table:
    """Variance, SD and correlations of G for each grouping factor, and σ² (gaussian)."""
    rows: list[tuple[Any, ...]] = []
    cov_re = fit.cov_re if isinstance(fit.cov_re, dict) else {"group": fit.cov_re}
    width = max((len(g) for g in cov_re.values()), default=1)
    for group, g in cov_re.items():
        g = pd.DataFrame(g)
        var = np.diag(g.to_numpy(dtype=float))
        sd = np.sqrt(np.clip(var, 0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = g.to_numpy(dtype=float) / np.outer(sd, sd)
        for i, name in enumerate(g.index):
            cors = [corr[i, k] for k in range(i)] + [""] * (width - 1 - i)  # lower triangle
            label = str(group) if i == 0 else ""  # the group once, as lme4 prints it
            rows.append((label, term_label(str(name), result), var[i], sd[i], *cors))
    sigma2 = getattr(fit, "sigma2", None)
    if sigma2 is not None and math.isfinite(sigma2):
        rows.append(("Residual", "", sigma2, math.sqrt(sigma2), *([""] * (width - 1))))
    columns = (
        Column("Group"),
        Column("Term"),
        Column("Variance", "auto"),
        Column("SD", "auto"),
        *(Column(f"Corr {k + 1}", "float", 2) for k in range(width - 1)),
    )
    note = "Corr k: correlation with the k-th random effect of the same group."
    return Table(columns, tuple(rows), title=title, note=note if width > 1 else "")


def r2_table(result: Any, title: str = "Explained variance") -> Table:
    """R² of each model: Raudenbush & Bryk level 1/2 (vs the null model), Nakagawa's R²."""
    r2 = getattr(result, "r2", None) or {}
    names = {"null": "Null", "base": "Base", "preliminary": "Preliminary", "optimal": "Optimal"}
    rows = tuple(
        (
            names.get(model, model),
            values.get("level1"),
            values.get("level2"),
            values.get("marginal"),
            values.get("conditional"),
        )
        for model, values in r2.items()
        if model in model_fits(result) and values
    )
    columns = (
        Column("Model"),
        Column("R² level 1", "float", 3, r"$R^2_1$"),
        Column("R² level 2", "float", 3, r"$R^2_2$"),
        Column("R² marginal", "float", 3, r"$R^2_m$"),
        Column("R² conditional", "float", 3, r"$R^2_c$"),
    )
    note = (
        "Level 1 and 2: proportional reduction of σ² and τ₀₀ against the null model "
        "(Raudenbush & Bryk); marginal and conditional: Nakagawa & Schielzeth."
    )
    if _has_slopes(result):
        note += " " + SLOPE_TAU_NOTE
    return Table(columns, rows, title=title, note=note)


#: Why level-2 R² jumps when random slopes enter (Raudenbush & Bryk 2002, section 4.5).
SLOPE_TAU_NOTE = (
    "With random slopes, τ₀₀ is the intercept variance at predictor value 0, so it is "
    "redefined: the level-2 R² of a model with slopes is not comparable with that of models "
    "without them, and its change is not variance explained (Raudenbush & Bryk)."
)


def _has_slopes(result: Any) -> bool:
    for fit in model_fits(result).values():
        cov = fit.cov_re if isinstance(fit.cov_re, dict) else {"g": fit.cov_re}
        if any(len(pd.DataFrame(g)) > 1 for g in cov.values()):
            return True
    return False


# --- the trace and the sample --------------------------------------------------------------


def trace_table(result: Any, title: str = "Search trace") -> Table:
    """Every step of the search, including rejected and skipped candidates, with its reason."""
    rows = tuple(
        (
            i,
            s.stage,
            term_label(s.term, result),
            _term_names(s.term, result),
            _status_text(s.status),
            s.loglik,
            s.df,
            s.chisq,
            s.test_df,
            s.p,
            s.reason,
        )
        for i, s in enumerate(result.steps, start=1)
    )
    columns = (
        Column("#", "int"),
        Column("Stage"),
        Column("Term"),
        Column("Variable"),
        Column("Decision", css="nowrap"),
        Column("logLik", "float", 2),
        Column("df", "int"),
        Column("Δχ²", "float", 2, r"$\Delta\chi^2$"),
        Column("Δdf", "int", latex=r"$\Delta$df"),
        Column("p", "p", latex=r"$p$"),
        Column("Reason"),
    )
    classes = tuple(s.status for s in result.steps)
    return Table(columns, rows, title=title, row_classes=classes)


def sample_table(result: Any, title: str = "Analysis sample") -> Table:
    """Rows and groups before and after each step of the sample (SPEC section 2, step 1)."""
    report = result.sample.report.to_dict()
    rows = tuple(
        (
            s["description"],
            s["rows_before"],
            s["rows_after"],
            s["groups_before"],
            s["groups_after"],
            s.get("detail", ""),
        )
        for s in report.get("steps", [])
    )
    columns = (
        Column("Step"),
        Column("Rows before", "int"),
        Column("Rows after", "int"),
        Column("Groups before", "int"),
        Column("Groups after", "int"),
        Column("Detail"),
    )
    return Table(columns, rows, title=title)


def exclusions_table(result: Any, title: str = "Excluded predictors") -> Table:
    """Each excluded candidate predictor with the reason."""
    report = result.sample.report.to_dict()
    rows = tuple(
        (e["column"], str(e["reason"]).replace("_", " "), e["detail"])
        for e in report.get("excluded_predictors", [])
    )
    columns = (Column("Variable"), Column("Reason"), Column("Detail"))
    return Table(columns, rows, title=title)
