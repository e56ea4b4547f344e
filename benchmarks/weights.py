"""Sampling weights at two levels: autoglmm against R's WeMix ``mix()`` (issue 14).

    python benchmarks/weights.py [--repeats 3] [--timeout 3600] [--out benchmarks/RESULTS.md]

Data: the TIMSS-scale file of the other benchmarks (``common.paper_data``: 8,625
students in 229 schools) with informative two-stage weights added (seeded): schools with
a high mean outcome and students above their school's mean are more likely to be
sampled, so the weights matter. ``w_school`` is the level-2 weight and ``w_total`` the
unconditional level-1 weight (WeMix's default input, TIMSS ``TOTWGT``).

Models: a gaussian random intercept and a gaussian random slope with the 18 true
predictors, and a binomial random intercept with the 5 strongest predictors (adaptive
quadrature with 13 points, WeMix's default). WeMix runs once per model (it takes
minutes); autoglmm's time is the median of ``--repeats`` runs after a warm-up. Both
times include the sandwich standard errors. WeMix is found on R's library path
(``R_LIBS``); without it the WeMix rows say "not installed".

``--wemix-cache DIR`` keeps each WeMix result in DIR as JSON, keyed by a hash of the data,
formula and family, and reuses it on the next run (WeMix's minutes are then spent once).

The script prints a markdown table and writes it into RESULTS.md between the markers
``<!-- weights:begin -->`` and ``<!-- weights:end -->`` (appended when absent).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- weights:begin -->", "<!-- weights:end -->"


def weighted_data(family: str, seed: int = 14):
    """The paper-scale data plus informative weights ``w_school`` and ``w_total``."""
    bench = common.paper_data(family)
    d = bench.frame.copy()
    y, g = d[bench.outcome].astype(float), d[bench.group]
    mean = y.groupby(g).transform("mean")
    z2 = (mean - mean.mean()) / mean.std()
    dev = y - mean
    z1 = dev / dev.std()
    rng = np.random.default_rng(seed)
    p2 = 1 / (1 + np.exp(-(-1.0 + 0.8 * z2)))
    p1 = 1 / (1 + np.exp(-(-0.3 + 0.6 * z1 + 0.3 * rng.normal(size=len(d)))))
    d["w_school"] = (1 / p2).round(6)
    d["w_total"] = (d["w_school"] / p1).round(6)
    return bench, d


def models(bench) -> dict[str, tuple[str, str]]:
    t = bench.truth
    fixed = list(t.fixed)
    top5 = sorted(fixed, key=lambda k: -abs(t.fixed[k]))[:5]
    y, g = bench.outcome, bench.group
    rhs = " + ".join(fixed)
    return {
        "gaussian random intercept (18 predictors)": ("gaussian", f"{y} ~ {rhs} + (1 | {g})"),
        "gaussian random slope (18 predictors)": (
            "gaussian",
            f"{y} ~ {rhs} + (1 + {t.slopes[0]} | {g})",
        ),
        "binomial random intercept (5 predictors, 13 AGQ points)": (
            "binomial",
            f"{y} ~ {' + '.join(top5)} + (1 | {g})",
        ),
    }


def wemix_available() -> bool:
    rscript = shutil.which("Rscript")
    if not rscript:
        return False
    code = (
        'cat(requireNamespace("WeMix", quietly=TRUE) && requireNamespace("jsonlite", quietly=TRUE))'
    )
    proc = subprocess.run([rscript, "-e", code], capture_output=True, text=True, timeout=120)
    return proc.stdout.strip().endswith("TRUE")


def wemix_result(path: Path, formula: str, family: str, timeout: float, cache: str | None):
    """WeMix's fit of one model (from ``cache`` when it holds this data and model)."""
    key = hashlib.sha1(path.read_bytes() + formula.encode() + family.encode()).hexdigest()[:16]
    hit = Path(cache) / f"wemix-{key}.json" if cache else None
    if hit is not None and hit.exists():
        return json.loads(hit.read_text())
    args = [path, formula, family, "w_total", "w_school"]
    res = common.rscript_json(HERE / "weights_wemix.R", args, timeout=timeout)
    if hit is not None:
        hit.parent.mkdir(parents=True, exist_ok=True)
        hit.write_text(json.dumps(res))
    return res


