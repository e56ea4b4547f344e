"""Plausible values and imputations on TIMSS-shaped SPSS files, end to end (SPEC 6.2).

One CLI run of the issue's command on small simulated BSG/BCG files (40 schools, 2% missing
per item, five PVs, five imputations) feeds every check: exclusions, pooling, result.json,
the report, and recovery of the true model against the single-outcome search.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from autoglmm.analyses import expand_outcomes, is_multiple, majority_terms, selection_frequency
from autoglmm.cli import app
from autoglmm.datasets import recovery
from autoglmm.errors import DataError
from autoglmm.lsa.simulate import simulate_timss

runner = CliRunner()
DESIGN_PREFIXES = ("ID", "BSMMAT", "BSSSCI", "BSMIBM", "JK")


@pytest.fixture(scope="module")
def timss(tmp_path_factory):
    return simulate_timss(tmp_path_factory.mktemp("timss"), seed=3, n_schools=40, n_items=40)


@pytest.fixture(scope="module")
def run(timss, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "DIR"
    args = [
        "search", str(timss.student_path), "--merge", str(timss.school_path),
        "--outcome", "BSMMAT0[1-5]", "--group", "IDSCHOOL", "--impute", "5", "--seed", "1",
        "--ntree", "300", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result, out, json.loads((out / "result.json").read_text())


def test_simulated_files_look_like_timss(timss):
    from autoglmm.data import read_data

    student = read_data(timss.student_path)
    school = read_data(timss.school_path)
    assert {"IDCNTRY", "IDSCHOOL", "IDSTUD", "TOTWGT", "JKZONE", "BSMMAT05"} <= set(student)
    assert len(school) == 40 and school["IDSCHOOL"].is_unique
    assert student.attrs["variable_labels"]["IDSTUD"] == "*STUDENT ID*"
    assert "Omitted or invalid" in student.attrs["value_labels"]["conf_01"].values()
    items = [c for c in student.columns if c[:4] in ("like", "conf", "valu", "bull")]
    shares = student[items].isna().mean()
    assert 0.01 < shares.mean() < 0.03  # 2% per item, read back from SPSS user-missing codes
    assert student["BSMMAT01"].corr(student["BSMMAT02"]) > 0.8


def test_every_design_variable_is_excluded_with_its_reason(run):
    _, _, data = run
    excluded = {e["column"]: e for e in data["dropped"]["excluded_predictors"]}
    design = [c for c in excluded if c.startswith(DESIGN_PREFIXES) or "WGT" in c]
    assert {"IDSTUD", "TOTWGT", "SENWGT", "HOUWGT", "SCHWGT", "JKREP", "BSMMAT02"} <= set(design)
    assert all(excluded[c]["reason"] == "convention" for c in design)
    ranked = {r["predictor"] for r in data["ranking"]}
    assert not [c for c in ranked if c.startswith(DESIGN_PREFIXES) or "WGT" in c]


def test_pooled_block_and_students_kept(run, timss):
    _, out, data = run
    pv = data["plausible_values"]
    assert pv["outcomes"] == [f"BSMMAT0{k}" for k in range(1, 6)]
    assert pv["imputations"] == 5
    assert [p["outcome"] for p in pv["per_outcome"]] == pv["outcomes"]
    assert [p["imputation"] for p in pv["per_outcome"]] == [0, 1, 2, 3, 4]
    pooled = pv["pooled"]
    assert pooled["formula"].startswith("BSMMAT0[1-5] ~ ")
    for term, row in pooled["fixef"].items():
        assert row["se"] > 0 and 0 <= row["fmi"] <= 1 and row["df"] > 1, term
    # students kept: all students of the schools that pass the size rule (imputed, none lost)
    sizes = timss.student.groupby("IDSCHOOL").size()
    eligible = int(sizes[sizes >= 20].sum())
    assert data["n_obs"] >= 0.9 * eligible
    html = (out / "report.html").read_text()
    assert "Pooled fixed effects" in html and "of 5" in html


def test_truth_recovered_as_well_as_the_single_outcome_search(run, timss, tmp_path):
    """Against one PV of the same files *without* missing values (same seed, same draws)."""
    from autoglmm.selection import search

    _, _, data = run
    pooled_terms = [t for t in data["plausible_values"]["pooled"]["fixef"] if t != "(Intercept)"]
    complete = simulate_timss(tmp_path, seed=3, n_schools=40, n_items=40, missing=0.0)
    assert complete.student["BSMMAT01"].equals(timss.student["BSMMAT01"])
    single = search(
        complete.student_path, "BSMMAT01", "IDSCHOOL", merge=[complete.school_path], seed=1,
        ntree=300, progress=False,
    )  # fmt: skip
    multi = recovery(
        timss.truth,
        {
            "fixed": [t for t in pooled_terms if ":" not in t],
            "interactions": [t for t in pooled_terms if ":" in t],
        },
    )
    one = recovery(timss.truth, single.optimal_terms)
    assert len(multi["found"]) >= len(one["found"]) - 1
    assert len(multi["false"]) <= len(one["false"]) + 1
    true_fixed = set(timss.truth.fixed)
    assert len(set(multi["found"]) & true_fixed) >= 6
    # pooled estimates are close to the truth for the recovered strong effects
    fixef = data["plausible_values"]["pooled"]["fixef"]
    for term in ("ses", "study_hours"):
        if term in fixef:
            truth = timss.truth.fixed[term]
            assert abs(fixef[term]["estimate"] - truth) < 3 * fixef[term]["se"] + 2, term


def test_console_shows_the_pooled_table(run):
    result, _, _ = run
    assert "Pooled over 5 analyses" in result.output
    assert "5 of 5" in result.output


def test_outcome_lists_and_globs():
    cols = ["BSMMAT01", "BSMMAT02", "BSMMAT03", "PV1MATH", "PV2MATH", "x"]
    assert expand_outcomes("BSMMAT0[1-2]", cols) == ["BSMMAT01", "BSMMAT02"]
    assert expand_outcomes("PV*MATH", cols) == ["PV1MATH", "PV2MATH"]
    assert expand_outcomes("x, BSMMAT03", cols) == ["x", "BSMMAT03"]
    assert is_multiple("a,b") and is_multiple("PV[0-9]*") and not is_multiple("math")
    with pytest.raises(DataError, match="matches no column"):
        expand_outcomes("PV*READ", cols)


def test_majority_model_is_hierarchical():
    class _Sample:
        group = "g"

    class _Res:
        sample = _Sample()

    terms = [
        {"fixed": ["a", "b"], "interactions": ["a:b"], "random_slopes": ["a"]},
        {"fixed": ["a", "c"], "interactions": ["a:c"], "random_slopes": []},
        {"fixed": ["a", "b", "c"], "interactions": ["a:c"], "random_slopes": ["a"]},
    ]
    freq = selection_frequency(terms, "g")
    assert freq["a"] == 1.0 and freq["b"] == pytest.approx(2 / 3) and freq["(a | g)"] > 0.5
    chosen = majority_terms(freq, [_Res()])
    assert chosen == {"fixed": ["a", "b", "c"], "interactions": [("a", "c")], "slopes": ["a"]}
    assert np.isclose(freq["a:b"], 1 / 3)
