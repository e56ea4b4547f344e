"""The search's decisions, step for step, against a record made before the overhead work.

``tests/reference/decisions_quick.json`` was written by
``python benchmarks/decisions.py record tests/reference/decisions_quick.json --quick``
with the search as it was before the prepared-design path (issue 17). A change to the
search's path to the engine (prepared designs, incremental cross-products, reused fits)
must leave every decision (stage, term, status, reason) identical, every p-value equal to
1e-8 and every log-likelihood to 1e-6. The cases cover the three stages, the scan and the
paper's rule, gaussian and binomial, a collinear candidate and a 3-level factor.

Re-recorded on 2026-11-26 when the LMM's optimizer changed from scipy's L-BFGS-B to
:mod:`autoglmm.engine.bfgs`: against the old record every decision was identical and every
log-likelihood agreed to 8e-10; one p-value (0.986, chi-square 3e-4, where p is most
sensitive) moved by 3.6e-8 and R² by up to 1.4e-6 (R² follows theta, which a flat ridge
such as a singular random slope leaves loose). Both moved toward a run with ``gtol``
1e-12 (that p: from 3.6e-8 away to 2.5e-10; that R²: from 1.4e-6 to 3e-8), so the old
record was the less exact one.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def net():
    spec = importlib.util.spec_from_file_location("decisions", ROOT / "benchmarks/decisions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decisions_identical_to_the_record(net):
    old = json.loads((ROOT / "tests/reference/decisions_quick.json").read_text())
    new = net.record(quick=True)
    assert net.compare(old, new, p_tol=1e-8, ll_tol=1e-6) == []
    steps, _ = net.max_p_difference(old, new)
    assert steps == sum(len(case["steps"]) for case in old.values()) > 40
    statuses = {s["status"] for case in new.values() for s in case["steps"]}
    assert statuses == {"accepted", "rejected", "skipped"}


def test_compare_sees_a_changed_decision(net):
    old = json.loads((ROOT / "tests/reference/decisions_quick.json").read_text())
    new = json.loads(json.dumps(old))
    case = next(iter(new))
    new[case]["steps"][1]["status"] = "accepted"
    new[case]["steps"][2]["p"] += 1e-7
    problems = net.compare(old, new)
    assert len(problems) == 2 and "status" in problems[0] and " p:" in problems[1]
