"""The ``autoglmm`` command: a thin typer app that parses arguments, calls the API, prints.

Each subcommand lives here as a short function; all logic is in the library. User errors
(:class:`autoglmm.errors.AutoGLMMError`) and command-line mistakes (an unknown option, a
missing value) become one line on stderr and exit code 1 (data) or 2 (usage), never a
traceback or a box; Ctrl-C becomes one line and exit code 130. Output paths are checked
before any work. When stdout is not a terminal (a pipe, a log file), ``search`` prints one
line per stage and each stage's table as the stage ends, instead of progress bars.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from typer.core import TyperCommand, TyperGroup

from autoglmm import __version__
from autoglmm.errors import AutoGLMMError, UsageError

# typer >= 0.20 vendors click as typer._click: take its classes from typer's public names.
_CLICK_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_USAGE_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class PlainUsage(TyperCommand):
    """A command whose usage line reads ``DATA``, not typer's ``{DATA}``."""

    def collect_usage_pieces(self, ctx):
        return [p.replace("{", "").replace("}", "") for p in super().collect_usage_pieces(ctx)]


class OneLineErrors(TyperGroup):
    """The app's click group: every error is one line (SPEC section 4), help is plain text."""

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if type(command) is TyperCommand:  # every subcommand, whoever added it
            command.__class__ = PlainUsage
        return command

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _CLICK_ERRORS as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # bare `autoglmm`: the help
                typer.echo(err.format_message())
                sys.exit(0)
            sys.exit(_echo_error(_click_message(err), err.exit_code))
        except typer.Abort:
            sys.exit(_echo_error("aborted", 1))
        except AutoGLMMError as err:
            sys.exit(_echo_error(str(err), err.exit_code))
        except KeyboardInterrupt:
            code = 130
        if code == 130:  # typer turns Ctrl-C into Exit(130)
            sys.exit(_echo_error("interrupted (Ctrl-C); nothing was written half-way", 130))
        sys.exit(code if isinstance(code, int) else 0)


