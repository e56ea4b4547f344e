"""LMM fit speed at TIMSS scale: autoglmm vs mixedlm, lme-python, statsmodels MixedLM and lme4.

Run: ``python benchmarks/lmm_fits.py [--reps N] [--skip-statsmodels] [--skip-r]``

The data (about 8,600 rows, 229 schools, 19 predictors + intercept = 20 fixed-effect
columns, three correlated random effects in truth) are simulated here with a fixed seed.
Two ML models are timed: a random intercept, and three correlated random effects
(intercept + slopes of x1 and x2). Every tool fits the same rows in the same run, because
the machine is shared and absolute times drift with its load; the ratios are what count.

Times are the median over ``--reps`` fits (statsmodels: fewer, it is slow) of the whole
user-level call: formula -> fitted model. For autoglmm the engine alone (``fit_lmm`` on a
prepared design) is shown too. lme4 is timed inside R (``lmer(..., REML = FALSE)``), so R's
start-up and CSV reading are excluded. The log-likelihood of each tool is printed with its
difference to autoglmm's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

N_GROUPS, N_PRED, TARGET_ROWS = 229, 19, 8600
MODELS = {"random intercept": "1", "three correlated random effects": "1 + x1 + x2"}


def simulate(seed: int = 2024) -> pd.DataFrame:
    """TIMSS-like data: unequal school sizes, level-1 and level-2 predictors, correlated REs."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 56, N_GROUPS)
    sizes = np.maximum(np.round(sizes * TARGET_ROWS / sizes.sum()).astype(int), 5)
    g = np.repeat(np.arange(N_GROUPS), sizes)
    n = len(g)
    X = rng.normal(size=(n, N_PRED))
    X[:, -3:] = rng.normal(size=(N_GROUPS, 3))[g]  # three school-level predictors
    beta = rng.normal(size=N_PRED) * 4.0
    G = np.array([[900.0, 60.0, -40.0], [60.0, 100.0, 10.0], [-40.0, 10.0, 64.0]])
    b = rng.multivariate_normal(np.zeros(3), G, size=N_GROUPS)
    y = 500 + X @ beta + b[g, 0] + b[g, 1] * X[:, 0] + b[g, 2] * X[:, 1]
    y += rng.normal(size=n) * 60.0
    df = pd.DataFrame(X, columns=[f"x{i + 1}" for i in range(N_PRED)])
    df["y"], df["school"] = y, g
    return df


def formula(re_terms: str) -> str:
    fixed = " + ".join(f"x{i + 1}" for i in range(N_PRED))
    return f"y ~ {fixed} + ({re_terms} | school)"


def _median_time(fn, reps: int) -> tuple[float, object]:
    out = fn()  # warm-up (numba cache load, imports)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def time_autoglmm(df, f, reps):
    import autoglmm
    from autoglmm.engine.lmm import fit_lmm
    from autoglmm.formula import parse_formula
    from autoglmm.model_frame import build_model_frame

    sec, m = _median_time(lambda: autoglmm.fit(f, df), reps)
    design = build_model_frame(parse_formula(f), df).design
    eng_sec, _ = _median_time(lambda: fit_lmm(design), reps)
    return [
        ("autoglmm fit()", sec, m.loglik, f"converged={m.converged}"),
        ("autoglmm engine", eng_sec, m.loglik, f"evals={m.convergence.n_evaluations}"),
    ]


def time_mixedlm(df, f, reps):
    try:
        import mixedlm
    except ImportError:
        return [("mixedlm", np.nan, np.nan, "not installed")]
    sec, m = _median_time(lambda: mixedlm.lmer(f, df, REML=False), reps)
    return [("mixedlm", sec, float(m.logLik().value), "")]


def time_lme_python(df, f, reps):
    """lme-python (Rust, PyPI): ``lmer(formula, data, reml=False)``, the whole call."""
    try:
        import lme_python
    except ImportError:
        return [("lme-python", np.nan, np.nan, "not installed")]
    sec, m = _median_time(lambda: lme_python.lmer(f, df, reml=False), reps)
    return [("lme-python", sec, float(m.log_likelihood), f"converged={m.converged}")]


def time_statsmodels(df, f, re_terms, reps):
    try:
        import statsmodels.formula.api as smf
    except ImportError:
        return [("statsmodels", np.nan, np.nan, "not installed")]
    fixed = f.split(" + (")[0]
    re_formula = "~" + re_terms

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = smf.mixedlm(fixed, df, groups=df["school"], re_formula=re_formula)
            return model.fit(reml=False)

    sec, m = _median_time(run, reps)
    return [("statsmodels MixedLM", sec, float(m.llf), f"converged={m.converged}")]


R_SCRIPT = r"""
suppressMessages(library(lme4)); library(jsonlite)
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); d$school <- factor(d$school); reps <- as.integer(args[3])
f <- as.formula(args[2])
m <- lmer(f, d, REML = FALSE)  # warm-up
t <- sapply(seq_len(reps), function(i) system.time(m <- lmer(f, d, REML = FALSE))[["elapsed"]])
cat(toJSON(list(seconds = median(t), loglik = as.numeric(logLik(m)),
  messages = m@optinfo$conv$lme4$messages), auto_unbox = TRUE, digits = NA))
"""


def time_lme4(csv: Path, f, reps):
    if shutil.which("Rscript") is None:
        return [("lme4", np.nan, np.nan, "Rscript not found")]
    script = csv.parent / "lmer.R"
    script.write_text(R_SCRIPT)
    out = subprocess.run(
        ["Rscript", str(script), str(csv), f, str(reps)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    if out.returncode != 0:
        return [("lme4", np.nan, np.nan, out.stderr.strip().splitlines()[-1])]
    res = json.loads(out.stdout)
    note = "; ".join(np.atleast_1d(res.get("messages") or [])) if res.get("messages") else ""
    return [("lme4 (lmer)", res["seconds"], res["loglik"], note)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--sm-reps", type=int, default=2, help="repetitions for statsmodels")
    ap.add_argument("--skip-statsmodels", action="store_true")
    ap.add_argument("--skip-r", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the rows to this file")
    args = ap.parse_args()

    df = simulate()
    print(
        f"data: {len(df)} rows, {df['school'].nunique()} schools, {N_PRED + 1} fixed-effect "
        f"columns; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "lmm.csv"
        df.to_csv(csv, index=False)
        for name, re_terms in MODELS.items():
            f = formula(re_terms)
            results = time_autoglmm(df, f, args.reps) + time_mixedlm(df, f, args.reps)
            results += time_lme_python(df, f, args.reps)
            if not args.skip_statsmodels:
                results += time_statsmodels(df, f, re_terms, args.sm_reps)
            if not args.skip_r:
                results += time_lme4(csv, f, args.reps)
            ours_sec, ours_ll = results[0][1], results[0][2]
            for tool, sec, ll, note in results:
                rows.append(
                    {"model": name, "tool": tool, "ms_per_fit": 1e3 * sec,
                     "ratio_to_autoglmm_fit": sec / ours_sec, "loglik": ll,
                     "loglik_minus_autoglmm": ll - ours_ll, "note": note}
                )  # fmt: skip
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=float))
    print(f"load average after: {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
