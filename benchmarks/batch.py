"""The batch benchmark: 8 countries on a LocalCluster with 1 and 2 workers.

What it measures, in one run on the same data:

1. **in-process baseline**: each country's task (search + rendering its outputs, exactly
   what a worker runs) one after the other in this process, after one warm-up task, so
   the times hold no start-up cost;
2. **batch, 1 worker** and **batch, 2 workers** (``autoglmm.batch(..., workers=N)``), each
   into a fresh folder: wall time of the whole call, the cluster's start-up (LocalCluster
   and Client ready), and the task phase (first submit to last result written);
3. from these: the speed-up of 2 workers over 1, and the **per-task overhead of Dask**:
   (task phase of the 1-worker run - the sum of the tasks' own times on the worker) / tasks.
   The tasks' times on the worker are also compared with the in-process ones: the
   difference is the worker's one-time warm-up (imports, numba's cached kernels).

It ends with a paper estimate of 60 countries x 5 plausible values on a 16-node cluster,
from the stage times of the paper-scale search in RESULTS.md and the overheads measured here.

Run: ``nice -n 10 python benchmarks/batch.py [--quick] [--write]`` (``--write`` replaces
the "Batch" section at the end of benchmarks/RESULTS.md; the other sections are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
START, END = "<!-- batch:start -->", "<!-- batch:end -->"
COUNTRIES = (36, 40, 124, 152, 246, 348, 392, 710)
SIZES = {"full": {"n_schools": 35, "n_items": 40, "ntree": 200},
         "quick": {"n_schools": 24, "n_items": 20, "ntree": 50}}  # fmt: skip
SEED = 11


def countries(size: dict) -> pd.DataFrame:
    """8 TIMSS-like countries (different seeds, so different selected models)."""
    from autoglmm.datasets import simulate_lsa

    frames = []
    for k, code in enumerate(COUNTRIES):
        data = simulate_lsa(seed=500 + k, n_schools=size["n_schools"], n_items=size["n_items"],
                            n_school_items=5).data  # fmt: skip
        data.insert(0, "IDCNTRY", code)
        frames.append(data)
    return pd.concat(frames, ignore_index=True)


def in_process(frame: pd.DataFrame, options: dict) -> dict[str, float]:
    """Seconds of each task run here, after one warm-up task (no start-up cost inside)."""
    from autoglmm.batching import task_frame, task_seed
    from autoglmm.batching.tasks import run_task

    run_task((task_frame(frame, "IDCNTRY", COUNTRIES[0]), []), "warm-up", options, 1)
    times = {}
    for code in COUNTRIES:
        part = task_frame(frame, "IDCNTRY", code)
        start = time.perf_counter()
        out = run_task((part, []), str(code), options, task_seed(SEED, code))
        times[str(code)] = time.perf_counter() - start
        assert out["row"]["status"] == "done", out["row"]
    return times


@contextlib.contextmanager
def _clock_cluster(marks: dict):
    """Record when the cluster is ready and when the task phase ends."""
    import autoglmm.batching.cluster as cluster

    original = cluster.open_client

    @contextlib.contextmanager
    def timed(*args, **kwargs):
        marks["open"] = time.perf_counter()
        with original(*args, **kwargs) as client:
            marks["ready"] = time.perf_counter()
            try:
                yield client
            finally:
                marks["tasks_done"] = time.perf_counter()

    cluster.open_client = timed
    try:
        yield
    finally:
        cluster.open_client = original


def batch_run(frame: pd.DataFrame, options: dict, workers: int, root: Path) -> dict:
    """One batch into a fresh folder; wall, start-up, task phase and the summary."""
    import autoglmm

    out = root / f"workers{workers}"
    shutil.rmtree(out, ignore_errors=True)
    marks: dict[str, float] = {}
    with _clock_cluster(marks):
        start = time.perf_counter()
        summary = autoglmm.batch(frame, "math", "school", by="IDCNTRY", out=out,
                                 workers=workers, seed=SEED, progress=False,
                                 **options)  # fmt: skip
        wall = time.perf_counter() - start
    assert (summary["status"] == "done").all(), summary["error"].tolist()
    return {
        "workers": workers, "wall": wall, "startup": marks["ready"] - marks["open"],
        "tasks": marks["tasks_done"] - marks["ready"], "summary": summary, "out": out,
    }  # fmt: skip


def same_results(a: Path, b: Path) -> bool:
    """Every task's result.json equal in two batch folders (timings aside)."""
    import json

    for folder in sorted(p for p in a.iterdir() if p.is_dir()):
        x = json.loads((folder / "result.json").read_text())
        y = json.loads((b / folder.name / "result.json").read_text())
        for d in (x, y):
            d["manifest"].pop("timings")
        if x != y:
            return False
    return True


