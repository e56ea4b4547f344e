"""The CLI shell: --version/--help, and user errors as one line with exit code 1 or 2."""

from __future__ import annotations

import re
import signal
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


# --- command-line mistakes: one line, exit 2, never a box -----------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["search", "data.csv", "-y", "a", "-g", "b", "--bogus"], "no such option: --bogus"),
        (["serch"], "no such command 'serch'"),
        (["search"], "missing argument 'DATA'"),
        (["search", "d.csv", "-y", "a", "-g", "b", "--alpha", "x"], "invalid value for"),
        (["rank", "d.csv", "-y", "a", "-g", "b", "--n-jobs", "0"], "--n-jobs must be"),
        (["search", "d.csv", "-y", "a", "-g", "b", "--n-jobs", "0"], "--n-jobs must be"),
    ],
)
def test_command_line_mistakes_are_one_line_with_exit_2(args, words):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert words in line
    assert "╭" not in result.output and "Usage:" not in result.output


def test_unknown_option_through_the_installed_entry_point(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv[0] = 'autoglmm'; "
         "from autoglmm.console import main; main()", "search", "x.csv", "--bogus"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stdout == ""
    line = _one_error_line(run.stderr)
    assert line.startswith("error: no such option: --bogus") and "autoglmm search --help" in line


@pytest.mark.parametrize("command", ["search", "rank", "fit", "demo"])
def test_help_shows_flags_without_a_value_and_data_without_braces(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    text = result.output
    assert "<bool>" not in text and "{" not in text and "╭" not in text
    usage = text.splitlines()[0]
    assert usage.endswith("[OPTIONS]" if command == "demo" else "[OPTIONS] DATA"), usage
    assert re.search(r"--help\s{2,}Show this message", text)
    if command == "search":
        assert re.search(r"--force\s{2,}Search even below", text)  # a flag: no value shown
        assert "--ntree <int>" in text  # an option that takes a value says which


# --- Ctrl-C: one line and exit 130 at every moment, never a traceback or a fatal error ------

CHILD = """
import os, signal, sys
sys.argv = ["autoglmm", *sys.argv[2:]]
target = sys.argv_target = {target!r}

class KillAtImport:
    def find_spec(self, name, path=None, target=None):
        if name == {target!r}:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, KillAtImport())
from autoglmm.console import main
main()
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    from autoglmm.datasets import simulate_lsa

    path = tmp_path_factory.mktemp("ctrlc") / "small.csv"
    simulate_lsa(seed=2, n_schools=25, n_items=20).data.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("target", ["typer", "pandas", "numba", "autoglmm.selection"])
def test_ctrl_c_while_importing_is_one_line_and_exit_130(target, small_csv, tmp_path):
    """SIGINT delivered exactly while the module ``target`` is being imported."""
    code = CHILD.format(target=target)
    args = ["search", str(small_csv), "-y", "math", "-g", "school", "--ntree", "20",
            "--no-progress", "--out", str(tmp_path / "out")]  # fmt: skip
    # SIGINT's default action in the child even when pytest runs in the background, where the
    # shell starts it with SIGINT ignored and children inherit that (CI need not be a terminal)
    run = subprocess.run(
        [sys.executable, "-c", code, "-", *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, preexec_fn=_default_sigint,
    )  # fmt: skip
    assert run.returncode == 130, run.stderr[-3000:]
    assert "Fatal Python error" not in run.stderr
    assert _one_error_line(run.stderr) == (
        "error: interrupted (Ctrl-C); nothing was written half-way"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
