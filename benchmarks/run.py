"""Run every benchmark and write benchmarks/RESULTS.md.

    python benchmarks/run.py [--quick] [--out benchmarks/RESULTS.md] [--only lmm,search]

Sections, each comparing tools in the same run on the same data (ratios are what count on
a shared machine): LMM fits (lmm_fits.py), GLMM fits (glmm_fits.py), ranking
(ranking.py), the search (search.py), growth (growth.py) and memory (memory.py). A peer
that is not installed is reported "not installed", never dropped. A section that breaks
becomes a "failed" row, so one broken tool never hides the others.

``--quick`` (about 3 minutes on an idle 2-core machine) uses few repeats, 100 trees and
the smallest growth sizes and skips statsmodels and sklearn; the full run takes about 35.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import NOT_INSTALLED, failed, row  # noqa: E402

SECTIONS = ("lmm", "glmm", "fits", "ranking", "search", "growth", "memory")
TITLES = {
    "lmm": "LMM fits (gaussian, ML)",
    "glmm": "GLMM fits (binomial, Laplace)",
    "fits": "Fits on the search's own data (null, ri18, rs3)",
    "ranking": "Ranking (MERF vs one plain forest with permutation importance)",
    "search": "The search",
    "growth": "Growth",
    "memory": "Memory (peak resident set size)",
}
# ranking (the longest section, about 10 minutes with ranger's 2,000 trees) runs last
RUN_ORDER = ("lmm", "glmm", "fits", "search", "growth", "memory", "ranking")
REFERENCE = "autoglmm"  # every ratio is a tool's time over this tool's time in the same case
PEERS = {
    "lmm": ("mixedlm", "statsmodels", "lme4"),
    "glmm": ("mixedlm", "lme4"),
    "fits": ("mixedlm", "lme4"),
    "ranking": ("ranger", "sklearn"),
}


# --- running the sections ------------------------------------------------------------------


def run_all(quick: bool, only: tuple[str, ...], png: Path | None) -> tuple[list[dict], dict]:
    """Run the chosen sections; return the rows and what RESULTS.md says about the run."""
    rows: list[dict] = []
    meta: dict = {"quick": quick, "section_seconds": {}, "data": {}, "started": _now()}
    for section in only:
        t0 = time.perf_counter()
        print(f"[run.py] {section} ...", file=sys.stderr, flush=True)
        try:
            new = RUNNERS[section](quick, rows, meta, png)
        except Exception as err:  # one broken section must not hide the others
            new = [failed(section, "(whole section)", REFERENCE, f"{type(err).__name__}: {err}")]
        rows += new
        meta["section_seconds"][section] = time.perf_counter() - t0
        print(f"[run.py] {section}: {len(new)} rows in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip
    meta["finished"] = _now()
    return rows, meta


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _module_run(name: str) -> Callable | None:
    """``name.run(quick)`` when the benchmark script offers one, else None."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    fn = getattr(module, "run", None)
    return fn if callable(fn) else None


def _script(name: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    path = common.HERE / f"{name}.py"
    if not path.exists():
        raise FileNotFoundError(f"benchmarks/{name}.py is missing")
    proc = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:]
        raise RuntimeError(f"{name}.py exit {proc.returncode}: {' '.join(tail)}")
    return proc


def _data_line(stdout: str) -> str | None:
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip().startswith("data:")]
    return lines[0].removeprefix("data:").strip() if lines else None


def _last_json(stdout: str):
    """The last JSON document printed by a script (one line, or an indented block)."""
    lines = stdout.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(("{", "[")):
            try:
                return json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                try:
                    return json.loads(lines[i])
                except json.JSONDecodeError:
                    continue
    raise ValueError("no JSON in the script's output")


