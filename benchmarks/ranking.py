"""Benchmark: MERF ranking at paper settings vs ranger (R) and scikit-learn.

Data: ``autoglmm.datasets.simulate_lsa`` (TIMSS-like, ~8,700 students, 270 schools, 242
candidate predictors with a known truth), reduced to the analysis sample by
``build_sample``. Settings: ntree 2,000, mtry 77 (the paper's), min_samples_leaf 5.

Measured:
- ``autoglmm``: :func:`autoglmm.rank_predictors` end to end (EM to convergence with the small
  EM forests, then the full forest with OOB permutation importance), with the split of the
  time between the EM and the final forest;
- ``plain``: our forest without random effects (groups=None), same settings;
- ``ranger``: one ranger forest with permutation importance (``Rscript``, 2 threads), no
  random effects, timed inside R;
- ``sklearn``: ``RandomForestRegressor`` + ``sklearn.inspection.permutation_importance`` on a
  fraction of the trees, extrapolated linearly to 2,000 trees (a full run takes too long).

For each ranking: how many of the true predictors are in its top k (k = number of true
predictors) and how many school-level decoys/noise items are.

``--variants`` instead compares the four rankers of :data:`autoglmm.ranking.RANKERS` (the
cluster-aware MERF, autoglmm 0.1's row/LMM-start MERF, a LongituRF-like MERF and a plain
forest) on ``simulate_lsa`` data for several seeds and both families: the rank of each
true school-level predictor (``sch_resources``, ``sch_emphasis``), of the school-level
noise items and decoys (decoys track the school effect, so they do predict the school
mean), how many true student-level predictors are in the top k, the worst rank of one,
and the CPU time. It prints a markdown table (for RESULTS.md) and writes it to
``--variants-out``.

Run: ``.venv/bin/python benchmarks/ranking.py [--ntree 2000] [--skip-sklearn]``, or
``.venv/bin/python benchmarks/ranking.py --variants --seeds 1,2,3 --ntree 500``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from autoglmm.datasets import simulate_lsa
from autoglmm.forest.merf import MixedEffectsRandomForest
from autoglmm.ranking import encode_predictors, rank_predictors
from autoglmm.sample import build_sample

R_SCRIPT = r"""
suppressMessages(library(ranger))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
t <- system.time(rf <- ranger(y ~ ., data = d, num.trees = as.integer(args[2]),
                              mtry = as.integer(args[3]), min.node.size = 5,
                              importance = "permutation", scale.permutation.importance = FALSE,
                              num.threads = 2, seed = 1, verbose = FALSE))
