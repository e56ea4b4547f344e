"""report.html: one self-contained page in the style of a journal's results section.

Everything the page needs is inside it: the CSS is inline and the importance figure is an
embedded SVG data URI, so it opens offline and can be mailed as a single file. The tables come
from :mod:`autoglmm.report.tables` and the equation from :mod:`autoglmm.report.equation`, the
same code that writes comparison.md and equation.tex.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import jinja2
from markupsafe import Markup

from autoglmm.report import tables
from autoglmm.report.equation import equation_model, model_equation
from autoglmm.report.tables import optimal_predictors
from autoglmm.report.terms import model_fits
from autoglmm.report.weighted import weighted_table

__all__ = ["render_html"]

TOP = 30


def render_html(result: Any, svg: bytes) -> str:
    """The report page for ``result``; ``svg`` is the importance figure to embed."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("autoglmm.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("report.html.j2")
    return template.render(**_context(result, svg))


def _context(result: Any, svg: bytes) -> dict[str, Any]:
    sample = result.sample
    params = getattr(result, "params", None) or {}
    manifest = getattr(result, "manifest", None) or {}
    model_name, fit = equation_model(result)
    stopped = bool(getattr(result, "stop_reason", None))
    numbered = _numbered_tables(result)
    return {
        "title": f"{sample.outcome} by {sample.group}",
        "outcome": sample.outcome,
        "group": sample.group,
        "family": result.family,
        "n_obs": f"{sample.report.n_obs:,}",
        "n_groups": f"{sample.report.n_groups:,}",
        "link": getattr(fit, "link", ""),
        "stopped": stopped,
        "stop_reason": getattr(result, "stop_reason", None) or "",
        "summary": _summary(result),
        "sample_table": _html(tables.sample_table(result, "Table S1. Analysis sample")),
        "exclusions_table": _html(
            tables.exclusions_table(result, "Table S2. Excluded candidate predictors"), empty=""
        ),
        "dropped_groups": _dropped_groups(result),
        "icc": _fmt(result.icc, 3),
        "icc_threshold": _fmt(params.get("icc_threshold"), 2),
        "glmm_needed": bool(result.glmm_needed),
        "null_fit": _fit_line(result.null),
        "figure": _data_uri(svg, "image/svg+xml"),
        "has_ranking": getattr(result, "ranking", None) is not None,
        "has_importance": bool(tables.variable_map(result)["importance"].notna().any()),
        "n_ranked": len(tables.variable_map(result)),
        "has_nonpositive": bool((tables.variable_map(result)["importance"].head(TOP) <= 0).any()),
        "variable_table": numbered["variables"],
        "variable_table_all": numbered["variables_all"],
        "comparisons": numbered["comparisons"],
        "model_name": model_name,
        "formula": getattr(fit, "formula", ""),
        "model_line": _fit_line(fit),
        "equation": Markup(model_equation(result, "html")),
        "equation_latex": model_equation(result, "latex"),
        "fixed_table": _html(tables.fixed_effects_table(fit, result, numbered["fixed_title"])),
        "random_table": _html(tables.random_effects_table(fit, result, numbered["random_title"])),
        "r2_table": _html(tables.r2_table(result, numbered["r2_title"]), empty=""),
        "weighted_table": _html(weighted_table(result, numbered["weighted_title"]), empty=""),
        "trace_table": _html(
            tables.trace_table(result, "Table S4. Search trace"), empty="", breakable=True
        ),
        "n_steps": len(result.steps),
        "status_counts": _status_counts(result),
        "params": _params(params),
        "manifest": _manifest(manifest),
        "warnings": _warnings(result),
        "selection": _selection(result),
        "pooled_table": _pooled(result),
    }


