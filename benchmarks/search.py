"""The search benchmarks: ``autoglmm search`` end to end, and the search steps alone.

1. **End to end** (``case="cli"``): the CLI on the raw TIMSS-scale file (sample rules,
   null model, MERF ranking, the three stages, the report), timed as a whole process with
   its peak resident memory (``/usr/bin/time -v``), and scored against the true model.
2. **Steps alone** (``case="steps"``): forward selection, interactions and random slopes
   (SPEC 2 steps 4-6) with a given ranking, through :func:`autoglmm.search`, against the
   same steps scripted with lme4 (``search_lme4.R``). lme4's time is R's own clock around
   the steps (no R start-up, no CSV read), so the ratio compares the model fitting work.

3. **The fits it makes** (:func:`fit_rows`, section "fits"): the null model, the random
   intercept with the 18 true predictors (``ri18``) and the true model with three
   correlated random effects (``rs3``) on the search's own data, gaussian and binary,
   against lme4 and ``mixedlm``: same rows, log-likelihoods side by side.

Run alone: ``python benchmarks/search.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import BenchData, failed, not_installed, row  # noqa: E402

SECTION = "search"
R_SCRIPT = common.HERE / "search_lme4.R"
# glmer needs minutes per fit at this scale (issue 4), so the scripted binomial search is
# cut off; its time is then a lower bound ("timeout") and so is the ratio.
LME4_TIMEOUT = {"gaussian": 900.0, "binomial": 180.0}


def run(quick: bool = False, families: tuple[str, ...] = ("gaussian", "binomial")) -> list[dict]:
    """The CLI end to end (gaussian: the demo's case), then the steps against lme4."""
    rows: list[dict] = []
    if "gaussian" in families:
        rows += cli_rows("gaussian", quick)
    for family in families:
        rows += steps_rows(family, quick)
    return rows


# --- end to end ----------------------------------------------------------------------------


def cli_command() -> list[str]:
    """How to start the ``autoglmm`` CLI of this interpreter's environment."""
    exe = Path(sys.executable).parent / "autoglmm"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from autoglmm.cli import main; main()"]


def cli_rows(family: str, quick: bool) -> list[dict]:
    """``autoglmm search RAW.csv --out DIR`` as a user runs it: time, peak RSS, recovery."""
    ntree = 100 if quick else 2000
    case = f"cli {family} (ntree {ntree})"
    data = common.simulated_data(family, keep_raw=True, **common.PAPER)
    with tempfile.TemporaryDirectory(prefix="autoglmm-search-") as tmp:
        raw = Path(tmp) / "timss_like.csv"
        data.raw.to_csv(raw, index=False)
        out = Path(tmp) / "report"
        argv = [
            *cli_command(),
            "search", str(raw), "--outcome", data.outcome, "--group", data.group,
            "--family", family, "--out", str(out), "--seed", "0", "--ntree", str(ntree),
            "--no-progress",
        ]  # fmt: skip
        t0 = time.perf_counter()
        try:
            proc, peak = common.run_measured(argv, timeout=1800)
        except subprocess.TimeoutExpired as err:
            return [failed(SECTION, case, "autoglmm", f"timeout after {err.timeout:.0f} s")]
        seconds = time.perf_counter() - t0
        result_json = out / "result.json"
        if proc.returncode != 0 or not result_json.exists():
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            msg = [m for m in msg if not m.startswith("\t")] or [f"exit {proc.returncode}"]
            return [failed(SECTION, case, "autoglmm", msg[-1])]
        result = json.loads(result_json.read_text())
    return [
        row(
            SECTION, case, "autoglmm", seconds=seconds, runs=1, peak_rss_mb=peak,
            loglik=_model_loglik(result, "optimal"), n_fits=len(result.get("steps", [])) + 1,
            **_recovery(data, result.get("optimal_terms")),
            optimal=_terms_text(result.get("optimal_terms") or {}),
            stage_seconds=_stage_seconds(result),
        )
    ]  # fmt: skip


def _model_loglik(result: dict, name: str) -> float | None:
    model = (result.get("models") or {}).get(name) or {}
    return model.get("loglik")


def _stage_seconds(result: dict) -> dict | None:
    timings = (result.get("manifest") or {}).get("timings")
    if not isinstance(timings, dict):
        return None
    return {k: round(float(v), 2) for k, v in timings.items() if isinstance(v, int | float)}


def _recovery(data: BenchData, terms: dict | None) -> dict:
    """True predictors found, missed and false additions (fixed + interaction), slopes."""
    if not terms:
        return {}
    from autoglmm.datasets import recovery

    rec = recovery(data.truth, terms)
    n_true = len(data.truth.fixed) + 1
    return {
        "true_found": f"{len(rec['found'])}/{n_true}",
        "false_added": len(rec["false"]),
        "slopes_found": f"{len(rec['slopes_found'])}/{len(data.truth.slopes)}",
    }


# --- the steps alone, against lme4 ---------------------------------------------------------


def steps_rows(family: str, quick: bool, data: BenchData | None = None) -> list[dict]:
    """Steps 4-6 with the same given ranking: autoglmm.search vs search_lme4.R."""
    data = data or common.paper_data(family)
    case = f"steps {family}"
    ranking = given_ranking(data)
    repeats = 1 if quick or family == "binomial" else 2
    rows = [_autoglmm_steps(data, ranking, case, repeats=repeats)]
    if not common.has_peer("lme4"):
        rows.append(not_installed(SECTION, case, "lme4"))
    elif quick and family == "binomial":
        rows.append(row(SECTION, case, "lme4", status="not run in --quick (glmer is slow)"))
    else:
        timeout = LME4_TIMEOUT[family]
        rows.append(lme4_steps(data, ranking, case, timeout=timeout))
    return rows


def given_ranking(data: BenchData, n_noise: int = 10) -> list[str]:
    """True predictors by |coefficient| x SD (what a good forest finds), then noise items."""
    t = data.truth
    sd = data.frame[list(t.fixed)].std()
    ranked = sorted(t.fixed, key=lambda k: -abs(t.fixed[k]) * float(sd[k]))
    noise = [p for p in data.predictors if p not in t.fixed][:n_noise]
    return ranked + noise


def _autoglmm_steps(data: BenchData, ranking: list[str], case: str, repeats: int) -> dict:
    import autoglmm

    def once():
        return autoglmm.search(
            data.frame, data.outcome, data.group, family=data.family,
            predictors=list(data.predictors), ranking=ranking, progress=False, seed=0,
            patience=1,  # the paper's rule, as search_lme4.R implements it
        )  # fmt: skip

    try:
        # warm numba's kernels on the null model: a whole warm-up search would double the cost
        autoglmm.fit(data.formulas()["null"], data.frame, family=data.family)
        timing = common.time_median(once, repeats=repeats, warmup=0)
    except Exception as err:  # a failing tool is a row, not a crash of the benchmark
        return failed(SECTION, case, "autoglmm", err)
    res = timing.value
    n_fits = len(res.steps) + 1
    return row(
        SECTION, case, "autoglmm", seconds=timing.seconds, runs=timing.runs,
        loglik=res.optimal.loglik, n_fits=n_fits, optimal=_terms_text(res.optimal_terms),
        **_recovery(data, res.optimal_terms),
    )  # fmt: skip


def lme4_steps(data: BenchData, ranking: list[str], case: str, timeout: float = 1500) -> dict:
    """Run ``search_lme4.R`` on the same rows and ranking; one run (it is the slow side)."""
    with tempfile.TemporaryDirectory(prefix="autoglmm-lme4-") as tmp:
        csv = data.to_csv(tmp)
        rank_file = Path(tmp) / "ranking.txt"
        rank_file.write_text("\n".join(ranking) + "\n")
        args = [csv, data.outcome, data.group, data.family, rank_file]
        try:
            out = common.rscript_json(R_SCRIPT, args, timeout=timeout)
        except subprocess.TimeoutExpired:
            return common.timed_out(SECTION, case, "lme4", timeout)
        except RuntimeError as err:
            return failed(SECTION, case, "lme4", err)
    return row(
        SECTION, case, "lme4", seconds=float(out["total_seconds"]), runs=1,
        loglik=out["optimal"]["loglik"], n_fits=out["n_fits"],
        optimal=_terms_text(out["optimal_terms"]), **_recovery(data, out["optimal_terms"]),
    )  # fmt: skip


def _terms_text(terms: dict) -> str:
    """Short text of a model's terms: "18 fixed + ses:conf_04 + slopes ses, conf_04"."""
    fixed = _as_list(terms.get("fixed"))
    inter = _as_list(terms.get("interactions"))
    slopes = _as_list(terms.get("random_slopes"))
    parts = [f"{len(fixed)} fixed"]
    if inter:
        parts.append(" + ".join(inter))
    parts.append("slopes " + (", ".join(slopes) if slopes else "none"))
    return "; ".join(parts)


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


# --- the fits of the search, on its own data -------------------------------------------

_FITS_R = """
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
a <- commandArgs(TRUE); d <- read.csv(a[1]); d[[a[2]]] <- factor(d[[a[2]]])
family <- a[3]; reps <- as.integer(a[4]); out <- list()
one <- function(f) if (family == "gaussian") lmer(f, d, REML = FALSE) else
  glmer(f, d, family = binomial)
for (f in a[-(1:4)]) {
  msgs <- character(0)
  fit <- function() withCallingHandlers(one(as.formula(f)), warning = function(w) {
    msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning")})
  if (reps > 1) m <- fit()  # warm-up
  t <- sapply(seq_len(reps), function(i) system.time(m <<- fit())[["elapsed"]])
  out[[f]] <- list(seconds = median(t), runs = reps, loglik = as.numeric(logLik(m)),
                   messages = I(unique(msgs)))
}
cat(toJSON(out, auto_unbox = TRUE, digits = NA), "\n")
"""


def fit_rows(quick: bool = False) -> list[dict]:
    """Null, ri18 and rs3 on the search's data: autoglmm vs mixedlm vs lme4, same rows."""
    rows: list[dict] = []
    for family in ("gaussian", "binomial"):
        data = common.paper_data(family)
        formulas = data.formulas()
        reps = (2 if quick else 5) if family == "gaussian" else 1
        for shape, formula in formulas.items():
            rows.append(_fit_autoglmm(data, shape, formula, reps))
            rows.append(_fit_mixedlm(data, shape, formula, quick))
        rows += _fit_lme4(data, formulas, reps, quick)
    return rows


def _fit_autoglmm(data: BenchData, shape: str, formula: str, reps: int) -> dict:
    import autoglmm

    case = f"{data.family} {shape}"
    try:
        t = common.time_median(lambda: autoglmm.fit(formula, data.frame, family=data.family),
                               repeats=max(reps, 2), warmup=1)  # fmt: skip
    except Exception as err:
        return failed("fits", case, "autoglmm", err)
    fit = t.value
    note = "" if fit.converged else "not converged"
    note += "; singular" if fit.singular else ""
    return row("fits", case, "autoglmm", seconds=t.seconds, runs=t.runs, loglik=fit.loglik,
               note=note.strip("; ") or None)  # fmt: skip


def _fit_mixedlm(data: BenchData, shape: str, formula: str, quick: bool) -> dict:
    case = f"{data.family} {shape}"
    if not common.has_peer("mixedlm"):
        return not_installed("fits", case, "mixedlm")
    if quick and data.family == "binomial" and shape == "rs3":
        return row("fits", case, "mixedlm", status="not run in --quick")
    import mixedlm

    def once():
        if data.family == "gaussian":
            return mixedlm.lmer(formula, data.frame, REML=False)
        from mixedlm.families import Binomial

        return mixedlm.glmer(formula, data.frame, family=Binomial())

    try:
        reps = 1 if quick or data.family == "binomial" else 3
        t = common.time_median(once, repeats=reps, warmup=0)
    except Exception as err:
        return failed("fits", case, "mixedlm", err)
    note = None if getattr(t.value, "converged", True) else "not converged"
    return row("fits", case, "mixedlm", seconds=t.seconds, runs=t.runs,
               loglik=float(t.value.logLik().value), note=note)  # fmt: skip


def _fit_lme4(data: BenchData, formulas: dict, reps: int, quick: bool) -> list[dict]:
    """One Rscript per model, so a slow glmer only costs its own row (timeout per fit)."""
    rows = []
    for shape, formula in formulas.items():
        case = f"{data.family} {shape}"
        if not common.has_peer("lme4"):
            rows.append(not_installed("fits", case, "lme4"))
        elif quick and data.family == "binomial":
            rows.append(row("fits", case, "lme4", status="not run in --quick (glmer is slow)"))
        else:
            rows.append(_fit_lme4_one(data, case, formula, reps))
    return rows


def _fit_lme4_one(data: BenchData, case: str, formula: str, reps: int) -> dict:
    timeout = 300.0 if data.family == "gaussian" else 180.0
    with tempfile.TemporaryDirectory(prefix="autoglmm-fits-") as tmp:
        script = Path(tmp) / "fits.R"
        script.write_text(_FITS_R)
        args = [data.to_csv(tmp), data.group, data.family, reps, formula]
        try:
            out = common.rscript_json(script, args, timeout=timeout)
        except subprocess.TimeoutExpired:
            return common.timed_out("fits", case, "lme4", timeout)
        except RuntimeError as err:
            return failed("fits", case, "lme4", err)
    r = out[formula]
    msgs = "; ".join(_as_list(r.get("messages")))[:120] or None
    return row("fits", case, "lme4", seconds=r["seconds"], runs=r["runs"], loglik=r["loglik"],
               note=msgs)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--family", choices=["gaussian", "binomial"], action="append")
    args = parser.parse_args()
    families = tuple(args.family or ("gaussian", "binomial"))
    rows = run(args.quick, families)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
