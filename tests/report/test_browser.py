"""report.html in a real browser: Debian's chromium, headless and cut off from the network.

A probe script is inserted into a copy of the page (the report itself has no script). It logs
every failed resource load, and at the load event the resources the page fetched and the images
that did not decode. The browser runs with every host name unresolvable, so a page that needs
the network fails visibly. A control page with an external image proves the probe catches it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from autoglmm.report import write_report

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]

PROBE = """<script>
window.addEventListener("error", function (e) {
  var t = e.target || {};
  console.log("PROBE-ERROR " + (t.src || t.href || e.message));
}, true);
window.addEventListener("load", function () {
  var names = performance.getEntriesByType("resource").map(function (r) { return r.name; });
  var broken = Array.prototype.filter.call(document.images, function (i) {
    return !(i.complete && i.naturalWidth > 0);
  }).length;
  console.log("PROBE-LOAD resources=" + JSON.stringify(names) + " images=" +
              document.images.length + " broken=" + broken);
});
</script>"""


def run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no host name resolves
        "--enable-logging=stderr",
        "--v=0",
    ]
    cmd = [CHROMIUM, *flags, *extra, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    """The page's console output, as chromium logs it with --enable-logging=stderr."""
    return re.findall(r':CONSOLE[^\]]*\] "(.*)", source:', stderr)


def probed_copy(page: Path, tmp_path: Path) -> Path:
    text = page.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1)
    out = tmp_path / ("probed-" + page.name)
    out.write_text(text, encoding="utf-8")
    return out


def test_probe_catches_a_page_that_needs_the_network(tmp_path):
    page = tmp_path / "control.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>c</title></head><body><p>x</p>"
        '<img src="https://example.com/a.png"></body></html>'
    )
    run = run_chromium(probed_copy(page, tmp_path), tmp_path / "profile", "--dump-dom")
    messages = console_messages(run.stderr)
    assert "PROBE-ERROR https://example.com/a.png" in messages
    assert any(m.startswith("PROBE-LOAD") and "broken=1" in m for m in messages)


@pytest.mark.parametrize("which", ["hand_result", "stopped"])
def test_report_renders_offline_without_console_errors(which, request, tmp_path):
    out = write_report(request.getfixturevalue(which), tmp_path / "out")
    run = run_chromium(probed_copy(out / "report.html", tmp_path), tmp_path / "p", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    messages = console_messages(run.stderr)
    expected_images = 1 if which == "hand_result" else 0
    assert messages == [f"PROBE-LOAD resources=[] images={expected_images} broken=0"]
    assert "Search trace" in run.stdout or which == "stopped"
    assert "<table" in run.stdout  # the DOM was built


def test_screenshot_of_the_report_is_not_blank(hand_result, tmp_path):
    from PIL import Image

    out = write_report(hand_result, tmp_path / "out")
    shot = tmp_path / "shot.png"
    run = run_chromium(
        out / "report.html",
        tmp_path / "p",
        f"--screenshot={shot}",
        "--window-size=1200,1600",
        "--hide-scrollbars",
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1200)
    dark = (pixels < 100).mean()  # text and rules
    assert 0.005 < dark < 0.3


# --- print and PDF: chromium --print-to-pdf, then poppler's pdftotext and pdftoppm ---------------

PDFTOTEXT, PDFTOPPM = shutil.which("pdftotext"), shutil.which("pdftoppm")
needs_poppler = pytest.mark.skipif(
    PDFTOTEXT is None or PDFTOPPM is None, reason="poppler-utils (pdftotext, pdftoppm) missing"
)


@pytest.fixture(scope="module")
def printed(hand_result, tmp_path_factory):
    """report.html printed to PDF by chromium: the PDF and the text of each page."""
    tmp = tmp_path_factory.mktemp("print")
    out = write_report(hand_result, tmp / "out")
    pdf = tmp / "report.pdf"
    run = run_chromium(
        out / "report.html", tmp / "p", "--no-pdf-header-footer", f"--print-to-pdf={pdf}"
    )
    assert run.returncode == 0 and pdf.exists(), run.stderr[-2000:]
    pages = []
    while True:
        n = len(pages) + 1
        text = subprocess.run(
            [PDFTOTEXT, "-layout", "-f", str(n), "-l", str(n), str(pdf), "-"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if text.returncode != 0:
            break
        pages.append(text.stdout)
    return pdf, pages, out


def _page_of(pages: list[str], needle: str) -> int:
    hits = [i for i, page in enumerate(pages) if needle in " ".join(page.split())]
    assert hits, f"{needle!r} is not in the PDF"
    return hits[0]


@needs_poppler
def test_print_keeps_each_table_with_its_caption_and_shows_collapsed_sections(printed, hand_result):
    from autoglmm.report import tables

    pdf, pages, _ = printed
    assert len(pages) >= 3
    # every short table is on one page: its caption and its note (the last line) together
    fit = hand_result.optimal
    checks = {
        "Table 1. Predictors in ranking order": "Importance: MERF out-of-bag",
        "Table 2. Forward selection of fixed effects": "Each candidate adds one predictor",
        "Table 4. Random slopes": "Each row adds a random slope",
        "Table 5. Fixed effects": "z = Estimate / SE (Wald)",
        "Table 7. Explained variance": "marginal and conditional: Nakagawa",
    }
    assert len(tables.variable_map(hand_result)) < 40 and len(fit.fixef) < 40
    for caption, note in checks.items():
        assert _page_of(pages, caption) == _page_of(pages, note), caption
    # a caption never sits alone at the foot of a page
    for page in pages:
        lines = [ln.strip() for ln in page.splitlines() if ln.strip()]
        assert lines and not lines[-1].startswith(("Table ", "Figure ")), lines[-1]
    # collapsed <details> are open in print: the LaTeX source and the parameters show
    text = " ".join(" ".join(pages).split())
    assert r"\begin{align" in text and "Search parameters" in text and "icc_threshold" in text
    # the formula is not justified: single spaces between its terms, as written
    formula_line = next(ln for ln in " ".join(pages).splitlines() if "math ~ 1 +" in ln)
    assert "  " not in formula_line.strip(), formula_line


@needs_poppler
def test_printed_pages_are_rendered_and_none_is_blank(printed, tmp_path):
    from PIL import Image

    pdf, pages, _ = printed
    subprocess.run([PDFTOPPM, "-r", "40", "-png", str(pdf), str(tmp_path / "pg")], check=True)
    images = sorted(tmp_path.glob("pg-*.png"))
    assert len(images) == len(pages)
    for path in images:
        pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert pixels.shape[0] > pixels.shape[1]  # portrait A4
        ink = (pixels < 200).mean()  # a page may hold only the three-line footer
        assert 0.0003 < ink < 0.3, (path.name, ink)  # ink, but not a black page
