"""Peak resident memory of autoglmm's work, each task in its own process.

Every task runs in a fresh Python process started under ``/usr/bin/time -v``, which gives
the whole-process peak (interpreter, numba, pandas and the data included). Inside the
child, the kernel's peak mark is reset after the data is loaded (Linux ``clear_refs``),
so the child also reports the peak **beyond the data**: what the task itself needs.

The MERF ranking's memory is inside the whole search's (2,000 trees), so it is not run
again on its own. Targets (issue 7): the whole search at paper scale at most 1.5 GB
whole-process peak;
one LMM fit at 128k rows at most 1 GB beyond the data. The whole search's peak comes
from the CLI run of ``search.py`` when run.py passes those rows in.

Run alone: ``python benchmarks/memory.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import failed, row  # noqa: E402

SECTION = "memory"
SEARCH_TARGET_MB = 1536.0
FIT128K_TARGET_MB = 1024.0

# task name -> (family, data, formula key or None, what the child does)
TASKS = {
    "LMM fit (ri18), paper scale": ("gaussian", "paper", "ri18"),
    "LMM fit (rs3), paper scale": ("gaussian", "paper", "rs3"),
    "GLMM fit (ri18), paper scale": ("binomial", "paper", "ri18"),
    "GLMM fit (rs3), paper scale": ("binomial", "paper", "rs3"),
    "LMM fit (rs3), 128k rows": ("gaussian", "128k", "rs3"),
}
QUICK_TASKS = ("LMM fit (rs3), paper scale", "LMM fit (rs3), 128k rows")


def run(quick: bool = False, search_rows: list[dict] | None = None) -> list[dict]:
    """Peak RSS of each task; ``search_rows`` (from search.py) give the whole search's."""
    rows = []
    tasks = QUICK_TASKS if quick else tuple(TASKS)
    with tempfile.TemporaryDirectory(prefix="autoglmm-mem-") as tmp:
        for task in tasks:
            rows.append(measure(task, quick, Path(tmp)))
    if search_rows is None:
        import search

        search_rows = search.cli_rows("gaussian", quick)
    for r in search_rows:
        if r.get("tool") == "autoglmm" and str(r.get("case", "")).startswith("cli"):
            rows.append(_search_memory_row(r))
    return rows


def _search_memory_row(r: dict) -> dict:
    case = f"whole search ({r['case'].removeprefix('cli ')})"
    if r["status"] != "ok":
        return row(SECTION, case, "autoglmm", status=r["status"])
    peak = r.get("peak_rss_mb")
    return row(SECTION, case, "autoglmm", seconds=r.get("seconds"), peak_rss_mb=peak,
               target_mb=SEARCH_TARGET_MB, target="whole-process peak")  # fmt: skip


def measure(task: str, quick: bool, tmp: Path) -> dict:
    """Run one task in a child process under /usr/bin/time -v and collect its numbers."""
    data_file = _data_file(task, tmp)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", task, "--data", data_file]
    if quick:
        argv.append("--quick")
    try:
        proc, peak = common.run_measured(argv, timeout=1200)
    except subprocess.TimeoutExpired as err:
        return failed(SECTION, task, "autoglmm", f"timeout after {err.timeout:.0f} s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = [ln for ln in proc.stderr.splitlines() if ln and not ln.startswith("\t")]
        return failed(SECTION, task, "autoglmm", tail[-1] if tail else f"exit {proc.returncode}")
    child = json.loads(lines[-1])
    target = FIT128K_TARGET_MB if "128k" in task else None
    return row(
        SECTION, task, "autoglmm", seconds=child["seconds"], peak_rss_mb=peak,
        data_mb=child["data_mb"], baseline_mb=child["baseline_mb"],
        beyond_data_mb=child["beyond_mb"], target_mb=target,
        target="beyond the data" if target else None,
    )  # fmt: skip


def _data_file(task: str, tmp: Path) -> str:
    """Write the task's data to a parquet file once, so the child only reads it."""
    family, size, _ = TASKS[task]
    path = tmp / f"{family}_{size}.parquet"
    if not path.exists():
        if size == "128k":
            data = common.growth_data(128000, 229, family)
        else:
            data = common.paper_data(family)
        data.frame.to_parquet(path)
        (tmp / f"{family}_{size}.json").write_text(json.dumps(data.formulas()))
    return str(path)


def child(task: str, data_file: str, quick: bool) -> dict:
    """In the child: load the data, reset the peak mark, do the task, report the peak."""
    import autoglmm

    family, _, what = TASKS[task]
    formulas = json.loads(Path(data_file).with_suffix(".json").read_text())
    frame = pd.read_parquet(data_file)
    # warm up the imports and numba caches on a tiny slice so they do not count as the task
    autoglmm.fit(formulas["null"], frame.iloc[:2000], family=family)
    gc.collect()
    baseline = common.rss_now_mb()
    reset_ok = common.reset_peak_rss()
    t0 = time.perf_counter()
    autoglmm.fit(formulas[what], frame, family=family)
    seconds = time.perf_counter() - t0
    peak = common.peak_rss_mb()
    return {
        "seconds": seconds,
        "data_mb": float(frame.memory_usage(deep=True).sum()) / 1024**2,
        "baseline_mb": baseline,
        "beyond_mb": (peak - baseline) if reset_ok else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.quick)))
        return
    rows = run(args.quick)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
