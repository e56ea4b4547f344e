"""The batch's output folder ``DIR``: task folders, batch.json, summary.csv, resume.

Only the client writes here, and every write is atomic:

- a task folder is filled as a hidden sibling ``.<folder>.<token>.tmp`` and renamed into
  place in one step, so it is complete or absent, even after Ctrl-C or a crash;
- ``summary.csv`` and ``batch.json`` are written to a temporary file and replaced.

A rerun finds complete task folders (every file ``search --out`` writes, and a readable
result.json) and skips them; leftover ``.tmp`` folders of an interrupted run are removed.
``batch.json`` records the settings, so a rerun with other settings cannot mix results.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from autoglmm.batching.tasks import SUMMARY_COLUMNS, Task, row_from_result
from autoglmm.errors import UsageError

__all__ = ["BatchStore"]

SETTINGS_FILE = "batch.json"
SUMMARY_FILE = "summary.csv"


class BatchStore:
    """Reads and writes one batch output folder."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.root = Path(out)
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"the output path '{self.root}' is a file; give a folder with --out")

    # --- settings ------------------------------------------------------------------------

    def settings(self, wanted: dict) -> dict:
        """Settings of this run, checked against an earlier run's batch.json in ``DIR``.

        ``wanted["seed"]`` None takes the earlier run's seed (so a resumed run continues it).
        A different ``by``, outcome, group or search option is a :class:`UsageError`.
        """
        path = self.root / SETTINGS_FILE
        if not path.is_file():
            return wanted
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read {path}: {err}; delete it or use another --out") from None
        merged = dict(wanted)
        if merged["seed"] is None:
            merged["seed"] = earlier.get("seed")
        before = {"by": earlier.get("by"), "seed": earlier.get("seed"),
                  **(earlier.get("search") or {})}  # fmt: skip
        now = {"by": merged["by"], "seed": merged["seed"], **merged["search"]}
        for key in [*now, *(k for k in before if k not in now)]:
            if before.get(key) != now.get(key):
                raise UsageError(
                    f"'{self.root}' holds a batch run with {key} = {_short(before.get(key))}, "
                    f"not {_short(now.get(key))}; rerun with the same settings to resume, or "
                    "choose another --out"
                )
        return merged

    def write_settings(self, settings: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(settings, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        _replace_text(self.root / SETTINGS_FILE, text)

    # --- task folders --------------------------------------------------------------------

    def clean_scratch(self) -> list[str]:
        """Remove scratch folders an interrupted or killed run left behind; their names."""
        if not self.root.is_dir():
            return []
        left = [p for p in self.root.glob(".*.tmp") if p.is_dir()]
        for path in left:
            shutil.rmtree(path, ignore_errors=True)
        return [p.name for p in left]

    def finished(self, task: Task) -> dict | None:
        """The result.json of a complete task folder, or None (absent or incomplete)."""
        from autoglmm.report import OUTPUT_FILES

        folder = self.root / task.folder
        if not all((folder / name).is_file() for name in OUTPUT_FILES):
            return None
        try:
            return json.loads((folder / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def resumed_row(self, task: Task, result: dict, earlier: dict) -> dict:
        """The summary row of a task finished by an earlier run (its time from that run)."""
        row = {**row_from_result(result), "value": task.key, "seed": task.seed}
        old = earlier.get(task.folder, {})
        row["seconds"] = old.get("seconds")
        row["status"] = "done"
        return row

    def write_task(self, task: Task, files: dict[str, bytes]) -> Path:
        """Install a task's outputs as ``DIR/<folder>`` in one rename (complete or absent).

        An incomplete folder of the same name (not written by a batch) is replaced.
        """
        target = self.root / task.folder
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = self.root / f".{task.folder}.{secrets.token_hex(4)}.tmp"
        try:
            scratch.mkdir()
            for name, data in files.items():
                (scratch / name).write_bytes(data)
            if target.exists():
                shutil.rmtree(target)
            os.rename(scratch, target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return target

    # --- summary -------------------------------------------------------------------------

    def earlier_summary(self) -> dict[str, dict]:
        """Rows of an earlier summary.csv by folder (for the times of resumed tasks)."""
        path = self.root / SUMMARY_FILE
        if not path.is_file():
            return {}
        try:
            frame = pd.read_csv(path, dtype={"value": str}, keep_default_na=False)
        except (OSError, ValueError):
            return {}
        if "folder" not in frame.columns:
            return {}
        return {str(r["folder"]): r for r in frame.to_dict("records")}

    def write_summary(self, rows: list[dict], tasks: list[Task]) -> pd.DataFrame:
        """summary.csv: one row per task, in the tasks' order (value order)."""
        frame = summary_frame(rows, tasks)
        self.root.mkdir(parents=True, exist_ok=True)
        _replace_text(self.root / SUMMARY_FILE, frame.to_csv(index=False))
        return frame


def summary_frame(rows: list[dict], tasks: list[Task]) -> pd.DataFrame:
    """The summary as a DataFrame; tasks without a row yet are ``not_run``."""
    by_key = {row["value"]: row for row in rows}
    records = []
    for task in tasks:
        row = by_key.get(task.key) or {"value": task.key, "status": "not_run", "seed": task.seed}
        records.append({**{c: None for c in SUMMARY_COLUMNS}, **row, "folder": task.folder})
    frame = pd.DataFrame.from_records(records, columns=list(SUMMARY_COLUMNS))
    frame["error"] = frame["error"].fillna("")
    return frame


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