def _numbered_tables(result: Any) -> dict[str, Any]:
    """Tables numbered in reading order, as a journal would (Table 1 is the variable map)."""
    frame = tables.variable_map(result)
    keep = list(frame["predictor"].head(TOP)) + optimal_predictors(result)
    number = 1
    out: dict[str, Any] = {}
    out["variables"] = _html(tables.variable_table(result, keep, number=number), empty="")
    title = f"Table S3. All {len(frame)} ranked predictors (Table 1 shows the top {TOP})"
    full = tables.variable_table(result, None, title=title)
    out["variables_all"] = _html(full, breakable=True) if len(frame) > len(set(keep)) else ""
    if len(frame):
        number += 1
    comparisons = []
    for stage in tables.STAGES:
        rows = len(tables.comparison_table(result, stage))
        if rows == 0 or getattr(result, "stop_reason", None):  # never started (ICC gate)
            continue
        if rows == 1:  # started, but every candidate was skipped or there were none
            title = tables.STAGES[stage][2]
            note = f"{title}: no candidate model was fitted (see the search trace)."
            comparisons.append({"stage": stage, "table": Markup(f"<p><em>{note}</em></p>")})
            continue
        comparisons.append(
            {"stage": stage, "table": _html(tables.comparison(result, stage, number=number))}
        )
        number += 1
    out["comparisons"] = comparisons
    out["fixed_title"] = f"Table {number}. Fixed effects"
    out["random_title"] = f"Table {number + 1}. Random effects"
    out["r2_title"] = f"Table {number + 2}. Explained variance (R²)"
    out["weighted_title"] = f"Table {number + 3}. The reported models with sampling weights"
    return out


def _html(table: tables.Table, empty: str | None = None, breakable: bool = False) -> Markup:
    """The table's HTML; ``breakable``: print may break it between rows at any length."""
    if empty is not None and not table.rows:
        return Markup(empty)
    return Markup(table.to_html("tbl long" if breakable else "tbl"))


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _fit_line(fit: Any) -> str:
    if fit is None:
        return ""
    return (
        f"logLik {_num(fit.loglik)}, df {fit.df}, AIC {_num(fit.aic)}, BIC {_num(fit.bic)}; "
        f"{fit.nobs:,} observations in {fit.ngroups:,} groups"
    )


def _num(value: float, digits: int = 2) -> str:
    """A number in running text: thousands separated, a real minus sign (−44,602.27)."""
    return f"{value:,.{digits}f}".replace("-", MINUS)


MINUS = "\u2212"


def _dropped_groups(result: Any) -> str:
    report = result.sample.report
    groups = list(getattr(report, "dropped_groups", ()) or ())
    if not groups:
        return ""
    shown = ", ".join(f"{g} ({n} rows)" for g, n in groups[:12])
    more = f", and {len(groups) - 12} more" if len(groups) > 12 else ""
    return (
        f"{len(groups)} groups with fewer than {report.min_group_size} complete rows were "
        f"dropped: {shown}{more}."
    )


def _status_counts(result: Any) -> dict[str, int]:
    counts = {"accepted": 0, "rejected": 0, "not_converged": 0, "skipped": 0}
    for step in result.steps:
        counts[step.status] = counts.get(step.status, 0) + 1
    counts["never_tried"] = sum(info["not_tried"] for info in getattr(result, "stages", ()) or ())
    return counts


def _summary(result: Any) -> list[str]:
    """A few sentences that state the findings in the words of a results section."""
    sample = result.sample
    report = sample.report.to_dict()
    steps = report.get("steps", [])
    first = steps[0] if steps else {"rows_before": report["n_obs"], "groups_before": 0}
    text = [
        f"The analysis sample comprised {report['n_obs']:,} observations in "
        f"{report['n_groups']:,} groups defined by {sample.group}, out of "
        f"{first['rows_before']:,} rows and {first['groups_before']:,} groups in the data, "
        f"with {len(sample.predictors)} candidate predictors."
    ]
    params = getattr(result, "params", None) or {}
    threshold = params.get("icc_threshold")
    cmp = "at or above" if result.glmm_needed else "below"
    text.append(
        f"The intraclass correlation of the null model was {_fmt(result.icc, 3)}, {cmp} the "
        f"threshold of {_fmt(threshold, 2)}"
        + (
            ", so a multilevel model is warranted."
            if result.glmm_needed
            else ", so a multilevel model is not needed."
        )
    )
    if getattr(result, "stop_reason", None):
        text.append("The search therefore stopped after the null model.")
        return text
    terms = getattr(result, "optimal_terms", None) or {}
    text.append(
        f"Forward selection kept {_count(terms.get('fixed', []), 'fixed effect')} (the base "
        f"model), {_count(terms.get('interactions', []), 'interaction')} (the preliminary "
        f"model) and {_count(terms.get('random_slopes', []), 'random slope')} (the optimal "
        f"model), over {_count(result.steps, 'candidate model')}."
    )
    r2 = (getattr(result, "r2", None) or {}).get("optimal") or {}
    rb = _raudenbush_bryk_phrase(r2)
    parts = [rb] if rb else []
    if _finite(r2.get("marginal")) and _finite(r2.get("conditional")):
        parts.append(
            f"has Nakagawa's marginal and conditional R² of {r2['marginal']:.3f} and "
            f"{r2['conditional']:.3f}"
        )
    if parts:
        text.append("The optimal model " + "; it ".join(parts) + ".")
    if rb and terms.get("random_slopes"):
        text.append(tables.SLOPE_TAU_NOTE)
    return text


