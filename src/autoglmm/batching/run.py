"""``autoglmm.batch``: one search per value of a column, on a Dask cluster.

:func:`batch` reads like the procedure:

1. check the settings against an earlier run in ``out`` (resume) and fix the batch seed;
2. plan one task per value of ``by`` and skip the tasks whose folder is complete;
3. open the cluster, scatter each task's rows to the workers once, submit one search per
   task (largest first, so the long tasks do not end up last);
4. collect the tasks with ``as_completed``: each finished task is written to its folder at
   once, and summary.csv, the progress bar and the console grow as tasks end;
5. write summary.csv and the cross-country summary.html.

A failed task is one row with its error; the others go on. Ctrl-C cancels the remaining
tasks, closes the cluster and leaves only complete task folders, so a rerun resumes.
"""

from __future__ import annotations

import inspect
import os
import secrets
import time
from pathlib import Path
from typing import Any

import pandas as pd

from autoglmm.batching.store import BatchStore
from autoglmm.batching.tasks import (
    Task,
    failed_row,
    iter_task_frames,
    plan_tasks,
    run_task,
    task_merge,
)
from autoglmm.errors import UsageError
from autoglmm.selection import load_frame
from autoglmm.text_files import read_name_list

__all__ = ["batch"]

# search() arguments that the batch sets itself, per task
_OWN = ("data", "seed", "progress")


