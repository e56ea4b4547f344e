"""A small immutable table model rendered to text, Markdown, HTML and LaTeX from one source.

As in MixedModels.jl's mimeshow.jl, the cells are formatted once (:meth:`Table.cells`) and every
rendering uses them, so report.html, comparison.md, the console and LaTeX cannot disagree.

Example
-------
>>> t = Table((Column("Model"), Column("logLik", "float", 2)), (("null", -12.345),))
>>> print(t.to_markdown())
| Model | logLik |
|:---|---:|
| null | -12.35 |
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MISSING", "Column", "Table", "format_number", "format_value", "latex_escape"]

MISSING = "–"


@dataclass(frozen=True)
class Column:
    """A column: its header, how its values are formatted, and its LaTeX header."""

    name: str
    kind: str = "text"  # text | int | float | p | sci
    digits: int = 2
    latex: str | None = None
    css: str = ""  # extra HTML class of the column's cells, e.g. "nowrap"

    @property
    def html_class(self) -> str:
        names = " ".join(n for n in ("num" if self.numeric else "", self.css) if n)
        return f' class="{names}"' if names else ""

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


@dataclass(frozen=True)
class Table:
    """A small immutable table that renders itself in four formats from the same cells."""

    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    title: str = ""
    note: str = ""
    row_classes: tuple[str, ...] = field(default=())

    def cells(self, minus: str = "-") -> list[list[str]]:
        """Formatted cell strings, row by row."""
        return [
            [format_value(v, c, minus) for v, c in zip(row, self.columns, strict=True)]
            for row in self.rows
        ]

    def to_frame(self) -> pd.DataFrame:
        """The raw (unformatted) values as a DataFrame."""
        return pd.DataFrame(list(self.rows), columns=[c.name for c in self.columns])

    def to_text(self) -> str:
        """Fixed-width plain text, for the console and logs."""
        header = [c.name for c in self.columns]
        body = self.cells()
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def line(row: Sequence[str]) -> str:
            out = [
                cell.rjust(w) if col.numeric else cell.ljust(w)
                for cell, w, col in zip(row, widths, self.columns, strict=True)
            ]
            return "  ".join(out).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        lines = ([self.title] if self.title else []) + [rule, line(header), rule]
        lines += [line(r) for r in body] + [rule]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown pipe table (title in bold above, note below)."""

        def esc(s: str) -> str:
            return s.replace("|", "\\|")

        head = "| " + " | ".join(esc(c.name) for c in self.columns) + " |"
        align = "|" + "|".join("---:" if c.numeric else ":---" for c in self.columns) + "|"
        body = ["| " + " | ".join(esc(x) for x in row) + " |" for row in self.cells()]
        parts = ([f"**{self.title}**", ""] if self.title else []) + [head, align, *body]
        if self.note:
            parts += ["", f"*{self.note}*"]
        return "\n".join(parts)

    def to_html(self, table_class: str = "tbl") -> str:
        """An HTML table with caption and note; numeric cells are right-aligned."""
        out = [f'<table class="{table_class}">']
        if self.title:
            out.append(f"<caption>{html.escape(self.title)}</caption>")
        out.append("<thead><tr>")
        for c in self.columns:
            out.append(f'<th scope="col"{c.html_class}>{html.escape(c.name)}</th>')
        out.append("</tr></thead><tbody>")
        classes = self.row_classes or ("",) * len(self.rows)
        for row, rc in zip(self.cells(minus="\u2212"), classes, strict=True):
            out.append(f'<tr class="{html.escape(rc)}">' if rc else "<tr>")
            for cell, c in zip(row, self.columns, strict=True):
                out.append(f"<td{c.html_class}>{html.escape(cell)}</td>")
            out.append("</tr>")
        out.append("</tbody>")
        if self.note:
            note = html.escape(self.note)
            out.append(f'<tfoot><tr><td colspan="{len(self.columns)}">{note}</td></tr></tfoot>')
        out.append("</table>")
        return "".join(out)

    def to_latex(self) -> str:
        """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
        spec = "".join("r" if c.numeric else "l" for c in self.columns)
        head = " & ".join(c.latex or latex_escape(c.name) for c in self.columns)
        lines = [r"\begin{table}[ht]", r"\centering"]
        if self.title:
            lines.append(r"\caption{" + latex_escape(self.title) + "}")
        lines += [r"\begin{tabular}{" + spec + "}", r"\toprule", head + r" \\", r"\midrule"]
        for row in self.cells():
            cells = [latex_escape(x) if x != MISSING else "--" for x in row]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        if self.note:
            lines.append(r"\par\smallskip{\footnotesize " + latex_escape(self.note) + "}")
        lines.append(r"\end{table}")
        return "\n".join(lines)


def format_value(value: Any, column: Column, minus: str = "-") -> str:
    """Format one cell; missing and non-finite numbers show as an en dash."""
    if value is None or (isinstance(value, float | np.floating) and not math.isfinite(value)):
        return MISSING
    if column.kind == "text":
        return str(value)
    if isinstance(value, str):
        return value
    if column.kind == "int":
        text = f"{int(value)}"
    elif column.kind == "p":
        text = "<0.001" if value < 0.001 else f"{value:.3f}"
    elif column.kind == "sci":
        text = format_number(float(value))
    else:
        text = f"{float(value):.{column.digits}f}"
    return text.replace("-", minus) if minus != "-" else text


def format_number(x: float, sig: int = 4) -> str:
    """About ``sig`` significant digits without an exponent for ordinary magnitudes."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude < -3 or magnitude >= 7:
        return f"{x:.{sig - 1}e}"
    decimals = max(0, sig - 1 - magnitude)
    return f"{x:.{decimals}f}"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "×": r"$\times$",
    "χ": r"$\chi$",
    "²": r"$^2$",
    "Δ": r"$\Delta$",
    "σ": r"$\sigma$",
    "τ": r"$\tau$",
    "–": "--",
    "−": "-",
    "≥": r"$\geq$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters and map the few Greek/maths symbols we print."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
