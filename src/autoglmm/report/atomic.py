"""Atomic output folders: the output directory is complete (old or new) or untouched.

:func:`write_folder` builds every file in a hidden sibling folder
``.OUT.autoglmm-new-<pid>-<token>`` and then puts it in place with one folder rename:

* a new ``OUT``: ``rename(new, OUT)``;
* an existing ``OUT``: its other files are hard-linked (or copied) into the new folder, and the
  two folders are exchanged by one ``renameat2(RENAME_EXCHANGE)`` call where the kernel and file
  system offer it. Elsewhere ``OUT`` is renamed to ``.OUT.autoglmm-old-<pid>-<token>`` and the
  new folder to ``OUT``: two renames, with a gap in which ``OUT`` is missing.

A process killed at any point (even by SIGKILL) can leave only these hidden siblings behind. The
next write to the same ``OUT`` first calls :func:`recover`, which rolls back an interrupted swap
(``OUT`` missing and an old folder present: the old folder is renamed back) and deletes every
sibling whose owner process is gone. The names carry the owner's pid, so a writer that is still
running is never disturbed.

Example
-------
>>> write_folder(Path("out"), lambda tmp: (tmp / "a.txt").write_text("hi"))  # doctest: +SKIP
PosixPath('out')
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from autoglmm.errors import UsageError

__all__ = ["check_output_dir", "check_output_file", "recover", "write_folder"]

NEW, OLD = "autoglmm-new", "autoglmm-old"
_SIBLING = re.compile(r"\.autoglmm-(?P<tag>new|old)-(?P<pid>\d+)-[0-9a-f]+$")

#: Exchange two folders with renameat2 where possible (tests turn it off for the fallback).
USE_EXCHANGE = True


def checkpoint(name: str) -> None:
    """A named step of the write; a no-op that the tests replace to kill the process there."""


def write_folder(out: Path, build: Callable[[Path], None], keep_other_files: bool = True) -> Path:
    """Run ``build(folder)`` in a hidden sibling of ``out`` and swap it in with one rename.

    ``keep_other_files``: files in an existing ``out`` that ``build`` did not write are carried
    over. On any error (or KeyboardInterrupt) ``out`` is as it was and nothing is left beside it.
    An ``OSError`` becomes a :class:`UsageError` naming the folder.
    """
    out = Path(out)
    check_output_dir(out)
    recover(out)
    created = _first_missing(out.parent)
    new: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        new = _sibling(out, NEW)
        new.mkdir()
        checkpoint("created")
        build(new)
        checkpoint("built")
        if keep_other_files and out.is_dir():
            _carry_over(out, new)
            checkpoint("carried over")
        _swap(new, out)
        new = None
    except BaseException as err:
        if new is not None:
            shutil.rmtree(new, ignore_errors=True)
        if created is not None and not out.exists():
            shutil.rmtree(created, ignore_errors=True)
        if isinstance(err, OSError):
            raise UsageError(
                f"cannot write to '{out}': {err.strerror or err}; "
                "choose a writable output folder (--out)"
            ) from err
        raise
    return out


def check_output_dir(out: Path) -> None:
    """Fail fast (before any work) when ``out`` cannot become an output folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"the output path '{out}' is a file; give a folder with --out")
    existing = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise UsageError(
            f"cannot create the output folder '{out}': '{existing}' is a file; choose another --out"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot write to '{existing}' (permission denied); choose a writable --out"
        )


def check_output_file(path: Path) -> None:
    """Fail fast (before any work) when ``path`` cannot be written as a file."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"the output path '{path}' is a folder; give a file name with --out")
    parent = path.parent
    if not parent.exists():
        raise UsageError(
            f"the folder '{parent}' of the output file does not exist; create it or choose "
            "another --out"
        )
    if not parent.is_dir():
        raise UsageError(f"'{parent}' is a file, not a folder; choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to '{parent}' (permission denied); choose another --out")


def recover(out: Path) -> None:
    """Complete what a killed writer left beside ``out``: roll back or delete its siblings.

    Siblings of a process that is still running are left alone.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return
    stale: dict[str, list[Path]] = {"new": [], "old": []}
    pattern = glob.escape(f".{out.name}") + ".autoglmm-*"
    for path in sorted(out.parent.glob(pattern)):
        match = _SIBLING.search(path.name)
        if match and path.name.startswith(f".{out.name}.") and not _alive(int(match["pid"])):
            stale[match["tag"]].append(path)
    if not out.exists() and stale["old"]:  # killed between the two renames: roll back
        previous = max(stale["old"], key=lambda p: p.stat().st_mtime)
        os.rename(previous, out)
        stale["old"].remove(previous)
    for path in stale["new"] + stale["old"]:
        shutil.rmtree(path, ignore_errors=True)


# --- helpers --------------------------------------------------------------------------------


def _sibling(out: Path, tag: str) -> Path:
    return out.parent / f".{out.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _first_missing(path: Path) -> Path | None:
    """The outermost ancestor of ``path`` (or itself) that does not exist yet."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing = p
    return missing


def _carry_over(out: Path, new: Path) -> None:
    """Hard-link (or copy) the files of ``out`` that ``new`` does not have into ``new``."""
    os.chmod(new, out.stat().st_mode & 0o7777)
    for item in out.iterdir():
        target = new / item.name
        if target.exists() or target.is_symlink():
            continue
        if item.is_symlink():
            os.symlink(os.readlink(item), target)
        elif item.is_dir():
            shutil.copytree(item, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, target)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _swap(new: Path, out: Path) -> None:
    """Put ``new`` in place of ``out`` with one rename (or an exchange of the two folders)."""
    if not out.exists():
        os.rename(new, out)
        checkpoint("renamed")
        return
    if USE_EXCHANGE and _exchange(new, out):
        checkpoint("exchanged")
        shutil.rmtree(new)  # now the previous contents
        return
    old = _sibling(out, OLD)
    os.rename(out, old)
    try:
        checkpoint("moved old aside")
        os.rename(new, out)
    except BaseException:
        if not out.exists():
            os.rename(old, out)
        raise
    checkpoint("renamed")
    shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2); False when it is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))
