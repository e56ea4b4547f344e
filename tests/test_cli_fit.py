"""CLI `autoglmm fit`: JSON and text output, exit codes for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoglmm.cli import app

runner = CliRunner()
REFERENCE_DIR = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def sleep_csv(tmp_path_factory, reference_data):
    path = tmp_path_factory.mktemp("cli") / "sleep.csv"
    reference_data("sleepstudy.csv").to_csv(path, index=False)
    return str(path)


def test_fit_json_matches_lme4(sleep_csv, lme4_reference):
    ref = lme4_reference["sleepstudy_reml"]
    result = runner.invoke(app, ["fit", sleep_csv, "--formula", ref["formula"], "--reml", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["loglik"] == pytest.approx(ref["logLik"], abs=1e-5)
    assert out["reml"] is True and out["converged"] is True and out["singular"] is False
    assert out["fixef"]["Days"] == pytest.approx(ref["fixef"]["Days"], rel=1e-4)
    assert out["se"]["Days"] == pytest.approx(ref["se"]["Days"], rel=1e-3)
    assert out["nobs"] == 180 and out["ngroups"] == 18 and out["df"] == 6


def test_fit_prints_summary_without_json(sleep_csv):
    result = runner.invoke(app, ["fit", sleep_csv, "--formula", "Reaction ~ Days + (1 | Subject)"])
    assert result.exit_code == 0
    assert "Fixed effects:" in result.stdout and "Random effects:" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--formula", "Reaction ~ Days"], 2, "no random term"),
        (["--formula", "Reaction ~ Nope + (1 | Subject)"], 1, "unknown column"),
        (["--formula", "Reaction ~ Days + (1 | Subject)", "--family", "gamma"], 2, "family"),
        (["--formula", "Reaction ~ center(Days) + (1 | Subject)"], 2, "unknown function"),
        (["--formula", "cbind(Reaction, Days) ~ (1 | Subject)"], 2, "family='binomial'"),
        (["--formula", "Reaction ~ Days + (1 | `Sub ject`)"], 1, "unknown column(s) Sub ject"),
    ],
)
def test_bad_input_exit_codes(sleep_csv, args, code, needle):
    result = runner.invoke(app, ["fit", sleep_csv, *args])
    assert result.exit_code == code
    assert needle in result.output and "Traceback" not in result.output


def test_missing_file_is_a_data_error(tmp_path):
    result = runner.invoke(app, ["fit", str(tmp_path / "no.csv"), "--formula", "y ~ (1 | g)"])
    assert result.exit_code == 1 and "not found" in result.output


@pytest.mark.parametrize("case", ["ome_cbind", "mmmec_offset", "odd_names"])
def test_r_formulas_from_the_command_line(case):
    """The formula of the R script, pasted into the shell, gives lme4's log-likelihood."""
    ref = json.loads((REFERENCE_DIR / "syntax_reference.json").read_text(encoding="utf-8"))[case]
    args = ["fit", str(REFERENCE_DIR / ref["data"]), "--formula", ref["formula"]]
    result = runner.invoke(app, [*args, "--family", ref["family"], "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["loglik"] >= ref["logLik"] - 1e-6
    assert out["loglik"] == pytest.approx(ref["logLik"], abs=3e-5)