def stage_shares(out: Path) -> dict[str, float]:
    """Mean seconds of the ranking and of the LRT stages (fixed..r2) over the tasks."""
    import json

    ranking, stages = [], []
    for path in out.glob("*/result.json"):
        t = json.loads(path.read_text())["manifest"]["timings"]
        ranking.append(t.get("ranking", 0.0))
        stages.append(sum(t.get(k, 0.0) for k in ("fixed", "interaction", "slope", "r2")))
    return {"ranking": sum(ranking) / len(ranking), "stages": sum(stages) / len(stages)}


def paper_estimate(overhead: float, startup: float) -> list[str]:
    """60 countries x 5 PVs on 16 nodes, from RESULTS.md's paper-scale search timings.

    Paper scale (RESULTS.md, "The search"): ranking 83 s on 2 threads, the LRT stages and
    R² about 1.3 s; single-threaded, the ranking is taken as 2 x 83 s (an upper bound).
    """
    rank_1t, stages = 2 * 83.0, 1.3
    pv = 5
    task_rank_once = rank_1t + pv * stages  # lsa's default: rank PV 1, reuse for PVs 2-5
    task_rank_each = pv * (rank_1t + stages)
    lines = []
    for cores in (8, 32):
        workers = 16 * cores
        rounds = math.ceil(60 / workers)
        one_task = rounds * task_rank_once + overhead * 60 / workers + startup
        sub_rounds = math.ceil(60 * pv / workers)
        sub = sub_rounds * (rank_1t + stages) + overhead * 300 / workers + startup
        lines.append(
            f"| 16 x {cores} cores = {workers} workers | {rounds} | "
            f"{one_task / 60:.1f} min | {rounds * task_rank_each / 60:.1f} min | "
            f"{sub / 60:.1f} min |"
        )
    serial = 60 * task_rank_once / 3600
    return [
        "| cluster | rounds of 60 tasks | PVs in one task (rank once) | PVs in one task "
        "(rank each PV) | 300 PV sub-tasks (each ranks) |",
        "|---|---|---|---|---|",
        *lines,
        "",
        f"One country task (5 PVs, ranking once): {task_rank_once:.0f} s single-threaded; the "
        f"60 countries one after the other on one core: {serial:.1f} h.",
    ]


