"""Merging a school file onto a student file by group (and country)."""

from __future__ import annotations

import pandas as pd
import pytest

from autoglmm.errors import DataError
from autoglmm.lsa import prepare
from autoglmm.lsa.merge import merge_files


def _students() -> pd.DataFrame:
    df = pd.DataFrame({
        "IDCNTRY": [36, 36, 36, 40, 40, 40], "IDSCHOOL": [1, 1, 2, 1, 1, 3],
        "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    })  # fmt: skip
    df.attrs["variable_labels"] = {"x": "student item"}
    return df


def test_merge_on_country_and_school_when_ids_repeat_across_countries():
    school = pd.DataFrame({
        "IDCNTRY": [36.0, 36.0, 40.0, 40.0], "IDSCHOOL": [1.0, 2.0, 1.0, 3.0],
        "s": [10.0, 20.0, 30.0, 40.0],
    })  # fmt: skip
    school.attrs["variable_labels"] = {"s": "school item"}
    merged, notes = merge_files(_students(), [school], "IDSCHOOL")
    assert merged["s"].tolist() == [10.0, 10.0, 20.0, 30.0, 30.0, 40.0]  # 36/1 and 40/1 differ
    assert notes == []
    assert merged.attrs["variable_labels"]["s"] == "school item"
    assert merged.attrs["variable_labels"]["x"] == "student item"
    # the group becomes country-school, so school 1 of 36 and school 1 of 40 are two groups
    frame, _, more = prepare(_students(), ["x"], "IDSCHOOL", [school])
    assert frame["IDSCHOOL"].nunique() == 4
    assert frame["IDSCHOOL"].tolist()[:4] == ["36-1", "36-1", "36-2", "40-1"]
    assert any("several countries" in n for n in more)


def test_merge_on_group_alone_and_unmatched_rows_are_reported(tmp_path):
    students = _students().drop(columns="IDCNTRY")
    school = pd.DataFrame({"IDSCHOOL": [1, 2], "s": [7.0, 8.0], "x": [0.0, 0.0]})
    path = tmp_path / "BCG.csv"
    school.to_csv(path, index=False)
    merged, notes = merge_files(students, [path], "IDSCHOOL")
    assert merged["s"].tolist()[:3] == [7.0, 7.0, 8.0] and pd.isna(merged["s"].iloc[5])
    assert merged["x_BCG"].tolist()[0] == 0.0 and merged["x"].tolist()[0] == 1.0
    assert any("1 of 6 rows have no match in BCG.csv" in n for n in notes)
    assert any("x_BCG" in n or "*_BCG" in n for n in notes)


def test_non_unique_key_is_a_data_error():
    school = pd.DataFrame({"IDCNTRY": [36, 36, 40], "IDSCHOOL": [1, 1, 1], "s": [1, 2, 3]})
    with pytest.raises(DataError, match=r"not unique on IDCNTRY \+ IDSCHOOL: 2 rows"):
        merge_files(_students(), [school], "IDSCHOOL")
    # unique once the country is part of the key
    school = pd.DataFrame({"IDCNTRY": [36, 40], "IDSCHOOL": [1, 1], "s": [1, 2]})
    merged, _ = merge_files(_students(), [school], "IDSCHOOL")
    assert merged["s"].tolist()[:2] == [1, 1]


def test_file_without_the_group_column_is_a_data_error():
    with pytest.raises(DataError, match="has no column 'IDSCHOOL'"):
        merge_files(_students(), [pd.DataFrame({"other": [1]})], "IDSCHOOL")
