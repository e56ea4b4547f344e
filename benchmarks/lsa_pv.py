"""Issue 13's acceptance run: TIMSS-shaped files, five PVs, 2% missing per item, --impute 5.

Runs the issue's command through the CLI on files from ``simulate_timss`` and measures:

- students kept, against the students of the schools that pass the size rule;
- that every ID, weight, PV, benchmark and jackknife variable is excluded (never ranked);
- recovery of the true model by the pooled (majority) model, against the single-outcome
  search on the same files without missing values (same seed, same draws);
- wall time and the load average;
- with ``--rank-each``: the ranking's agreement across PVs (Spearman, top-20 overlap) and
  whether ranking each PV changes the selected terms (the "rank once or per PV" question).

Usage::

    nice -n 10 python benchmarks/lsa_pv.py --schools 150 --items 100 --rank-each
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schools", type=int, default=150)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ntree", type=int, default=2000)
    parser.add_argument("--rank-each", action="store_true", help="also rank every PV")
    args = parser.parse_args()

    from autoglmm.datasets import recovery
    from autoglmm.lsa.simulate import simulate_timss

    tmp = Path(tempfile.mkdtemp(prefix="lsa_pv_"))
    sim = simulate_timss(tmp / "files", seed=args.seed, n_schools=args.schools,
                         n_items=args.items)  # fmt: skip
    out = tmp / "DIR"
    cmd = [
        str(Path(sys.executable).parent / "autoglmm"), "search", str(sim.student_path),
        "--merge", str(sim.school_path), "--outcome", "BSMMAT0[1-5]", "--group", "IDSCHOOL",
        "--impute", "5", "--seed", str(args.seed), "--ntree", str(args.ntree),
        "--no-progress", "--out", str(out),
    ]  # fmt: skip
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    load1 = os.getloadavg()[0]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    data = json.loads((out / "result.json").read_text())

    sizes = sim.student.groupby("IDSCHOOL").size()
    eligible = int(sizes[sizes >= 20].sum())
    prefixes = ("ID", "BSMMAT", "BSSSCI", "BSMIBM", "JK")
    columns = (*sim.student.columns, *sim.school.columns)
    design = [c for c in columns if c.startswith(prefixes) or "WGT" in c]
    excluded = {e["column"] for e in data["dropped"]["excluded_predictors"]}
    ranked = {r["predictor"] for r in data["ranking"]}
    design_left = sorted(c for c in set(design) - {"IDSCHOOL", "BSMMAT01"}
                         if c not in excluded and f"{c}_BCG" not in excluded)  # fmt: skip
    pooled = [t for t in data["plausible_values"]["pooled"]["fixef"] if t != "(Intercept)"]
    multi = recovery(sim.truth, {"fixed": [t for t in pooled if ":" not in t],
                                 "interactions": [t for t in pooled if ":" in t]})  # fmt: skip
    freq = data["plausible_values"]["selection_frequency"]
    slopes = [k[1:].split(" |")[0] for k, v in freq.items() if k.startswith("(") and v > 0.5]
    multi_slopes = [s for s in slopes if s in sim.truth.slopes]
    single = _single(args, tmp)
    print(f"## Plausible values and imputation (issue 13), {time.strftime('%Y-%m-%d %H:%M')} UTC")
    print(f"\nbenchmarks/lsa_pv.py --schools {args.schools} --items {args.items} "
          f"--ntree {args.ntree}; nproc {os.cpu_count()}; "
          f"load {load0:.1f} -> {load1:.1f}\n")  # fmt: skip
    print("| measure | value |\n|---|---|")
    print(f"| wall time of the command | {seconds:.0f} s |")
    print(f"| CPU time of the command (user + system) | {cpu:.0f} s |")
    print(f"| students kept / in schools passing the size rule | {data['n_obs']} / {eligible} "
          f"({data['n_obs'] / eligible:.1%}) |")  # fmt: skip
    print(f"| design variables not excluded | {len(design_left)} {design_left} |")
    print(f"| design variables ranked | {len(ranked & set(design))} |")
    print(f"| pooled model: true terms found / missed / false | {len(multi['found'])} / "
          f"{len(multi['missed'])} / {len(multi['false'])} |")  # fmt: skip
    print(f"| single PV, no missing: found / missed / false | {len(single['found'])} / "
          f"{len(single['missed'])} / {len(single['false'])} |")  # fmt: skip
    print(f"| true slopes found: pooled / single | {len(multi_slopes)} / "
          f"{len(single['slopes_found'])} of {len(sim.truth.slopes)} |")  # fmt: skip
    print(f"| terms selected in some but not all PVs | "
          f"{sorted(k for k, v in freq.items() if v < 1)} |")  # fmt: skip
    if args.rank_each:
        _rank_each(args, sim, data)


def _single(args, tmp: Path) -> dict:
    from autoglmm.datasets import recovery
    from autoglmm.lsa.simulate import simulate_timss
    from autoglmm.selection import search

    sim = simulate_timss(tmp / "complete", seed=args.seed, n_schools=args.schools,
                         n_items=args.items, missing=0.0)  # fmt: skip
    res = search(sim.student_path, "BSMMAT01", "IDSCHOOL", merge=[sim.school_path],
                 seed=args.seed, ntree=args.ntree, progress=False)  # fmt: skip
    return recovery(sim.truth, res.optimal_terms)


def _rank_each(args, sim, data_once: dict) -> None:
    """Rank every PV (with its imputation) and compare with ranking once."""
    from autoglmm.analyses import search_analyses

    start = time.perf_counter()
    cpu0 = time.process_time()
    res = search_analyses(sim.student_path, "BSMMAT0[1-5]", "IDSCHOOL", merge=[sim.school_path],
                          impute=5, seed=args.seed, ntree=args.ntree, progress=False,
                          rank_each=True)  # fmt: skip
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    agree = res.pooled.ranking_agreement
    once = [p["optimal_terms"] for p in data_once["plausible_values"]["per_outcome"]]
    each = [r.optimal_terms for r in res.pooled.results]
    same = sum(a == b for a, b in zip(once, each, strict=True))
    print(f"| ranking each PV: wall time / CPU time | {seconds:.0f} s / {cpu:.0f} s |")
    print(f"| Spearman of PV k's ranking with PV 1's (k = 2..5) | "
          f"{', '.join(f'{r:.3f}' for r in agree['spearman'])} |")  # fmt: skip
    print(f"| top-20 overlap with PV 1's ranking | "
          f"{', '.join(f'{r:.2f}' for r in agree['top20_overlap'])} |")  # fmt: skip
    print(f"| PVs whose optimal terms are identical, rank once vs each | {same} of 5 |")
    pooled_each = sorted(res.pooled.fixef)
    pooled_once = sorted(data_once["plausible_values"]["pooled"]["fixef"])
    print(f"| pooled model identical, rank once vs each | {pooled_each == pooled_once} |")


if __name__ == "__main__":
    main()
