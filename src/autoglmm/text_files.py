"""Small text files from users (a ranking: one name per line), read whatever their encoding.

Spreadsheet programs and Windows editors save such lists as UTF-8 with a byte-order mark or as
UTF-16; both are read correctly here (a BOM never becomes part of the first name). A file that
is not text at all (binary, or another encoding that is not valid UTF-8) is a
:class:`~autoglmm.errors.DataError` with a one-line message, never a UnicodeDecodeError.

Example
-------
>>> read_name_list("ranking.txt")       # doctest: +SKIP
['ses', 'BSBM17A', ...]
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from autoglmm.errors import DataError

__all__ = ["read_name_list"]

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_name_list(path: str | os.PathLike, what: str = "ranking file") -> list[str]:
    """Non-empty, stripped lines of a text file: UTF-8 (with or without BOM), UTF-16 or -32."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} '{path}' not found; give a file with one name per line")
    raw = path.read_bytes()
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise DataError(
            f"{what} '{path}' is not a text file (binary, or not UTF-8/UTF-16); save it as "
            "plain text with one name per line"
        )
    return [line.strip() for line in text.splitlines() if line.strip()]
