"""The report reads like a journal's results section: numbers, labels, numbering, Figure 1.

Each test guards one defect a new user found in the demo's report (issue 16): mixed significant
figures, missing thousands separators, hyphens for minus, mixed p formats, importances rounded
into ties and "−0", t vs z, the level-2 R² with slopes, duplicate table numbers, raw timing keys,
and a figure whose small bars could not be seen.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from autoglmm.report import plots, tables, write_report
from autoglmm.report.table_model import Column, Table, format_p

P_FORMAT = re.compile(r"^(\d\.\d{3}|[1-9]\.\de[-\u2212][1-9]\d*|<1e[-\u2212]300)$")


@pytest.fixture(scope="module")
def hand_page(hand_result, tmp_path_factory):
    out = write_report(hand_result, tmp_path_factory.mktemp("journal") / "out")
    return out, (out / "report.html").read_text(encoding="utf-8")


class _Cells(HTMLParser):
    """Table captions, header names and cell texts; running text outside code and tables."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.text: list[str] = []
        self._stack: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self._stack.append(tag)
        if tag == "table" and "tbl" in (dict(attrs).get("class") or ""):
            self.tables.append({"caption": "", "head": [], "rows": []})
        elif tag == "tr" and self.tables and "tbody" in self._stack:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th", "caption") and self.tables:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th", "caption") and self._cell is not None and self.tables:
            text = "".join(self._cell).strip()
            table = self.tables[-1]
            if tag == "caption":
                table["caption"] = text
            elif tag == "th":
                table["head"].append(text)
            elif "tbody" in self._stack:
                table["rows"][-1].append(text)
            self._cell = None
        while self._stack and self._stack.pop() != tag:
            pass

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        elif not {"code", "pre", "style", "table", "dd", "title"} & set(self._stack):
            self.text.append(data)


def _parse(page: str) -> _Cells:
    parser = _Cells()
    parser.feed(page)
    return parser


def _decimals(cell: str) -> int:
    return len(cell.split(".")[1]) if "." in cell else 0


def test_every_numeric_column_has_one_rule_and_aligned_decimals(hand_page):
    _, page = hand_page
    parsed = _parse(page)
    checked = 0
    for table in parsed.tables:
        for j, name in enumerate(table["head"]):
            cells = [r[j] for r in table["rows"] if j < len(r) and r[j] not in ("", "–")]
            numbers = [c for c in cells if re.fullmatch(r"[\u2212]?[\d,]+(\.\d+)?", c)]
            if name == "p":
                assert all(P_FORMAT.match(c) for c in cells), (table["caption"], cells)
            elif len(numbers) == len(cells) and len(cells) > 1 and name not in ("#", "V"):
                assert len({_decimals(c) for c in numbers}) == 1, (table["caption"], name, cells)
                checked += 1
            for c in numbers:  # thousands separated, real minus sign, never "−0"
                digits = c.lstrip("\u2212").split(".")[0]
                assert re.fullmatch(r"\d{1,3}(,\d{3})*", digits), (table["caption"], c)
                assert not re.fullmatch(r"\u22120(\.0+)?", c), (table["caption"], c)
            assert not any(re.match(r"-\d", c) for c in cells), (table["caption"], cells)
    assert checked >= 15
    fixed = next(t for t in parsed.tables if "Fixed effects" in t["caption"])
    est = fixed["rows"][0][fixed["head"].index("Estimate")]
    assert "," not in est or len(est.split(".")[0]) > 3
    assert any("," in c for t in parsed.tables for r in t["rows"] for c in r)  # e.g. −6,796.91


def test_running_text_uses_a_real_minus_sign_and_separators(hand_page, hand_result):
    _, page = hand_page
    text = " ".join(" ".join(_parse(page).text).split())
    assert not re.search(r"(?<![\w.\-])-\d", text), re.findall(r".{30}(?<![\w.\-])-\d.{10}", text)
    loglik = hand_result.null.loglik
    assert f"logLik \u2212{abs(loglik):,.2f}" in text


def test_p_values_have_one_format():
    assert [format_p(p) for p in (0.5, 0.0234, 0.001, 9.9e-4, 1e-62, 3.6e-154, 0.0)] == [
        "0.500", "0.023", "0.001", "9.9e-4", "1.0e-62", "3.6e-154", "<1e-300",
    ]  # fmt: skip


def test_search_reasons_use_the_same_p_format(searched):
    for step in searched.steps:
        if step.p is not None:
            assert f"p = {format_p(step.p)} " in step.reason, step.reason


def test_importances_never_tie_by_rounding_nor_show_minus_zero():
    values = [716.2, 64.04, 64.01, 64.00, 0.004, -0.0001, 0.0]
    table = Table((Column("Importance", "importance"),), tuple((v,) for v in values))
    cells = [row[0] for row in table.cells(minus="\u2212")]
    assert len(set(cells)) == len(values), cells  # distinct values stay distinct
    assert cells[4] != cells[6]  # 0.004 is not shown as 0
    assert not any(c.lstrip("\u2212").strip("0.,") == "" and c.startswith("\u2212") for c in cells)
    assert cells[0] == "716.2000" and cells[3] == "64.0000"  # one rule for the whole column
    ties = Table((Column("I", "importance"),), ((64.2,), (64.3,), (-0.04,)))
    assert [r[0] for r in ties.cells()] == ["64.20", "64.30", "-0.04"]  # not "-0.0"


