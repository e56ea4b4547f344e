"""Column label lookup (autoglmm.column_labels) against pandas' own on every label store."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from autoglmm.column_labels import ColumnLabels, _arrow_label_chunks

LABELS = ["y", "school", "school_id", "sch", "x", "xx", "x", "学校", "a b", "ol", "", "y2"]
PROBES = [*LABELS, "schoo", "chool", "ool", "s", "x ", "xxx", "学", "b", "yy", "Y", "2"]


def _index(storage: str) -> pd.Index:
    if storage == "object":
        return pd.Index(LABELS, dtype=object)
    if storage == "python":
        return pd.Index(LABELS, dtype=pd.StringDtype("python"))
    if storage == "arrow-chunked":  # two chunks, the second a slice of a longer array
        head = pa.array(LABELS[:5], type=pa.large_string())
        tail = pa.array(["pad", *LABELS[5:]], type=pa.large_string()).slice(1)
        array = pd.arrays.ArrowStringArray(pa.chunked_array([head, tail]))
        return pd.Index(array)
    return pd.Index(LABELS, dtype=pd.StringDtype("pyarrow"))


def _expected(label) -> tuple[int | None, bool]:
    hits = [i for i, v in enumerate(LABELS) if v == label]
    return (hits[0] if len(hits) == 1 else None), bool(hits)


@pytest.mark.parametrize("storage", ["arrow", "arrow-chunked", "python", "object"])
def test_positions_match_the_labels_on_every_store(storage):
    columns = _index(storage)
    assert columns.tolist() == LABELS
    shared = ColumnLabels(columns)  # byte searches for the first names, then a dict
    for probe in PROBES:
        fresh = ColumnLabels(columns)  # a byte search (on Arrow labels)
        assert (fresh.position(probe), fresh.has(probe)) == _expected(probe), probe
        assert (shared.position(probe), shared.has(probe)) == _expected(probe), probe
    assert len(PROBES) > ColumnLabels.SEARCHES


def test_arrow_labels_are_read_from_their_buffers_and_other_stores_are_not():
    assert _arrow_label_chunks(_index("arrow")) is not None
    assert len(_arrow_label_chunks(_index("arrow-chunked"))) == 2
    assert _arrow_label_chunks(_index("object")) is None
    assert _arrow_label_chunks(_index("python")) is None


def test_missing_and_non_string_labels_take_the_dict_path():
    columns = pd.Index(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(["a", None, "b"])])))
    assert _arrow_label_chunks(columns) is None
    labels = ColumnLabels(columns)
    assert labels.position("b") == 2 and not labels.has("c")
    numbers = ColumnLabels(pd.Index([3, 1, 2]))
    assert numbers.position(1) == 1 and numbers.position("1") is None and not numbers.has(4)


def test_a_fit_reads_columns_by_these_positions():
    from autoglmm.variables import Evaluator

    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"y": rng.normal(size=4), "school_id": [1, 1, 2, 2], "school": [2.0, 1, 2, 1]}
    )
    df.columns = pd.Index(list(df.columns), dtype=pd.StringDtype("pyarrow"))  # pandas 3's
    ev = Evaluator(df)
    assert np.array_equal(ev.array("school"), df["school"].to_numpy())
    assert np.array_equal(ev.array("school_id"), df["school_id"].to_numpy())
    assert ev.array("schoo") is None and not ev.has("schoo")