def run_case(case: str, family: str, formula: str, data, opts, tmp):
    from autoglmm import fit

    kw = {"level1_weights": "w_total", "level2_weights": "w_school"}
    if family == "binomial":
        kw["nagq"] = 13
    timing = common.time_median(lambda: fit(formula, data, family=family, **kw), opts.repeats)
    ours = timing.value
    rows = [
        common.row("weights", case, "autoglmm", seconds=timing.seconds, runs=timing.runs,
                   loglik=ours.loglik, converged=ours.converged)
    ]  # fmt: skip
    if not wemix_available():
        return rows + [common.not_installed("weights", case, "WeMix")]
    path = Path(tmp) / f"{family}.csv"
    if not path.exists():
        data.to_csv(path, index=False)
    try:
        res = wemix_result(path, formula, family, opts.timeout, opts.wemix_cache)
    except subprocess.TimeoutExpired:
        return rows + [common.timed_out("weights", case, "WeMix", opts.timeout)]
    except Exception as err:  # noqa: BLE001 - a failed peer is a row, not a crash
        return rows + [common.failed("weights", case, "WeMix", err)]
    names = list(ours.fixef.index)
    fe = max(abs(res["coef"][n] - ours.fixef[n]) / max(abs(ours.fixef[n]), 1e-3) for n in names)
    se = max(abs(res["se"][n] - ours.se[n]) / ours.se[n] for n in names)
    rows.append(
        common.row("weights", case, "WeMix", seconds=res["seconds"], runs=1, loglik=res["lnl"],
                   version=res["version"], fixef_rel=fe, se_rel=se)
    )  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    ours = {r["case"]: r for r in rows if r["tool"] == "autoglmm"}
    lines = [
        "| model | tool | status | seconds | ratio | logLik | Δ logLik "
        "| max rel. Δ fixef | max rel. Δ SE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = ours[r["case"]]
        sec = r.get("seconds")
        ratio = f"{sec / base['seconds']:.0f}x" if sec and r["tool"] != "autoglmm" else ""
        ll = r.get("loglik")
        dll = f"{ll - base['loglik']:+.1e}" if ll is not None and r["tool"] != "autoglmm" else ""
        fe = f"{r['fixef_rel']:.1e}" if "fixef_rel" in r else ""
        se = f"{r['se_rel']:.1e}" if "se_rel" in r else ""
        lines.append(
            f"| {r['case']} | {r['tool']} | {r['status']} | "
            f"{'' if sec is None else f'{sec:.3g}'} | {ratio} | "
            f"{'' if ll is None else f'{ll:.4f}'} | {dll} | {fe} | {se} |"
        )
    return "\n".join(lines)


def section(
    rows: list[dict], started: str, finished: str, load: tuple[str, str], note: str = ""
) -> str:
    mach = common.machine()
    return "\n".join([
        BEGIN,
        "## Sampling weights at two levels: autoglmm vs WeMix (issue 14)",
        "",
        f"Written by `python benchmarks/weights.py`, {started} to {finished}; "
        f"{os.cpu_count()} cores ({mach.get('cpu', '?')}), load average at start/end "
        f"{load[0]} / {load[1]} (the machine was shared). TIMSS-scale data (8,625 students, "
        "229 schools) with informative weights at both levels; pseudo-maximum likelihood "
        "with sandwich standard errors in both tools. Ratio: WeMix's time over autoglmm's "
        "median (autoglmm includes its numba warm-up only in the untimed first run). "
        "Δ are WeMix minus autoglmm." + (f" {note}" if note else ""),
        "",
        table(rows),
        END,
    ])  # fmt: skip


def write_section(text: str, path: Path) -> None:
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: text, old, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--wemix-cache", default=None, help="folder for WeMix's results")
    parser.add_argument("--note", default="", help="a sentence added to the section")
    args = parser.parse_args(argv)
    started, load0 = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), _load()
    rows = []
    with tempfile.TemporaryDirectory(prefix="autoglmm-weights-") as tmp:
        for fam in ("gaussian", "binomial"):
            bench, data = weighted_data(fam)
            for case, (family, formula) in models(bench).items():
                if family != fam:
                    continue
                rows += run_case(case, family, formula, data, args, tmp)
                print(table(rows), flush=True)
    finished = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = section(rows, started, finished, (load0, _load()), args.note)
    write_section(text, Path(args.out))
    print(text)


if __name__ == "__main__":
    main()