def run_lmm(quick: bool, rows: list, meta: dict, png) -> list[dict]:
    """lmm_fits.py: its own run() if it has one, else its CLI with --json."""
    fn = _module_run("lmm_fits")
    if fn is not None:
        return _complete(_normalise(fn(quick=quick), "lmm"), "lmm")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lmm.json"
        args = ["--reps", "2" if quick else "10", "--sm-reps", "1" if quick else "2"]
        skipped = {}
        if not common.has_peer("lme4"):
            args.append("--skip-r")
        if quick:  # statsmodels' 3-RE fit alone takes ~30 s with its warm-up
            args.append("--skip-statsmodels")
            skipped["statsmodels"] = "not run in --quick (slow)"
        proc = _script("lmm_fits", [*args, "--json", str(out)], timeout=1500)
        raw = json.loads(out.read_text())
    meta["data"]["lmm"] = _data_line(proc.stdout)
    return _complete(_normalise(raw, "lmm"), "lmm", skipped)


def run_glmm(quick: bool, rows: list, meta: dict, png) -> list[dict]:
    """glmm_fits.py: its own run() if it has one, else its CLI (JSON or markdown table)."""
    fn = _module_run("glmm_fits")
    if fn is not None:
        return _complete(_normalise(fn(quick=quick), "glmm"), "glmm")
    help_text = _script("glmm_fits", ["--help"], timeout=120).stdout
    args, skipped = [], {}
    for flag in ("--quick", "--repeats", "--reps"):
        if quick and flag in help_text:
            args += [flag] if flag == "--quick" else [flag, "1"]
            break
    if "--skip-r" in help_text and (quick or not common.has_peer("lme4")):
        args.append("--skip-r")  # glmer needs minutes per fit: not in a 2-minute run
        skipped["lme4"] = "not run in --quick (glmer is slow)" if quick else NOT_INSTALLED
    if "--skip-mixedlm" in help_text and not common.has_peer("mixedlm"):
        args.append("--skip-mixedlm")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "glmm.json"
        if "--json" in help_text:
            args += ["--json", str(out)]
        proc = _script("glmm_fits", args, timeout=3000)
        if out.exists():
            raw = json.loads(out.read_text())
        else:
            raw = _markdown_rows(proc.stdout) or _last_json(proc.stdout)
    first = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    meta["data"]["glmm"] = _data_line(proc.stdout) or first.split(", median")[0]
    return _complete(_normalise(raw, "glmm"), "glmm", skipped)


def _markdown_rows(stdout: str) -> list[dict]:
    """Rows of the first markdown table with "model" and "tool" columns in a script's output.

    The time column is the first whose header starts with "s" or "ms" (s/fit, seconds,
    ms_per_fit); "loglik" is the first header that is exactly that.
    """
    lines = [ln.strip() for ln in stdout.splitlines()]
    heads = [
        (i, [c.strip().lower() for c in ln.strip("|").split("|")])
        for i, ln in enumerate(lines) if ln.startswith("|")
    ]  # fmt: skip
    heads = [(i, cells) for i, cells in heads if "model" in cells and "tool" in cells]
    if not heads:
        return []
    i, head = heads[0]
    timed = [c for c in head if c.startswith(("s/", "sec", "ms", "wall")) or "s/fit" in c]
    t_col = next((c for c in timed if "cpu" not in c), None)
    cpu_col = next((c for c in head if "cpu" in c and ("s/" in c or "sec" in c)), None)
    out = []
    for line in lines[i + 2 :]:
        if not line.startswith("|"):
            break
        rec = dict(zip(head, (c.strip() for c in line.strip("|").split("|")), strict=False))
        item = {"model": rec["model"], "tool": rec["tool"], "loglik": _float(rec.get("loglik"))}
        value = _float(rec.get(t_col)) if t_col else None
        scale = 1e-3 if t_col and t_col.startswith("ms") else 1.0
        item["seconds"] = None if value is None else value * scale
        if cpu_col:
            item["cpu_seconds"] = _float(rec.get(cpu_col))
        out.append(item)
    return out


def _float(text) -> float | None:
    try:
        return float(str(text).replace(",", "").rstrip("x"))
    except (TypeError, ValueError):
        return None


def run_ranking(quick: bool, rows: list, meta: dict, png) -> list[dict]:
    """ranking.py at the paper's settings (ntree 2000, mtry 77); --quick: 100 trees."""
    fn = _module_run("ranking")
    if fn is not None:
        return _complete(_normalise(fn(quick=quick), "ranking"), "ranking")
    ntree = 100 if quick else 2000
    args = ["--ntree", str(ntree)]
    if not common.has_peer("ranger"):
        args.append("--skip-ranger")
    skipped = {}
    if quick or not common.has_peer("scikit-learn"):
        args.append("--skip-sklearn")  # its permutation importance dominates a quick run
        skipped["sklearn"] = "not run in --quick (slow)" if quick else NOT_INSTALLED
    proc = _script("ranking", args, timeout=2400)
    meta["data"]["ranking"] = _data_line(proc.stdout)
    return _complete(ranking_rows(_last_json(proc.stdout), ntree), "ranking", skipped)