def report(base: dict, runs: list[dict], load: tuple, size: dict, stamp: tuple) -> str:
    one, two = runs
    n = len(COUNTRIES)
    worker_sum = float(one["summary"]["seconds"].sum())
    base_sum = sum(base.values())
    overhead = (one["tasks"] - worker_sum) / n
    warm = worker_sum - base_sum
    speed_all = one["wall"] / two["wall"]
    speed_tasks = one["tasks"] / two["tasks"]
    shares = stage_shares(one["out"])
    rows = one["summary"].iloc[0]
    lines = [
        START,
        "## Batch (`autoglmm batch`, Dask LocalCluster)",
        "",
        f"Written by `python benchmarks/batch.py`, {stamp[0]} to {stamp[1]} UTC. "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}. **The machine is shared** with other jobs: "
        f"load average {load[0]} at the start, {load[1]} at the end, so absolute times are "
        "inflated. Linux groups a session's processes (autogroup scheduling, on here), so "
        "the client and its workers together get one fair share of the 2 cores against "
        "the other sessions: on a loaded machine 2 workers cannot get twice the CPU of 1, "
        "and the measured speed-up says more about the load than about the batch.",
        "",
        f"Data: {n} countries of simulate_lsa ({size['n_schools']} schools, "
        f"{size['n_items']} items each; {int(rows['n_obs'])} rows in "
        f"{int(rows['n_groups'])} groups for country {rows['value']}), ntree {size['ntree']}, "
        "one task per country (search + its report).",
        "",
        "| run | wall | cluster start | task phase | sum of task times | speed-up vs 1 worker |",
        "|---|---|---|---|---|---|",
        f"| in this process, one after the other (warm) | {base_sum:.1f} s | - | - | "
        f"{base_sum:.1f} s | - |",
    ]
    for run in runs:
        speed = "1.00" if run is one else f"{speed_all:.2f} (tasks only: {speed_tasks:.2f})"
        lines.append(
            f"| LocalCluster, {run['workers']} worker(s) | {run['wall']:.1f} s | "
            f"{run['startup']:.1f} s | {run['tasks']:.1f} s | "
            f"{run['summary']['seconds'].sum():.1f} s | {speed} |"
        )
    share = 100 * overhead / (worker_sum / n)
    lines += [
        "",
        f"- Per-task overhead of Dask (1 worker: task phase minus the tasks' own time on the "
        f"worker, per task): **{overhead * 1000:.0f} ms**, {share:.1f}% "
        "of a task here (scatter of the rows, scheduling, returning the outputs, writing "
        "the task folder).",
        f"- Worker warm-up (the tasks' time on the worker minus in-process): {warm:.1f} s over "
        "the run, paid once per worker process (imports, loading numba's cached kernels).",
        f"- Same results with 1 and 2 workers: {same_results(one['out'], two['out'])} "
        "(every result.json equal, timings aside).",
        f"- Where a task's time goes here: ranking {shares['ranking']:.2f} s, LRT stages and "
        f"R² {shares['stages']:.2f} s (mean over tasks).",
        "",
        "### Paper estimate: 60 countries x 5 plausible values on a 16-node cluster",
        "",
        "From the paper-scale search in this file (8,625 students, 229 schools, 232 items, "
        "ntree 2000): ranking 83 s on 2 threads (taken as 166 s on one), LRT stages and R² "
        "about 1.3 s per PV. The overhead above (per task) and the cluster start-up are "
        "added; the countries are taken as equal in size (real TIMSS countries differ about "
        "2-fold, so the makespan is up to 2x the figures below). One worker per core, one "
        "thread each; 575 MB peak per task fits 32 workers in a 24 GB node.",
        "",
        *paper_estimate(overhead, one["startup"]),
        "",
        "Why the plausible values of a country stay in one task: the search ranks the first "
        "PV and reuses the ranking for the others (the ranking is >95% of a search), so a "
        "5-PV task costs about one search plus 4 x 1.3 s; splitting PVs into sub-tasks would "
        "repeat the ranking 5 times (or need a ranking task feeding 5 stage tasks for a "
        "~5 s gain). With `rank_each` set, sub-tasks would win once workers outnumber "
        "countries (last column).",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = HERE / "RESULTS.md") -> None:
    """Replace the batch section of RESULTS.md (or append it), keeping everything else."""
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        head, rest = old.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + text + tail
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small countries, 50 trees")
    parser.add_argument("--write", action="store_true", help="update RESULTS.md's section")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    options = {"ntree": size["ntree"]}
    stamp0 = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    load0 = os.getloadavg()[0]
    frame = countries(size)
    base = in_process(frame, {**options, "outcome": "math", "group": "school", "n_jobs": 1})
    root = Path(tempfile.mkdtemp(prefix="autoglmm-batch-bench-"))
    try:
        runs = [batch_run(frame, options, w, root) for w in (1, 2)]
        stamp = (stamp0, dt.datetime.now(dt.UTC).strftime("%H:%M"))
        text = report(base, runs, (f"{load0:.1f}", f"{os.getloadavg()[0]:.1f}"), size, stamp)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
