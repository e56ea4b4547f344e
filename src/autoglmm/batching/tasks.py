"""The tasks of a batch: one search per value of the ``by`` column, and what a worker runs.

A task is identified by the text of its value (its *key*). Everything about a task follows
from the key and the batch settings alone, never from where or when it runs:

- its rows: the rows whose ``by`` value has that key, index reset (:func:`task_frame`), so a
  country's task is the same data as that country's own file (where ``by`` is a constant
  column, which the search excludes as a candidate);
- its seed: :func:`task_seed` hashes the batch seed and the key with SHA-256 (Python's
  ``hash()`` is salted per process, so it would differ between workers);
- its folder: ``<by>=<key>`` (:func:`folder_name`), the Hive-style partition name, with
  characters that are unsafe in a file name written as ``%XX``.

:func:`run_task` is the only function that runs on a worker. It searches, renders the
outputs of ``search --out`` in a private scratch folder and returns them as bytes with the
summary row, so workers need no shared file system and only the client writes into ``DIR``.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoglmm.errors import AutoGLMMError, DataError, UsageError

__all__ = [
    "SUMMARY_COLUMNS",
    "Task",
    "failed_row",
    "folder_name",
    "iter_task_frames",
    "key_text",
    "plan_tasks",
    "row_from_result",
    "run_task",
    "task_frame",
    "task_merge",
    "task_seed",
]

#: Columns of summary.csv, in order.
SUMMARY_COLUMNS = (
    "value", "status", "error", "n_obs", "n_groups", "icc", "glmm_needed", "formula",
    "loglik", "n_analyses", "fixed", "interactions", "random_slopes", "seconds", "seed",
    "folder",
)  # fmt: skip

_SAFE = set(" -_.,+@()")


@dataclass(frozen=True)
class Task:
    """One search of the batch: its key, its folder, its seed and how many rows it has."""

    key: str
    folder: str
    seed: int
    n_rows: int


def key_text(value: Any) -> str:
    """The text of a ``by`` value: integral floats lose their ``.0`` (36.0 and 36 are '36')."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def folder_name(by: str, key: str) -> str:
    """``<by>=<key>`` with unsafe characters (``/``, ``=``, ``%``, controls...) as ``%XX``.

    A leading dot is escaped too, so no task folder is hidden or named ``.``/``..``.

    >>> folder_name("IDCNTRY", "36")
    'IDCNTRY=36'
    >>> folder_name("cnt", "a/b")
    'cnt=a%2Fb'
    """
    return f"{_escape(by)}={_escape(key)}"


def _escape(text: str) -> str:
    out = []
    for i, ch in enumerate(text):
        if (ch.isalnum() or ch in _SAFE) and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
    return "".join(out) or "%00"


def task_seed(seed: int, key: Any) -> int:
    """The seed of the task ``key`` in a batch run with ``seed``: stable across processes.

    Run ``autoglmm.search(task_data, ..., seed=task_seed(seed, key))`` to repeat one task
    of a batch on its own; it gives the same result.

    >>> task_seed(1, "36") == task_seed(1, 36) == task_seed(1, 36.0)
    True
    """
    text = f"autoglmm.batch\0{int(seed)}\0{key_text(key)}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (2**31)


def plan_tasks(frame: pd.DataFrame, by: str, seed: int) -> tuple[list[Task], int]:
    """The tasks of ``frame`` split by ``by`` (sorted by value) and the rows with no value.

    Raises
    ------
    DataError : ``by`` is not a column, has no values, or two values share one folder name.
    """
    if by not in frame.columns:
        raise DataError(f"the --by column '{by}' is not in the data; check its spelling")
    values = frame[by]
    missing = int(values.isna().sum())
    counts = values.dropna().value_counts(sort=False)
    if counts.empty:
        raise DataError(f"the --by column '{by}' has no values; choose another column")
    try:
        counts = counts.sort_index()
    except TypeError:  # mixed types: keep the order of first appearance
        pass
    tasks, seen = [], {}
    for value, n in counts.items():
        key = key_text(value)
        folder = folder_name(by, key)
        if folder in seen:
            raise DataError(
                f"the values {seen[folder]!r} and {value!r} of '{by}' both give the task "
                f"'{folder}'; recode '{by}' so that its values differ as text"
            )
        seen[folder] = value
        tasks.append(Task(key=key, folder=folder, seed=task_seed(seed, key), n_rows=int(n)))
    return tasks, missing


