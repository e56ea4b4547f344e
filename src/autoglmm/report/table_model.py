"""A small immutable table model rendered to text, Markdown, HTML and LaTeX from one source.

As in MixedModels.jl's mimeshow.jl, the cells are formatted once (:meth:`Table.cells`) and every
rendering uses them, so report.html, comparison.md, the console and LaTeX cannot disagree.

Numbers follow one rule per column, so decimals line up: ``float`` columns have fixed
decimals; ``auto`` columns (estimates, variances) at least 2, more when the smallest non-zero
value (above 1/1000 of the largest) needs them for two significant digits; ``importance``
columns as many as keep distinct values distinct and non-zero values non-zero (never a tie
made by rounding, never "−0"). Thousands are separated (8,705), HTML gets a real minus sign
(−44,602.27), and p-values have one format everywhere (:func:`format_p`).

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

__all__ = [
    "MISSING", "Column", "Table", "column_decimals", "format_number", "format_p", "format_value",
    "latex_escape",
]  # fmt: skip

MISSING = "–"
#: Rows above which a table may break across printed pages (shorter ones are kept whole).
LONG_TABLE = 40


@dataclass(frozen=True)
class Column:
    """A column: its header, how its values are formatted, and its LaTeX header."""

    name: str
    kind: str = "text"  # text | int | float | auto | importance | p ("sci" = "auto")
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
        """Formatted cell strings, row by row (``minus="\u2212"``: typographic minus signs)."""
        decimals = [
            column_decimals([r[i] for r in self.rows], c) for i, c in enumerate(self.columns)
        ]
        return [
            [
                format_value(v, c, minus, d)
                for v, c, d in zip(row, self.columns, decimals, strict=True)
            ]
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
        long = " long" if len(self.rows) > LONG_TABLE and "long" not in table_class else ""
        out = [f'<table class="{table_class}{long}">']
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


def format_value(value: Any, column: Column, minus: str = "-", decimals: int | None = None) -> str:
    """Format one cell; missing and non-finite numbers show as an en dash.

    ``decimals`` is the column's decimals (:func:`column_decimals`); without it a ``float``
    column uses its ``digits`` and an ``auto`` column the value's own rule.
    """
    if value is None or value is pd.NA:
        return MISSING
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return MISSING
    if column.kind == "text" or isinstance(value, str):
        return str(value)
    if column.kind == "int":
        text = f"{int(value):,}"
    elif column.kind == "p":
        text = format_p(float(value))
    else:
        if decimals is None:
            decimals = column_decimals([value], column)
        text = _fixed(float(value), decimals)
    return text.replace("-", minus) if minus != "-" else text


def column_decimals(values: Sequence[Any], column: Column) -> int | None:
    """The decimals of every number of a ``float``, ``auto`` or ``importance`` column."""
    if column.kind == "float":
        return column.digits
    if column.kind not in ("auto", "sci", "importance"):
        return None
    x = np.array([float(v) for v in values if _is_number(v)], dtype=float)
    x = np.abs(x[np.isfinite(x)])
    nonzero = x[x > 0]
    if not len(nonzero):
        return 2
    if column.kind == "importance":
        return _distinct_decimals(x)
    smallest = max(float(nonzero.min()), float(nonzero.max()) / 1000)  # ignore near-zeros
    return int(min(6, max(2, 1 - math.floor(math.log10(smallest)))))


def _distinct_decimals(x: np.ndarray) -> int:
    """Fewest decimals (3 significant digits for the largest value at least) with no ties."""
    top = float(x.max())
    start = max(0, 2 - math.floor(math.log10(top)))
    distinct = len(np.unique(x))
    for decimals in range(start, 7):
        shown = [_fixed(v, decimals) for v in x]
        zero = _fixed(0.0, decimals)
        vanished = any(s == zero for s, v in zip(shown, x, strict=True) if v > 0)
        if len(set(shown)) == distinct and not vanished:
            return decimals
    return 6


def _fixed(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` decimals and thousands separators; never "-0"."""
    text = f"{value:,.{decimals}f}"
    if text.startswith("-") and not any(ch in "123456789" for ch in text):
        text = text[1:]  # a negative number that rounds to zero is shown as zero
    return text


def _is_number(value: Any) -> bool:
    if value is None or value is pd.NA or isinstance(value, str | bool):
        return False
    return isinstance(value, int | float | np.integer | np.floating)


def format_p(p: float) -> str:
    """A p-value, one format everywhere: 0.023 down to 0.001, then 3.6e-154 (two digits).

    A p-value that underflows to 0 is shown as "<1e-300".
    """
    if not math.isfinite(p):
        return MISSING
    if p >= 0.001:
        return f"{p:.3f}"
    if p <= 0:
        return "<1e-300"
    return f"{p:.1e}".replace("e-0", "e-")


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