def _click_message(err: Exception) -> str:
    message = " ".join(err.format_message().split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    ctx = getattr(err, "ctx", None)
    if isinstance(err, _USAGE_ERRORS) and ctx is not None:
        message += f"; see '{ctx.command_path} --help'"
    return message


def _echo_error(message: str, code: int) -> int:
    typer.echo(f"error: {message}", err=True)
    return code


app = typer.Typer(
    name="autoglmm",
    help="Find an optimal generalized linear mixed model for hierarchical data.",
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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


def _data_argument() -> typer.models.ArgumentInfo:
    return typer.Argument(
        ..., metavar="DATA", help="Data file (.csv, .parquet, .sav, .zsav, .dta, .sas7bdat)."
    )


def _check_n_jobs(n_jobs: int | None) -> None:
    if n_jobs is not None and n_jobs == 0:
        raise UsageError("--n-jobs must be a number of threads >= 1, or -1 for all cores; got 0")


def _streaming() -> bool:
    """Print stage lines and tables as they come: stdout is not a terminal."""
    return not sys.stdout.isatty()


def _bars(progress: bool) -> bool:
    """Progress bars only on a terminal (they are redrawn in place on stderr)."""
    return progress and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


# --- subcommands ---------------------------------------------------------------------------
# Each command catches AutoGLMMError and raises fail(err). Commands are added by the
# issues that implement them; keep each one short and put logic in the library.


@app.command("fit")
def fit_command(
    data: str = _data_argument(),
    formula: str = typer.Option(
        ..., "--formula", "-f", help="lme4 formula, e.g. 'y ~ x + (1 | g)'."
    ),
    family: str = typer.Option("gaussian", "--family", help="gaussian, binomial or poisson."),
    link: str = typer.Option(None, "--link", help="Link function (binomial: logit or probit)."),
    reml: bool = typer.Option(False, "--reml", help="Fit by REML (gaussian only)."),
    nagq: int = typer.Option(1, "--nagq", help="Quadrature points (GLMM; 1 = Laplace)."),
    weights: str = typer.Option(None, "--weights", help="Column of prior weights."),
    as_json: bool = typer.Option(False, "--json", help="Print the fit as JSON."),
    level1_weights: str = typer.Option(
        None, "--level1-weights", help="Level-1 sampling weights (e.g. TOTWGT): pseudo-ML."
    ),
    level2_weights: str = typer.Option(
        None, "--level2-weights", help="Level-2 sampling weights (e.g. SCHWGT): pseudo-ML."
    ),
    conditional_weights: bool = typer.Option(
        False, "--conditional-weights", help="Level-1 weights are conditional on the group."
    ),
    weight_scaling: str = typer.Option(
        "raw", "--weight-scaling", help="Level-1 weight scaling: raw, cluster or ess."
    ),
) -> None:
    """Fit one mixed model and print its summary (or JSON with --json)."""
    import json

    from autoglmm.fitting import fit

    try:
        result = fit(
            formula, data, family=family, reml=reml, nagq=nagq, weights=weights, link=link,
            level1_weights=level1_weights, level2_weights=level2_weights,
            conditional_weights=conditional_weights, weight_scaling=weight_scaling,
        )  # fmt: skip
    except AutoGLMMError as err:
        raise fail(err) from None
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.summary())


# --merge is repeatable (a list), so its Option is a module-level singleton (ruff B008).
_MERGE = typer.Option(None, "--merge", help="File joined by the group key (repeatable).")


def _names(value: str | None) -> list[str] | None:
    """Column names from a comma-separated option."""
    if not value:
        return None
    return [n.strip() for n in value.split(",") if n.strip()]


@app.command("search")
def search_command(
    data: str = _data_argument(),
    outcome: str = typer.Option(..., "--outcome", "-y", help="Outcome column."),
    group: str = typer.Option(..., "--group", "-g", help="Group column (e.g. school ID)."),
    out: str = typer.Option(None, "--out", "-o", help="Write every output into this folder."),
    family: str = typer.Option("gaussian", "--family", help="gaussian, binomial or poisson."),
    predictors: str = typer.Option(None, "--predictors", help="Candidates: a,b,c (default all)."),
    exclude: str = typer.Option(None, "--exclude", help="Columns to leave out: a,b,c."),
    ranking: str = typer.Option(None, "--ranking", help="File: one predictor per line."),
    min_group_size: int = typer.Option(20, "--min-group-size", help="Smallest group kept."),
    icc_threshold: float = typer.Option(0.1, "--icc-threshold", help="ICC gate."),
    force: bool = typer.Option(False, "--force", help="Search even below the ICC gate."),
    alpha: float = typer.Option(0.05, "--alpha", help="Test level of every stage."),
    alpha_fixed: float = typer.Option(None, "--alpha-fixed", help="Level for fixed effects."),
    alpha_interaction: float = typer.Option(None, "--alpha-interaction", help="Interactions."),
    alpha_slope: float = typer.Option(None, "--alpha-slope", help="Level for random slopes."),
    n_essential: int = typer.Option(3, "--n-essential", help="Top base predictors to cross."),
    patience: str = typer.Option(
        "all", "--patience", help="Consecutive misses ending a stage, or 'all' (1 = paper)."
    ),
    threshold: str = typer.Option(
        "auto", "--threshold", help="Test level: auto, alpha or bonferroni (alpha / m)."
    ),
    max_slopes: int = typer.Option(None, "--max-slopes", help="Most random slopes to add."),
    ntree: int = typer.Option(2000, "--ntree", help="Trees of the MERF ranking."),
    mtry: int = typer.Option(None, "--mtry", help="Predictors per split (default p/3)."),
    max_missing: float = typer.Option(0.2, "--max-missing", help="Most missing per predictor."),
    standardize: bool = typer.Option(False, "--standardize", help="z-score numeric predictors."),
    seed: int = typer.Option(None, "--seed", help="Seed of the ranking (reproducible runs)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    n_jobs: int = typer.Option(None, "--n-jobs", help="Parallel workers."),
    merge: list[str] = _MERGE,
    lsa: str = typer.Option("auto", "--lsa", help="auto, timss, pisa or none: skip IDs, weights."),
    impute: int = typer.Option(0, "--impute", help="Two-level multiple imputations (0: none)."),
    level1_weights: str = typer.Option(
        None, "--level1-weights", help="Level-1 sampling weights: refit the reported models."
    ),
    level2_weights: str = typer.Option(
        None, "--level2-weights", help="Level-2 sampling weights: refit the reported models."
    ),
    conditional_weights: bool = typer.Option(
        False, "--conditional-weights", help="Level-1 weights are conditional on the group."
    ),
    weight_scaling: str = typer.Option(
        "raw", "--weight-scaling", help="Level-1 weight scaling: raw, cluster or ess."
    ),
) -> None:
    """Find the optimal GLMM: rank predictors, then fixed effects, interactions, slopes.

    --outcome takes one column, a comma list or a glob ('BSMMAT0[1-5]'): several outcomes
    are plausible values, searched one by one and pooled by Rubin's rules.
    """
    from autoglmm.report.atomic import check_output_dir
    from autoglmm.selection import search

    stream = _streaming()
    try:
        _check_n_jobs(n_jobs)
        if out:
            check_output_dir(Path(out))
        with _stage_lines(stream):
            options = {**_search_options(locals()), "progress": _bars(progress)}
            result = search(data, **options)
        written = result.report(out) if out else None
    except AutoGLMMError as err:
        raise fail(err) from None
    _print_result(result, written, tables_shown=stream)


def _search_options(v: dict) -> dict:
    """search() keyword arguments from the options of the search command (batch shares them)."""
    return dict(
        outcome=v["outcome"], group=v["group"], family=v["family"],
        predictors=_names(v["predictors"]), exclude=_names(v["exclude"]) or (),
        ranking=v["ranking"], min_group_size=v["min_group_size"],
        icc_threshold=v["icc_threshold"], force=v["force"], alpha=v["alpha"],
        alpha_fixed=v["alpha_fixed"], alpha_interaction=v["alpha_interaction"],
        alpha_slope=v["alpha_slope"], n_essential=v["n_essential"], patience=v["patience"],
        threshold=v["threshold"],
        max_slopes=v["max_slopes"], ntree=v["ntree"], mtry=v["mtry"],
        max_missing=v["max_missing"], standardize=v["standardize"], seed=v["seed"],
        progress=v["progress"], n_jobs=v["n_jobs"], merge=v["merge"] or (), lsa=v["lsa"],
        impute=v["impute"], level1_weights=v["level1_weights"],
        level2_weights=v["level2_weights"], conditional_weights=v["conditional_weights"],
        weight_scaling=v["weight_scaling"],
    )  # fmt: skip


def _with_search_options(command):
    """Give ``command`` every option of ``search`` (except DATA and --out) after its own.

    typer reads a command's options from its signature, so ``batch`` takes exactly the
    options ``search`` has, including ones added later, and passes them to ``**search``.
    """
    import inspect

    own = inspect.signature(command)
    kept = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    shared = [
        p for name, p in inspect.signature(search_command).parameters.items()
        if name not in own.parameters and name not in ("data", "out")
    ]  # fmt: skip
    command.__signature__ = own.replace(parameters=kept + shared)
    command.__annotations__ = {**{p.name: p.annotation for p in shared}, **command.__annotations__}
    return command


@app.command("batch")
@_with_search_options
def batch_command(
    data: str = typer.Argument(..., help="Data file with every task's rows."),
    by: str = typer.Option(..., "--by", help="Column to split by: one search per value."),
    out: str = typer.Option(..., "--out", "-o", help="Folder of the batch, one subfolder a task."),
    workers: int = typer.Option(None, "--workers", help="Local worker processes (default: cores)."),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler, tcp://host:8786."),
    **search_values: object,
) -> None:
    """Run the search once per value of --by (e.g. each country) on a Dask cluster."""
    from autoglmm.batching import batch

    options = _search_options(search_values)
    try:
        summary = batch(data, by=by, out=out, workers=workers, scheduler=scheduler, **options)
    except AutoGLMMError as err:
        raise fail(err) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted; complete tasks are kept in {out}: rerun the same command "
                   "to resume", err=True)  # fmt: skip
        raise typer.Exit(code=130) from None
    _print_batch(summary, out)
    if (summary["status"] == "failed").any():
        raise typer.Exit(code=1)


def _print_batch(summary, out: str) -> None:
    """The summary table, and where it was written."""
    shown = summary[["value", "status", "n_obs", "n_groups", "icc", "formula", "seconds"]]
    typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    failed = summary[summary["status"] == "failed"]
    for row in failed.itertuples(index=False):
        typer.echo(f"failed: {row.folder}: {row.error}", err=True)
    typer.echo(f"\n{len(summary) - len(failed)} of {len(summary)} tasks complete; wrote "
               f"{out}/summary.csv and {out}/summary.html")  # fmt: skip


@app.command("rank")
def rank_command(
    data: str = _data_argument(),
    outcome: str = typer.Option(..., "--outcome", "-y", help="Outcome column."),
    group: str = typer.Option(..., "--group", "-g", help="Group column (e.g. school ID)."),
    family: str = typer.Option("gaussian", "--family", help="gaussian, binomial or poisson."),
    ntree: int = typer.Option(2000, "--ntree", help="Trees of the final forest."),
    mtry: int = typer.Option(None, "--mtry", help="Predictors per split (default p/3)."),
    seed: int = typer.Option(None, "--seed", help="Seed (same seed, same ranking)."),
    n_jobs: int = typer.Option(None, "--n-jobs", help="Threads (the result never depends on it)."),
    out: str = typer.Option(None, "--out", "-o", help="Write the ranking to this CSV file."),
    top: int = typer.Option(20, "--top", help="Rows of the ranking to print."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    predictors: str = typer.Option(None, "--predictors", help="Candidates: a,b,c (default all)."),
    exclude: str = typer.Option(None, "--exclude", help="Columns to leave out: a,b,c."),
    merge: list[str] = _MERGE,
    lsa: str = typer.Option("auto", "--lsa", help="auto, timss, pisa or none: skip IDs, weights."),
) -> None:
    """Rank the predictors by MERF permutation importance."""
    from autoglmm.data import read_data
    from autoglmm.lsa import prepare
    from autoglmm.ranking import rank_predictors
    from autoglmm.report.atomic import check_output_file

    try:
        _check_n_jobs(n_jobs)
        if out:
            check_output_file(Path(out))
        frame, ruled_out, _ = prepare(read_data(data), [outcome], group, merge or (), lsa)
        wanted = _names(predictors)
        skip = [c for c in ruled_out if wanted is None or c not in wanted]
        ranking = rank_predictors(
            frame, outcome, group, family=family, ntree=ntree, mtry=mtry, seed=seed,
            n_jobs=n_jobs, progress=_bars(progress), predictors=wanted,
            exclude=[*(_names(exclude) or []), *skip],
        )  # fmt: skip
        if out:
            ranking.to_csv(out)
    except AutoGLMMError as err:
        raise fail(err) from None
    shown = ranking.to_frame().head(top)[["rank", "predictor", "importance", "se"]]
    typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if out:
        typer.echo(f"wrote {out} ({len(ranking)} predictors, seed {ranking.settings['seed']})")


@app.command("demo")
def demo_command(
    out: str = typer.Option("autoglmm-demo", "--out", "-o", help="Folder for the report."),
    family: str = typer.Option("gaussian", "--family", help="gaussian or binomial."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data and of the ranking."),
    ntree: int = typer.Option(2000, "--ntree", help="Trees of the MERF ranking."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    timss: bool = typer.Option(
        False, "--timss", help="TIMSS-shaped SPSS files: merge, 5 PVs, 2% missing, --impute 5."
    ),
) -> None:
    """Simulate TIMSS-like data with a known model, search it, compare with the truth."""
    from autoglmm.datasets import simulate_lsa, truth_table
    from autoglmm.report.atomic import check_output_dir
    from autoglmm.selection import search

    stream = _streaming()
    try:
        check_output_dir(Path(out))
        with _stage_lines(stream):
            if timss:
                result, truth, written = _demo_timss(out, seed, ntree, _bars(progress))
            else:
                sim = simulate_lsa(seed=seed, family=family)
                truth = sim.truth
                result = search(sim.data, truth.outcome, truth.group, family=family,
                                seed=seed, ntree=ntree, progress=_bars(progress))  # fmt: skip
                written = result.report(out)
    except AutoGLMMError as err:
        raise fail(err) from None
    _print_result(result, written, tables_shown=stream)
    if result.optimal is not None:
        table = truth_table(truth, result.optimal_terms, result.optimal)
        _print_truth(table, result)


def _demo_timss(out: str, seed: int, ntree: int, progress: bool):
    """The whole SPEC 6.2 path on simulated BSG/BCG files written into ``out``/data."""
    from pathlib import Path

    from autoglmm.lsa.simulate import simulate_timss
    from autoglmm.selection import search

    sim = simulate_timss(Path(out) / "data", seed=seed)
    typer.echo(f"wrote {sim.student_path} and {sim.school_path}")
    result = search(
        sim.student_path, "BSMMAT0[1-5]", "IDSCHOOL", merge=[sim.school_path], impute=5,
        seed=seed, ntree=ntree, progress=progress,
    )  # fmt: skip
    return result, sim.truth, result.report(out)


def _stage_lines(stream: bool):
    """While a search runs: one line per stage and each stage's table (when streaming)."""
    from contextlib import nullcontext

    from autoglmm.stage_events import StageLines, listening

    return listening(StageLines(_echo_now)) if stream else nullcontext()


def _echo_now(text: str) -> None:
    typer.echo(text)
    sys.stdout.flush()


def _print_result(result, written, tables_shown: bool = False) -> None:
    """Sample, ICC, the comparison tables of every stage, the V-map and the equation.

    ``tables_shown``: the stage tables were already printed as the stages ended.
    """
    from autoglmm.report import tables

    for note in result.warnings:
        typer.secho(f"WARNING: {note}", fg="yellow", bold=True, err=True)
    sample = result.sample
    if not tables_shown:  # else the stage lines said it already
        typer.echo(f"Sample: {sample.n_obs:,} rows in {sample.n_groups:,} groups, "
                   f"{len(sample.predictors)} candidate predictors")  # fmt: skip
        typer.echo(f"ICC of the null model: {result.icc:.3f}")
    if result.stop_reason:
        typer.secho(f"Search stopped: {result.stop_reason}", fg="yellow", bold=True)
    else:
        for stage in () if tables_shown else ("fixed", "interaction", "slope"):
            typer.echo("\n" + tables.comparison(result, stage).to_text())
        _print_selection(result)
        used = tables.optimal_predictors(result)
        typer.echo("\n" + tables.variable_table(result, used).to_text())
        typer.secho("\nOptimal model", bold=True)
        typer.echo(result.equation("text"))
    if result.pooled is not None:
        _print_pooled(result.pooled)
    if written is not None:
        typer.echo(f"\nOutputs written to {written}")


def _print_selection(result) -> None:
    """The stopping rule, what each stage tested and never tried, the p-value caveat."""
    from autoglmm.report.selection_notes import PVALUE_CAVEAT, rule_sentence, stage_sentences

    typer.echo("\n" + rule_sentence(result))
    for line in stage_sentences(result):
        typer.echo("  " + line)
    typer.echo(PVALUE_CAVEAT)


def _print_pooled(pooled) -> None:
    """The majority model pooled over the analyses by Rubin's rules."""
    typer.secho(f"\nPooled over {pooled.m} analyses (Rubin's rules, Barnard-Rubin df)", bold=True)
    typer.echo(pooled.formula)
    table = pooled.table()
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _print_truth(table, result) -> None:
    """The demo's closing comparison: the recovered model next to the true one."""
    typer.secho("\nRecovered model vs the true model", bold=True)
    shown = table.assign(kind=table["kind"].replace({"slope": "slope variance"}))
    typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(
        "Slope rows compare variances: the true variance of the random slope with its "
        "estimate in G (a missed slope has no estimate)."
    )
    n = table.groupby(["kind", "status"]).size()
    typer.echo(
        f"true predictors found {n.get(('fixed', 'found'), 0)} of "
        f"{n.get(('fixed', 'found'), 0) + n.get(('fixed', 'missed'), 0)}, "
        f"false additions {n.get(('fixed', 'false addition'), 0)}"
        f"{_decoys(n.get(('fixed', 'decoy added'), 0))}; true interaction "
        f"{'found' if n.get(('interaction', 'found'), 0) else 'missed'}; true slopes found "
        f"{n.get(('slope', 'found'), 0)} of 2; search took "
        f"{result.manifest['timings'].get('total', 0.0):.0f} s"
    )


def _decoys(n: int) -> str:
    if not n:
        return ""
    return f" (and {n} decoy school items that track the school effect, so predict school means)"


def main() -> None:
    """Console-script entry point.

    Ctrl-C anywhere (even while numba and pandas are being imported) ends with one line and
    exit code 130. The process then exits at once (``os._exit``), after the output folder was
    cleaned up by the unwinding, so no daemon thread can make interpreter shutdown fail.
    """
    try:
        app()
    except KeyboardInterrupt:
        _hard_exit(_echo_error("interrupted (Ctrl-C); nothing was written half-way", 130))
    except AutoGLMMError as err:  # a command that forgot to catch: still no traceback
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except SystemExit as done:
        if done.code == 130:
            _hard_exit(130)
        raise


def _hard_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
