"""read_data: every format round-trips values and labels; every bad file is a one-line DataError."""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from autoglmm.data import SUPPORTED_EXTENSIONS, Labels, read_data
from autoglmm.errors import DataError, UsageError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "school": [101, 101, 102, 102, 103],
            "math": [512.5, np.nan, 430.25, 601.0, 475.0],
            "likert": [1.0, 4.0, 2.0, 3.0, 1.0],
            "gender": ["girl", "boy", "girl", None, "boy"],
        }
    )


def _assert_one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_csv_round_trip(tmp_path, frame):
    path = tmp_path / "students.csv"
    frame.to_csv(path, index=False)
    df = read_data(path)
    pd.testing.assert_frame_equal(df, frame, check_dtype=False)
    assert df.attrs == {"variable_labels": {}, "value_labels": {}}


def test_parquet_round_trip_keeps_dtypes(tmp_path, frame):
    frame["gender"] = frame["gender"].astype("category")
    frame["passed"] = [True, False, True, True, False]
    path = tmp_path / "students.parquet"
    frame.to_parquet(path)
    df = read_data(str(path))
    pd.testing.assert_frame_equal(df, frame)
    assert isinstance(df["gender"].dtype, pd.CategoricalDtype)
    assert df.attrs["value_labels"] == {}


@pytest.mark.parametrize("ext", [".sav", ".zsav", ".SAV"])
def test_spss_round_trip_labels_and_user_missing(tmp_path, ext):
    df_in = pd.DataFrame(
        {
            "IDSCHOOL": [1.0, 1.0, 2.0, 2.0, 3.0, 3.0],
            "BSBM20A": [1.0, 9.0, 2.0, 4.0, 8.0, np.nan],  # 9 omitted, 8 not reached, NaN sysmis
            "BSDAGE": [14.2, 13.9, 99.0, 14.8, 15.1, 14.0],  # 99 in a missing range 98-99
            "ITSEX": ["F", "M", "", "F", "M", "F"],
        }
    )
    value_labels = {
        "BSBM20A": {1.0: "Agree a lot", 2.0: "Agree a little", 4.0: "Disagree a lot", 9.0: "Omit"}
    }
    variable_labels = {"BSBM20A": "GEN\\AGREE\\ENJOY MATH", "BSDAGE": "Age of student"}
    path = tmp_path / f"timss{ext}"
    pyreadstat.write_sav(
        df_in,
        path,
        column_labels=variable_labels,
        variable_value_labels=value_labels,
        missing_ranges={"BSBM20A": [8.0, 9.0], "BSDAGE": [{"lo": 98.0, "hi": 99.0}]},
        compress=ext == ".zsav",
    )
    df = read_data(path)
    np.testing.assert_array_equal(df["BSBM20A"], [1.0, np.nan, 2.0, 4.0, np.nan, np.nan])
    np.testing.assert_array_equal(df["BSDAGE"], [14.2, 13.9, np.nan, 14.8, 15.1, 14.0])
    assert df["ITSEX"].isna().tolist() == [False, False, True, False, False, False]
    assert df["ITSEX"].iloc[0] == "F"
    assert df.attrs["variable_labels"] == variable_labels
    assert df.attrs["value_labels"] == value_labels


def test_spss_dates_become_datetime(tmp_path):
    df_in = pd.DataFrame({"x": [1.0, 2.0], "d": [dt.date(2019, 3, 1), dt.date(2020, 5, 2)]})
    path = tmp_path / "dates.sav"
    pyreadstat.write_sav(df_in, path)
    df = read_data(path)
    assert pd.api.types.is_datetime64_any_dtype(df["d"])
    assert df["d"].iloc[1] == pd.Timestamp(2020, 5, 2)


def test_stata_round_trip_labels(tmp_path):
    df_in = pd.DataFrame(
        {"school": [1, 1, 2, 2], "ses": [0.5, np.nan, -1.25, 2.0], "books": [1, 3, 2, 3]}
    )
    value_labels = {"books": {1: "0-10", 2: "11-25", 3: "26-100"}}
    path = tmp_path / "pisa.dta"
    pyreadstat.write_dta(
        df_in,
        path,
        column_labels={"ses": "Socio-economic status"},
        variable_value_labels=value_labels,
    )
    df = read_data(path)
    np.testing.assert_array_equal(df["ses"], df_in["ses"])
    np.testing.assert_array_equal(df["books"], [1, 3, 2, 3])
    assert df.attrs["variable_labels"] == {"ses": "Socio-economic status"}
    assert df.attrs["value_labels"] == value_labels


