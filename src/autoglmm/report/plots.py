"""The importance bar chart (the paper's Figure 2) with the V-numbers of the variable map.

Figures are built on a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, so
nothing touches pyplot's global state or needs a display, and SVG output is made reproducible
(fixed hash salt, no date), so the same result gives byte-identical files.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from autoglmm.report.tables import optimal_predictors, variable_map

__all__ = ["importance_figure", "write_importance", "figure_bytes"]

SELECTED = "#1f5f8b"
OTHER = "#b8c4ce"


def importance_figure(result: Any, top: int = 30) -> Figure:
    """Horizontal bars of the ``top`` most important predictors, V1 at the top.

    Bars of predictors in the optimal model are dark, the others light; level-2 (group-level,
    e.g. school) predictors are hatched and their labels end in "(L2)". Without importances
    (a user-supplied ranking, or no ranking because the ICC gate stopped the search) the
    figure says so instead of drawing empty bars.
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
    y = np.arange(n)
    bars = ax.barh(y, np.nan_to_num(values), color=colors, height=0.72)
    for bar, name in zip(bars, frame["predictor"], strict=True):
        if name in level2:
            bar.set_hatch("///")
            bar.set_edgecolor("#333333")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("Permutation importance (increase in OOB MSE)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#e3e3e3", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(f"Top {n} predictors by MERF importance", fontsize=10, loc="left")
    shown_l2 = any(p in level2 for p in frame["predictor"])
    if chosen or shown_l2:
        handles = [
            Patch(color=SELECTED, label="in the optimal model"),
            Patch(color=OTHER, label="not in the model"),
        ][: 2 if chosen else 0]
        if shown_l2:
            handles.append(Patch(facecolor="white", edgecolor="#333333", hatch="///",
                                 label="level 2 (L2)"))  # fmt: skip
        ax.legend(handles=handles, fontsize=8, frameon=False, loc="lower right")
    return fig


def _label(v: str, name: str, width: int = 22) -> str:
    name = str(name)
    if len(name) > width:
        name = name[: width - 1] + "…"
    return f"{v}  {name}"


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes, reproducibly (no timestamps, fixed SVG ids)."""
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "autoglmm", "svg.fonttype": "none"}):
        fig.savefig(buf, format=fmt, metadata=metadata, dpi=fig.dpi if fmt == "png" else "figure")
    return buf.getvalue()


def write_importance(result: Any, out_dir: str | Path, top: int = 30) -> dict[str, bytes]:
    """Write importance.png and importance.svg into ``out_dir``; return their bytes by format."""
    fig = importance_figure(result, top=top)
    out = {fmt: figure_bytes(fig, fmt) for fmt in ("png", "svg")}
    for fmt, data in out.items():
        (Path(out_dir) / f"importance.{fmt}").write_bytes(data)
    return out
