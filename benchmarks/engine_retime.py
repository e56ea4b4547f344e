"""Engine speed of two versions of autoglmm, interleaved in one run (issue 11's 10% budget).

Run: ``python benchmarks/engine_retime.py OLD_SRC NEW_SRC [--rounds R] [--reps K] [--out F]``

``OLD_SRC`` and ``NEW_SRC`` are directories holding an ``autoglmm`` package (e.g. a
``git archive <commit> src | tar -x`` of each version). Each round starts one fresh
process per version, in alternating order, that warms up numba and then times ``--reps``
fits of every case with ``autoglmm.fit`` (the user-level call); the median over all fits
of a case is reported, with the ratio new / old. The machine is shared, so only ratios
measured in the same run mean anything; ``uptime``'s load is recorded before and after.

Cases: the TIMSS-scale LMMs of ``lmm_fits.py`` (random intercept; three correlated random
effects), the binomial and poisson reference fits of lme4 (Laplace and nAGQ=9), and the
Ohio wheeze model with a correlated slope at nagq=1 and nagq=9 (2-D quadrature).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REF = HERE.parent / "tests" / "reference"

CHILD = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd
sys.path.insert(0, {bench!r})
import autoglmm
from lmm_fits import formula as lmm_formula, simulate as lmm_simulate
warnings.simplefilter("ignore")
ref = {ref!r}
timss = lmm_simulate()
con = pd.read_csv(ref + "/contraception.csv")
grouse = pd.read_csv(ref + "/grouseticks.csv")
ohio = pd.read_csv(ref + "/ohio.csv")
CON = "use ~ age + I(age**2) + urban + livch + (1 | district)"
OHIO = "resp ~ age + smoke + (age | id)"
cases = {{
    "lmm intercept (8.6k rows)": (lmm_formula("1"), timss, "gaussian", 1),
    "lmm 3 random effects": (lmm_formula("1 + x1 + x2"), timss, "gaussian", 1),
    "binomial laplace": (CON, con, "binomial", 1),
    "binomial slope laplace": (CON.replace("(1 |", "(1 + urban |"), con, "binomial", 1),
    "binomial nagq=9": (CON, con, "binomial", 9),
    "poisson laplace": ("TICKS ~ YEAR + HEIGHT + (1 | BROOD)", grouse, "poisson", 1),
    "ohio 2-D laplace": (OHIO, ohio, "binomial", 1),
    "ohio 2-D nagq=9": (OHIO, ohio, "binomial", 9),
}}
for f, d, fam, k in cases.values():  # numba compilation and caches
    autoglmm.fit(f, d, family=fam, nagq=k)
out = {{}}
for name, (f, d, fam, k) in cases.items():
    times = []
    for _ in range({reps}):
        t = time.perf_counter()
        fit = autoglmm.fit(f, d, family=fam, nagq=k)
        times.append(time.perf_counter() - t)
    out[name] = {{"seconds": times, "loglik": fit.loglik, "converged": fit.converged}}
print(json.dumps(out))
"""


def run_version(src: Path, reps: int) -> dict:
    """One fresh process with ``src`` first on the path: {case: {seconds, loglik}}."""
    code = CHILD.format(bench=str(HERE), ref=str(REF), reps=reps)
    env = dict(os.environ, PYTHONPATH=str(src))
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp, capture_output=True, text=True
        )
    if proc.returncode != 0:
        raise SystemExit(f"{src}: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    versions = {"old": args.old.resolve(), "new": args.new.resolve()}
    times: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    logliks: dict[str, dict[str, float]] = {"old": {}, "new": {}}
    load_before = load()
    t0 = time.time()
    for r in range(args.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for v in order:
            for case, res in run_version(versions[v], args.reps).items():
                times[v].setdefault(case, []).extend(res["seconds"])
                logliks[v][case] = res["loglik"]
        print(f"round {r + 1}/{args.rounds} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    rows = []
    for case in times["old"]:
        old, new = statistics.median(times["old"][case]), statistics.median(times["new"][case])
        rows.append(
            {
                "case": case,
                "old_s": old,
                "new_s": new,
                "ratio": new / old,
                "loglik_old": logliks["old"][case],
                "loglik_new": logliks["new"][case],
            }
        )
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "load_before": load_before,
        "load_after": load(),
        "rounds": args.rounds,
        "reps": args.reps,
        "rows": rows,
    }
    print("| case | old (s) | new (s) | new/old | logLik old | logLik new |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['case']} | {row['old_s']:.3f} | {row['new_s']:.3f} | {row['ratio']:.2f} "
            f"| {row['loglik_old']:.4f} | {row['loglik_new']:.4f} |"
        )
    ratios = [row["ratio"] for row in rows]
    gm = statistics.geometric_mean(ratios)
    print(
        f"\ngeometric mean of the ratios: {gm:.3f}; load {load_before} -> {summary['load_after']}"
    )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
