"""The weights benchmark harness (benchmarks/weights.py): its data and RESULTS.md section.

No timing assertions: timings are the benchmark's business, not the tests'.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import weights  # noqa: E402


def test_weighted_data_has_valid_informative_weights():
    bench, data = weights.weighted_data("gaussian")
    assert len(data) == bench.n_rows
    per_school = data.groupby(bench.group)["w_school"].nunique()
    assert (per_school == 1).all()  # a level-2 weight is constant within a school
    assert (data["w_total"] >= data["w_school"]).all()  # conditional weights are >= 1
    # informative: schools with a high mean outcome get small weights (sampled more)
    means = data.groupby(bench.group)[[bench.outcome, "w_school"]].mean()
    assert means.corr().iloc[0, 1] < -0.5
    assert set(weights.models(bench)) >= {"gaussian random intercept (18 predictors)"}


def test_section_is_replaced_not_duplicated(tmp_path):
    rows = [
        {"case": "m", "tool": "autoglmm", "status": "ok", "seconds": 0.1, "loglik": -10.0},
        {"case": "m", "tool": "WeMix", "status": "ok", "seconds": 50.0, "loglik": -10.0,
         "fixef_rel": 1e-9, "se_rel": 1e-8},
    ]  # fmt: skip
    path = tmp_path / "RESULTS.md"
    path.write_text("# results\n")
    for _ in range(2):
        weights.write_section(weights.section(rows, "a", "b", ("1", "2")), path)
    text = path.read_text()
    assert text.count(weights.BEGIN) == 1 and text.startswith("# results")
    assert "| m | WeMix | ok | 50 | 500x |" in text


def test_run_py_keeps_the_weights_section(tmp_path):
    import run

    path = tmp_path / "RESULTS.md"
    section = f"{weights.BEGIN}\n## weighted\n{weights.END}"
    path.write_text(f"# old\n\n{section}\n")
    machine = {"cores": "2", "cpu": "CPU X", "memory": "1 GB", "os": "L", "python": "3"}
    meta = {"started": "s", "finished": "f", "machine": machine, "versions": {"a": "1"}}
    text = run.write_results([], path, meta)
    assert "# old" not in text and text.count(section) == 1
    assert path.read_text() == text
