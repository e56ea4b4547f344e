"""The CLI shell: --version/--help, and user errors as one line with exit code 1 or 2."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import autoglmm
from autoglmm import cli
from autoglmm.cli import app, fail
from autoglmm.errors import DataError, UsageError

runner = CliRunner()


def _one_error_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    assert lines[0].startswith("error: ")
    return lines[0]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"autoglmm {autoglmm.__version__}\n"


def test_help_describes_the_tool():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "generalized linear mixed model" in result.output
    assert "--version" in result.output


def test_fail_prints_one_line_and_maps_the_exit_code(capsys):
    exit_data = fail(DataError("the group column 'g' has a single value; choose another"))
    exit_usage = fail(UsageError("unknown family 'gamma'; use one of gaussian"))
    assert isinstance(exit_data, typer.Exit) and exit_data.exit_code == 1
    assert exit_usage.exit_code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: the group column 'g' has a single value; choose another",
        "error: unknown family 'gamma'; use one of gaussian",
    ]


def _throwaway_app() -> typer.Typer:
    """A fresh app whose commands raise without catching, as a careless command would."""
    fresh = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @fresh.command()
    def data_problem() -> None:
        raise DataError("data file not found: x.sav; check the path")

    @fresh.command()
    def usage_problem() -> None:
        raise UsageError("unknown family 'gamma'; use gaussian")

    @fresh.command()
    def caught() -> None:
        try:
            raise DataError("unknown outcome column: 'yy'; check the spelling")
        except DataError as err:
            raise fail(err) from None

    return fresh


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        ("data-problem", 1, "error: data file not found: x.sav; check the path"),
        (
            "usage-problem",
            2,
            "error: unknown family 'gamma'; use gaussian",
        ),
        ("caught", 1, "error: unknown outcome column: 'yy'; check the spelling"),
    ],
)
def test_main_turns_errors_into_one_line_and_exit_code(monkeypatch, capsys, command, code, message):
    monkeypatch.setattr(cli, "app", _throwaway_app())
    monkeypatch.setattr(sys, "argv", ["autoglmm", command])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == code
    captured = capsys.readouterr()
    assert _one_error_line(captured.err) == message
    assert captured.out == ""


# --- data errors through a real command (fit reads its data with read_data) ---------------


def test_missing_data_file_through_the_cli(tmp_path):
    result = runner.invoke(app, ["fit", str(tmp_path / "nope.sav"), "-f", "y ~ 1 + (1 | g)"])
    assert result.exit_code == 1
    line = _one_error_line(result.output)
    assert "data file not found" in line and "nope.sav" in line


def test_unsupported_format_through_the_cli(tmp_path):
    path = tmp_path / "scores.xlsx"
    path.write_bytes(b"PK\x03\x04 not really excel")
    result = runner.invoke(app, ["fit", str(path), "-f", "y ~ 1 + (1 | g)"])
    assert result.exit_code == 1
    line = _one_error_line(result.output)
    assert "unsupported data format ('.xlsx')" in line and ".sav" in line


def test_corrupt_spss_file_through_the_cli(tmp_path):
    path = tmp_path / "broken.sav"
    path.write_bytes(b"\x00garbage" * 50)
    result = runner.invoke(app, ["fit", str(path), "-f", "y ~ 1 + (1 | g)"])
    assert result.exit_code == 1
    assert "could not read broken.sav as SPSS" in _one_error_line(result.output)


def _console_script() -> Path:
    script = Path(sysconfig.get_path("scripts")) / "autoglmm"
    if not script.exists():
        pytest.skip("the autoglmm console script is not installed in this environment")
    return script


def test_installed_command_version_and_data_error(tmp_path):
    script = _console_script()
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.strip() == f"autoglmm {autoglmm.__version__}"
    missing = subprocess.run(
        [script, "fit", str(tmp_path / "nope.csv"), "-f", "y ~ 1 + (1 | g)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert "data file not found" in _one_error_line(missing.stderr)
    assert not any(tmp_path.iterdir())  # nothing written
