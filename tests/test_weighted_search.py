"""search() with sampling weights: unweighted selection, weighted refits of the four models."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from autoglmm import fit, search
from autoglmm.cli import app
from autoglmm.datasets import simulate_lsa
from autoglmm.errors import DataError, UsageError
from autoglmm.report import load_schema


@pytest.fixture(scope="module")
def weighted_lsa():
    s = simulate_lsa(seed=3, n_schools=40, n_items=30, n_true_items=1)
    data = s.data.copy()
    rng = np.random.default_rng(7)
    schools = data["school"].unique()
    w2 = dict(zip(schools, rng.uniform(1, 6, len(schools)), strict=True))
    data["SCHWGT"] = data["school"].map(w2)
    data["TOTWGT"] = data["SCHWGT"] * rng.uniform(1, 3, len(data))
    return s, data


def _run(s, data, **kw):
    ranking = ["ses", *[k for k in s.truth.fixed if k != "ses"][:3]]
    return search(data, "math", "school", ranking=ranking, n_essential=2, max_slopes=1,
                  progress=False, **kw)  # fmt: skip


def test_selection_is_unweighted_and_reported_models_are_refitted(weighted_lsa):
    s, data = weighted_lsa
    plain = _run(s, data)
    res = _run(s, data, level1_weights="TOTWGT", level2_weights="SCHWGT")
    assert [st.to_dict() for st in res.steps] == [st.to_dict() for st in plain.steps]
    assert set(res.weighted) == {"null", "base", "preliminary", "optimal"}
    assert "TOTWGT" not in res.sample.predictors and "SCHWGT" not in res.sample.predictors
    opt = res.weighted["optimal"]
    assert opt.formula == plain.optimal.formula
    direct = fit(opt.formula, res.sample.data.join(data[["TOTWGT", "SCHWGT"]]),
                 level1_weights="TOTWGT", level2_weights="SCHWGT")  # fmt: skip
    assert opt.loglik == pytest.approx(direct.loglik, abs=1e-8)
    np.testing.assert_allclose(opt.se, direct.se, rtol=1e-8)
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    jsonschema.validate(d, load_schema())
    w = d["models"]["optimal"]["weighted"]
    assert w["loglik"] == pytest.approx(opt.loglik)
    assert w["sampling_weights"]["level2_weights"] == "SCHWGT"
    assert "weighted" not in json.loads(json.dumps(plain.to_dict()))["models"]["optimal"]


def test_bad_weights_stop_the_search_at_once(weighted_lsa):
    s, data = weighted_lsa
    with pytest.raises(DataError, match="varies within"):
        _run(s, data, level2_weights="TOTWGT")
    with pytest.raises(DataError, match="unknown level-1 weights column"):
        _run(s, data, level1_weights="nope")
    with pytest.raises(UsageError, match="scaling"):
        _run(s, data, level2_weights="SCHWGT", weight_scaling="x")


def test_cli_search_with_weights(weighted_lsa, tmp_path):
    s, data = weighted_lsa
    path = tmp_path / "d.csv"
    data.to_csv(path, index=False)
    rank = tmp_path / "rank.txt"
    rank.write_text("ses\n")
    out = tmp_path / "out"
    args = ["search", str(path), "--outcome", "math", "--group", "school", "--ranking",
            str(rank), "--max-slopes", "0", "--n-essential", "0", "--no-progress",
            "--level1-weights", "TOTWGT", "--level2-weights", "SCHWGT",
            "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    assert result["models"]["null"]["weighted"]["sampling_weights"]["level1_weights"] == "TOTWGT"
    page = (out / "report.html").read_text()
    assert "The reported models with sampling weights" in page and "Robust SE" in page
    comparison = (out / "comparison.md").read_text()
    assert "Robust SE" in comparison and "'SCHWGT'" in comparison


def test_report_table_shows_both_fits(weighted_lsa):
    from autoglmm.report.weighted import weighted_table

    s, data = weighted_lsa
    res = _run(s, data, level1_weights="TOTWGT", level2_weights="SCHWGT")
    frame = weighted_table(res).to_frame()
    opt = frame[frame["Model"] == "optimal"]
    ses = opt.iloc[list(res.optimal.fixef.index).index("ses")]
    assert ses["Estimate"] == pytest.approx(res.optimal.fixef["ses"])
    assert ses["Weighted"] == pytest.approx(res.weighted["optimal"].fixef["ses"])
    assert ses["Robust SE"] == pytest.approx(res.weighted["optimal"].se["ses"])
    assert len(weighted_table(_run(s, data)).rows) == 0
