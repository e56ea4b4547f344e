"""Does the study's smaller forest change the ranking? ntree 200 vs 1000, and seed noise.

For one design of the selection study and the new MERF: the 200-tree ranking of the study
(two seeds) against a 1,000-tree ranking: Spearman correlation of the ranks, and how many
of the 18 true predictors each puts in its top 18 and top 40.

Run: ``nice -n 10 python benchmarks/selection_ntree.py [--design g02]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from selection import rank  # noqa: E402
from selection_designs import designs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--design", default="g02")
    parser.add_argument("--ranker", default="merf")
    args = parser.parse_args()
    design = next(d for d in designs() if d.name == args.design)
    data, truth = design.simulate()
    outcome = truth.outcome
    runs = {
        "ntree 200, seed a": (200, design.seed),
        "ntree 200, seed b": (200, design.seed + 1),
        "ntree 1000, seed a": (1000, design.seed),
    }
    orders = {k: rank(data, outcome, "school", design.family, args.ranker, n, s)
              for k, (n, s) in runs.items()}  # fmt: skip
    ref = orders["ntree 1000, seed a"]
    pos = {name: i for i, name in enumerate(ref)}
    print(f"design {design.name}, ranker {args.ranker}")
    print("| ranking | Spearman vs 1000 trees | true in top 18 | true in top 40 |")
    print("|---|---|---|---|")
    for key, order in orders.items():
        rho = stats.spearmanr(np.arange(len(order)), [pos[n] for n in order]).statistic
        top18 = sum(n in truth.fixed for n in order[:18])
        top40 = sum(n in truth.fixed for n in order[:40])
        print(f"| {key} | {rho:.3f} | {top18} | {top40} |")


if __name__ == "__main__":
    main()
