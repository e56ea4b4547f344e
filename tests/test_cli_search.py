"""`autoglmm search` end to end on small files of every input format, and every bad input.

A given ranking file keeps these runs fast (no forest). Every bad input of SPEC section 4
must print one line, exit with the right code, and leave --out absent or untouched.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from typer.testing import CliRunner

from autoglmm.cli import app
from autoglmm.datasets import simulate_lsa

runner = CliRunner()


@pytest.fixture(scope="module")
def small():
    sim = simulate_lsa(seed=2, n_schools=30, n_items=20)
    truth = sim.truth
    keep = ["math", "school", "ses", truth.slopes[1], "study_hours", "sch_resources"]
    keep += [c for c in sim.data.columns if c.startswith("like_")][:4]
    data = sim.data[keep].copy()
    ranking = ["ses", truth.slopes[1], "study_hours", "sch_resources", "like_01"]
    return data, ranking


def write(data: pd.DataFrame, path) -> None:
    ext = path.suffix
    if ext == ".csv":
        data.to_csv(path, index=False)
    elif ext == ".parquet":
        data.to_parquet(path)
    elif ext == ".sav":
        labels = {c: f"label of {c}" for c in data.columns}
        pyreadstat.write_sav(data, str(path), column_labels=list(labels.values()))
    elif ext == ".dta":
        data.to_stata(path, write_index=False)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_search_each_format(small, tmp_path):
    data, ranking = small
    rank_file = tmp_path / "ranking.txt"
    rank_file.write_text("\n".join(ranking) + "\n")
    sizes = data.groupby("school").size()
    n_obs = int(sizes[sizes >= 20].sum())
    logliks = {}
    for ext in (".csv", ".parquet", ".sav", ".dta"):
        path = tmp_path / f"students{ext}"
        write(data, path)
        out = tmp_path / f"out{ext}"
        res = run("search", path, "--outcome", "math", "--group", "school", "--ranking",
                  rank_file, "--out", out, "--no-progress", "--seed", 1)  # fmt: skip
        assert res.exit_code == 0, (ext, res.output)
        for name in ("result.json", "report.html", "steps.csv", "comparison.md",
                     "equation.tex", "importance.png", "importance.svg"):  # fmt: skip
            assert (out / name).is_file(), (ext, name)
        result = json.loads((out / "result.json").read_text())
        assert result["n_obs"] == n_obs
        assert result["steps"][0]["term"] == "ses" and result["steps"][0]["status"] == "accepted"
        assert result["manifest"]["params"]["ranking"] == str(rank_file)
        # the console ends with the comparison tables and the equation
        assert "Forward selection of fixed effects" in res.output and "y_ij = " in res.output
        logliks[ext] = result["models"]["optimal"]["loglik"]
        if ext == ".sav":  # SPSS variable labels reach the report's variable map
            assert "label of ses" in (out / "report.html").read_text()
    assert max(logliks.values()) - min(logliks.values()) < 1e-6, logliks


def test_icc_gate_explains_and_writes_reason(small, tmp_path):
    data, ranking = small
    flat = data.copy()
    flat["school"] = np.random.default_rng(1).permutation(flat["school"].to_numpy())
    path = tmp_path / "flat.csv"
    flat.to_csv(path, index=False)
    out = tmp_path / "out"
    res = run("search", path, "-y", "math", "-g", "school", "--predictors", ",".join(ranking),
              "--out", out, "--no-progress")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Search stopped" in res.output and "force" in res.output
    result = json.loads((out / "result.json").read_text())
    assert result["glmm_needed"] is False and "ICC" in result["stop_reason"]
    assert result["steps"] == [] and result["models"]["optimal"] is None
    rank_file = tmp_path / "r.txt"
    rank_file.write_text("\n".join(ranking))
    forced = run("search", path, "-y", "math", "-g", "school", "--ranking", rank_file,
                 "--force", "--no-progress")  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert "Forward selection" in forced.output


def _bad_inputs(tmp_path, data, ranking):
    """(name, args, exit code, words of the message) for each SPEC section 4 case."""
    good = tmp_path / "good.csv"
    data.to_csv(good, index=False)
    txt = tmp_path / "data.txt"
    txt.write_text("not a data file")
    with_inf = data.copy()
    with_inf.loc[3, "ses"] = np.inf
    inf_path = tmp_path / "inf.csv"
    with_inf.to_csv(inf_path, index=False)
    const_group = data.assign(school=7)
    const_path = tmp_path / "const.csv"
    const_group.to_csv(const_path, index=False)
    constant = data.assign(flat=1.0)
    constant_path = tmp_path / "constant.csv"
    constant.to_csv(constant_path, index=False)
    bad_rank = tmp_path / "bad_rank.txt"
    bad_rank.write_text("ses\nnot_a_column\n")
    base = ["-y", "math", "-g", "school", "--no-progress"]
    return [
        ("missing file", [tmp_path / "nope.csv", *base], 1, "not found"),
        ("unreadable format", [txt, *base], 1, "unsupported data format"),
        ("unknown column", [good, "-y", "maths", "-g", "school"], 1, "unknown outcome"),
        ("outcome vs family", [good, *base, "--family", "binomial"], 1, "binomial"),
        ("too few groups", [good, *base, "--min-group-size", 100000], 1, "group"),
        ("no usable predictors", [constant_path, *base, "--predictors", "flat"], 1, "predictor"),
        ("non-finite values", [inf_path, *base], 1, "infinite"),
        ("constant group", [const_path, *base], 1, "group column"),
        ("ranking with unknown names", [good, *base, "--ranking", bad_rank], 1, "not_a_column"),
        ("unknown family", [good, *base, "--family", "gamma"], 2, "family"),
        ("alpha out of range", [good, *base, "--alpha", 2, "--ranking", bad_rank], 2, "alpha"),
    ]


def test_bad_inputs_write_nothing(small, tmp_path):
    data, ranking = small
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for name, args, code, words in _bad_inputs(tmp_path, data, ranking):
        for out in (tmp_path / f"new_{name.replace(' ', '_')}", kept):
            res = run("search", *args, "--out", out)
            assert res.exit_code == code, (name, res.output)
            lines = [line for line in res.output.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), (name, res.output)
            assert words in lines[0], (name, lines[0])
            assert "Traceback" not in res.output
            if out is kept:
                assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"], name
                assert (kept / "notes.txt").read_text() == "mine"
            else:
                assert not out.exists(), name


def test_demo_small(tmp_path, monkeypatch):
    """The demo path on small data: report written, recovered model printed next to truth."""
    import autoglmm.datasets as datasets

    real = datasets.simulate_lsa

    def small_sim(seed=0, family="gaussian", **kw):
        return real(seed=seed, family=family, n_schools=40, n_items=30)

    monkeypatch.setattr(datasets, "simulate_lsa", small_sim)
    out = tmp_path / "demo"
    res = run("demo", "--out", out, "--seed", 3, "--no-progress", "--ntree", 20)
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file()
    assert "Recovered model vs the true model" in res.output
    assert "true predictors found" in res.output and "true slopes found" in res.output


@pytest.mark.slow
def test_demo_full_scale(tmp_path):
    """The README's first command at full scale: recovery figures and time (slow)."""
    out = tmp_path / "demo"
    res = run("demo", "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    found = result["optimal_terms"]
    assert {"ses"} <= set(found["fixed"]) and len(found["random_slopes"]) == 2
    assert "true predictors found" in res.output