def ranking_rows(res: dict, ntree: int) -> list[dict]:
    """Rows from ranking.py's JSON: time, true predictors in the top k, level-2 noise."""
    k = res.get("k")
    case = f"ntree {res.get('ntree', ntree)}, mtry 77"
    names = {
        "autoglmm": ("autoglmm", "MERF: EM + final forest with OOB permutation importance"),
        "plain": ("autoglmm plain forest", "our forest without random effects"),
        "ranger": ("ranger", "timed inside R, 2 threads"),
        "sklearn": ("sklearn", None),
    }
    out = []
    for key, (tool, note) in names.items():
        r = res.get(key)
        if r is None:
            continue
        seconds = r.get("seconds", r.get("seconds_extrapolated"))
        if key == "sklearn":
            note = f"extrapolated from {r.get('trees_measured')} trees, 2 jobs"
        out.append(row(
            "ranking", case, tool, seconds=seconds, runs=1, note=note,
            cpu_seconds=r.get("cpu_seconds"),
            true_in_top_k=f"{r.get('true_in_top_k')}/{k}",
            level2_noise_in_top_k=r.get("level2_noise_in_top_k"),
        ))  # fmt: skip
    return out


def run_search(quick: bool, rows: list, meta: dict, png) -> list[dict]:
    import search

    d = common.paper_data("gaussian")
    meta["data"]["search"] = (
        f"simulate_lsa(**PAPER): {d.n_rows} rows, {d.n_groups} schools, "
        f"{len(d.predictors)} candidate predictors after the sample rules"
    )
    return search.run(quick)


def run_fits(quick: bool, rows: list, meta: dict, png) -> list[dict]:
    import search

    g, b = common.paper_data("gaussian"), common.paper_data("binomial")
    meta["data"]["fits"] = (
        f"simulate_lsa(**PAPER) after the sample rules: {g.n_rows} rows, {g.n_groups} "
        f"schools; gaussian `{g.formulas()['rs3']}`; binary outcome `{b.outcome}` "
        f"({b.frame[b.outcome].mean():.0%} ones). ri18 drops the interaction and slopes"
    )
    return search.fit_rows(quick)


def run_growth(quick: bool, rows: list, meta: dict, png: Path | None) -> list[dict]:
    import growth

    new = growth.run(quick)
    if png is not None:
        meta["growth_png"] = growth.plot(new, png)
    return new


def run_memory(quick: bool, rows: list, meta: dict, png) -> list[dict]:
    import memory

    search_rows = [r for r in rows if r.get("section") == "search"]
    return memory.run(quick, search_rows=search_rows or None)


RUNNERS = {
    "lmm": run_lmm,
    "glmm": run_glmm,
    "fits": run_fits,
    "ranking": run_ranking,
    "search": run_search,
    "growth": run_growth,
    "memory": run_memory,
}


# --- normalising the other scripts' rows ---------------------------------------------------


def _tool_name(name: str) -> str:
    """One name per tool across scripts: "autoglmm fit()" -> "autoglmm", "lme4 (lmer)"..."""
    low = name.lower()
    if low.startswith("autoglmm"):
        if "engine" in low:
            return "autoglmm (engine only)"
        return "autoglmm" if ("fit" in low or low == "autoglmm") else name
    for peer in ("mixedlm", "statsmodels", "lme4", "ranger", "sklearn"):
        if low.startswith(peer) or (peer == "sklearn" and "scikit" in low):
            return peer
    return name