def batch(
    data: pd.DataFrame | str | os.PathLike,
    outcome: str,
    group: str,
    by: str,
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    seed: int | None = None,
    progress: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """Run :func:`autoglmm.search` once per value of ``by`` on a Dask cluster.

    Parameters
    ----------
    data : DataFrame or a path that :func:`autoglmm.read_data` reads (read by this process;
        workers receive each task's rows, so they need no access to the file).
    outcome, group : as in :func:`autoglmm.search`.
    by : the column that splits the data into tasks (e.g. ``"IDCNTRY"``).
    out : folder of the batch: ``out/<by>=<value>/`` holds what ``search --out`` writes for
        that value, plus ``summary.csv``, ``summary.html`` and ``batch.json``.
    workers : processes of a local Dask cluster (default: one per core, at most one per task).
    scheduler : address of an existing Dask scheduler (``tcp://host:8786``) instead.
    seed : batch seed; task ``v`` runs with ``task_seed(seed, v)``. None draws one (or, on a
        rerun, reuses the earlier run's), recorded in batch.json and summary.csv.
    progress : progress bar and one line per finished task (on stderr).
    **options : every other :func:`autoglmm.search` argument (family, ntree, alpha, ...).

    Returns
    -------
    DataFrame
        summary.csv: one row per task (value, status, error, n_obs, n_groups, icc, formula,
        loglik, selected terms, seconds, seed, folder), in value order.

    Examples
    --------
    >>> summary = batch("timss.sav", "BSMMAT01", "IDSCHOOL", by="IDCNTRY",
    ...                 out="countries", workers=4, seed=1)          # doctest: +SKIP
    >>> summary[["value", "status", "icc", "formula"]]               # doctest: +SKIP
    """
    from autoglmm import __version__

    options = _check_options(outcome, group, options)
    store = BatchStore(out)
    frame = load_frame(data)
    same = {k: v for k, v in options.items() if k != "n_jobs"}  # results never depend on it
    wanted = {"version": __version__, "by": by, "seed": seed, "search": _json(same)}
    merges, options = _merge_frames(options)
    settings = store.settings(wanted)
    if settings["seed"] is None:
        settings["seed"] = _draw_seed()
    tasks, n_missing = plan_tasks(frame, by, settings["seed"])
    store.clean_scratch()
    earlier = store.earlier_summary()
    rows, todo = [], []
    for task in tasks:
        result = store.finished(task)
        if result is None:
            todo.append(task)
        else:
            rows.append(store.resumed_row(task, result, earlier))
    store.write_settings({**settings, "n_tasks": len(tasks), "rows_without_value": n_missing})
    view = _View(progress, len(tasks), len(rows), by, n_missing)
    try:
        if todo:
            payloads = _payloads(frame, merges, by, todo)
            _run(payloads, todo, options, store, tasks, rows, workers, scheduler, view)
    finally:
        view.stop()
        summary = store.write_summary(rows, tasks)
        _write_html(store, summary, by, settings)
    return summary


def _payloads(frame, merges, by, todo) -> dict[str, tuple]:
    """What each task to do receives: its rows and its part of each merge file."""
    wanted = {t.key for t in todo}
    return {
        key: (part, task_merge(merges, by, key))
        for key, part in iter_task_frames(frame, by)
        if key in wanted
    }


def _run(payloads, todo, options, store, tasks, rows, workers, scheduler, view) -> None:
    """Scatter, submit and collect the tasks still to do, writing each as it ends."""
    from distributed import as_completed

    from autoglmm.batching.cluster import open_client

    token = secrets.token_hex(3)
    with open_client(workers, scheduler, len(todo)) as client:
        view.start(client)
        futures = {}
        for task in sorted(todo, key=lambda t: -t.n_rows):  # longest first
            # a list of one: scatter ships the (rows, merge) pair as one object, once
            shipped = client.scatter([payloads.pop(task.key)], hash=False)[0]
            future = client.submit(run_task, shipped, task.key, options, task.seed,
                                   key=f"autoglmm-{task.folder}-{token}", pure=False)  # fmt: skip
            futures[future.key] = (future, task)
        try:
            for future in as_completed([f for f, _ in futures.values()]):
                task = futures[future.key][1]
                row = _collect(future, task, store)
                future.release()
                usage = row.pop("usage_error", False)
                rows.append(row)
                store.write_summary(rows, tasks)
                view.task_done(task, row)
                if usage:  # the call itself is wrong: every task would fail the same way
                    raise UsageError(row["error"])
        except BaseException:
            client.cancel([f for f, _ in futures.values() if not f.done()])
            raise


def _collect(future: Any, task: Task, store: BatchStore) -> dict:
    """The summary row of a finished future; its outputs installed in the task folder."""
    if future.status == "finished":
        outcome = future.result()
        row = outcome["row"]
        if outcome["files"] is not None:
            store.write_task(task, outcome["files"])
        return row
    err = future.exception()
    return {**failed_row(err), "value": task.key, "seed": task.seed, "seconds": None}


def _check_options(outcome: str, group: str, options: dict) -> dict:
    """The keyword arguments of every task's search; unknown names are a UsageError."""
    from autoglmm.selection import search

    params = {k: p for k, p in inspect.signature(search).parameters.items() if k not in _OWN}
    unknown = sorted(set(options) - set(params))
    if unknown:
        names = ", ".join(k for k in params if k not in ("outcome", "group"))
        raise UsageError(
            f"batch() got unknown search option(s) {', '.join(unknown)}; the options are: {names}"
        )
    defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
    options = {**defaults, **options, "outcome": outcome, "group": group}
    ranking = options.get("ranking")
    if isinstance(ranking, str | os.PathLike):  # read here: workers may not see the file
        options["ranking"] = read_name_list(ranking)
    if options.get("n_jobs") is None:  # one thread per task: the workers are the parallelism
        options["n_jobs"] = 1
    return options


def _merge_frames(options: dict) -> tuple[list[pd.DataFrame], dict]:
    """The ``merge`` files read here (workers may not see them); options without them."""
    merge = options.get("merge") or ()
    if isinstance(merge, str | os.PathLike | pd.DataFrame):
        merge = [merge]
    if not merge:
        return [], options
    from autoglmm.data import read_data

    frames = []
    for m in merge:
        frame = m if isinstance(m, pd.DataFrame) else read_data(m)
        if not isinstance(m, pd.DataFrame):  # named as in `search --merge FILE`
            frame.attrs["source_file"] = Path(m).name
        frames.append(frame)
    return frames, {**options, "merge": ()}


def _json(options: dict) -> dict:
    """Options as JSON for batch.json (a merge DataFrame is recorded as 'DataFrame')."""
    from autoglmm.search_result import json_value

    options = dict(options)
    if "merge" in options:
        merge = options["merge"] or ()
        merge = [merge] if isinstance(merge, str | os.PathLike | pd.DataFrame) else merge
        options["merge"] = [type(m).__name__ if isinstance(m, pd.DataFrame) else str(m)
                            for m in merge]  # fmt: skip
    return json_value(options)


def _draw_seed() -> int:
    import numpy as np

    return int(np.random.SeedSequence().entropy % (2**31))


def _write_html(store: BatchStore, summary: pd.DataFrame, by: str, settings: dict) -> None:
    from autoglmm.batching.overview import write_overview

    write_overview(store.root, summary, by, settings)


class _View:
    """Progress bar over tasks and one line per finished task, on stderr (no-op when off)."""

    def __init__(self, enabled: bool, total: int, done: int, by: str, n_missing: int) -> None:
        self.enabled, self.total, self.done, self.by = enabled, total, done, by
        self.bar = None
        self.started = time.perf_counter()
        if enabled:
            from rich.console import Console

            self.console = Console(stderr=True, highlight=False)
            if done:
                self.console.print(f"{done} of {total} tasks already complete (resumed)")
            if n_missing:
                self.console.print(f"{n_missing} rows have no '{by}' value: in no task")

    def start(self, client: Any) -> None:
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        n = len(client.scheduler_info().get("workers", {}))
        self.console.print(f"Dask: {n} worker(s) at {client.scheduler.address}")
        self.bar = Progress(
            TextColumn("tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console,
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task("tasks", total=self.total, completed=self.done)

    def task_done(self, task: Task, row: dict) -> None:
        self.done += 1
        if not self.enabled:
            return
        from rich.markup import escape

        secs = row.get("seconds")
        head = f"[{self.done}/{self.total}] {task.folder}"
        took = f"{secs:.1f} s" if secs is not None else ""
        if row["status"] == "failed":
            line = f"{head}  [red]failed[/red]  {took}  {escape(row['error'])}"
        else:
            icc = f"ICC {row['icc']:.3f}" if row.get("icc") is not None else "ICC -"
            line = (f"{head}  done  {took}  {row['n_obs']} rows / {row['n_groups']} groups  "
                    f"{icc}  {escape(str(row['formula']))}")  # fmt: skip
        if self.bar is not None:
            self.bar.console.print(line, markup=True, soft_wrap=True)
            self.bar.update(self.task, completed=self.done)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
