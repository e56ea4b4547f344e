"""Read a data file (or take a DataFrame) into a pandas DataFrame.

Large-scale assessment data (TIMSS, PISA, PIRLS) ships as SPSS files with hundreds of
labelled questionnaire items, so the SPSS reader keeps what the report needs and drops what
would mislead the model:

- user-missing codes ("omitted", "not administered", ...) become ``NaN``, exactly like
  system-missing values, so they are never fitted as real answers;
- variable labels go to ``df.attrs["variable_labels"]`` (column -> label) and value labels to
  ``df.attrs["value_labels"]`` (column -> {code: label}); the values stay numeric codes;
- dates become ``datetime64`` columns, and blank strings become missing.

The same metadata keys are filled for Stata (``.dta``) and SAS (``.sas7bdat``) files, and set
to empty dicts for CSV and Parquet files. The label dicts are read-only :class:`Labels`, so
pandas shares them between derived frames instead of deep-copying them on every operation.
Every failure is a one-line :class:`~autoglmm.errors.DataError` that names the file and the
fix.

Examples
--------
>>> df = read_data("timss_g8.sav")                      # doctest: +SKIP
>>> df.attrs["variable_labels"]["BSBM20A"]              # doctest: +SKIP
'GEN\\AGREE\\MATH\\ENJOY LEARNING MATHEMATICS'
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from autoglmm.errors import DataError, UsageError

__all__ = ["SUPPORTED_EXTENSIONS", "Labels", "read_data"]

#: File extensions :func:`read_data` understands, mapped to a human name of the format.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".csv": "CSV",
    ".parquet": "Parquet",
    ".sav": "SPSS",
    ".zsav": "SPSS (compressed)",
    ".dta": "Stata",
    ".sas7bdat": "SAS",
}


class Labels(dict):
    """A read-only dict of labels, shared (not copied) between derived frames.

    pandas deep-copies ``DataFrame.attrs`` on nearly every operation, including each column
    access; with the value labels of hundreds of SPSS items that costs milliseconds per
    ``df[col]``. An immutable mapping can be shared safely, so copying it is free. To change
    labels, assign a new dict: ``df.attrs["variable_labels"] = {**old, "x": "new label"}``.
    """

    def __deepcopy__(self, memo: dict) -> Labels:
        return self

    def __copy__(self) -> Labels:
        return self

    def __reduce__(self) -> tuple:
        return (type(self), (dict(self),))

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("labels are read-only; assign a new dict to df.attrs[...] instead")

    __setitem__ = __delitem__ = __ior__ = _read_only  # type: ignore[assignment]
    update = pop = popitem = clear = setdefault = _read_only  # type: ignore[assignment]


def read_data(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """Load a data set from a file path, or copy a DataFrame.

    Parameters
    ----------
    source : path or DataFrame
        A ``.csv``, ``.parquet``, ``.sav``/``.zsav``, ``.dta`` or ``.sas7bdat`` file (the
        extension decides the reader, case-insensitively), or a DataFrame, which is copied
        with its ``attrs`` so later steps never modify the caller's frame.

    Returns
    -------
    pandas.DataFrame
        The data. ``attrs["variable_labels"]`` and ``attrs["value_labels"]`` hold the file's
        labels (empty dicts for formats without them).

    Raises
    ------
    DataError
        The file does not exist, its format is not supported, or it cannot be parsed.
    UsageError
        ``source`` is neither a path nor a DataFrame.
    """
    if isinstance(source, pd.DataFrame):
        return source.copy()
    if not isinstance(source, str | os.PathLike):
        raise UsageError(
            f"data must be a file path or a pandas DataFrame, not {type(source).__name__}; "
            "pass a path such as 'students.sav' or a DataFrame"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data file not found: {path}; check the path and the working directory")
    if path.is_dir():
        raise DataError(f"data path is a directory, not a file: {path}; pass the data file itself")
    ext = path.suffix.lower()
    reader = _READERS.get(ext)
    if reader is None:
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        shown = f"'{ext}'" if ext else "no extension"
        raise DataError(
            f"unsupported data format ({shown}) for {path.name}; use one of {supported} "
            "(or export the data to CSV)"
        )
    try:
        return reader(path)
    except DataError:
        raise
    except Exception as exc:  # any parser failure becomes one line naming the file
        raise DataError(
            f"could not read {path.name} as {SUPPORTED_EXTENSIONS[ext]} ({ext}): "
            f"{_first_line(exc)}; check that the file is complete and really is {ext}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    """The first line of an exception message, shortened, so errors stay one line."""
    text = str(exc).strip().splitlines()
    line = text[0].rstrip(". ") if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"could not read {path.name}: it is not UTF-8 text ({exc.reason}); "
            "save the file as UTF-8 CSV"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path.name} is empty; export the data again") from exc
    df = _with_labels(df, {}, {})
    renamed = _renamed_duplicates(path, list(df.columns))
    if renamed:
        shown = ", ".join(f"'{old}' -> '{new}'" for new, old in renamed.items())
        warnings.warn(
            f"{path.name} repeats column name(s); pandas renamed them: {shown}. "
            "Rename the columns in the file to choose the names yourself",
            UserWarning,
            stacklevel=3,
        )
        df.attrs["renamed_columns"] = Labels(renamed)
    return df


def _renamed_duplicates(path: Path, columns: list) -> dict[str, str]:
    """``{new name: name in the file}`` for header names pandas de-duplicated (``ses.1``)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    if len(header) != len(columns) or len(set(header)) == len(header):
        return {}
    return {str(new): old for new, old in zip(columns, header, strict=True) if str(new) != old}


def _read_parquet(path: Path) -> pd.DataFrame:
    return _with_labels(pd.read_parquet(path), {}, {})


def _read_statistical(path: Path) -> pd.DataFrame:
    """SPSS, Stata and SAS through pyreadstat: user-missing codes as NaN, labels as attrs."""
    import pyreadstat  # imported here: it is only needed for these formats

    ext = path.suffix.lower()
    if ext in (".sav", ".zsav"):
        df, meta = pyreadstat.read_sav(path, user_missing=False, dates_as_pandas_datetime=True)
    elif ext == ".dta":
        df, meta = pyreadstat.read_dta(path, user_missing=False, dates_as_pandas_datetime=True)
    else:
        df, meta = pyreadstat.read_sas7bdat(path, dates_as_pandas_datetime=True)
    _blank_strings_to_missing(df)
    variable_labels = {
        col: label for col, label in (meta.column_names_to_labels or {}).items() if label
    }
    value_labels = {
        col: dict(labels) for col, labels in (meta.variable_value_labels or {}).items() if labels
    }
    return _with_labels(df, variable_labels, value_labels)


def _blank_strings_to_missing(df: pd.DataFrame) -> None:
    """SPSS/Stata/SAS have no missing string: an empty (or all-blank) string means missing."""
    for col in df.columns:
        series = df[col]
        if series.dtype != object and not pd.api.types.is_string_dtype(series.dtype):
            continue
        try:
            blank = series.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
        except AttributeError:  # an object column without strings (e.g. times)
            continue
        if blank.any():
            df[col] = series.mask(blank, np.nan)


def _with_labels(
    df: pd.DataFrame, variable_labels: dict[str, str], value_labels: dict[str, dict]
) -> pd.DataFrame:
    df.attrs["variable_labels"] = Labels(variable_labels)
    df.attrs["value_labels"] = Labels({col: Labels(v) for col, v in value_labels.items()})
    return df


_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".sav": _read_statistical,
    ".zsav": _read_statistical,
    ".dta": _read_statistical,
    ".sas7bdat": _read_statistical,
}
