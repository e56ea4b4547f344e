"""Where a column label sits in a DataFrame's columns, found without pandas' hash table.

A fit reads a handful of columns by name. pandas 3 stores the labels as Arrow strings and
builds a hash table of all of them on a frame's first lookup by name: 0.2 ms for 230
columns, on every new frame (a copy or a file just read has a new Index), where the rest
of a small fit's frame costs 0.3 ms. Here a label is found in the Arrow array's own
buffers instead: one byte search of the concatenated labels, then a check that the hit
is a whole label (about a microsecond per name). Other label stores (object arrays), and
a formula with many names, read the labels once into a dict, kept for the last few Index
objects.

Example
-------
>>> labels = ColumnLabels(pd.DataFrame({"y": [1.0], "school": [2]}).columns)
>>> labels.position("school"), labels.position("y "), labels.has("y")
(1, None, True)
"""

from __future__ import annotations

import bisect
import weakref

import numpy as np
import pandas as pd

__all__ = ["ColumnLabels"]

# the dicts of the latest object-array Indexes, by identity: (weak reference, positions,
# repeated labels); a few entries, as a fit reads one frame
_RECENT: dict[int, tuple] = {}


class ColumnLabels:
    """Positions of column labels: :meth:`position` for a label that occurs once,
    :meth:`has` for one that occurs at all (a repeated label is left to pandas, which
    names it in its error)."""

    # byte searches before the labels are read into a dict instead (a model with many
    # predictors looks up as many names: the dict is then cheaper)
    SEARCHES = 8

    def __init__(self, columns: pd.Index):
        self._columns = columns
        self._chunks = _arrow_label_chunks(columns)
        self._dict: tuple[dict, set] | None = None
        self._found: dict = {}  # label -> its positions, per label looked up

    def position(self, label) -> int | None:
        """The position of ``label`` if it occurs exactly once, else None."""
        found = self._find(label)
        return found[0] if len(found) == 1 else None

    def has(self, label) -> bool:
        """Whether ``label`` is a column label (once or more)."""
        return bool(self._find(label))

    def _find(self, label) -> list[int]:
        found = self._found.get(label)
        if found is None:
            found = self._found[label] = self._search(label)
        return found

    def _search(self, label) -> list[int]:
        searchable = self._chunks is not None and isinstance(label, str) and label
        if searchable and self._dict is None and len(self._found) < self.SEARCHES:
            return _arrow_positions(self._chunks, label.encode())
        if self._dict is None:
            self._dict = _label_dict(self._columns)
        positions, repeated = self._dict
        if label in positions:
            return [positions[label]]
        return [-1, -1] if label in repeated else []


def _arrow_label_chunks(columns: pd.Index) -> list | None:
    """``[(first position, offsets, label bytes)]`` per chunk of an Arrow string Index
    (offsets of the chunk's labels into its bytes); None for any other label store."""
    dtype = columns.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return None
    try:
        import pyarrow as pa

        chunked = columns.array.__arrow_array__()  # the Arrow data, not a copy
        out, first = [], 0
        for chunk in chunked.chunks:
            if chunk.null_count:  # a missing label's offsets need not be empty
                return None
            if chunk.type == pa.large_string():
                width = np.int64
            elif chunk.type == pa.string():
                width = np.int32
            else:  # string views and other layouts: the dict path
                return None
            _, offsets, data = chunk.buffers()
            if data is None:  # only empty or missing labels
                data = pa.py_buffer(b"")
            offsets = np.frombuffer(offsets, dtype=width)[chunk.offset :]
            out.append((first, offsets[: len(chunk) + 1].tolist(), data.to_pybytes()))
            first += len(chunk)
        return out
    except Exception:  # noqa: BLE001 - an unexpected Arrow layout: the dict path
        return None


def _arrow_positions(chunks: list, needle: bytes) -> list[int]:
    """Positions whose label is ``needle`` (a non-empty UTF-8 string)."""
    found = []
    for first, offsets, data in chunks:
        start, end = offsets[0], offsets[-1]
        at = data.find(needle, start, end)
        while at >= 0:
            k = bisect.bisect_right(offsets, at) - 1  # the label whose bytes hold ``at``
            if offsets[k] == at and offsets[k + 1] == at + len(needle):
                found.append(first + k)
            at = data.find(needle, offsets[k + 1], end)  # a match starts a label
    return found


def _label_dict(columns: pd.Index) -> tuple[dict, set]:
    """Label -> position for the labels that occur once, and the repeated labels; kept
    for the last few Index objects (by identity, weakly)."""
    key = id(columns)
    hit = _RECENT.get(key)
    if hit is not None and hit[0]() is columns:
        return hit[1], hit[2]
    positions: dict = {}
    repeated: set = set()
    for i, label in enumerate(columns.tolist()):
        if label in positions:
            repeated.add(label)
        positions[label] = i
    for label in repeated:
        del positions[label]
    if len(_RECENT) >= 8:
        _RECENT.pop(next(iter(_RECENT)))
    _RECENT[key] = (weakref.ref(columns), positions, repeated)
    return positions, repeated