def _normalise(raw, section: str) -> list[dict]:
    """Rows of another script (its own keys) -> the common row schema of common.row."""
    items = raw if isinstance(raw, list) else raw.get("rows", [])
    out = []
    for r in items:
        if "section" in r and "case" in r and "status" in r:
            out.append({**r, "tool": _tool_name(r["tool"])})
            continue
        seconds = r.get("seconds")
        if seconds is None and r.get("ms_per_fit") is not None:
            seconds = float(r["ms_per_fit"]) / 1e3
        note = str(r.get("note") or "")
        status = "ok"
        if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
            status = NOT_INSTALLED if ("not installed" in note or "not found" in note) else (
                f"failed: {note[:100]}" if note else "failed")  # fmt: skip
            seconds = None
        loglik = r.get("loglik")
        if isinstance(loglik, float) and math.isnan(loglik):
            loglik = None
        out.append(row(
            section, str(r.get("case", r.get("model", "?"))), _tool_name(str(r["tool"])),
            status=status, seconds=seconds, runs=r.get("runs"), loglik=loglik,
            cpu_seconds=r.get("cpu_seconds"), note=note or None,
        ))  # fmt: skip
    return out


def _complete(rows: list[dict], section: str, skipped: dict | None = None) -> list[dict]:
    """Add a row for every expected peer missing from a case ("not installed" or why)."""
    skipped = skipped or {}
    cases = list(dict.fromkeys(r["case"] for r in rows))
    for case in cases:
        tools = {r["tool"] for r in rows if r["case"] == case}
        for peer in PEERS.get(section, ()):
            if peer not in tools:
                rows.append(row(section, case, peer, status=skipped.get(peer, NOT_INSTALLED)))
    return rows


# --- targets -------------------------------------------------------------------------------


def _shape(case: str) -> str | None:
    """Which model shape a case is: "null", "ri" (random intercept) or "re3" (3 REs)."""
    low = case.lower()
    if "null" in low:
        return "null"
    if any(k in low for k in ("rs3", "three", "3 corr", "3 re", "slope")):
        return "re3"
    if "ri18" in low or "intercept" in low:
        return "ri"
    return None


def _ok(rows: list[dict], section: str, tool: str, shape: str | None = None) -> list[dict]:
    return [
        r for r in rows
        if r.get("section") == section and r.get("tool") == tool and r.get("status") == "ok"
        and r.get("seconds") is not None and (shape is None or _shape(r["case"]) == shape)
    ]  # fmt: skip


def _pairs(rows, section, peer, shape):
    """(autoglmm row, peer row) of the same case, for every case of a shape."""
    ours = {r["case"]: r for r in _ok(rows, section, REFERENCE, shape)}
    return [(ours[r["case"]], r) for r in _ok(rows, section, peer, shape) if r["case"] in ours]


def _limit(name: str, limit: float, value: float | None, unit: str = "s") -> dict:
    """An upper-bound target (time or memory)."""
    if value is None:
        return {"target": name, "limit": f"<= {_num(limit)} {unit}", "measured": "not measured",
                "met": None, "gap": ""}  # fmt: skip
    met = value <= limit
    gap = (
        f"{value / limit:.0%} of the limit"
        if met
        else f"missed by {_num(value - limit)} {unit} ({value / limit:.1f}x the limit)"
    )
    return {"target": name, "limit": f"<= {_num(limit)} {unit}",
            "measured": f"{_num(value)} {unit}", "met": met, "gap": gap}  # fmt: skip


def _speedup(name: str, needed: float, ratio: float | None, why: str = "") -> dict:
    """A ">= needed x faster than a peer" target."""
    if ratio is None:
        return {"target": name, "limit": f">= {needed:g}x", "measured": why or "not measured",
                "met": None, "gap": ""}  # fmt: skip
    met = ratio >= needed
    gap = "" if met else f"{ratio:.1f}x of {needed:g}x: needs {needed / ratio:.1f}x more speed"
    return {"target": name, "limit": f">= {needed:g}x", "measured": f"{ratio:.1f}x",
            "met": met, "gap": gap}  # fmt: skip


