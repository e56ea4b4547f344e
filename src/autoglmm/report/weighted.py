"""The report's table of a weighted search: the reported models with and without weights.

Selection follows the unweighted likelihood-ratio tests (SPEC 6.3); the null, base,
preliminary and optimal models refitted with sampling weights (pseudo-ML, sandwich SEs)
are shown beside the unweighted estimates, term by term, with the variance components.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autoglmm.report.table_model import Column, Table
from autoglmm.report.tables import term_label

MODELS = ("null", "base", "preliminary", "optimal")


def _weights_phrase(info: dict) -> str:
    level1 = info.get("level1_weights")
    kind = "conditional" if info.get("conditional_weights") else "unconditional"
    parts = [f"level 1 '{level1}' ({kind})" if level1 else "", f"level 2 '{info['level2_weights']}'"
             if info.get("level2_weights") else ""]  # fmt: skip
    return ", ".join(p for p in parts if p) + f"; scaling {info.get('scaling', 'raw')}"


def _vc_rows(name: str, plain: Any, weighted: Any, group: str, result: Any) -> list[tuple]:
    cov = plain.cov_re[group] if isinstance(plain.cov_re, dict) else plain.cov_re
    wcov = weighted.cov_re[group]
    vc_se = weighted.sampling.get("vc_se", {})
    rows = []
    for term in cov.index:
        label = f"var({term_label(str(term), result)})"
        se = vc_se.get(f"{group}: {term}", np.nan)
        rows.append((name, label, float(cov.loc[term, term]), np.nan,
                     float(wcov.loc[term, term]), se))  # fmt: skip
    if getattr(plain, "sigma2", None) is not None:
        rows.append((name, "σ²", plain.sigma2, np.nan, weighted.sigma2,
                     vc_se.get("Residual", np.nan)))  # fmt: skip
    return rows


def weighted_table(result: Any, title: str = "Sampling weights") -> Table:
    """Unweighted and weighted estimates of every reported model (empty without weights)."""
    weighted = getattr(result, "weighted", None) or {}
    group = result.sample.group
    rows: list[tuple] = []
    info: dict = {}
    for name in MODELS:
        plain, wfit = getattr(result, name, None), weighted.get(name)
        if plain is None or wfit is None:
            continue
        info = wfit.sampling or {}
        for term in plain.fixef.index:
            rows.append((name, term_label(str(term), result), plain.fixef[term], plain.se[term],
                         wfit.fixef[term], wfit.se[term]))  # fmt: skip
        rows += _vc_rows(name, plain, wfit, group, result)
    columns = (
        Column("Model"),
        Column("Term"),
        Column("Estimate", "sci"),
        Column("SE", "sci"),
        Column("Weighted", "sci"),
        Column("Robust SE", "sci"),
    )
    note = (
        "Selection used the unweighted likelihood-ratio tests. Weighted: pseudo-maximum "
        "likelihood (Rabe-Hesketh & Skrondal 2006, as R's WeMix), sandwich standard errors "
        f"clustered by {group}. Weights: {_weights_phrase(info)}."
        if rows
        else ""
    )
    return Table(columns, tuple(rows), title=title, note=note)


__all__ = ["weighted_table"]
