"""The pooled table of several analyses (plausible values, imputations) for the report."""

from __future__ import annotations

from typing import Any

from autoglmm.report.table_model import Column, Table

__all__ = ["pooled_table"]


def pooled_table(pooled: Any, title: str = "Pooled fixed effects") -> Table:
    """term, estimate, SE, df, p, FMI, selected in k of M (Rubin's rules, Barnard–Rubin df)."""
    frame = pooled.table()
    rows = tuple(
        (r.term, r.estimate, r.se, r.df, r.p, r.fmi, r.selected)
        for r in frame.itertuples(index=False)
    )
    columns = (
        Column("Term"),
        Column("Estimate", "float", 3),
        Column("SE", "float", 3),
        Column("df", "float", 1),
        Column("p", "p", latex=r"$p$"),
        Column("FMI", "float", 3),
        Column("Selected"),
    )
    note = (
        f"The model of the terms selected in more than half of the {pooled.m} analyses "
        f"({', '.join(f'{o}' for o in pooled.outcomes)}"
        f"{f'; {pooled.imputations} imputations' if pooled.imputations else ''}), fitted on "
        "each and pooled by Rubin's rules; df by Barnard & Rubin (1999); FMI = fraction of "
        "missing information; Selected = analyses whose search selected the term."
    )
    return Table(columns, rows, title=title, note=note)
