"""The report's place in the package: its own writer, typed inputs, and one-way dependencies.

``SearchResult`` (the result) calls the report; the report never imports the result's modules,
so there is no import cycle hidden behind lazy imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path

import autoglmm.report as report
from autoglmm.search_result import SearchResult, Step

REPORT_DIR = Path(report.__file__).parent
UPWARD = ("autoglmm.search_result", "autoglmm.selection", "autoglmm.sample", "autoglmm.ranking")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_report_never_imports_the_result_or_the_search():
    for path in sorted(REPORT_DIR.glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith(UPWARD)}
        assert not bad, (path.name, bad)


def test_importing_the_report_loads_no_result_module():
    code = "import sys, autoglmm.report; print(sorted(m for m in sys.modules if m in %r))"
    run = subprocess.run(
        [sys.executable, "-c", code % (UPWARD,)], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "[]"


def test_package_init_only_reexports_the_writer():
    tree = ast.parse((REPORT_DIR / "__init__.py").read_text())
    assert not [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert report.write_report.__module__ == "autoglmm.report.writer"


def test_search_result_fields_are_typed():
    from autoglmm.analyses import Pooling
    from autoglmm.ranking import Ranking
    from autoglmm.result import Fit
    from autoglmm.sample import AnalysisSample

    names = {"AnalysisSample": AnalysisSample, "Fit": Fit, "Ranking": Ranking, "Pooling": Pooling}
    hints = typing.get_type_hints(SearchResult, localns=names)  # TYPE_CHECKING imports
    assert hints["sample"] is AnalysisSample
    assert hints["null"] is Fit
    assert hints["optimal"] == Fit | None and hints["ranking"] == Ranking | None
    assert hints["steps"] == tuple[Step, ...]
    assert hints["optimal_terms"] == dict[str, list[str]]
    assert [name for name, hint in hints.items() if hint is typing.Any] == []
