"""Every code block of the README runs as written, in an empty folder, in a fresh process.

Python blocks run with this interpreter; bash blocks with ``bash -e`` and this environment's
``autoglmm`` and ``python`` first on PATH. A block may be marked
``<!-- readme-test: not run (reason) -->`` only for a reason outside the package (it installs
the package, or needs a file users bring); R formula examples are not code to run. Blocks that
run a search or the forest are slow tests; the quick ones run in the default suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(
    r"(?:<!-- readme-test: not run \((?P<why>[^)]*)\) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```",
    re.S,
)  # noqa: E501
SLOW = re.compile(r"\b(search|rank|demo)\b|simulate_lsa\(")


def blocks() -> list[tuple[str, str, str | None]]:
    return [(m["lang"], m["code"], m["why"]) for m in FENCE.finditer(README.read_text())]


def _cases():
    out = []
    for i, (lang, code, why) in enumerate(blocks()):
        if lang not in ("python", "bash") or why:
            continue
        marks = [pytest.mark.slow] if SLOW.search(code) else []
        out.append(pytest.param(lang, code, id=f"block{i}-{lang}", marks=marks))
    return out


def test_readme_blocks_are_accounted_for():
    found = blocks()
    langs = [lang for lang, _, _ in found]
    assert langs.count("python") >= 3 and langs.count("bash") >= 2
    not_run = [why for lang, _, why in found if why]
    # one install block and the examples on TIMSS files users bring (the same paths run on
    # simulated TIMSS-shaped files in `autoglmm demo --timss`, which is run)
    assert len(not_run) <= 5 and all("install" in w or "needs" in w for w in not_run), not_run
    quick = [p for p in _cases() if not p.marks]
    assert quick, "at least one README block runs in the default suite"


def test_readme_names_the_demo_folder_the_cli_writes():
    from autoglmm import cli

    default = cli.demo_command.__defaults__[0].default
    assert f"`{default}/`" in README.read_text()


@pytest.mark.parametrize(("lang", "code"), _cases())
def test_readme_block_runs_as_written(lang, code, tmp_path):
    env = dict(os.environ)
    paths = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    env["PATH"] = os.pathsep.join([*paths, env.get("PATH", "")])
    env["MPLBACKEND"] = "Agg"
    if lang == "python":
        script = tmp_path / "block.py"
        script.write_text(code)
        cmd = [sys.executable, str(script)]
    else:
        script = tmp_path / "block.sh"
        script.write_text("set -eo pipefail\n" + code)
        cmd = ["bash", str(script)]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])
    assert "Traceback" not in run.stderr
    if "lrt(" in code:
        assert "Likelihood-ratio test" in run.stdout  # printed as a table, not a dataclass
    if "report(" in code or "--out results/" in code:
        assert (tmp_path / "results" / "report.html").is_file()
