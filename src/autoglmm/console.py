"""The ``autoglmm`` console script: Ctrl-C is one line and exit code 130, even at start-up.

Importing the CLI (typer, then numpy, pandas and numba inside a command) takes a moment, and
a Ctrl-C in that moment would print a KeyboardInterrupt traceback. Until the CLI module is
imported a SIGINT handler exits at once with the one-line message; from then on
:func:`autoglmm.cli.main` handles it (the output folder is cleaned up while unwinding).
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["main"]

MESSAGE = "error: interrupted (Ctrl-C); nothing was written half-way\n"


def _interrupted(signum: int, frame: object) -> None:
    try:
        sys.stderr.write(MESSAGE)
        sys.stderr.flush()
    finally:
        os._exit(130)


def main() -> None:
    """Console-script entry point (``[project.scripts]`` in pyproject.toml)."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:  # a background job keeps ignoring Ctrl-C
        signal.signal(signal.SIGINT, _interrupted)
    from autoglmm.cli import main as cli_main

    signal.signal(signal.SIGINT, previous)
    cli_main()