def _num(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def evaluate_targets(rows: list[dict], quick: bool = False) -> list[dict]:
    """Every numeric target of issues 3-7, measured or "not measured", with its gap."""
    out: list[dict] = []
    fit_targets = {
        "lmm": ({"ri": 0.020, "re3": 0.050}, {"mixedlm": 5.0, "lme4": 10.0}, "issue 3"),
        "glmm": ({"ri": 0.3, "re3": 1.5}, {"mixedlm": 5.0, "lme4": 50.0}, "issue 4"),
    }
    shapes = {"ri": "random intercept", "re3": "3 correlated REs"}
    for section, (limits, speedups, issue) in fit_targets.items():
        kind = section.upper()
        for shape, limit in limits.items():
            ours = _ok(rows, section, REFERENCE, shape)
            value = ours[0]["seconds"] if ours else None
            out.append(_limit(f"{kind} {shapes[shape]} fit ({issue})", limit, value))
        for peer, needed in speedups.items():
            for shape in limits:
                pairs = _pairs(rows, section, peer, shape)
                ratio = pairs[0][1]["seconds"] / pairs[0][0]["seconds"] if pairs else None
                why = _why_missing(rows, section, peer)
                name = f"{kind} {shapes[shape]}: faster than {peer}"
                out.append(_speedup(name, needed, ratio, why))
        for peer in speedups:
            out.append(_loglik_target(rows, section, peer))
    out += _fits_targets(rows)
    out += _ranking_targets(rows, quick)
    out += _search_targets(rows, quick)
    return out


def _why_missing(rows, section, tool) -> str:
    for r in rows:
        if r.get("section") == section and r.get("tool") == tool and r.get("status") != "ok":
            return r["status"]
    return ""


def _loglik_target(
    rows: list[dict], section: str, peer: str, kind: str | None = None, where: str = ""
) -> dict:
    """LMM: |logLik difference| <= 1e-5; GLMM: ours >= peer's - 1e-6 (equal or better)."""
    kind = kind or section
    pairs = [
        (a, b) for shape in ("null", "ri", "re3") for a, b in _pairs(rows, section, peer, shape)
        if a.get("loglik") is not None and b.get("loglik") is not None
    ]  # fmt: skip
    if kind == "lmm":
        name, limit = f"LMM logLik equal to {peer}'s{where}", "|diff| <= 1e-5"
        diffs = [abs(a["loglik"] - b["loglik"]) for a, b in pairs]
        met = all(d <= 1e-5 for d in diffs) if diffs else None
        measured = f"max |diff| {max(diffs):.1e}" if diffs else "not measured"
    else:
        name = f"GLMM logLik equal to or better than {peer}'s{where}"
        limit = "ours - theirs >= -1e-6"
        diffs = [a["loglik"] - b["loglik"] for a, b in pairs]
        met = all(d >= -1e-6 for d in diffs) if diffs else None
        measured = f"min (ours - theirs) {min(diffs):+.1e}" if diffs else "not measured"
    gap = f"{len(diffs)} models compared" if diffs else ""
    return {"target": name, "limit": limit, "measured": measured, "met": met, "gap": gap}


def _fits_targets(rows: list[dict]) -> list[dict]:
    """logLik agreement on the search's own data (section "fits"), per family and peer."""
    out = []
    for family, kind in (("gaussian", "lmm"), ("binomial", "glmm")):
        part = [r for r in rows if r.get("section") == "fits" and r["case"].startswith(family)]
        for peer in ("mixedlm", "lme4"):
            out.append(_loglik_target(part, "fits", peer, kind, " (search's data)"))
    return out


def _ranking_targets(rows: list[dict], quick: bool) -> list[dict]:
    out = []
    ours = _ok(rows, "ranking", REFERENCE)
    at_paper = bool(ours) and "ntree 2000" in ours[0]["case"]
    value = ours[0]["seconds"] if ours and at_paper else None
    out.append(_limit("MERF ranking at paper settings (issue 5)", 60.0, value))
    pairs = _pairs(rows, "ranking", "ranger", None)
    ratio = pairs[0][1]["seconds"] / pairs[0][0]["seconds"] if pairs else None
    why = _why_missing(rows, "ranking", "ranger")
    out.append(_speedup("MERF faster than one ranger forest (issue 5)", 6.0, ratio, why))
    out.append(_speedup("MERF faster than one ranger forest (SPEC 5)", 10.0, ratio, why))
    plain = _ok(rows, "ranking", "autoglmm plain forest")
    if ours and plain:
        a, b = ours[0]["true_in_top_k"], plain[0]["true_in_top_k"]
        met = int(str(a).split("/")[0]) > int(str(b).split("/")[0])
        out.append({"target": "MERF puts more true predictors in its top k than a plain forest",
                    "limit": "more", "measured": f"{a} vs {b}", "met": met, "gap": ""})  # fmt: skip
    return out


def _search_targets(rows: list[dict], quick: bool) -> list[dict]:
    out = []
    cli = [r for r in _ok(rows, "search", REFERENCE) if r["case"] == "cli gaussian (ntree 2000)"]
    value = cli[0]["seconds"] if cli else None
    out.append(_limit("whole search at paper scale, ntree 2000 (issue 6 demo)", 180.0, value))
    mem = {r["case"]: r for r in rows if r.get("section") == "memory" and r.get("status") == "ok"}
    search_mem = [r for c, r in mem.items() if c.startswith("whole search (gaussian")]
    peak = search_mem[0].get("peak_rss_mb") if search_mem else None
    name = "whole search at paper scale: peak RSS (issue 7)"
    if search_mem and "ntree 2000" not in search_mem[0]["case"]:
        name += " [--quick: 100 trees]"
    out.append(_limit(name, 1536.0, peak, "MB"))
    fit = mem.get("LMM fit (rs3), 128k rows")
    out.append(_limit("LMM fit at 128k rows: memory beyond the data (issue 7)", 1024.0,
                      fit.get("beyond_data_mb") if fit else None, "MB"))  # fmt: skip
    return out


# --- writing RESULTS.md --------------------------------------------------------------------

_KNOWN = ("section", "case", "tool", "status", "seconds", "runs", "loglik")


def write_results(rows: list[dict], path: str | Path, meta: dict | None = None) -> str:
    """Render ``rows`` as RESULTS.md at ``path``; returns the text.

    Sections that other scripts write between ``<!-- NAME:begin -->`` and
    ``<!-- NAME:end -->`` markers (``benchmarks/weights.py``, ``benchmarks/lsa_pv.py``) are kept.
    """
    text = render(rows, meta or {})
    old = Path(path).read_text() if Path(path).exists() else ""
    for kept in re.finditer(r"<!-- (\w+):begin -->.*?<!-- \1:end -->", old, flags=re.S):
        text = text.rstrip("\n") + "\n\n" + kept.group(0) + "\n"
    Path(path).write_text(text)
    return text


def render(rows: list[dict], meta: dict) -> str:
    """The whole RESULTS.md: run, machine, versions, targets, one table per section."""
    quick = bool(meta.get("quick"))
    lines = ["# autoglmm benchmark results", ""]
    cmd = "python benchmarks/run.py" + (" --quick" if quick else "")
    lines.append(f"Written by `{cmd}`, started {meta.get('started', '?')}, "
                 f"finished {meta.get('finished', '?')}.")  # fmt: skip
    if quick:
        lines += ["", "**Quick run**: few repeats, 100 trees, small growth sizes. Ratios are "
                  "indicative; the full run is the reference."]  # fmt: skip
    lines += ["", "Ratios are a tool's median time divided by autoglmm's in the same case and "
              "run (above 1: autoglmm is faster). Δ logLik is the tool's minus autoglmm's. "
              "The machine is shared, so absolute times are noisy; ratios from one run "
              "are what to read.", ""]  # fmt: skip
    for note in meta.get("notes", []):
        lines += [f"Note: {note}", ""]
    lines += _machine_section(meta)
    lines += ["## Targets", "", _md_table(_target_table(evaluate_targets(rows, quick))), ""]
    for section in SECTIONS:
        part = [r for r in rows if r.get("section") == section]
        if not part:
            continue
        lines += [f"## {TITLES[section]}", ""]
        if meta.get("data", {}).get(section):
            lines += [f"Data: {meta['data'][section]}.", ""]
        if section == "growth":
            lines += _growth_section(part, meta)
        else:
            lines += [_md_table(section_table(part)), ""]
    if meta.get("section_seconds"):
        spent = ", ".join(f"{k} {v:.0f} s" for k, v in meta["section_seconds"].items())
        lines += ["## Run", "", f"Wall time per section: {spent}.", ""]
    return "\n".join(lines)


def _machine_section(meta: dict) -> list[str]:
    m = meta.get("machine") or common.machine()
    load = meta.get("load")
    lines = ["## Machine", ""]
    lines.append(f"{m['cores']} cores, {m['cpu']}, {m['memory']} RAM, {m['os']}, "
                 f"Python {m['python']}." + (f" Load average at start/end: {load}." if load
                                             else ""))  # fmt: skip
    versions = meta.get("versions") or common.package_versions()
    lines += ["", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in versions.items()]
    return [*lines, ""]


def _target_table(targets: list[dict]) -> list[list[str]]:
    mark = {True: "met", False: "**missed**", None: "not measured"}
    table = [["target", "limit", "measured", "result", "gap"]]
    for t in targets:
        cells = [t["target"], t["limit"], t["measured"], mark[t["met"]], t["gap"]]
        table.append([_cell(c) for c in cells])  # escapes the "|" of "|diff|"
    return table


def section_table(part: list[dict]) -> list[list[str]]:
    """One section's rows as a table: time, ratio to autoglmm, logLik, Δ logLik, extras."""
    ref = {r["case"]: r for r in part if r["tool"] == REFERENCE and r["status"] == "ok"}
    extras = [k for k in dict.fromkeys(k for r in part for k in r) if k not in _KNOWN
              and any(r.get(k) is not None for r in part)]  # fmt: skip
    has_ll = any(r.get("loglik") is not None for r in part)
    peers = any(r["tool"] != REFERENCE for r in part)  # else ratios say nothing
    head = ["case", "tool", "status", "time", "runs"] + (["x autoglmm"] if peers else [])
    head += ["logLik", "Δ logLik"] if has_ll else []
    table = [head + extras]
    for r in part:
        base = ref.get(r["case"])
        bound = str(r["status"]).startswith("timeout")  # seconds is a lower bound
        ok = (r["status"] == "ok" or bound) and r.get("seconds") is not None
        prefix = "> " if bound else ""
        ratio = ""
        if ok and base is not None and base.get("seconds"):
            ratio = f"{prefix}{r['seconds'] / base['seconds']:.2f}"
        when = f"{prefix}{_time(r['seconds'])}" if ok else ""
        cells = [r["case"], r["tool"], r["status"], when, str(r.get("runs") or "")]
        cells += [ratio] if peers else []
        if has_ll:
            ll, bll = r.get("loglik"), (base or {}).get("loglik")
            cells.append("" if ll is None else f"{ll:.6f}")
            diff = "" if ll is None or bll is None or r is base else f"{ll - bll:+.2e}"
            cells.append(diff)
        cells += [_cell(r.get(k)) for k in extras]
        table.append(cells)
    return table


def _growth_section(part: list[dict], meta: dict) -> list[str]:
    import growth

    wide = growth.table(part)
    lines = ["Seconds (median) per data set; each line is one simulated data set.", ""]
    if not wide.empty:
        head = [str(c) for c in wide.columns]
        body = [[_cell(v) for v in rec] for rec in wide.itertuples(index=False)]
        lines += [_md_table([head, *body]), ""]
    bad = [r for r in part if r["status"] != "ok"]
    for r in bad:
        lines.append(f"- {r['case']} · {r['tool']} at {r.get('n_rows')} rows: {r['status']}")
    if meta.get("growth_png"):
        lines += ["", f"![growth]({Path(meta['growth_png']).name})", ""]
    return lines


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.6g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_cell(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|")


def _md_table(table: list[list[str]]) -> str:
    head, *body = table
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in cells) + " |" for cells in body]
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--out", default=str(common.HERE / "RESULTS.md"))
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    parser.add_argument("--json", default=None, help="also dump the raw rows here")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    only = tuple(s for s in RUN_ORDER if s in only) + tuple(s for s in only if s not in RUN_ORDER)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    out = Path(args.out)
    load0 = os.getloadavg()[0]
    rows, meta = run_all(args.quick, only, out.parent / "growth.png")
    meta["load"] = f"{load0:.1f} / {os.getloadavg()[0]:.1f}"
    meta["machine"] = common.machine()
    meta["versions"] = common.package_versions()
    write_results(rows, out, meta)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    print(f"[run.py] wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
