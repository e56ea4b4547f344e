"""`autoglmm rank`: writes the ranking CSV atomically, prints the top, one-line errors."""

from __future__ import annotations

import pandas as pd
import pytest
from test_ranking import TRUE, simulate
from typer.testing import CliRunner

from autoglmm.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("rank") / "students.csv"
    simulate(seed=3).to_csv(path, index=False)
    return path


def test_rank_writes_csv_and_prints_top(csv_path, tmp_path):
    out = tmp_path / "ranking.csv"
    args = ["rank", str(csv_path), "--outcome", "y", "--group", "school", "--ntree", "100"]
    result = runner.invoke(app, [*args, "--seed", "4", "--out", str(out), "--top", "5"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert set(table["predictor"][:3]) == set(TRUE)
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    printed = [line.split()[1] for line in result.output.splitlines() if line[:5].strip().isdigit()]
    assert printed == table["predictor"][:5].tolist()
    assert "seed 4" in result.output


def test_rank_bad_column_is_one_line_exit_1(csv_path, tmp_path):
    out = tmp_path / "ranking.csv"
    result = runner.invoke(
        app, ["rank", str(csv_path), "--outcome", "nope", "--group", "school", "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "nope" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_rank_bad_mtry_is_usage_error(csv_path):
    args = ["rank", str(csv_path), "--outcome", "y", "--group", "school", "--mtry", "999"]
    result = runner.invoke(app, [*args, "--ntree", "10", "--no-progress"])
    assert result.exit_code == 2