imp <- sort(importance(rf), decreasing = TRUE)
cat(sprintf("TIME %.3f %.3f\n", t[["elapsed"]], t[["user.self"]] + t[["sys.self"]]))
cat(paste("VAR", names(imp)), sep = "\n")
"""


def score(names: list[str], truth: set[str], level2_noise: set[str], k: int) -> dict:
    top = names[:k]
    return {
        "true_in_top_k": sum(n in truth for n in top),
        "level2_noise_in_top_k": sum(n in level2_noise for n in top),
    }


def run_ranger(X: np.ndarray, y: np.ndarray, names: list[str], ntree: int, mtry: int):
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        frame.insert(0, "y", y)
        frame.to_csv(path, index=False)
        script = Path(tmp) / "r.R"
        script.write_text(R_SCRIPT)
        t0 = time.perf_counter()
        out = subprocess.run(
            ["Rscript", str(script), str(path), str(ntree), str(mtry)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        wall = time.perf_counter() - t0
    lines = out.stdout.splitlines()
    timing = next(ln.split() for ln in lines if ln.startswith("TIME "))
    order = [names[int(ln.split()[1][1:])] for ln in lines if ln.startswith("VAR ")]
    return {
        "seconds_in_R": float(timing[1]), "cpu_seconds": float(timing[2]), "seconds_wall": wall,
        "names": order,
    }  # fmt: skip


def run_sklearn(X, y, names, ntree, mtry, n_trees_measured=50):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    rf = RandomForestRegressor(
        n_estimators=n_trees_measured, max_features=mtry, min_samples_leaf=5, n_jobs=2,
        random_state=1,
    )  # fmt: skip
    t0 = time.perf_counter()
    c0 = time.process_time()
    rf.fit(X, y)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    pi = permutation_importance(rf, X, y, n_repeats=1, random_state=1, n_jobs=1)  # in-sample
    t_perm = time.perf_counter() - t0
    cpu = time.process_time() - c0
    scale = ntree / n_trees_measured
    order = [names[j] for j in np.argsort(-pi.importances_mean, kind="stable")]
    return {
        "trees_measured": n_trees_measured,
        "seconds_measured": t_fit + t_perm,
        "seconds_extrapolated": (t_fit + t_perm) * scale,
        "cpu_seconds_extrapolated": cpu * scale,
        "names": order,
    }


def rank_positions(names: list[str], truth, level2_all: list[str]) -> dict:
    """Where the true and the school-level items land in one ranking."""
    pos = {n: i + 1 for i, n in enumerate(names)}
    k = len(truth.fixed)
    level1 = [c for c in truth.fixed if c not in truth.level2]
    noise2 = [c for c in level2_all if c not in truth.fixed and c not in truth.decoys]
    return {
        "level2_true": [pos[c] for c in truth.level2],
        "level1_in_top_k": sum(pos[c] <= k for c in level1),
        "n_level1": len(level1),
        "level1_worst": max(pos[c] for c in level1),
        "decoys": sorted(pos[c] for c in truth.decoys),
        "level2_noise": sorted(pos[c] for c in noise2),
        "level2_noise_in_top_18": sum(pos[c] <= 18 for c in noise2),
    }


def run_variants(seeds: list[int], families: list[str], ntree: int, mtry: int, n_jobs: int):
    """Every ranker of RANKERS on simulate_lsa(seed, family); one dict per fit."""
    from autoglmm.ranking import RANKERS

    out = []
    for family in families:
        for seed in seeds:
            sim = simulate_lsa(seed=seed, family=family)
            t = sim.truth
            level2_all = [c for c in sim.data.columns if c.startswith("sch_")]
            for name, options in RANKERS.items():
                t0, c0 = time.perf_counter(), time.process_time()
                r = rank_predictors(
                    sim.data, t.outcome, t.group, family=family, ntree=ntree, mtry=mtry,
                    seed=seed, n_jobs=n_jobs, forest_options=options,
                )  # fmt: skip
                row = {
                    "family": family, "seed": seed, "ranker": name, "n_iter": r.n_iter,
                    "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                    **rank_positions(r.names, t, level2_all),
                }  # fmt: skip
                print(json.dumps(row), flush=True)
                out.append(row)
    return out


def variants_table(rows: list[dict]) -> str:
    """Markdown: one line per family, seed and ranker."""
    head = (
        "| family | seed | ranker | sch_resources, sch_emphasis | true level-1 in top k "
        "| worst level-1 | school noise items | decoys | EM iterations | cpu s |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['family']} | {r['seed']} | {r['ranker']} | "
        f"{', '.join(map(str, r['level2_true']))} | "
        f"{r['level1_in_top_k']}/{r['n_level1']} | {r['level1_worst']} | "
        f"{', '.join(map(str, r['level2_noise']))} | {', '.join(map(str, r['decoys']))} | "
        f"{r['n_iter']} | {r['cpu_seconds']:.1f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ntree", type=int, default=2000)
    ap.add_argument("--mtry", type=int, default=77)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--skip-ranger", action="store_true")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--variants", action="store_true", help="compare the RANKERS presets")
    ap.add_argument("--quick-variants", action="store_true", help="time no LongituRF-like")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--families", default="gaussian,binomial")
    ap.add_argument("--variants-out", default="ranking_variants.md")
    args = ap.parse_args()
    if args.variants:
        seeds = [int(x) for x in args.seeds.split(",")]
        rows = run_variants(seeds, args.families.split(","), args.ntree, args.mtry, args.n_jobs)
        table = variants_table(rows)
        Path(args.variants_out).write_text(table)
        print(table)
        return

    sim = simulate_lsa(seed=args.seed)
    truth = sim.truth
    sample = build_sample(sim.data, truth.outcome, truth.group)
    names = list(sample.predictors)
    X = encode_predictors(sample.data, names, sample.categorical)
    y = sample.data[truth.outcome].to_numpy(float)
    true_set = set(truth.fixed)
    noise2 = set(sample.level2) - true_set
    k = len(true_set)
    print(f"data: {X.shape[0]} rows, {sample.n_groups} groups, {X.shape[1]} predictors, "
          f"{k} true, {len(noise2)} school-level noise/decoys")  # fmt: skip
    results: dict = {"n": X.shape[0], "p": X.shape[1], "k": k, "ntree": args.ntree}

    # warm the numba cache so compilation is not timed
    rank_predictors(sample.data, truth.outcome, truth.group, ntree=10, seed=0)

    stamps: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stamps.setdefault(f"{stage}_start", time.perf_counter())
        stamps[f"{stage}_end"] = time.perf_counter()

    t0 = time.perf_counter()
    c0 = time.process_time()
    ranking = rank_predictors(
        sample.data, truth.outcome, truth.group, ntree=args.ntree, mtry=args.mtry,
        seed=args.seed, n_jobs=args.n_jobs, progress=progress,
    )  # fmt: skip
    t_merf = time.perf_counter() - t0
    cpu_merf = time.process_time() - c0
    results["autoglmm"] = {
        "seconds": t_merf,
        "cpu_seconds": cpu_merf,
        "em_iterations": ranking.n_iter,
        "seconds_em": stamps.get("em_end", t0) - t0,
        "seconds_final_forest": t0 + t_merf - stamps.get("em_end", t0),
        "sigma2": ranking.sigma2,
        "tau2": float(ranking.G[0, 0]),
        **score(ranking.names, true_set, noise2, k),
    }
    # the design choice: 100-tree forests inside EM. With the full forest in every
    # iteration the EM alone would cost about n_iter final forests:
    a = results["autoglmm"]
    a["em_estimators"] = 100
    a["estimated_seconds_full_forest_in_em"] = a["em_iterations"] * a["seconds_final_forest"]
    results["autoglmm"]["ranker"] = ranking.settings["forest_options"]
    print("autoglmm MERF:", json.dumps(results["autoglmm"]))

    # the other MERF rankers of RANKERS in the same run (the default one is "autoglmm")
    from autoglmm.ranking import DEFAULT_RANKER, RANKERS

    for name in RANKERS:
        if name in (DEFAULT_RANKER, "plain") or (args.quick_variants and name == "longiturf"):
            continue
        t0 = time.perf_counter()
        c0 = time.process_time()
        other = rank_predictors(
            sample.data, truth.outcome, truth.group, ntree=args.ntree, mtry=args.mtry,
            seed=args.seed, n_jobs=args.n_jobs, forest_options=name,
        )  # fmt: skip
        results[f"ranker_{name}"] = {
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "em_iterations": other.n_iter, **score(other.names, true_set, noise2, k),
        }  # fmt: skip
        print(f"ranker {name}:", json.dumps(results[f"ranker_{name}"]))

    t0 = time.perf_counter()
    c0 = time.process_time()
    plain = MixedEffectsRandomForest(
        n_estimators=args.ntree, max_features=args.mtry, random_state=args.seed, n_jobs=args.n_jobs
    ).fit(X, y)
    t_plain = time.perf_counter() - t0
    order = [names[j] for j in np.argsort(-plain.feature_importances_, kind="stable")]
    results["plain"] = {
        "seconds": t_plain, "cpu_seconds": time.process_time() - c0,
        **score(order, true_set, noise2, k),
    }  # fmt: skip
    print("autoglmm plain forest:", json.dumps(results["plain"]))

    if not args.skip_ranger:
        rr = run_ranger(X, y, names, args.ntree, args.mtry)
        if rr is not None:
            results["ranger"] = {
                "seconds": rr["seconds_in_R"], "seconds_wall": rr["seconds_wall"],
                "cpu_seconds": rr["cpu_seconds"],
                "ratio_vs_autoglmm": rr["seconds_in_R"] / t_merf,
                "cpu_ratio_vs_autoglmm": rr["cpu_seconds"] / cpu_merf,
                **score(rr["names"], true_set, noise2, k),
            }  # fmt: skip
            print("ranger:", json.dumps(results["ranger"]))
    if not args.skip_sklearn:
        sk = run_sklearn(X, y, names, args.ntree, args.mtry)
        results["sklearn"] = {
            "trees_measured": sk["trees_measured"],
            "seconds_measured": sk["seconds_measured"],
            "seconds_extrapolated": sk["seconds_extrapolated"],
            "cpu_seconds_extrapolated": sk["cpu_seconds_extrapolated"],
            "ratio_vs_autoglmm": sk["seconds_extrapolated"] / t_merf,
            "cpu_ratio_vs_autoglmm": sk["cpu_seconds_extrapolated"] / cpu_merf,
            **score(sk["names"], true_set, noise2, k),
        }
        print("sklearn (extrapolated):", json.dumps(results["sklearn"]))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
