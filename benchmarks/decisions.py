"""Decision-for-decision safety net for changes to the search's path to the engine.

Runs :func:`autoglmm.search` with a given ranking (no forest) on data sets with a known
truth and records every step (stage, term, status, reason, log-likelihood, chi-square,
p-value), the four models (log-likelihood, fixed effects, R²) and the optimal terms.

Record before a change, compare after it::

    python benchmarks/decisions.py record before.json [--quick]
    python benchmarks/decisions.py compare before.json [--quick]

``compare`` re-runs the searches and fails (exit 1) unless every decision (stage, term,
status, reason) is identical and every p-value agrees to ``--p-tol`` (default 1e-8), every
log-likelihood to ``--ll-tol`` (1e-6). The quick cases run in tests/test_decisions.py too.

The cases cover the three stages, the default (scan) and the paper's rule, gaussian and
binomial, a collinear candidate (skipped), a 3-level categorical predictor (no slope),
school-level predictors (no slope), sampling weights (weighted refits) and the demo data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _sim(seed: int, family: str, n_schools: int, n_items: int):
    from autoglmm.datasets import simulate_lsa

    s = simulate_lsa(seed=seed, family=family, n_schools=n_schools, n_items=n_items)
    data = s.data.copy()
    rng = np.random.default_rng(seed)
    data["ses_copy"] = 2.0 * data["ses"] + 1.0  # collinear with ses: skipped
    data["track"] = rng.choice(["academic", "general", "vocational"], size=len(data))
    shift = data["track"].map({"academic": 0.4, "general": 0.0, "vocational": -0.3})
    if family == "gaussian":
        data[s.truth.outcome] = data[s.truth.outcome] + 50.0 * shift
    return s, data


def _ranking(truth, data: pd.DataFrame, n_noise: int) -> list[str]:
    ranked = sorted(truth.fixed, key=lambda k: -abs(truth.fixed[k]) * float(data[k].std()))
    used = {*truth.fixed, truth.outcome, truth.group, "ses_copy", "track"}
    noise = [c for c in data.columns if c not in used and data[c].notna().mean() > 0.9]
    # the categorical and the collinear copy between true predictors, noise at the end
    return ranked[:3] + ["ses_copy", "track"] + ranked[3:] + noise[:n_noise]


def cases(quick: bool) -> list[tuple[str, dict]]:
    """(name, search kwargs) of every search of the net."""
    out = []
    g, gdata = _sim(3, "gaussian", 40 if quick else 90, 40 if quick else 80)
    base = dict(data=gdata, outcome=g.truth.outcome, group=g.truth.group, progress=False, seed=0)
    rank = _ranking(g.truth, gdata, 6 if quick else 12)
    out.append(("gaussian, scan rule", {**base, "ranking": rank}))
    out.append(("gaussian, paper rule", {**base, "ranking": rank, "patience": 1}))
    b, bdata = _sim(4, "binomial", 40 if quick else 90, 40 if quick else 80)
    brank = _ranking(b.truth, bdata, 4 if quick else 10)
    out.append(
        ("binomial, scan rule", dict(data=bdata, outcome=b.truth.outcome, group=b.truth.group,
                                     family="binomial", ranking=brank, progress=False, seed=0))
    )  # fmt: skip
    if quick:
        return out
    wdata = gdata.copy()
    rng = np.random.default_rng(9)
    school_w = pd.Series(rng.uniform(0.5, 2.0, wdata["school"].nunique()),
                         index=sorted(wdata["school"].unique()))  # fmt: skip
    wdata["w2"] = wdata["school"].map(school_w)
    wdata["w1"] = rng.uniform(0.8, 1.25, len(wdata))
    weights = {"level1_weights": "w1", "level2_weights": "w2"}
    out.append(("gaussian, weighted", {**base, "data": wdata, "ranking": rank, **weights}))
    d, ddata = _sim(0, "gaussian", 270, 230)  # the demo's data (plus two columns)
    out.append(("demo data, scan rule", dict(data=ddata, outcome=d.truth.outcome,
                group=d.truth.group, ranking=_ranking(d.truth, ddata, 20), progress=False,
                seed=0)))  # fmt: skip
    return out


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def record_one(kwargs: dict) -> dict:
    """The decisions and numbers of one search, JSON-ready."""
    from autoglmm.selection import search

    res = search(**kwargs)
    steps = [
        {"stage": s.stage, "term": s.term, "status": s.status, "reason": s.reason,
         "loglik": _num(s.loglik), "chisq": _num(s.chisq), "p": _num(s.p), "df": s.df}
        for s in res.steps
    ]  # fmt: skip
    models = {}
    for name in ("null", "base", "preliminary", "optimal"):
        m = getattr(res, name)
        if m is None:
            continue
        models[name] = {
            "loglik": float(m.loglik),
            "fixef": {k: float(v) for k, v in m.fixef.items()},
            "r2": {k: _num(v) for k, v in res.r2.get(name, {}).items()},
        }
    return {"steps": steps, "models": models, "optimal_terms": res.optimal_terms,
            "icc": float(res.icc), "n_fits": res.manifest.get("n_fits")}  # fmt: skip


def record(quick: bool) -> dict:
    out = {}
    for name, kwargs in cases(quick):
        t = time.perf_counter()
        out[name] = record_one(kwargs)
        out[name]["seconds"] = round(time.perf_counter() - t, 3)
        print(f"{name}: {len(out[name]['steps'])} steps, {out[name]['seconds']} s", flush=True)
    return out


def compare(old: dict, new: dict, p_tol: float = 1e-8, ll_tol: float = 1e-6) -> list[str]:
    """Every difference beyond the tolerances, as readable lines (empty: identical)."""
    problems = []
    for case, a in old.items():
        b = new.get(case)
        if b is None:
            problems.append(f"{case}: missing")
            continue
        if a["optimal_terms"] != b["optimal_terms"]:
            problems.append(f"{case}: optimal terms {a['optimal_terms']} != {b['optimal_terms']}")
        if len(a["steps"]) != len(b["steps"]):
            problems.append(f"{case}: {len(a['steps'])} steps != {len(b['steps'])}")
        for i, (x, y) in enumerate(zip(a["steps"], b["steps"], strict=False)):
            for key in ("stage", "term", "status", "reason", "df"):
                if x[key] != y[key]:
                    problems.append(f"{case} step {i} {key}: {x[key]!r} != {y[key]!r}")
            for key, tol in (("p", p_tol), ("loglik", ll_tol), ("chisq", 2 * ll_tol)):
                if _differ(x[key], y[key], tol):
                    problems.append(f"{case} step {i} {key}: {x[key]!r} != {y[key]!r}")
        for name, m in a["models"].items():
            n = b["models"].get(name)
            if n is None or _differ(m["loglik"], n["loglik"], ll_tol):
                problems.append(f"{case} model {name}: loglik differs")
                continue
            if list(m["fixef"]) != list(n["fixef"]):
                problems.append(f"{case} model {name}: fixed-effect names differ")
            for key in m["r2"]:
                if _differ(m["r2"][key], n["r2"].get(key), 1e-6):
                    problems.append(f"{case} model {name} r2 {key} differs")
    return problems


def max_p_difference(old: dict, new: dict) -> tuple[int, float]:
    """(steps compared, largest |p difference|)."""
    count, worst = 0, 0.0
    for case, a in old.items():
        for x, y in zip(a["steps"], new.get(case, {"steps": []})["steps"], strict=False):
            count += 1
            if x["p"] is not None and y["p"] is not None:
                worst = max(worst, abs(x["p"] - y["p"]))
    return count, worst


def _differ(a, b, tol: float) -> bool:
    if a is None or b is None:
        return a is not b
    return abs(a - b) > tol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("record", "compare"))
    ap.add_argument("path", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--p-tol", type=float, default=1e-8)
    ap.add_argument("--ll-tol", type=float, default=1e-6)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    new = record(args.quick)
    if args.mode == "record":
        args.path.write_text(json.dumps(new, indent=1))
        return
    old = json.loads(args.path.read_text())
    problems = compare(old, new, args.p_tol, args.ll_tol)
    n, worst = max_p_difference(old, new)
    print(f"{len(old)} searches, {n} steps compared, max |p difference| {worst:.3g}")
    for line in problems:
        print(line)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
