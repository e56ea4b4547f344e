"""Atomic output: a writer killed at any step leaves the old folder or the new one, never a mix.

Each case forks a child that writes a report and SIGKILLs itself at one named step
(:func:`autoglmm.report.atomic.checkpoint`), then checks what is on disk right after the kill
and after the next writer's :func:`~autoglmm.report.atomic.recover`. KeyboardInterrupt at each
step is checked in-process. Both swap methods are covered: the one-call folder exchange
(renameat2) and the two-rename fallback with its roll-back.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from autoglmm.errors import UsageError
from autoglmm.report import atomic, write_report

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

BUILD_STEPS = ["created", "wrote result.json", "wrote the text files", "wrote the figures", "built"]
CASES = (
    [("new", True, step) for step in [*BUILD_STEPS, "renamed"]]
    + [("existing", True, step) for step in [*BUILD_STEPS, "carried over", "exchanged"]]
    + [("existing", False, step) for step in ["carried over", "moved old aside", "renamed"]]
)


def snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def states(hand_result, stopped, tmp_path_factory):
    """The folder before (the hand result plus a user's file) and after (the stopped result)."""
    root = tmp_path_factory.mktemp("states")
    before = write_report(hand_result, root / "before")
    (before / "notes" / "mine.txt").parent.mkdir()
    (before / "notes" / "mine.txt").write_text("my notes")
    after = write_report(stopped, root / "after")
    old = snapshot(before)
    new = {**snapshot(after), "notes/mine.txt": b"my notes"}
    return {"old": old, "new": new, "fresh_new": snapshot(after), "before": before}


def _prepare(kind: str, work: Path, states) -> Path:
    """``work/out``: absent (kind "new") or a copy of the old report with the user's notes."""
    out = work / "out"
    if kind == "existing":
        shutil.copytree(states["before"], out)
    return out


def _write_and_die(out: Path, result, step: str, exchange: bool) -> int:
    """Fork a writer that SIGKILLs itself at ``step``; return how it ended."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            atomic.USE_EXCHANGE = exchange
            atomic.checkpoint = lambda name: (
                os.kill(os.getpid(), signal.SIGKILL) if name == step else None
            )
            write_report(result, out)
        except BaseException:
            code = 4
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


@pytest.mark.parametrize(("kind", "exchange", "step"), CASES)
def test_sigkill_at_every_step_leaves_old_or_new(
    kind, exchange, step, states, hand_result, stopped, tmp_path
):
    if exchange and kind == "existing" and not atomic._exchange(tmp_path, tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    work = tmp_path / "work"
    work.mkdir()
    out = _prepare(kind, work, states)
    old = states["old"] if kind == "existing" else None
    new = states["new"] if kind == "existing" else states["fresh_new"]
    ended = _write_and_die(out, stopped, step, exchange)
    assert ended == -signal.SIGKILL, f"the child did not reach '{step}' (ended {ended})"
    # right after the kill: old or new, never a mix (the fallback may have OUT missing)
    now = snapshot(out)
    allowed = [old, new] + ([None] if step == "moved old aside" else [])
    assert now in allowed
    # the next writer first recovers: back to old or new, and nothing left beside it
    atomic.recover(out)
    assert snapshot(out) in ([old, new] if kind == "existing" else [None, new])
    assert sorted(p.name for p in work.iterdir()) == (["out"] if out.exists() else [])


@pytest.mark.parametrize("exchange", [True, False])
@pytest.mark.parametrize("step", [*BUILD_STEPS, "carried over", "moved old aside", "exchanged"])
def test_keyboard_interrupt_at_every_step(
    step, exchange, states, hand_result, stopped, tmp_path, monkeypatch
):
    out = _prepare("existing", tmp_path, states)

    def interrupt(name):
        if name == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "USE_EXCHANGE", exchange)
    monkeypatch.setattr(atomic, "checkpoint", interrupt)
    try:
        write_report(stopped, out)
    except KeyboardInterrupt:
        # before the swap: untouched; right after the one-call exchange: the new folder
        assert snapshot(out) == states["new" if step == "exchanged" else "old"]
    else:  # the step is not on this path, or came after the swap
        assert snapshot(out) == states["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_folders_of_dead_writers_are_cleaned_live_ones_kept(hand_result, tmp_path):
    out = tmp_path / "out"
    dead = _dead_pid()
    stale_new = tmp_path / f".out.autoglmm-new-{dead}-0a1b2c3d"
    stale_old = tmp_path / f".out.autoglmm-old-{dead}-0a1b2c3e"
    live = tmp_path / f".out.autoglmm-new-{os.getppid()}-0a1b2c3f"
    other = tmp_path / f".outer.autoglmm-new-{dead}-0a1b2c40"  # another output's leftover
    for path in (stale_new, stale_old, live, other):
        path.mkdir()
        (path / "x").write_text("x")
    write_report(hand_result, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", live.name, other.name])
    assert (out / "report.html").is_file()


def test_killed_between_the_two_renames_rolls_back(tmp_path):
    out = tmp_path / "out"
    dead = _dead_pid()
    old = tmp_path / f".out.autoglmm-old-{dead}-00000001"
    new = tmp_path / f".out.autoglmm-new-{dead}-00000002"
    old.mkdir()
    (old / "report.html").write_text("old")
    new.mkdir()
    (new / "report.html").write_text("new")
    atomic.recover(out)
    assert snapshot(out) == {"report.html": b"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        atomic.check_output_dir(tmp_path / "file")
    with pytest.raises(UsageError, match="'.*file' is a file"):
        atomic.check_output_dir(tmp_path / "file" / "sub" / "out")
    atomic.check_output_dir(tmp_path / "new" / "deeper")  # created later: fine
    with pytest.raises(UsageError, match="is a folder"):
        atomic.check_output_file(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        atomic.check_output_file(tmp_path / "missing" / "ranking.csv")
    atomic.check_output_file(tmp_path / "ranking.csv")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
