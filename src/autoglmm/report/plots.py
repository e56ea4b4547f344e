"""The importance bar chart (the paper's Figure 2) with the V-numbers of the variable map.

Figures are built on a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, so
nothing touches pyplot's global state or needs a display, and SVG output is made reproducible
(fixed hash salt, no date), so the same result gives byte-identical files.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from autoglmm.report.tables import optimal_predictors, variable_map

__all__ = ["FORMATS", "PNG_DPI", "figure_bytes", "format_sig", "importance_figure",
           "write_importance"]  # fmt: skip

SELECTED = "#1f5f8b"
OTHER = "#9fb0bf"
PNG_DPI = 300
FORMATS = ("png", "svg", "pdf")


def importance_figure(result: Any, top: int = 30) -> Figure:
    """Horizontal bars of the ``top`` most important predictors, V1 at the top (Figure 1).

    Importances of a ranking span orders of magnitude (V1 often 100 times V20), so the x-axis
    is logarithmic and every bar carries its value: all ``top`` bars stay visible and readable.
    A non-positive importance (the permutation did not hurt) cannot sit on a log axis; it gets
    a short hatched stub at the axis floor, labelled with its value. Bars of predictors in the
    optimal model are dark, the others light. Without importances (a user-supplied ranking, or
    no ranking because the ICC gate stopped the search) the figure says so instead.
    Level-2 (group-level, e.g. school) predictors have labels ending in "(L2)".
    """
    frame = variable_map(result).head(top)
    chosen = set(optimal_predictors(result))
    n = len(frame)
    height = max(2.2, 0.24 * n + 1.1)
    fig = Figure(figsize=(7.0, height), dpi=110)  # fixed margins: no costly layout engine
    fig.subplots_adjust(left=1.75 / 7.0, right=0.97, top=1 - 0.4 / height, bottom=0.55 / height)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = frame["importance"].to_numpy(dtype=float)
    if n == 0 or not np.isfinite(values).any():
        reason = (
            "No ranking: the search stopped at the ICC gate."
            if n == 0
            else "The ranking was supplied by the user: no importances to plot."
        )
        ax.text(0.5, 0.5, reason, ha="center", va="center", fontsize=11, color="#444")
        ax.set_axis_off()
        return fig
    level2 = set(getattr(getattr(result, "sample", None), "level2", ()) or ())
    labels = [
        _label(v, p) + (" (L2)" if p in level2 else "")
        for v, p in zip(frame["V"], frame["predictor"], strict=True)
    ]
    colors = [SELECTED if p in chosen else OTHER for p in frame["predictor"]]
    _log_bars(ax, values, colors)
    y = np.arange(n)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("Permutation importance (increase in OOB MSE, log scale)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", which="major", color="#e3e3e3", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(f"Top {n} predictors by MERF importance", fontsize=10, loc="left")
    handles = [Patch(color=SELECTED, label="in the optimal model")] if chosen else []
    handles.append(Patch(color=OTHER, label="not in the model"))
    if (values <= 0).any():
        handles.append(Patch(facecolor="white", edgecolor=OTHER, hatch="////", label="≤ 0"))
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="lower right")
    return fig


def _log_bars(ax: Any, values: np.ndarray, colors: list[str]) -> None:
    """Bars from a common floor on a log axis, each labelled with its value."""
    positive = values[np.isfinite(values) & (values > 0)]
    high = float(positive.max()) if len(positive) else 1.0
    low = float(positive.min()) if len(positive) else high
    floor = 10 ** math.floor(math.log10(low) - 0.3)
    ax.set_xscale("log")
    ax.set_xlim(floor, high * 12)  # room on the right for the value labels
    for i, (value, color) in enumerate(zip(values, colors, strict=True)):
        text = format_sig(value)
        if np.isfinite(value) and value > 0:
            ax.barh(i, value - floor, left=floor, color=color, height=0.72)
            end = value
        else:  # not on a log axis: a hatched stub at the floor, with its value
            stub = floor * 1.8
            ax.barh(i, stub - floor, left=floor, color="white", edgecolor=color, hatch="////",
                    height=0.72, linewidth=0.8)  # fmt: skip
            end = stub
        ax.text(end * 1.08, i, text, va="center", ha="left", fontsize=7, color="#333")


def format_sig(value: float, digits: int = 3) -> str:
    """``digits`` significant figures, plain for ordinary sizes, with a real minus sign."""
    if not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if -4 <= magnitude < 6:
        text = f"{value:,.{max(0, digits - 1 - magnitude)}f}"
    else:
        text = f"{value:.{digits - 1}e}"
    return text.replace("-", "\u2212")


def _label(v: str, name: str, width: int = 22) -> str:
    name = str(name)
    if len(name) > width:
        name = name[: width - 1] + "…"
    return f"{v}  {name}"


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG (300 dpi), SVG or PDF bytes, reproducibly (no dates, fixed ids)."""
    buf = io.BytesIO()
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    with matplotlib.rc_context({"svg.hashsalt": "autoglmm", "svg.fonttype": "none"}):
        fig.savefig(buf, format=fmt, metadata=metadata[fmt], dpi=PNG_DPI if fmt == "png" else 72)
    return buf.getvalue()


def write_importance(result: Any, out_dir: str | Path, top: int = 30) -> dict[str, bytes]:
    """Write importance.png (300 dpi), .svg and .pdf into ``out_dir``; return their bytes."""
    fig = importance_figure(result, top=top)
    out = {fmt: figure_bytes(fig, fmt) for fmt in FORMATS}
    for fmt, data in out.items():
        (Path(out_dir) / f"importance.{fmt}").write_bytes(data)
    return out
