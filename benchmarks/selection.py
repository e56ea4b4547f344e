"""Selection study: which ranking and which stopping rule find the true model?

For every design of :mod:`selection_designs` (20 with a known truth, 4 null) and every
ranker, the ranking is computed once (cached) and reused by every stopping rule:

- ``paper``: patience 1 at alpha (the paper's rule); ``patience-3``, ``patience-10``;
- ``scan``: every candidate at alpha (one ranker only: it barely depends on the order);
- ``patience-3-bonferroni``, ``scan-bonferroni``: alpha / m, m = the stage's candidates;
- ``split-paper``, ``split-patience-3``: rank on a random half of the schools, test on the
  other half (sample splitting by groups: the tests no longer reuse the ranking's data).

Rules that share a threshold share one fixed-effects pass: a patience-k stage follows the
scan's path exactly until its k-th consecutive miss, so it is read off the scan's trace;
interactions and slopes are then run per rule from its base model with the stage machinery
of :mod:`autoglmm.selection`. Per design, ranker and rule the study records true
predictors found (of 18), false additions (fixed and interactions), true slopes found,
school-level truth found, and time (ranking + the fits the rule needs).

Run (resumable; one JSON line per design x ranker in ``--out``)::

    nice -n 10 python benchmarks/selection.py run --ntree 300
    python benchmarks/selection.py report      # tables for RESULTS.md + figures
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from selection_designs import Design, designs  # noqa: E402

from autoglmm.sample import build_sample  # noqa: E402
from autoglmm.search_result import Terms  # noqa: E402
from autoglmm.selection import _Context  # noqa: E402
from autoglmm.stopping import StoppingRule  # noqa: E402

HERE = Path(__file__).parent
ALPHA = 0.05
RULES = {
    "paper": StoppingRule(1, "alpha"),
    "patience-3": StoppingRule(3, "alpha"),
    "patience-10": StoppingRule(10, "alpha"),
    "scan": StoppingRule(None, "alpha"),
    "patience-3-bonferroni": StoppingRule(3, "bonferroni"),
    "scan-bonferroni": StoppingRule(None, "bonferroni"),
}
SPLIT_RULES = {
    "split-paper": StoppingRule(1, "alpha"),
    "split-patience-3": StoppingRule(3, "alpha"),
}
SCAN_RANKER = "merf"  # the ranker of the scan at alpha (slow, order-insensitive) and the split
SKIP_RULES: set[str] = set()  # rules left out of a run (--skip-rules)


# --- rankers -------------------------------------------------------------------------------


def ranker_options() -> dict[str, str]:
    """forest_options preset of each ranker (autoglmm.ranking.RANKERS).

    ``merf0`` is today's MERF (row bootstrap, EM from the null LMM's random effects, stopped
    at the first fall), ``merf`` the cluster-aware one (group bootstrap, level-2 columns
    permuted across groups, EM from b = 0), ``longiturf`` row bootstrap with EM from b = 0,
    ``plain`` one forest without random effects.
    """
    return {"merf0": "merf_rowlmm", "merf": "merf", "plain": "plain", "longiturf": "longiturf"}


def rank(data, outcome, group, family, ranker: str, ntree: int, seed: int) -> list[str]:
    """Predictor names in rank order by ``ranker``."""
    import inspect

    from autoglmm.ranking import rank_predictors

    if "forest_options" not in inspect.signature(rank_predictors).parameters:
        return _rank_before_forest_options(data, outcome, group, family, ranker, ntree, seed)
    r = rank_predictors(data, outcome, group, family=family, ntree=ntree, seed=seed,
                        forest_options=ranker_options()[ranker])  # fmt: skip
    return r.names


def _rank_before_forest_options(data, outcome, group, family, ranker, ntree, seed):
    """Today's MERF (rank_predictors) and the plain forest (MERF without groups)."""
    from autoglmm.forest.importance import rank_order
    from autoglmm.forest.merf import MixedEffectsRandomForest
    from autoglmm.ranking import encode_predictors, rank_predictors

    if ranker == "merf0":
        return rank_predictors(data, outcome, group, family=family, ntree=ntree, seed=seed).names
    if ranker != "plain":
        raise SystemExit(f"ranker {ranker} needs rank_predictors(forest_options=...)")
    sample = build_sample(data, outcome, group, family=family)
    names = list(sample.predictors)
    X = encode_predictors(sample.data, names, sample.categorical)
    forest = MixedEffectsRandomForest(n_estimators=ntree, family=family, random_state=seed)
    forest.fit(X, sample.data[outcome].to_numpy(dtype=float), groups=None)
    ranks = rank_order(forest.feature_importances_)
    return [names[j] for j in np.argsort(ranks, kind="stable")]


