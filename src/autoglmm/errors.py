"""Error types shared by the API and the CLI.

Every user-facing error is a ``ValueError`` subclass whose message is one line that names
the problem and the fix. The CLI maps :class:`UsageError` to exit code 2 and
:class:`DataError` to exit code 1 and prints the message without a traceback (SPEC section 4).
"""

from __future__ import annotations


class AutoGLMMError(ValueError):
    """Base class of every error autoglmm raises on purpose for bad input."""

    exit_code = 1


class UsageError(AutoGLMMError):
    """The call itself is wrong: a bad option, formula, family, or argument combination."""

    exit_code = 2


class DataError(AutoGLMMError):
    """The data cannot support the request: missing file, unknown column, bad outcome, ..."""

    exit_code = 1
