"""How cost grows with the work: fit and search time as rows grow and as groups grow.

Two sweeps over simulated TIMSS-like data (the true model's 18 predictors, the
interaction and three correlated random effects):

- **rows** grow (2k, 8k, 32k, 128k) in a fixed 229 schools, so schools get larger;
- **groups** grow (57, 229, 916, 3664 schools of about 35 students), so rows grow with them.

For each data set: one LMM fit (``rs3``, gaussian), one GLMM fit (``rs3``, binomial,
Laplace), the search steps with a given ranking (gaussian), and lme4's ``lmer`` on the
same LMM where Rscript is present. The deviance of the LMM engine costs nothing per row
(per-group sufficient statistics), so its curve should follow groups, not rows.

Run alone: ``python benchmarks/growth.py [--quick] [--png growth.png]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import BenchData, failed, not_installed, row  # noqa: E402

SECTION = "growth"
ROWS = (2000, 8000, 32000, 128000)
ROWS_GROUPS = 229
GROUPS = (57, 229, 916, 3664)
GROUP_SIZE = 35
TASKS = ("LMM fit (rs3)", "GLMM fit (rs3)", "search steps (gaussian)")

_LMER_R = """
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
dat <- read.csv(args[1]); dat[[args[3]]] <- factor(dat[[args[3]]])
f <- as.formula(args[2]); reps <- as.integer(args[4]); times <- numeric(reps)
for (i in seq_len(reps)) times[i] <- system.time(m <- lmer(f, data = dat, REML = FALSE))[[3]]
cat(sprintf('{"seconds": %.6f, "loglik": %.10f}', median(times), as.numeric(logLik(m))), "\\n")
"""


def sizes(quick: bool) -> list[tuple[str, int, int]]:
    """(sweep, rows, groups) of every data set in the run."""
    rows = ROWS[:2] if quick else ROWS
    groups = GROUPS[:1] if quick else GROUPS
    out = [("rows", n, ROWS_GROUPS) for n in rows]
    out += [("groups", g * GROUP_SIZE, g) for g in groups]
    return out


def run(quick: bool = False) -> list[dict]:
    """Every growth row: one per (sweep, size, task, tool)."""
    repeats = 1 if quick else 3
    rows: list[dict] = []
    for sweep, n_rows, n_groups in sizes(quick):
        gauss = common.growth_data(n_rows, n_groups, "gaussian")
        binom = common.growth_data(n_rows, n_groups, "binomial")
        at = {"sweep": sweep, "n_rows": gauss.n_rows, "n_groups": gauss.n_groups}
        rows.append(_fit_row(gauss, "LMM fit (rs3)", repeats, at))
        rows.append(_fit_row(binom, "GLMM fit (rs3)", 1, at))
        rows.append(_search_row(gauss, repeats, at))
        rows.append(_lmer_row(gauss, repeats if gauss.n_rows < 20000 else 1, at))
    return rows


def _fit_row(data: BenchData, task: str, repeats: int, at: dict) -> dict:
    import autoglmm

    formula = data.formulas()["rs3"]
    try:
        t = common.time_median(
            lambda: autoglmm.fit(formula, data.frame, family=data.family), repeats=repeats
        )
    except Exception as err:
        return failed(SECTION, task, "autoglmm", err, **at)
    return row(SECTION, task, "autoglmm", seconds=t.seconds, runs=t.runs, loglik=t.value.loglik,
               **at)  # fmt: skip


def _search_row(data: BenchData, repeats: int, at: dict) -> dict:
    from search import given_ranking

    import autoglmm

    ranking = given_ranking(data)
    task = "search steps (gaussian)"

    def once():
        return autoglmm.search(
            data.frame, data.outcome, data.group, predictors=list(data.predictors),
            ranking=ranking, progress=False, seed=0, min_group_size=2,
        )  # fmt: skip

    try:
        t = common.time_median(once, repeats=max(1, repeats - 2), warmup=0)
    except Exception as err:
        return failed(SECTION, task, "autoglmm", err, **at)
    return row(SECTION, task, "autoglmm", seconds=t.seconds, runs=t.runs,
               loglik=t.value.optimal.loglik, n_fits=len(t.value.steps) + 1, **at)  # fmt: skip


def _lmer_row(data: BenchData, repeats: int, at: dict) -> dict:
    task = "LMM fit (rs3)"
    if not common.has_peer("lme4"):
        return not_installed(SECTION, task, "lme4", **at)
    with tempfile.TemporaryDirectory(prefix="autoglmm-growth-") as tmp:
        script = Path(tmp) / "lmer.R"
        script.write_text(_LMER_R)
        args = [data.to_csv(tmp), data.formulas()["rs3"], data.group, repeats]
        try:
            out = common.rscript_json(script, args, timeout=900)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            return failed(SECTION, task, "lme4", err, **at)
    return row(SECTION, task, "lme4", seconds=out["seconds"], runs=repeats,
               loglik=out["loglik"], **at)  # fmt: skip


def table(rows: list[dict]) -> pd.DataFrame:
    """One line per data set, one column per (task, tool): seconds."""
    frame = pd.DataFrame([r for r in rows if r.get("section") == SECTION])
    if frame.empty:
        return frame
    frame["column"] = frame["case"] + " · " + frame["tool"]
    frame["value"] = frame.apply(
        lambda r: r["seconds"] if r["status"] == "ok" else float("nan"), axis=1
    )
    wide = frame.pivot_table(
        index=["sweep", "n_rows", "n_groups"], columns="column", values="value", sort=False
    )
    return wide.reset_index()


def plot(rows: list[dict], path: str | Path) -> Path | None:
    """Log-log curves of seconds against rows, one panel per sweep; returns the PNG path."""
    frame = pd.DataFrame([r for r in rows if r.get("section") == SECTION and r["status"] == "ok"])
    if frame.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    titles = {"rows": f"rows grow, {ROWS_GROUPS} schools", "groups": "schools grow, ~35 each"}
    for ax, sweep in zip(axes, ("rows", "groups"), strict=True):
        part = frame[frame["sweep"] == sweep]
        for (case, tool), line in part.groupby(["case", "tool"], sort=False):
            line = line.sort_values("n_rows")
            style = "--" if tool != "autoglmm" else "-"
            ax.plot(line["n_rows"], line["seconds"], style, marker="o", label=f"{case} · {tool}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted(part["n_rows"].unique())
        ax.set_xticks(ticks, [f"{n / 1000:.0f}k" for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel("rows")
        ax.set_title(titles[sweep])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds (median)")
    axes[1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--png", default=None)
    args = parser.parse_args()
    rows = run(args.quick)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table(rows).to_string(index=False))
    if args.png:
        print(plot(rows, args.png))


if __name__ == "__main__":
    main()