def test_fixed_effects_are_z_in_the_report_and_the_console(hand_page, hand_result):
    _, page = hand_page
    fixed = next(t for t in _parse(page).tables if "Fixed effects" in t["caption"])
    assert fixed["head"][-2:] == ["z", "p"]
    assert "z value" in hand_result.optimal.summary()
    assert "t value" not in hand_result.optimal.summary()


def test_level2_r2_note_with_random_slopes(hand_page, hand_result):
    _, page = hand_page
    assert hand_result.optimal_terms["random_slopes"]  # the hand search found a slope
    assert html.escape(tables.SLOPE_TAU_NOTE, quote=False) in page  # R² note and summary
    assert page.count("redefined") >= 2
    no_slopes = SimpleNamespace(**{**vars_of(hand_result), "optimal": hand_result.base})
    no_slopes.preliminary = hand_result.base
    note = tables.r2_table(no_slopes).note
    assert "redefined" not in note


def vars_of(result) -> dict:
    return {f: getattr(result, f) for f in result.__dataclass_fields__}


def test_slope_rows_say_they_compare_variances(hand_result):
    note = tables.comparison(hand_result, "slope").note
    assert "compares variances" in note and "mixture" in note


def test_tables_are_numbered_once_each(hand_page):
    _, page = hand_page
    captions = [t["caption"] for t in _parse(page).tables]
    numbers = [re.match(r"Table (S?\d+)\.", c).group(1) for c in captions]
    assert len(numbers) == len(set(numbers)), captions
    main = [int(n) for n in numbers if not n.startswith("S")]
    assert main == list(range(1, len(main) + 1)), captions
    assert "Figure 1." in page
    assert "Table S3. All" in page or "Table S3" not in page


def test_timings_are_labelled(hand_page):
    _, page = hand_page
    assert "time: " not in page and "null_model" not in page.split("Search parameters")[0]
    assert "Total wall-clock time of the search" in page


def test_comparison_table_prints_as_the_report_table(searched):
    frame = searched.comparison_table("fixed")
    assert isinstance(frame, pd.DataFrame) and list(frame.columns[:3]) == ["Model", "df", "AIC"]
    assert repr(frame) == tables.comparison(searched, "fixed").to_text() == str(frame)
    assert "Forward selection of fixed effects" in repr(frame)
    assert type(frame[["Model", "p"]]) is pd.DataFrame  # a slice is a plain frame again
    assert "<table" in frame._repr_html_()


def test_one_vocabulary_for_decisions(hand_page):
    out, page = hand_page
    md = (out / "comparison.md").read_text()
    for text in (page, md):
        assert "not added" not in text
        assert not re.search(r"\|\s*added\s*\|", text) and ">added<" not in text
    assert ">accepted<" in page and ">rejected<" in page


# --- Figure 1 ---------------------------------------------------------------------------------


class _Ranking:
    def __init__(self, names, importance):
        self.frame = pd.DataFrame({"predictor": names, "importance": importance})

    def to_frame(self):
        return self.frame.copy()


def _demo_like(n: int = 40):
    """Importances like the demo's: V1 at 716, a long tail down to 0.01, a zero, a negative."""
    names = [f"item_{i:02d}" for i in range(n)]
    imp = list(716 * np.exp(-np.arange(n) / 3.2))
    imp[25], imp[28] = 0.0, -0.3
    terms = {"fixed": names[:8], "interactions": [], "random_slopes": []}
    return SimpleNamespace(
        ranking=_Ranking(names, imp), steps=(), optimal_terms=terms,
        sample=SimpleNamespace(labels={}, level2=()),
    )  # fmt: skip


def test_figure_shows_all_30_bars_with_their_values():
    result = _demo_like()
    fig = plots.importance_figure(result)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    fig.set_dpi(plots.PNG_DPI)
    fig.canvas.draw()
    bars = ax.patches
    assert len(bars) == 30
    widths = [b.get_window_extent().width for b in bars]
    assert min(widths) >= 20, widths  # at 300 dpi every bar is clearly visible
    colors = {tuple(np.round(b.get_facecolor(), 3)) for b in bars}
    assert len(colors) >= 3  # in the model, not in the model, and the hatched <= 0
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == 30 and labels[0] == "716" and "\u22120.300" in labels
    assert labels[-1] == plots.format_sig(716 * np.exp(-29 / 3.2))


def test_figure_files_png_300_dpi_svg_and_pdf(tmp_path):
    from PIL import Image

    written = plots.write_importance(_demo_like(), tmp_path)
    assert sorted(written) == ["pdf", "png", "svg"]
    image = Image.open(tmp_path / "importance.png")
    assert image.info["dpi"][0] == pytest.approx(300, abs=0.01)
    assert image.size[0] == 7 * 300
    assert (tmp_path / "importance.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in (tmp_path / "importance.svg").read_bytes()[:500]
    again = plots.write_importance(_demo_like(), tmp_path / ".." / tmp_path.name)
    assert again == written  # byte-identical: no dates, fixed ids
