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
    data: str = typer.Argument(..., help="Data file (.csv, .parquet, .sav, .dta, .sas7bdat)."),
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
    from autoglmm.selection import search

    try:
        result = search(
            data, outcome, group, family=family, predictors=_names(predictors),
            exclude=_names(exclude) or (), ranking=ranking, min_group_size=min_group_size,
            icc_threshold=icc_threshold, force=force, alpha=alpha, alpha_fixed=alpha_fixed,
            alpha_interaction=alpha_interaction, alpha_slope=alpha_slope,
            n_essential=n_essential, patience=patience, threshold=threshold,
            max_slopes=max_slopes, ntree=ntree,
            mtry=mtry, max_missing=max_missing, standardize=standardize, seed=seed,
            progress=progress, n_jobs=n_jobs, merge=merge or (), lsa=lsa, impute=impute,
            level1_weights=level1_weights,
            level2_weights=level2_weights, conditional_weights=conditional_weights,
            weight_scaling=weight_scaling,
        )  # fmt: skip
        written = result.report(out) if out else None
    except AutoGLMMError as err:
        raise fail(err) from None
    _print_result(result, written)


@app.command("rank")
def rank_command(
    data: str = typer.Argument(..., help="Data file (.csv, .parquet, .sav, .dta, .sas7bdat)."),
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

    try:
        frame, ruled_out, _ = prepare(read_data(data), [outcome], group, merge or (), lsa)
        wanted = _names(predictors)
        skip = [c for c in ruled_out if wanted is None or c not in wanted]
        ranking = rank_predictors(
            frame, outcome, group, family=family, ntree=ntree, mtry=mtry, seed=seed,
            n_jobs=n_jobs, progress=progress, predictors=wanted,
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
    from autoglmm.selection import search

    try:
        if timss:
            result, truth, written = _demo_timss(out, seed, ntree, progress)
        else:
            sim = simulate_lsa(seed=seed, family=family)
            truth = sim.truth
            result = search(sim.data, truth.outcome, truth.group, family=family, seed=seed,
                            ntree=ntree, progress=progress)  # fmt: skip
            written = result.report(out)
    except AutoGLMMError as err:
        raise fail(err) from None
    _print_result(result, written)
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


def _print_result(result, written) -> None:
    """Sample, ICC, the comparison tables of every stage, the V-map and the equation."""
    from autoglmm.report import tables

    for note in result.warnings:
        typer.secho(f"WARNING: {note}", fg="yellow", bold=True, err=True)
    sample = result.sample
    typer.echo(f"Sample: {sample.n_obs} rows in {sample.n_groups} groups, "
               f"{len(sample.predictors)} candidate predictors")  # fmt: skip
    typer.echo(f"ICC of the null model: {result.icc:.3f}")
    if result.stop_reason:
        typer.secho(f"Search stopped: {result.stop_reason}", fg="yellow", bold=True)
    else:
        for stage in ("fixed", "interaction", "slope"):
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
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
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
    """Console-script entry point."""
    try:
        app()
    except AutoGLMMError as err:  # a command that forgot to catch: still no traceback
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
