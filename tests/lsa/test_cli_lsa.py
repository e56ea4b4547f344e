"""CLI: --merge, --lsa and the loud sample-loss warning; rank's --predictors/--exclude/--merge."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from autoglmm.cli import app
from autoglmm.lsa.simulate import simulate_timss

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    sim = simulate_timss(tmp_path_factory.mktemp("t"), seed=5, n_schools=24, n_items=20)
    return sim


def test_rank_merges_and_skips_design_variables(files, tmp_path):
    out = tmp_path / "rank.csv"
    args = [
        "rank", str(files.student_path), "--outcome", "BSMMAT01", "--group", "IDSCHOOL",
        "--merge", str(files.school_path), "--exclude", "age", "--ntree", "50", "--seed", "1",
        "--no-progress", "--out", str(out),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    names = set(pd.read_csv(out)["predictor"])
    assert "sch_resources" in names and "ses" in names and "age" not in names
    assert not [n for n in names if n.startswith(("ID", "BSM", "BSS", "JK")) or "WGT" in n]
    only = tmp_path / "only.csv"
    args[-1] = str(only)
    args[args.index("--exclude") : args.index("--exclude") + 2] = ["--predictors", "ses,TOTWGT"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(only)["predictor"]) == {"ses", "TOTWGT"}  # named: kept


def test_lsa_none_keeps_design_columns_as_candidates(files, tmp_path):
    ranking = tmp_path / "r.txt"
    ranking.write_text("ses\nTOTWGT\n")
    base = [
        "search", str(files.student_path), "--outcome", "BSMMAT01", "--group", "IDSCHOOL",
        "--ranking", str(ranking), "--no-progress", "--max-missing", "0.5",
    ]  # fmt: skip
    auto = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert auto.exit_code == 0, auto.output
    none = runner.invoke(app, [*base, "--lsa", "none", "--out", str(tmp_path / "n")])
    assert none.exit_code == 0, none.output
    excluded = {}
    for name in ("a", "n"):
        data = json.loads((tmp_path / name / "result.json").read_text())
        excluded[name] = {e["column"]: e["reason"] for e in data["dropped"]["excluded_predictors"]}
    assert excluded["a"]["TOTWGT"] == "convention" and excluded["a"]["BSMMAT02"] == "convention"
    assert "TOTWGT" not in excluded["n"] and "BSMMAT02" not in excluded["n"]
    bad = runner.invoke(app, [*base, "--lsa", "pirls"])
    assert bad.exit_code == 2 and "unknown lsa convention" in bad.output


def test_sample_loss_warning_is_loud(tmp_path):
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(12), 25)
    df = pd.DataFrame({"y": rng.normal(size=300) + rng.normal(size=12)[g] * 2, "g": g})
    for k in range(8):
        col = rng.normal(size=300)
        col[rng.random(300) < 0.06] = np.nan
        df[f"x{k}"] = col
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    ranking = tmp_path / "r.txt"
    ranking.write_text("x0\n")
    out = tmp_path / "o"
    args = ["search", str(path), "-y", "y", "-g", "g", "--ranking", str(ranking),
            "--no-progress", "--min-group-size", "5", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "WARNING: complete cases keep" in result.output
    data = json.loads((out / "result.json").read_text())
    assert data["warnings"] and "complete cases keep" in data["warnings"][0]
    assert "complete cases keep" in (out / "report.html").read_text()


@pytest.mark.slow
def test_demo_timss_runs_the_whole_path(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(
        app, ["demo", "--timss", "--out", str(out), "--ntree", "300", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "data" / "BSG.sav").exists() and (out / "data" / "BCG.sav").exists()
    data = json.loads((out / "result.json").read_text())
    assert data["plausible_values"]["imputations"] == 5
    assert "Pooled over 5 analyses" in result.output
    assert "true predictors found" in result.output