# --- the forward stages --------------------------------------------------------------------


def fixed_pass(ctx: _Context, null, order: list[str], rule: StoppingRule):
    """One fixed-effects pass with ``rule``; every tried candidate with its fit time."""
    level = rule.level(ALPHA, len(order))
    terms, current, trace, misses = Terms(), null, [], 0
    for name in order:
        new = terms.extend("fixed", name)
        t0 = time.perf_counter()
        step, fitted = ctx.evaluate("fixed", name, current, new, level)
        trace.append((name, step.status, time.perf_counter() - t0, fitted))
        if step.status == "accepted":
            terms, current, misses = new, fitted, 0
        elif step.status == "rejected":
            misses += 1
            if rule.stops(misses):
                break
    return trace


def base_from_trace(trace, null, patience: int | None):
    """Base terms, base fit and fixed-stage seconds of a patience-k rule on a scan trace."""
    fixed, current, misses, seconds = [], null, 0, 0.0
    for name, status, secs, fitted in trace:
        seconds += secs
        if status == "accepted":
            fixed.append(name)
            current, misses = fitted, 0
        elif status == "rejected":
            misses += 1
            if patience is not None and misses >= patience:
                break
    return Terms(fixed=tuple(fixed)), current, seconds


def finish(ctx: _Context, order, spec: Terms, fit, rule: StoppingRule):
    """Interactions then slopes of one rule from its base model; terms and seconds."""
    t0 = time.perf_counter()
    essentials = [n for n in order if n in spec.fixed][:3]
    pairs = list(combinations(essentials, 2))
    spec, fit, _, _ = ctx.stage("interaction", spec, fit, pairs, ALPHA, rule)
    slopes = [n for n in order if n in spec.fixed]
    spec, fit, _, _ = ctx.stage("slope", spec, fit, slopes, ALPHA, rule)
    return spec, time.perf_counter() - t0


def run_rules(sample, family, order, rules: dict[str, StoppingRule]) -> dict[str, dict]:
    """Every rule of ``rules`` on one sample and ranking (sharing fixed passes)."""
    ctx = _Context(sample, family, sample.data, progress=False)
    null = ctx.fit_terms(Terms())
    out = {}
    passes: dict[tuple, list] = {}
    for name, rule in rules.items():
        longest = None if rule.patience is None else 10
        key = (rule.threshold, longest)
        if key not in passes:  # the scan's pass serves every patience of its threshold
            have = [k for k in passes if k[0] == rule.threshold and k[1] is None]
            passes[key] = (
                passes[have[0]]
                if have
                else fixed_pass(ctx, null, order, StoppingRule(longest, rule.threshold))
            )
        spec, fit, fixed_secs = base_from_trace(passes[key], null, rule.patience)
        spec, rest_secs = finish(ctx, order, spec, fit, rule)
        out[name] = {"terms": spec.to_dict(), "seconds": fixed_secs + rest_secs}
    ctx.close()
    return out


def order_rules(rules: dict) -> dict:
    """Scans first, so patience-k rules of the same threshold reuse their pass."""
    return dict(sorted(rules.items(), key=lambda kv: kv[1].patience is not None))


# --- one design x ranker -------------------------------------------------------------------


def run_one(design: Design, ranker: str, ntree: int, cache: Path) -> dict:
    data, truth = design.simulate()
    outcome = "math" if design.family == "gaussian" else "proficient"
    sample = build_sample(data, outcome, "school", family=design.family)
    t0 = time.perf_counter()
    order = cached_rank(cache, design, ranker, ntree, sample.data, outcome, "")
    rank_secs = time.perf_counter() - t0
    rules = {k: v for k, v in RULES.items() if k not in SKIP_RULES}
    if ranker != SCAN_RANKER or design.family == "binomial":
        rules.pop("scan", None)  # slow, order-insensitive, and clearly worst on false additions
    results = run_rules(sample, design.family, order, order_rules(rules))
    if ranker == SCAN_RANKER:
        results.update(run_split(design, ranker, ntree, cache, sample, outcome))
    return {"design": design.name, "ranker": ranker, "rank_seconds": rank_secs,
            "order": order, "rules": results}  # fmt: skip


