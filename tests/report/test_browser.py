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
