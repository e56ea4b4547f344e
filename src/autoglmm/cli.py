"""The ``autoglmm`` command: a thin typer app that parses arguments, calls the API, prints.

Each subcommand lives here as a short function; all logic is in the library. User errors
(:class:`autoglmm.errors.AutoGLMMError`) become one line on stderr and exit code 1 (data)
or 2 (usage), never a traceback.
"""

from __future__ import annotations

import sys

import typer

from autoglmm import __version__
from autoglmm.errors import AutoGLMMError

app = typer.Typer(
    name="autoglmm",
    help="Find an optimal generalized linear mixed model for hierarchical data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"autoglmm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Find an optimal generalized linear mixed model for hierarchical data."""


def fail(err: AutoGLMMError) -> typer.Exit:
    """Print a user error as one line and return the Exit to raise."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=err.exit_code)


# --- subcommands ---------------------------------------------------------------------------
# Each command catches AutoGLMMError and raises fail(err). Commands are added by the
# issues that implement them; keep each one short and put logic in the library.


@app.command("fit")
def fit_command(
    data: str = typer.Argument(..., help="Data file (.csv, .parquet, .sav, .dta, ...)."),
    formula: str = typer.Option(
        ..., "--formula", "-f", help="lme4 formula, e.g. 'y ~ x + (1 | g)'."
    ),
    family: str = typer.Option("gaussian", "--family", help="gaussian, binomial or poisson."),
    link: str = typer.Option(None, "--link", help="Link function (binomial: logit or probit)."),
    reml: bool = typer.Option(False, "--reml", help="Fit by REML (gaussian only)."),
    nagq: int = typer.Option(1, "--nagq", help="Quadrature points (GLMM; 1 = Laplace)."),
    weights: str = typer.Option(None, "--weights", help="Column of prior weights."),
    as_json: bool = typer.Option(False, "--json", help="Print the fit as JSON."),
) -> None:
    """Fit one mixed model and print its summary (or JSON with --json)."""
    import json

    from autoglmm.fitting import fit

    try:
        result = fit(formula, data, family=family, reml=reml, nagq=nagq, weights=weights, link=link)
    except AutoGLMMError as err:
        raise fail(err) from None
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.summary())


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except AutoGLMMError as err:  # a command that forgot to catch: still no traceback
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
