"""Type inference and exclusion of unusable columns (SPEC 6.2), and the sample-loss warning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoglmm.data import read_data
from autoglmm.sample import build_sample
from autoglmm.screening import MAX_CATEGORIES, coerce_numeric_tokens


def _frame(n_groups=30, size=25, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=len(g))
    y = 2.0 * x + rng.normal(size=n_groups)[g] + rng.normal(size=len(g))
    return pd.DataFrame({"y": y, "g": g, "x": x, "z": rng.normal(size=len(g))})


def test_dot_token_column_from_csv_stays_numeric(tmp_path):
    df = _frame()
    text = df["x"].round(4).astype(str)
    text[[5, 17, 300]] = "."
    text[[40]] = "NA"
    df["x"] = text
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    read = read_data(path)
    assert not pd.api.types.is_numeric_dtype(read["x"])  # pandas reads "." as text
    sample = build_sample(read, "y", "g")
    assert "x" in sample.predictors and "x" not in sample.categorical
    assert sample.data["x"].dtype == float
    assert sample.n_obs == len(df) - 4
    (warning,) = [w for w in sample.report.warnings if "'x'" in w]
    assert "'.' x3" in warning


def test_text_categories_are_not_coerced():
    frame = pd.DataFrame({"c": ["a", "b", "1", "c"] * 10, "d": ["1", "2", "x", "y"] * 10})
    frame["year"] = ["95", "96", "97", "95"] * 10  # numbers as text on purpose: categories
    assert coerce_numeric_tokens(frame, ["c", "d", "year"]) == []
    assert not pd.api.types.is_numeric_dtype(frame["year"])
    assert not pd.api.types.is_numeric_dtype(frame["c"])
    assert not pd.api.types.is_numeric_dtype(frame["d"])


def test_rare_unknown_token_is_read_as_missing():
    values = [str(v) for v in range(100)]
    values[3] = "n.a."
    frame = pd.DataFrame({"x": values})
    (warning,) = coerce_numeric_tokens(frame, ["x"])
    assert np.isnan(frame["x"][3]) and frame["x"][4] == 4.0
    assert "'n.a.' x1" in warning


def test_candidate_with_more_than_50_categories_is_excluded():
    df = _frame()
    df["many"] = [f"level{k % (MAX_CATEGORIES + 1)}" for k in range(len(df))]
    df["few"] = [f"level{k % 3}" for k in range(len(df))]
    sample = build_sample(df, "y", "g")
    assert "many" not in sample.predictors and "few" in sample.categorical
    (excl,) = [e for e in sample.report.exclusions if e.column == "many"]
    assert excl.reason == "too_many_categories" and excl.value == MAX_CATEGORIES + 1


def test_categorical_delta_df_is_in_the_trace():
    from autoglmm.report.tables import trace_table
    from autoglmm.selection import search

    df = _frame()
    rng = np.random.default_rng(0)
    cat = rng.choice(["a", "b", "c", "d"], size=len(df))
    df["cat"] = cat
    df["y"] += np.select([cat == "b", cat == "c", cat == "d"], [1.0, -1.0, 0.5], 0.0)
    res = search(df, "y", "g", ranking=["cat", "x"], progress=False)
    step = res.steps[0]
    assert step.term == "cat" and step.status == "accepted" and step.test_df == 3
    table = trace_table(res)
    names = [c.name for c in table.columns]
    assert table.rows[0][names.index("Δdf")] == 3


def test_loss_of_rows_warns_loudly():
    df = _frame(n_groups=30, size=25)
    rng = np.random.default_rng(1)
    for k in range(10):  # 10 items, each 4% missing: about 1 - 0.96^10 = 34% rows lost
        col = rng.normal(size=len(df))
        col[rng.random(len(df)) < 0.04] = np.nan
        df[f"item{k}"] = col
    sample = build_sample(df, "y", "g")
    (warning,) = sample.report.warnings
    kept = sample.report.steps[3].rows_after
    assert kept < 0.8 * len(df)
    assert f"keep {kept:,} of {len(df):,} rows" in warning and "--impute" in warning


def test_loss_of_groups_warns_even_when_rows_survive():
    # 30 groups of 22: losing 3 rows in 10 groups costs 4.5% of rows but 33% of the groups
    # that pass min_group_size = 20.
    df = _frame(n_groups=30, size=22)
    df.loc[df["g"].isin(range(10)) & (df.index % 22 < 3), "z"] = np.nan
    sample = build_sample(df, "y", "g")
    (warning,) = sample.report.warnings
    assert "20 of the 30 groups" in warning


def test_no_warning_for_small_loss():
    df = _frame()
    df.loc[[1, 2, 3], "z"] = np.nan
    assert build_sample(df, "y", "g").report.warnings == ()


@pytest.mark.parametrize("token", ["-", ""])
def test_dash_and_blank_tokens(token):
    frame = pd.DataFrame({"x": ["1.5", token, "2", "3"] * 5})
    (warning,) = coerce_numeric_tokens(frame, ["x"])
    assert frame["x"].isna().sum() == 5 and frame["x"].sum() == pytest.approx(32.5)
    assert "read as missing" in warning