def task_frame(frame: pd.DataFrame, by: str, key: Any) -> pd.DataFrame:
    """The data of one task: the rows with this ``by`` value, index reset.

    This is exactly the data a task searches, so a standalone ``search`` on it with
    ``seed=task_seed(seed, key)`` repeats the task.
    """
    keys = frame[by].map(key_text, na_action="ignore")
    return _part(frame, keys == key_text(key))


def iter_task_frames(frame: pd.DataFrame, by: str):
    """``(key, task_frame)`` for every value of ``by``, splitting ``frame`` once."""
    for value, index in frame.groupby(by, sort=False, dropna=True).indices.items():
        yield key_text(value), _part(frame, index)


def task_merge(frames: list[pd.DataFrame], by: str, key: Any) -> list[pd.DataFrame]:
    """A task's part of each ``merge`` file: its own rows when the file has ``by`` (a
    school file with IDCNTRY), else the whole file."""
    return [task_frame(m, by, key) if by in m.columns else m for m in frames]


def _part(frame: pd.DataFrame, rows: Any) -> pd.DataFrame:
    part = frame.loc[rows] if isinstance(rows, pd.Series) else frame.iloc[rows]
    part = part.reset_index(drop=True)
    part.attrs = dict(frame.attrs)
    return part


# --- on the worker -------------------------------------------------------------------------


def run_task(payload: tuple, key: str, options: dict, seed: int) -> dict:
    """Search one task's data and render its outputs; never raises for a failed search.

    ``payload`` is ``(rows, merge)``: the task's rows and the task's part of each ``merge``
    file (shipped together, once). Returns ``{"row": summary row, "files": {name: bytes}
    or None}``. A failed search gives a row with status ``failed`` and a one-line error.
    """
    from threadpoolctl import threadpool_limits

    from autoglmm.selection import search

    data, merge = payload
    if merge:
        options = {**options, "merge": list(merge)}
    start = time.perf_counter()
    files = None
    try:
        with threadpool_limits(limits=options.get("n_jobs") or 1):
            result = search(data, seed=seed, progress=False, **options)
            files, result_json = _render(result)
        row = row_from_result(result_json)
    except Exception as err:  # one bad country must not stop the batch
        row = failed_row(err)
    row.update(value=key, seconds=round(time.perf_counter() - start, 3), seed=seed)
    return {"row": row, "files": files}


def _render(result: Any) -> tuple[dict[str, bytes], dict]:
    """The outputs of ``search --out`` as bytes, built in a private scratch folder."""
    import json

    from autoglmm.report import build_outputs

    scratch = Path(tempfile.mkdtemp(prefix="autoglmm-task-"))
    try:
        build_outputs(result, scratch)
        files = {p.name: p.read_bytes() for p in sorted(scratch.iterdir()) if p.is_file()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return files, json.loads(files["result.json"])


def row_from_result(data: dict) -> dict:
    """The summary row of a finished task, from its result.json (fresh or resumed).

    With several analyses (plausible values, imputations) the formula is the pooled model's
    and the terms are those selected in more than half of the analyses.
    """
    models = data.get("models") or {}
    model = models.get("optimal") or models.get("null") or {}
    terms = data.get("optimal_terms") or {}
    row = {
        "status": "done",
        "error": "",
        "n_obs": data.get("n_obs"),
        "n_groups": data.get("n_groups"),
        "icc": data.get("icc"),
        "glmm_needed": data.get("glmm_needed"),
        "formula": model.get("formula", ""),
        "loglik": model.get("loglik"),
        "n_analyses": 1,
    }
    pv = data.get("plausible_values")
    if pv:
        shares = pv.get("selection_frequency") or {}
        majority = [t for t, share in shares.items() if share > 0.5]
        slopes = [t[1:].split(" | ")[0] for t in majority if t.startswith("(")]
        fixed = [t for t in majority if not t.startswith("(") and ":" not in t]
        inter = [t for t in majority if not t.startswith("(") and ":" in t]
        terms = {"fixed": fixed, "interactions": inter, "random_slopes": slopes}
        row.update(formula=(pv.get("pooled") or {}).get("formula", ""), loglik=None,
                   n_analyses=len(pv.get("per_outcome") or []))  # fmt: skip
    row["fixed"] = ";".join(terms.get("fixed", []))
    row["interactions"] = ";".join(terms.get("interactions", []))
    row["random_slopes"] = ";".join(terms.get("random_slopes", []))
    return row


def failed_row(err: BaseException) -> dict:
    """A summary row for a task that failed with ``err`` (its message on one line)."""
    message = " ".join(str(err).split()) or "no message"
    if not isinstance(err, AutoGLMMError):
        message = f"{type(err).__name__}: {message}"
    usage = isinstance(err, UsageError)
    return {"status": "failed", "error": message[:500], "usage_error": usage}