def run_split(design, ranker, ntree, cache, sample, outcome) -> dict:
    """Rank on a random half of the schools, run the rules on the other half."""
    schools = np.unique(sample.data["school"])
    rng = np.random.default_rng(design.seed)
    half = set(rng.choice(schools, size=len(schools) // 2, replace=False).tolist())
    in_a = sample.data["school"].isin(half)
    order = cached_rank(cache, design, ranker, ntree, sample.data[in_a], outcome, "-split")
    held = build_sample(sample.data[~in_a], outcome, "school", family=design.family)
    order = [n for n in order if n in set(held.predictors)]
    return run_rules(held, design.family, order, SPLIT_RULES)


def cached_rank(cache, design, ranker, ntree, data, outcome, tag) -> list[str]:
    path = cache / f"{design.name}-{ranker}-{ntree}{tag}.json"
    if path.exists():
        return json.loads(path.read_text())["order"]
    t0, c0 = time.perf_counter(), time.process_time()
    order = rank(data, outcome, "school", design.family, ranker, ntree, design.seed)
    elapsed = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    path.write_text(json.dumps({"order": order, **elapsed}))
    return order


def interleaved(items: list[Design]) -> list[Design]:
    """g01, b01, null1, null3, g02, b02, ...: a partial run covers every kind of design."""
    g = [d for d in items if not d.null and d.family == "gaussian"]
    b = [d for d in items if not d.null and d.family == "binomial"]
    nulls = [d for d in items if d.null]
    nulls = [n for pair in zip(nulls[:2], nulls[2:], strict=False) for n in pair]
    out = []
    for k in range(max(len(g), len(b))):
        out += g[k : k + 1] + b[k : k + 1] + nulls[2 * k : 2 * k + 2]
    return out


def main_run(args) -> None:
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {(r["design"], r["ranker"]) for r in map(json.loads, out.read_text().splitlines())}
    wanted = set(args.designs.split(",")) if args.designs else None
    for design in interleaved(designs()):
        for ranker in args.rankers.split(","):
            if (wanted and design.name not in wanted) or (design.name, ranker) in done:
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            row = run_one(design, ranker, args.ntree, cache)
            ranked = json.loads((cache / f"{design.name}-{ranker}-{args.ntree}.json").read_text())
            row["rank_seconds"] = ranked["seconds"]
            row["rank_cpu_seconds"] = ranked.get("cpu_seconds")
            row["cpu_seconds"] = time.process_time() - c0
            row["ntree"] = args.ntree
            row["load"] = os.getloadavg()[0]
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{design.name} {ranker}: {time.perf_counter() - t0:.0f} s", flush=True)


# --- scoring and report --------------------------------------------------------------------


def score(design: Design, terms: dict) -> dict:
    """Counts of one search against the design's truth (null: every addition is false)."""
    fixed, inter = terms["fixed"], terms["interactions"]
    if design.null:
        return {"false": len(fixed) + len(inter)}
    from autoglmm.datasets import recovery

    _, truth = design.simulate()
    rec = recovery(truth, terms)
    found = set(rec["found"])
    return {
        "true_found": sum(t in found for t in truth.fixed),
        "n_true": len(truth.fixed),
        "false": len(rec["false"]),
        "interaction": int(":".join(truth.interaction) in found),
        "slopes": len(rec["slopes_found"]),
        "school": sum(t in found for t in truth.level2),
        "strong_school": int(truth.level2[0] in found),
    }


def ranking_scores(design: Design, order: list[str]) -> dict:
    """Where the ranking put the school-level items (the issue's ranking criteria).

    School-level noise items are the ``sch_`` columns that are not true predictors (all of
    them in a null design); ``rank_*`` are 1-based positions among all candidates.
    """
    top = order[:18]
    school = [n for n in order if n.startswith("sch_")]
    if design.null:
        return {"school_noise_top18": sum(n in top for n in school)}
    _, truth = design.simulate()
    noise = [n for n in school if n not in truth.level2]
    return {
        "rank_school_1": order.index(truth.level2[0]) + 1,
        "rank_school_2": order.index(truth.level2[1]) + 1,
        "school_noise_top18": sum(n in top for n in noise),
        "true_top18": sum(n in top for n in truth.fixed),
    }


def ranking_frame(path: Path) -> pd.DataFrame:
    """One row per design x ranker: ranking positions and the ranking's CPU seconds."""
    by_name = {d.name: d for d in designs()}
    rows = []
    for rec in map(json.loads, path.read_text().splitlines()):
        design = by_name[rec["design"]]
        rows.append({"design": design.name, "family": design.family, "null": design.null,
                     "school_effects": design.school, "ranker": rec["ranker"],
                     "rank_seconds": rec["rank_seconds"],
                     "rank_cpu_seconds": rec.get("rank_cpu_seconds") or np.nan,
                     **ranking_scores(design, rec["order"])})  # fmt: skip
    return pd.DataFrame(rows)


def ranking_table(path: Path) -> str:
    """Per ranker, family and strength of the school effects: the school items' ranks."""
    frame = ranking_frame(path)
    truth = frame[~frame["null"]]
    g = truth.groupby(["ranker", "family", "school_effects"])
    table = pd.DataFrame({
        "rank of school item 1 (mean)": g["rank_school_1"].mean(),
        "rank of school item 1 (worst)": g["rank_school_1"].max(),
        "rank of school item 2 (mean)": g["rank_school_2"].mean(),
        "school noise in top 18 (mean)": g["school_noise_top18"].mean(),
        "school noise in top 18 (max)": g["school_noise_top18"].max(),
        "true in top 18 (mean)": g["true_top18"].mean(),
        "ranking CPU s (mean)": g["rank_cpu_seconds"].mean(),
        "designs": g.size(),
    })  # fmt: skip
    nulls = frame[frame["null"]].groupby("ranker")["school_noise_top18"]
    null_line = ", ".join(f"{r}: max {v}" for r, v in nulls.max().items())
    return (
        "Rankings (school item 1 has the larger effect: 15 strong / 8 weak points per SD; "
        "item 2: 12 / 5):\n\n"
        + markdown(table)
        + f"\n\nNull designs, school-level items in the top 18: {null_line or 'none run'}."
    )


def scored_frame(path: Path) -> pd.DataFrame:
    by_name = {d.name: d for d in designs()}
    rows = []
    for rec in map(json.loads, path.read_text().splitlines()):
        design = by_name[rec["design"]]
        for rule, res in rec["rules"].items():
            secs = res["seconds"] + rec["rank_seconds"] * (1 if "split" not in rule else 0.5)
            rows.append({"design": design.name, "family": design.family, "null": design.null,
                         "school_effects": design.school, "loading": design.loading,
                         "n_schools": design.n_schools, "ranker": rec["ranker"], "rule": rule,
                         "seconds": secs, **score(design, res["terms"])})  # fmt: skip
    return pd.DataFrame(rows)


def main_report(args) -> None:
    """Markdown tables (stdout and selection_tables.md), scores CSV, figures."""
    frame = scored_frame(Path(args.out))
    frame.to_csv(HERE / "selection_scores.csv", index=False)
    parts = [
        summary_table(frame),
        design_table(frame),
        ranker_table(frame),
        null_table(frame),
        ranking_table(Path(args.out)),
    ]
    text = "\n\n".join(parts)
    if Path(args.calibration).exists():
        text += "\n\n" + calibration_table(Path(args.calibration))
    (HERE / "selection_tables.md").write_text(text + "\n")
    print(text)
    figures(frame)
    if args.results:
        write_section(Path(args.results), text, Path(args.notes).read_text())


def write_section(path: Path, tables: str, notes: str) -> None:
    """Put the study between its markers in RESULTS.md (run.py keeps marked sections)."""
    body = f"<!-- selection:begin -->\n{notes.strip()}\n\n{tables.strip()}\n<!-- selection:end -->"
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(r"<!-- selection:begin -->.*?<!-- selection:end -->", re.S)
    new = pattern.sub(lambda _: body, old) if pattern.search(old) else (
        old.rstrip("\n") + "\n\n" + body)  # fmt: skip
    path.write_text(new.rstrip("\n") + "\n")


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (index as the first columns)."""
    frame = frame.reset_index()
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([head, rule, *rows])


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


METRICS = {"true_found": "true found (of 18)", "false": "false additions",
           "slopes": "true slopes (of 2)", "school": "school-level truth (of 2)",
           "strong_school": "strong school item found", "seconds": "seconds"}  # fmt: skip


def summary_table(frame: pd.DataFrame) -> str:
    """Per family and rule, with the study's default ranker: means over designs."""
    sub = frame[~frame["null"] & (frame["ranker"] == SCAN_RANKER)]
    g = sub.groupby(["family", "rule"])
    table = g[list(METRICS)].mean().rename(columns=METRICS)
    table["max false"] = g["false"].max()
    table["designs"] = g.size()
    return f"Ranker {SCAN_RANKER}, designs with a truth (means):\n\n" + markdown(table)


def design_table(frame: pd.DataFrame) -> str:
    """Per design, default rule vs the paper's: found / false / slopes / school-level / s."""
    sub = frame[~frame["null"] & (frame["ranker"] == SCAN_RANKER)]
    rows = []
    for design, g in sub.groupby("design"):
        by = g.set_index("rule")
        row = {
            "design": design,
            "family": g["family"].iloc[0],
            "schools": g["n_schools"].iloc[0],
            "loading": g["loading"].iloc[0],
            "school effects": g["school_effects"].iloc[0],
        }
        for rule in ("scan-bonferroni", "paper"):
            if rule in by.index:
                r = by.loc[rule]
                row[rule] = (
                    f"{r.true_found:.0f} / {r.false:.0f} / {r.slopes:.0f} / "
                    f"{r.school:.0f} / {r.seconds:.0f}"
                )
        rows.append(row)
    table = pd.DataFrame(rows).set_index("design")
    return (
        f"Per design, ranker {SCAN_RANKER}: true found (of 18) / false additions / true "
        "slopes (of 2) / school-level truth (of 2) / seconds:\n\n" + markdown(table)
    )


def ranker_table(frame: pd.DataFrame) -> str:
    """Per ranker and rule: true found / false additions, means over the designs it ran."""
    sub = frame[~frame["null"]]
    g = sub.groupby(["ranker", "rule"])
    table = pd.DataFrame({"true found": g["true_found"].mean(), "false": g["false"].mean(),
                          "school-level (of 2)": g["school"].mean(), "seconds": g["seconds"].mean(),
                          "designs": g.size()})  # fmt: skip
    return "Every ranker, designs with a truth (means):\n\n" + markdown(table)


def null_table(frame: pd.DataFrame) -> str:
    """Null designs: false additions per search."""
    g = frame[frame["null"]].groupby(["ranker", "rule"])["false"]
    share = g.apply(lambda s: (s > 0).mean())
    table = pd.DataFrame({"mean false": g.mean(), "max false": g.max(),
                          "share of searches with a false addition": share,
                          "searches": g.size()})  # fmt: skip
    return "Null designs (no predictor matters), false additions per search:\n\n" + markdown(table)


def calibration_table(path: Path) -> str:
    """scan-bonferroni on many null data sets (column order, no forest)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    frame = pd.DataFrame([{"family": r["family"], "false": len(r["terms"]["fixed"])
                           + len(r["terms"]["interactions"]), "seconds": r["seconds"]}
                          for r in rows])  # fmt: skip
    g = frame.groupby("family")["false"]
    share = g.apply(lambda s: (s > 0).mean())
    table = pd.DataFrame({"searches": g.size(), "mean false": g.mean(), "max false": g.max(),
                          "share with a false addition": share})  # fmt: skip
    return "Null calibration of scan-bonferroni (no forest):\n\n" + markdown(table)


def figures(frame: pd.DataFrame) -> None:
    """Per design: true found, false additions, slopes, school-level truth, time by rule."""
    from matplotlib.figure import Figure

    truth = frame[~frame["null"] & (frame["ranker"] == SCAN_RANKER)]
    metrics = [("true_found", "true predictors found (of 18)"), ("false", "false additions"),
               ("slopes", "true slopes found (of 2)"), ("school", "school-level truth (of 2)"),
               ("seconds", "seconds")]  # fmt: skip
    rules = list(dict.fromkeys(truth["rule"]))
    fig = Figure(figsize=(12, 11), layout="constrained")
    axes = fig.subplots(len(metrics), 1, sharex=True)
    names = sorted(truth["design"].unique())
    x = np.arange(len(names))
    width = 0.8 / max(len(rules), 1)
    for ax, (col, label) in zip(axes, metrics, strict=True):
        for k, rule in enumerate(rules):
            sub = truth[truth["rule"] == rule].set_index("design").reindex(names)
            ax.bar(x + k * width, sub[col], width, label=rule)
        ax.set_ylabel(label, fontsize=8)
    axes[0].legend(ncol=4, fontsize=7)
    axes[-1].set_xticks(x + 0.4, names, rotation=90, fontsize=7)
    fig.suptitle(f"Selection study per design (ranker {SCAN_RANKER})")
    fig.savefig(HERE / "selection_designs.png", dpi=110)

    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    g = frame[~frame["null"]].groupby(["ranker", "rule"])[["true_found", "false"]].mean()
    for ranker, sub in g.groupby(level=0):
        ax.scatter(sub["false"], sub["true_found"], label=ranker)
        for (_, rule), row in sub.iterrows():
            ax.annotate(rule, (row["false"], row["true_found"]), fontsize=6)
    ax.set_xlabel("false additions per search")
    ax.set_ylabel("true predictors found (of 18)")
    ax.legend(fontsize=8)
    fig.savefig(HERE / "selection_tradeoff.png", dpi=110)


def main_calibrate(args) -> None:
    """Null calibration of the scan at alpha / m: many null data sets, no forest.

    Scanning every candidate makes the result depend on the ranking only through the order
    of additions, so the false-addition rate of ``scan-bonferroni`` per search is measured
    here on many more null data sets than the forest designs allow, in column order.
    """
    out = Path(args.out)
    done = {json.loads(line)["design"] for line in out.read_text().splitlines()} if (
        out.exists()) else set()  # fmt: skip
    rule = {"scan-bonferroni": RULES["scan-bonferroni"]}
    sizes = (150, 200, 250, 300)
    for k in range(args.n_null):
        family = "gaussian" if k % 3 else "binomial"
        design = Design(f"cal{k + 1:02d}", family, sizes[k % 4], "mid", "strong", 500 + k, True)
        if design.name in done:
            continue
        data, _ = design.simulate()
        outcome = "math" if family == "gaussian" else "proficient"
        sample = build_sample(data, outcome, "school", family=family)
        res = run_rules(sample, family, list(sample.predictors), rule)["scan-bonferroni"]
        row = {
            "design": design.name,
            "family": family,
            "n_schools": design.n_schools,
            "m": len(sample.predictors),
            "terms": res["terms"],
            "seconds": res["seconds"],
        }
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(design.name, family, res["terms"]["fixed"], f"{res['seconds']:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["run", "report", "calibrate"])
    parser.add_argument("--n-null", type=int, default=30, help="calibrate: null data sets")
    parser.add_argument("--calibration", default=str(HERE / "selection_calibration.jsonl"))
    parser.add_argument("--results", default="", help="report: RESULTS.md to write into")
    parser.add_argument("--notes", default="", help="report: markdown text above the tables")
    parser.add_argument("--ntree", type=int, default=200)
    parser.add_argument("--rankers", default="merf,merf0,plain,longiturf")
    parser.add_argument("--designs", default="")
    parser.add_argument("--out", default=str(HERE / "selection_runs.jsonl"))
    parser.add_argument("--cache", default="/tmp/autoglmm-selection-cache")
    parser.add_argument("--skip-rules", default="", help="run: rules left out, e.g. scan")
    parser.add_argument("--scan-ranker", default=SCAN_RANKER, help="Ranker of scan and split.")
    args = parser.parse_args()
    globals()["SCAN_RANKER"] = args.scan_ranker
    SKIP_RULES.update(filter(None, args.skip_rules.split(",")))
    {"run": main_run, "report": main_report, "calibrate": main_calibrate}[args.what](args)


if __name__ == "__main__":
    main()
