"""GLMM speed on TIMSS-scale binary data: autoglmm vs mixedlm's glmer vs lme4's glmer.

Simulated (seeded) binary outcome: 8,600 students in 229 schools, 18 standard-normal
predictors, logit link. Two models, both Laplace (nAGQ = 1):

- random intercept: ``y ~ x1 + ... + x18 + (1 | school)``;
- three correlated random effects: ``y ~ x1 + ... + x18 + (1 + x1 + x2 | school)``.

Each tool fits the same rows in the same run. autoglmm is timed per fit after one
warm-up fit (numba kernels are compiled and cached once per installation), both through
``autoglmm.fit`` (formula to Fit) and through the engine alone (``fit_glmm`` on a
prepared design). mixedlm is timed on one fit, lme4 inside R (``system.time`` around
``glmer`` only, so R's start-up is not counted). Log-likelihoods are compared with
autoglmm's; "equal or better" means the other tool's is not higher by more than 1e-6.
On a shared machine wall times depend on the load; CPU time (all three tools are
single-threaded here: autoglmm limits BLAS to one thread) is the fairer ratio.

usage: python benchmarks/glmm_fits.py [--repeats 5] [--seed 20240] [--skip-r]
       [--skip-mixedlm] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_ROWS, N_GROUPS, N_PRED = 8600, 229, 18
MODELS = {
    "random intercept": "(1 | school)",
    "3 correlated REs": "(1 + x1 + x2 | school)",
}


def simulate(seed: int) -> pd.DataFrame:
    """TIMSS-like binary data with a known truth (seeded)."""
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(N_ROWS - 10 * N_GROUPS, np.ones(N_GROUPS) / N_GROUPS) + 10
    school = np.repeat(np.arange(N_GROUPS), sizes)
    X = rng.normal(size=(N_ROWS, N_PRED))
    beta = rng.normal(0, 0.25, N_PRED)
    G = np.array([[0.6, 0.1, -0.05], [0.1, 0.15, 0.02], [-0.05, 0.02, 0.1]])
    b = rng.multivariate_normal(np.zeros(3), G, N_GROUPS)[school]
    eta = -0.4 + X @ beta + b[:, 0] + b[:, 1] * X[:, 0] + b[:, 2] * X[:, 1]
    y = (rng.random(N_ROWS) < 1 / (1 + np.exp(-eta))).astype(int)
    df = pd.DataFrame(X, columns=[f"x{i + 1}" for i in range(N_PRED)])
    df.insert(0, "y", y)
    df.insert(1, "school", [f"s{s:03d}" for s in school])
    return df


def formula(re: str) -> str:
    return "y ~ " + " + ".join(f"x{i + 1}" for i in range(N_PRED)) + " + " + re


def time_autoglmm(df: pd.DataFrame, re: str, repeats: int) -> dict:
    import autoglmm
    from autoglmm.engine.glmm import fit_glmm
    from autoglmm.formula import parse_formula
    from autoglmm.model_frame import build_model_frame

    f = formula(re)
    res = autoglmm.fit(f, df, family="binomial")  # warm-up: loads the numba cache
    api, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        res = autoglmm.fit(f, df, family="binomial")
        api.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    design = build_model_frame(parse_formula(f), df, family="binomial").design
    engine, engine_cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fit_glmm(design, family="binomial")
        engine.append(time.perf_counter() - t)
        engine_cpu.append(time.process_time() - c)
    return {
        "seconds": statistics.median(api),
        "cpu": statistics.median(cpu),
        "engine_seconds": statistics.median(engine),
        "engine_cpu": statistics.median(engine_cpu),
        "loglik": res.loglik,
        "converged": res.converged,
        "n_evaluations": res.convergence.n_evaluations,
    }


def time_mixedlm(df: pd.DataFrame, re: str) -> dict:
    import mixedlm
    from mixedlm.families import Binomial

    t, c = time.perf_counter(), time.process_time()
    res = mixedlm.glmer(formula(re), df, family=Binomial())
    el, cpu = time.perf_counter() - t, time.process_time() - c
    loglik = float(res.logLik().value)
    return {"seconds": el, "cpu": cpu, "loglik": loglik, "converged": bool(res.converged)}


R_SCRIPT = r"""
suppressMessages(library(lme4)); library(jsonlite)
a <- commandArgs(TRUE); d <- read.csv(a[1]); d$school <- factor(d$school)
out <- list()
for (f in a[-1]) {
  t <- system.time(m <- glmer(as.formula(f), d, family = binomial))
  out[[f]] <- list(seconds = t[["elapsed"]], cpu = t[["user.self"]] + t[["sys.self"]],
                   loglik = as.numeric(logLik(m)),
                   messages = as.list(m@optinfo$conv$lme4$messages))
}
cat(toJSON(out, auto_unbox = TRUE, digits = NA))
"""


def time_lme4(df: pd.DataFrame) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data, script = Path(tmp) / "d.csv", Path(tmp) / "fit.R"
        df.to_csv(data, index=False)
        script.write_text(R_SCRIPT)
        forms = [formula(re) for re in MODELS.values()]
        out = subprocess.run(
            ["Rscript", str(script), str(data), *forms], capture_output=True, text=True,
            check=True, timeout=3600,
        )  # fmt: skip
    raw = json.loads(out.stdout)
    return {name: raw[formula(re)] for name, re in MODELS.items()}


def table(rows: list[dict]) -> str:
    head = (
        "| model | tool | wall s/fit | CPU s/fit | loglik | loglik - autoglmm | CPU ratio |\n"
        "|---|---|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        lines.append(
            f"| {r['model']} | {r['tool']} | {r['seconds']:.3f} | {r['cpu']:.3f} | "
            f"{r['loglik']:.4f} | "
            f"{r['dll']:+.2e} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=20240)
    ap.add_argument("--skip-r", action="store_true")
    ap.add_argument("--skip-mixedlm", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    df = simulate(args.seed)
    lme4 = {} if args.skip_r or not shutil.which("Rscript") else time_lme4(df)
    rows = []
    for name, re in MODELS.items():
        ours = time_autoglmm(df, re, args.repeats)
        base = {"model": name, "dll": 0.0, "ratio": 1.0}
        rows.append({**base, "tool": "autoglmm.fit", **ours})
        rows.append(
            {**base, "tool": "autoglmm engine (fit_glmm)", "seconds": ours["engine_seconds"],
             "cpu": ours["engine_cpu"], "loglik": ours["loglik"], "ratio": None}
        )  # fmt: skip
        others = []
        if not args.skip_mixedlm:
            others.append(("mixedlm glmer", time_mixedlm(df, re)))
        if name in lme4:
            others.append(("lme4 glmer", lme4[name]))
        for tool, r in others:
            rows.append(
                {**base, "tool": tool, "seconds": r["seconds"], "cpu": r["cpu"],
                 "loglik": r["loglik"], "dll": r["loglik"] - ours["loglik"],
                 "ratio": r["cpu"] / ours["cpu"]}
            )  # fmt: skip
    text = (
        f"GLMM fits, {N_ROWS} rows, {N_GROUPS} groups, {N_PRED} predictors, binary, "
        f"seed {args.seed}, median of {args.repeats} autoglmm fits\n\n{table(rows)}\n"
    )
    if lme4:
        msgs = {k: v.get("messages") for k, v in lme4.items() if v.get("messages")}
        text += f"\nlme4 convergence messages: {msgs or 'none'}\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
