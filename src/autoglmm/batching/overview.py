"""summary.html: the cross-country page of a batch, one self-contained file.

Researchers compare countries, so the page has one row per task (sample, ICC, the terms the
search selected, a link to that task's own report) and a term-by-task heat map: which
predictors, interactions and random slopes were selected where. The map is drawn with
matplotlib on a bare Figure and embedded as an SVG data URI, like the importance figure of
each task's report, so the page opens offline.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["selection_matrix", "task_selection", "write_overview"]

MAX_TERMS = 60


def task_selection(result: dict) -> dict[str, float]:
    """Share of a task's analyses that selected each term (1.0 with a single outcome).

    Terms are named as in the plausible-values report: ``x``, ``a:b`` and ``(x | group)``
    for a random slope.
    """
    pv = result.get("plausible_values")
    if pv and pv.get("selection_frequency") is not None:
        return {str(k): float(v) for k, v in pv["selection_frequency"].items()}
    terms = result.get("optimal_terms") or {}
    group = result.get("group", "group")
    names = [*terms.get("fixed", []), *terms.get("interactions", [])]
    names += [f"({s} | {group})" for s in terms.get("random_slopes", [])]
    return {name: 1.0 for name in names}


def selection_matrix(selections: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Terms (rows) by task (columns): the share of the task's analyses that selected it.

    Fixed effects come first, then interactions, then random slopes; within each, the
    terms selected by the most tasks first, then by name.
    """
    rows = sorted({term for shares in selections.values() for term in shares})
    data = {str(col): [float(sel.get(t, 0.0)) for t in rows] for col, sel in selections.items()}
    matrix = pd.DataFrame(data, index=rows, columns=list(data), dtype=float)
    if matrix.empty:
        return matrix

    def order(term: str) -> tuple:
        kind = 2 if term.startswith("(") else 1 if ":" in term else 0
        return kind, -int((matrix.loc[term] > 0).sum()), -float(matrix.loc[term].sum()), term

    return matrix.loc[sorted(matrix.index, key=order)]


def heat_map_svg(matrix: pd.DataFrame, by: str) -> bytes:
    """The selection heat map as SVG bytes (the first :data:`MAX_TERMS` rows)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from autoglmm.report.plots import figure_bytes

    shown = matrix.head(MAX_TERMS)
    n_rows, n_cols = shown.shape
    width = min(18.0, max(6.5, 3.0 + 0.32 * n_cols))
    height = 1.7 + 0.22 * n_rows
    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=2.6 / width, right=1 - 0.3 / width, top=1 - 0.9 / height,
                        bottom=0.9 / height)  # fmt: skip
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = shown.to_numpy()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")  # fmt: skip
    counts = (shown > 0).sum(axis=1)
    labels = [f"{term} ({n}/{n_cols})" for term, n in counts.items()]
    ax.set_xticks(np.arange(n_cols), labels=list(shown.columns), rotation=90, fontsize=8)
    ax.set_yticks(np.arange(n_rows), labels=labels, fontsize=8)
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel(by)
    if np.isin(values, (0.0, 1.0)).all():
        cmap = image.get_cmap()
        handles = [Patch(facecolor=cmap(0.0), edgecolor="#889", label="not selected"),
                   Patch(facecolor=cmap(1.0), edgecolor="#889", label="selected")]  # fmt: skip
        fig.legend(handles=handles, loc="upper center", ncol=2, frameon=False, fontsize=8)
    else:
        bar = fig.colorbar(image, ax=ax, orientation="horizontal", location="top",
                           fraction=0.4 / height, pad=0.25 / height, aspect=40)  # fmt: skip
        bar.set_label("share of the plausible values (analyses) selecting the term", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return figure_bytes(fig, "svg")


def write_overview(root: Path, summary: pd.DataFrame, by: str, settings: dict) -> Path:
    """Write ``root/summary.html`` (atomically) and return its path."""
    from autoglmm.batching.store import _replace_text

    selections = {}
    for row in summary[summary["status"] == "done"].itertuples(index=False):
        path = Path(root) / row.folder / "result.json"
        selections[str(row.value)] = task_selection(json.loads(path.read_text("utf-8")))
    matrix = selection_matrix(selections)
    figure = ""
    if not matrix.empty:
        svg = base64.b64encode(heat_map_svg(matrix, by)).decode("ascii")
        note = ""
        if len(matrix) > MAX_TERMS:
            note = f"<p>The {MAX_TERMS} most often selected of {len(matrix)} terms.</p>"
        figure = (f'<img alt="term-by-{_e(by)} selection heat map" '
                  f'src="data:image/svg+xml;base64,{svg}">{note}')  # fmt: skip
    page = _PAGE.format(
        title=_e(f"autoglmm batch by {by}"),
        settings=_settings_line(summary, settings),
        table=_table(summary, by),
        figure=figure or "<p>No task has finished yet.</p>",
    )
    path = Path(root) / "summary.html"
    _replace_text(path, page)
    return path


def _table(summary: pd.DataFrame, by: str) -> str:
    head = (f"<tr><th>{_e(by)}</th><th>status</th><th>students</th><th>groups</th>"
            "<th>ICC</th><th>fixed effects</th><th>interactions</th><th>random slopes</th>"
            "<th>logLik</th><th>seconds</th></tr>")  # fmt: skip
    body = []
    for row in summary.itertuples(index=False):
        link = _e(str(row.value))
        if row.status == "done":
            link = f'<a href="{_e(_href(row.folder))}/report.html">{link}</a>'
        status = _e(row.status) if not row.error else f"{_e(row.status)}: {_e(row.error)}"
        cells = [link, status, _num(row.n_obs, "{:,.0f}"), _num(row.n_groups, "{:,.0f}"),
                 _num(row.icc, "{:.3f}"), _e(", ".join(_split(row.fixed))),
                 _e(", ".join(_split(row.interactions))), _e(", ".join(_split(row.random_slopes))),
                 _num(row.loglik, "{:.2f}"), _num(row.seconds, "{:.1f}")]  # fmt: skip
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _settings_line(summary: pd.DataFrame, settings: dict) -> str:
    search = settings.get("search", {})
    counts = summary["status"].value_counts()
    parts = [
        f"outcome <b>{_e(search.get('outcome'))}</b>",
        f"group <b>{_e(search.get('group'))}</b>",
        f"family {_e(search.get('family', 'gaussian'))}",
        f"batch seed {_e(settings.get('seed'))}",
        ", ".join(f"{n} {_e(s)}" for s, n in counts.items()),
    ]
    return " · ".join(parts)


def _split(text: Any) -> list[str]:
    """Terms of a summary cell ("a;b;c")."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    return [t for t in str(text).split(";") if t]


def _num(value: Any, fmt: str) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return fmt.format(value) if np.isfinite(value) else ""


def _href(folder: str) -> str:
    from urllib.parse import quote

    return quote(str(folder), safe="=")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: Georgia, serif; margin: 2em auto; max-width: 78em; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.2em; margin-top: 2em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border-bottom: 1px solid #ccd; padding: 0.25em 0.6em; text-align: left;
  vertical-align: top; }}
th {{ border-bottom: 2px solid #445; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
<p>{settings}</p>
<h2>One row per task</h2>
{table}
<h2>Selected terms by task</h2>
{figure}
</body></html>
"""
