"""Join a school (or other level-2) file onto the student file by their shared keys.

TIMSS ships the student questionnaire (BSG) and the school questionnaire (BCG) as separate
files; PISA ships a student and a school file. The school file has one row per school,
identified by the school ID *within a country* (IDSCHOOL repeats across countries), so the
key is the group column plus the country column when both files have it (``IDCNTRY`` in
TIMSS, ``CNT``/``CNTRYID`` in PISA). A key that is not unique in the merged file is a data
error, never a silent row multiplication.

Examples
--------
>>> students, notes = merge_files(bsg, [bcg], "IDSCHOOL")          # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from autoglmm.data import Labels
from autoglmm.errors import DataError

__all__ = ["COUNTRY_KEYS", "composite_group", "merge_files"]

#: Country columns added to the key when both files have them.
COUNTRY_KEYS = ("IDCNTRY", "CNT", "CNTRYID")


def merge_files(
    data: pd.DataFrame,
    others: Sequence[pd.DataFrame | str | os.PathLike],
    group: str,
) -> tuple[pd.DataFrame, list[str]]:
    """Left-join each of ``others`` onto ``data`` by the group (and country) key.

    Returns the merged frame (labels of both files kept) and warnings: unmatched rows and
    columns present in both files (the other file's copy gets the suffix ``_<file stem>``).
    """
    from autoglmm.data import read_data

    notes: list[str] = []
    for k, other in enumerate(others):
        name = Path(other).name if isinstance(other, str | os.PathLike) else f"merge{k + 1}"
        frame = read_data(other)
        data, more = _merge_one(data, frame, group, name)
        notes += more
    return data, notes


def _merge_one(
    data: pd.DataFrame, other: pd.DataFrame, group: str, name: str
) -> tuple[pd.DataFrame, list[str]]:
    if group not in other.columns:
        raise DataError(
            f"{name} has no column '{group}' (the group), so it cannot be merged; merge a "
            "file with one row per group that has the group column"
        )
    keys = [c for c in COUNTRY_KEYS if c in data.columns and c in other.columns] + [group]
    _check_unique(other, keys, name)
    left, right = _aligned_keys(data, other, keys)
    stem = Path(name).stem
    merged = left.merge(right, on=keys, how="left", suffixes=("", f"_{stem}"), indicator=True)
    notes = []
    unmatched = int((merged["_merge"] == "left_only").sum())
    if unmatched:
        notes.append(
            f"{unmatched:,} of {len(merged):,} rows have no match in {name} on "
            f"{' + '.join(keys)}; their {name} columns are missing"
        )
    shared = [c for c in other.columns if c in data.columns and c not in keys]
    if shared:
        notes.append(
            f"{len(shared)} columns of {name} are also in the data ({', '.join(shared[:5])}"
            f"{', ...' if len(shared) > 5 else ''}); {name}'s copies are named *_{stem}"
        )
    merged = merged.drop(columns="_merge")
    merged.index = data.index
    merged.attrs = _merged_labels(data, other, {f"{c}_{stem}": c for c in shared})
    return merged, notes


def _check_unique(other: pd.DataFrame, keys: list[str], name: str) -> None:
    dup = other.duplicated(subset=keys, keep=False)
    if dup.any():
        first = other.loc[dup, keys].iloc[0].to_dict()
        shown = ", ".join(f"{k}={v!r}" for k, v in first.items())
        raise DataError(
            f"{name} is not unique on {' + '.join(keys)}: {int(dup.sum())} rows share a key "
            f"(e.g. {shown}); a merged file needs one row per key, remove the duplicates"
        )


def _aligned_keys(data: pd.DataFrame, other: pd.DataFrame, keys: list[str]):
    """Copies whose key columns have one dtype (SPSS reads 17 as 17.0, CSV as 17)."""
    left, right = data.copy(deep=False), other.copy(deep=False)
    left.attrs, right.attrs = {}, {}
    for key in keys:
        a, b = left[key], right[key]
        if a.dtype == b.dtype:
            continue
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            left[key], right[key] = a.astype(float), b.astype(float)
        else:
            left[key], right[key] = a.astype(str), b.astype(str)
    return left, right


def _merged_labels(data: pd.DataFrame, other: pd.DataFrame, renamed: dict) -> dict:
    out = {}
    for key in ("variable_labels", "value_labels"):
        mine = dict(data.attrs.get(key) or {})
        theirs = dict(other.attrs.get(key) or {})
        theirs.update({new: theirs[old] for new, old in renamed.items() if old in theirs})
        out[key] = Labels({**theirs, **mine})
    if data.attrs.get("renamed_columns"):
        out["renamed_columns"] = data.attrs["renamed_columns"]
    return out


def composite_group(data: pd.DataFrame, group: str) -> tuple[pd.DataFrame, list[str]]:
    """Make the group unique across countries when the same ID occurs in several countries.

    TIMSS numbers schools within each country, so school 5 of country 36 and school 5 of
    country 40 are different schools. When a country column is present and some group ID
    occurs in more than one country, the group becomes "country-group" (a string).
    """
    country = next((c for c in COUNTRY_KEYS if c in data.columns and c != group), None)
    if country is None:
        return data, []
    pairs = data[[country, group]].dropna().drop_duplicates()
    n_countries = pairs.groupby(group)[country].nunique()
    repeated = int((n_countries > 1).sum())
    if not repeated:
        return data, []
    out = data.copy(deep=False)
    both = data[country].notna() & data[group].notna()
    combined = data[country].map(_plain).astype(str) + "-" + data[group].map(_plain).astype(str)
    out[group] = combined.where(both, None)
    note = (
        f"{repeated} values of '{group}' occur in several countries ('{country}'), so the "
        f"groups are '{country}-{group}' pairs"
    )
    return out, [note]


def _plain(value: object) -> object:
    """17.0 -> 17 so composite labels read as the IDs do."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