def _count(items: Any, noun: str) -> str:
    n = len(items)
    return f"{'no' if n == 0 else n} {noun}{'' if n == 1 else 's'}"


def _raudenbush_bryk_phrase(r2: dict) -> str:
    """Level-1/2 R² in words; a negative value means that variance grew (it can)."""
    explained, increased = [], []
    for key, level in (("level1", "level-1 residual"), ("level2", "level-2 intercept")):
        value = r2.get(key)
        if not _finite(value):
            continue
        if value >= 0:
            explained.append(f"{100 * value:.1f}% of the {level} variance")
        else:
            increased.append(f"the {level} variance by {-100 * value:.1f}% (R² = {_num(value, 3)})")
    words = []
    if explained:
        words.append("explains " + " and ".join(explained))
    if increased:
        words.append("increases " + " and ".join(increased))
    if not words:
        return ""
    return " and ".join(words) + " relative to the null model (Raudenbush & Bryk)"


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _params(params: dict) -> list[tuple[str, str]]:
    out = []
    for key, value in params.items():
        if isinstance(value, list | tuple) and len(value) > 8:
            value = ", ".join(map(str, value[:8])) + f", … ({len(value)} in all)"
        out.append((str(key), "–" if value is None else str(value)))
    return out


#: What each timing of the manifest measures, in words (the keys are result.json's).
TIMING_LABELS = {
    "sample": "Analysis sample (reading the columns, screening, filtering)",
    "null_model": "Null model and ICC (the first fit: includes the one-time numba compilation)",
    "ranking": "MERF ranking (forest fit and permutation importance)",
    "fixed": "Fixed-effects stage (fit time of its candidates)",
    "interaction": "Interaction stage (fit time of its candidates)",
    "slope": "Random-slope stage (fit time of its candidates)",
    "r2": "R² of the four models",
    "total": "Total wall-clock time of the search",
}


def _manifest(manifest: dict) -> dict[str, Any]:
    timings = manifest.get("timings") or {}
    return {
        "version": manifest.get("version", ""),
        "seed": manifest.get("seed", ""),
        "data_hash": manifest.get("data_hash", ""),
        "timings": [
            (TIMING_LABELS.get(k, k.replace("_", " ")), f"{v:,.2f} s")
            for k, v in timings.items()
            if _finite(v)
        ],
        "other": [
            (k, str(v))
            for k, v in manifest.items()
            if k not in {"version", "seed", "data_hash", "timings", "params"}
            and not isinstance(v, dict | list)
        ],
    }


def _selection(result: Any) -> dict[str, Any]:
    """The stopping rule, the never-tried counts per stage and the p-value caveat."""
    from autoglmm.report.selection_notes import PVALUE_CAVEAT, rule_sentence, stage_sentences

    searched = bool(getattr(result, "stages", ()))
    return {
        "rule": rule_sentence(result),
        "stages": stage_sentences(result),
        "caveat": PVALUE_CAVEAT if searched else "",
    }


def _pooled(result: Any) -> Markup:
    from autoglmm.report.pooled import pooled_table

    pooled = getattr(result, "pooled", None)
    return Markup("") if pooled is None else _html(pooled_table(pooled))


def _warnings(result: Any) -> list[str]:
    """Data warnings (sample loss, tokens, merges) and fit problems a reader must see."""
    out = [f"Warning: {w}" for w in getattr(result, "warnings", ())]
    for name, fit in model_fits(result).items():
        if not getattr(fit, "converged", True):
            out.append(f"The {name} model did not converge.")
        elif getattr(fit, "singular", False):
            out.append(
                f"The {name} model is singular (a variance at 0 or a correlation at ±1): "
                "the fit is on the boundary."
            )
    return out
