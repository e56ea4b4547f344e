"""Everything a search writes (SPEC section 3), built from a :class:`SearchResult`.

:func:`write_report` writes result.json (validated against ``result_schema.json``),
report.html (one self-contained page), importance.png/.svg/.pdf, steps.csv, comparison.md and
equation.tex into a hidden sibling folder and swaps it in with one rename
(:mod:`autoglmm.report.atomic`): the output folder is complete or untouched.

This module never imports :mod:`autoglmm.search_result`: the dependency runs one way, from the
result (which calls :func:`write_report`) to the report.

Example
-------
>>> res = autoglmm.search(df, "math", "school")             # doctest: +SKIP
>>> write_report(res, "out/")                               # doctest: +SKIP
PosixPath('out')
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from autoglmm.json_values import json_value
from autoglmm.report import atomic

__all__ = [
    "OUTPUT_FILES", "build_outputs", "comparison_markdown", "load_schema", "result_dict",
    "steps_frame", "validate_result_dict", "write_report",
]  # fmt: skip

#: The files write_report creates, in the order they are written.
OUTPUT_FILES = (
    "result.json",
    "steps.csv",
    "comparison.md",
    "equation.tex",
    "importance.png",
    "importance.svg",
    "importance.pdf",
    "report.html",
)


def write_report(result: Any, out_dir: str | os.PathLike) -> Path:
    """Write every output of SPEC section 3 for ``result`` into ``out_dir``, atomically.

    Parameters
    ----------
    result : a :class:`autoglmm.search_result.SearchResult` (also one stopped at the ICC gate).
    out_dir : folder to create or replace. Missing parent folders are created. Files of an
        existing folder that are not outputs (e.g. your notes) are kept.

    Returns
    -------
    Path of ``out_dir``.

    Raises
    ------
    UsageError
        ``out_dir`` is a file, or cannot be written (an ``OSError``).
    Any error while building an output: ``out_dir`` is then absent (if it was) or untouched,
    and no temporary folder is left behind.
    """
    return atomic.write_folder(Path(out_dir), lambda folder: build_outputs(result, folder))


def build_outputs(result: Any, directory: Path) -> None:
    """Write all outputs into ``directory`` (which must exist), without any atomicity."""
    from autoglmm.report import html, plots
    from autoglmm.report.equation import model_equation

    directory = Path(directory)
    data = result_dict(result)
    (directory / "result.json").write_text(
        json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    atomic.checkpoint("wrote result.json")
    steps_frame(result).to_csv(directory / "steps.csv", index=False)
    (directory / "comparison.md").write_text(comparison_markdown(result), encoding="utf-8")
    tex = _tex_header(result) + model_equation(result, "latex") + "\n"
    (directory / "equation.tex").write_text(tex, encoding="utf-8")
    atomic.checkpoint("wrote the text files")
    figures = plots.write_importance(result, directory)
    atomic.checkpoint("wrote the figures")
    page = html.render_html(result, figures["svg"])
    (directory / "report.html").write_text(page, encoding="utf-8")


# --- result.json ---------------------------------------------------------------------------


def load_schema() -> dict:
    """The JSON schema of result.json (SPEC section 3)."""
    text = resources.files("autoglmm.report").joinpath("result_schema.json").read_text("utf-8")
    return json.loads(text)


def result_dict(result: Any) -> dict:
    """``result.to_dict()`` made strictly JSON-safe (NaN -> null) and checked against the schema."""
    data = json_value(result.to_dict())
    validate_result_dict(data)
    return data


def validate_result_dict(data: dict) -> None:
    """Validate a result.json dict against the schema when jsonschema is installed.

    jsonschema is a test dependency, not a runtime one; without it only the top-level keys are
    checked. A failure is a bug in autoglmm, so it raises ``ValueError`` with the path.
    """
    try:
        schema = load_schema()
    except FileNotFoundError:  # pragma: no cover - a packaging bug; the tests load it directly
        return
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema is in the test extra
        missing = [k for k in schema["required"] if k not in data]
        if missing:
            raise ValueError(f"result.json lacks the keys {missing}") from None
        return
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top level)"
        raise ValueError(f"result.json does not match its schema at {where}: {error.message}")


# --- the small text outputs ----------------------------------------------------------------


def steps_frame(result: Any) -> pd.DataFrame:
    """The trace as a frame (the search's own ``steps_frame`` when it has one)."""
    method = getattr(result, "steps_frame", None)
    if callable(method):
        return method()
    return pd.DataFrame([dataclasses.asdict(s) for s in result.steps])


def comparison_markdown(result: Any) -> str:
    """comparison.md: the comparison table of every stage and the V-number key they use."""
    from autoglmm.report import tables

    sample = result.sample
    lines = [f"# Model comparison: {sample.outcome} in {sample.group}", ""]
    if getattr(result, "stop_reason", None):
        lines += [f"The search stopped at the ICC gate: {result.stop_reason}.", ""]
    number = 2
    used: set[str] = set()
    for stage in tables.STAGES:
        frame = tables.comparison_table(result, stage)
        if len(frame) < 2:
            if len(frame) == 1 and not getattr(result, "stop_reason", None):
                title = tables.STAGES[stage][2]
                lines += [f"**{title}**: no candidate model was fitted (see steps.csv).", ""]
            continue
        lines += [tables.comparison(result, stage, number=number).to_markdown(), ""]
        number += 1
        for term in frame["term"]:
            used.update(str(term).split(":") if term else [])
    key = tables.variable_map(result)
    key = key[key["predictor"].isin(used)]
    if len(key):
        title = "Key to the V-numbers above (ranking order, as in the report's Table 1)"
        table = tables.variable_table(result, list(key["predictor"]), title=title)
        lines += [table.to_markdown(), ""]
    from autoglmm.report.weighted import weighted_table

    weighted = weighted_table(result, "The reported models with sampling weights")
    if weighted.rows:
        lines += [weighted.to_markdown(), ""]
    return "\n".join(lines)


def _tex_header(result: Any) -> str:
    from autoglmm.report.equation import equation_model
    from autoglmm.report.tables import variable_map
    from autoglmm.report.terms import term_parts

    name, fit = equation_model(result)
    lines = [
        f"% The {name} model of the autoglmm search (needs \\usepackage{{amsmath}}).",
        f"% {getattr(fit, 'formula', '')}",
    ]
    vmap = variable_map(result)
    names = [str(n) for n in pd.Series(fit.fixef).index]
    names += [str(n) for g in fit.cov_re.values() for n in pd.DataFrame(g).index]
    used = {p for n in names for p, _ in term_parts(n, list(vmap["predictor"]))}
    for row in vmap.itertuples(index=False):
        if row.predictor in used:
            label = f" ({row.label})" if row.label else ""
            lines.append(f"% {row.V} = {row.predictor}{label}")
    return "\n".join(lines) + "\n"