def test_sas7bdat_fixture():
    # pyreadstat cannot write SAS files; the fixture was written once by haven::write_sas
    # (tests/fixtures/make_labelled_sas7bdat.R) with these exact values.
    df = read_data(FIXTURES / "labelled.sas7bdat")
    np.testing.assert_array_equal(df["school"], [1, 1, 2, 2, 3])
    np.testing.assert_array_equal(df["score"], [512.5, np.nan, 430.25, 601.0, 475.0])
    assert df["gender"].tolist()[:2] == ["girl", "boy"]
    assert df["gender"].isna().tolist() == [False, False, True, False, False]
    assert df.attrs["variable_labels"] == {"school": "School ID", "score": "Mathematics score"}


def test_labels_are_shared_read_only_and_picklable(tmp_path):
    df_in = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    path = tmp_path / "small.sav"
    pyreadstat.write_sav(
        df_in, path, column_labels={"a": "Item A"}, variable_value_labels={"a": {1.0: "yes"}}
    )
    df = read_data(path)
    labels = df.attrs["value_labels"]
    assert isinstance(labels, Labels) and isinstance(labels["a"], Labels)
    # pandas deep-copies attrs on each column access; the labels must be shared, not copied
    assert df["b"].attrs["value_labels"] is labels
    with pytest.raises(TypeError, match="read-only"):
        labels["a"][2.0] = "no"
    with pytest.raises(TypeError, match="read-only"):
        df.attrs["variable_labels"].update(b="Item B")
    back = pickle.loads(pickle.dumps(df))
    assert back.attrs == {"variable_labels": {"a": "Item A"}, "value_labels": {"a": {1.0: "yes"}}}
    assert json.loads(json.dumps(back.attrs["variable_labels"])) == {"a": "Item A"}


def test_dataframe_passes_through_as_a_copy(frame):
    frame.attrs["variable_labels"] = {"math": "Mathematics score"}
    df = read_data(frame)
    pd.testing.assert_frame_equal(df, frame)
    assert df.attrs == {"variable_labels": {"math": "Mathematics score"}}
    df.loc[0, "math"] = -1.0
    df.attrs["variable_labels"]["math"] = "changed"
    assert frame.loc[0, "math"] == 512.5
    assert frame.attrs["variable_labels"]["math"] == "Mathematics score"


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        read_data(tmp_path / "nope.sav")
    assert "nope.sav" in _assert_one_line(err)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match="directory"):
        read_data(tmp_path)


@pytest.mark.parametrize("name", ["scores.xlsx", "scores"])
def test_unsupported_format_lists_supported_ones(tmp_path, name):
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="unsupported data format") as err:
        read_data(path)
    message = _assert_one_line(err)
    for ext in SUPPORTED_EXTENSIONS:
        assert ext in message


@pytest.mark.parametrize("ext", [".sav", ".zsav", ".dta", ".sas7bdat", ".parquet"])
def test_corrupt_file_is_a_one_line_data_error(tmp_path, ext):
    path = tmp_path / f"broken{ext}"
    path.write_bytes(b"this is not a real data file\n" * 20)
    with pytest.raises(DataError, match=f"could not read broken\\{ext}") as err:
        read_data(path)
    assert SUPPORTED_EXTENSIONS[ext] in _assert_one_line(err)


def test_truncated_spss_file(tmp_path, frame):
    path = tmp_path / "cut.sav"
    pyreadstat.write_sav(frame.drop(columns="gender"), path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="could not read cut.sav as SPSS"):
        read_data(path)


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_data(path)


def test_csv_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,score\nJos\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_data(path)


def test_malformed_csv(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text('a,b\n1,2\n3,"unterminated\n')
    with pytest.raises(DataError, match="could not read ragged.csv as CSV") as err:
        read_data(path)
    _assert_one_line(err)


def test_wrong_source_type():
    with pytest.raises(UsageError, match="file path or a pandas DataFrame"):
        read_data([1, 2, 3])
