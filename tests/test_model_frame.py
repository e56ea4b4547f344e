"""Model frame: complete cases, factor coding as R, rank deficiency as lme4, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoglmm.errors import DataError, UsageError
from autoglmm.formula import parse_formula
from autoglmm.model_frame import build_model_frame, independent_columns


@pytest.fixture
def df():
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "cat": rng.choice(["b", "c", "a"], size=n),
            "g": np.repeat(["s2", "s10", "s1"], 20),
        }
    )


def _frame(formula, data, **kw):
    return build_model_frame(parse_formula(formula), data, **kw)


def test_treatment_coding_uses_sorted_levels_with_first_as_reference(df):
    fr = _frame("y ~ x1 + cat + (1 | g)", df)
    assert fr.design.x_names == ("(Intercept)", "x1", "cat[T.b]", "cat[T.c]")
    # group levels sorted as R's factor() sorts strings
    assert fr.design.group_levels == ("s1", "s10", "s2")


def test_categorical_dtype_keeps_its_level_order(df):
    df["cat"] = pd.Categorical(df["cat"], categories=["c", "a", "b"])
    fr = _frame("y ~ C(cat) + (1 | g)", df)
    assert fr.design.x_names == ("(Intercept)", "C(cat)[T.a]", "C(cat)[T.b]")


def test_rows_with_missing_values_in_used_columns_are_dropped(df):
    df.loc[[3, 7], "x1"] = np.nan
    df.loc[5, "x2"] = np.nan  # x2 is not used: the row stays
    fr = _frame("y ~ x1 + (1 | g)", df)
    assert fr.design.n == 58 and fr.n_dropped_rows == 2
    assert list(fr.row_index) == [i for i in range(60) if i not in (3, 7)]
    assert any("2 row(s) with missing values" in m for m in fr.messages)


def test_design_rows_map_back_to_input_rows(df):
    fr = _frame("y ~ x1 + (1 | g)", df)
    np.testing.assert_array_equal(fr.design.y, df["y"].to_numpy()[fr.order])


def test_rank_deficient_column_is_dropped_and_named(df):
    df["x3"] = df["x1"] + 2 * df["x2"]
    fr = _frame("y ~ x1 + x2 + x3 + (1 | g)", df)
    assert fr.dropped_columns == ("x3",)
    assert fr.design.x_names == ("(Intercept)", "x1", "x2")
    assert any("rank deficient" in m and "x3" in m for m in fr.messages)


def test_independent_columns_keeps_earlier_of_collinear_pair():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50)
    X = np.column_stack([np.ones(50), a, 3 * a, b, np.zeros(50), a - b + 1e-12])
    np.testing.assert_array_equal(independent_columns(X), [1, 1, 0, 1, 0, 0])


def test_random_terms_build_blocks_and_names(df):
    fr = _frame("y ~ x1 + (1 | g) + (0 + x1 | g)", df)
    assert fr.design.re_blocks == (1, 1)
    assert fr.design.z_names == ("(Intercept)", "x1")
    fr = _frame("y ~ x1 + (x1 + x2 | g)", df)
    assert fr.design.re_blocks == (3,)


def test_binomial_two_level_string_response_is_coded_second_level_one(df):
    df["pass"] = np.where(df["y"] > 0, "yes", "no")
    fr = _frame("pass ~ x1 + (1 | g)", df, family="binomial")
    np.testing.assert_array_equal(fr.design.y, (df["y"] > 0).to_numpy(dtype=float)[fr.order])


def test_row_hash_identifies_rows_and_response(df):
    a = _frame("y ~ x1 + (1 | g)", df)
    b = _frame("y ~ x1 + x2 + (1 | g)", df)
    assert a.row_hash == b.row_hash
    df.loc[0, "x2"] = np.nan
    c = _frame("y ~ x1 + x2 + (1 | g)", df)
    assert c.row_hash != a.row_hash


def test_weights_by_column_and_array(df):
    df["w"] = np.linspace(1, 2, 60)
    a = _frame("y ~ x1 + (1 | g)", df, weights="w")
    b = _frame("y ~ x1 + (1 | g)", df, weights=df["w"].to_numpy())
    np.testing.assert_array_equal(a.design.weights, b.design.weights)
    np.testing.assert_array_equal(a.design.weights, df["w"].to_numpy()[a.order])


@pytest.mark.parametrize(
    ("formula", "error", "needle"),
    [
        ("y ~ nope + (1 | g)", DataError, "unknown column"),
        ("y ~ x1 + (1 | nope)", DataError, "unknown column"),
        ("y ~ x1 + (1 | g) + (1 | g)", UsageError, "repeat"),
        ("cat ~ x1 + (1 | g)", DataError, "not numeric"),
    ],
)
def test_bad_input(df, formula, error, needle):
    with pytest.raises(error, match=needle):
        _frame(formula, df)


def test_single_group_and_infinite_values_are_data_errors(df):
    with pytest.raises(DataError, match="at least 2 groups"):
        _frame("y ~ x1 + (1 | g)", df.assign(g="one"))
    df.loc[4, "x1"] = np.inf
    with pytest.raises(DataError, match="infinite"):
        _frame("y ~ x1 + (1 | g)", df)
    with pytest.raises(DataError, match="weights"):
        _frame("y ~ x2 + (1 | g)", df, weights=np.full(60, -1.0))


@pytest.mark.parametrize(
    "expr",
    [
        "1 + x1 + x2",
        "0 + x1",
        "1 + x2 + x1:x2 + x1",  # interactions after main effects, as formulaic orders them
        "x2:x1 + x1",
        "1 + x1 + C(cat) + x2",
        "cat + x1",
        "C(num_code) + C(float_code)",
        "1 + `x y` + x1:`x y`",
    ],
)
def test_numpy_fast_path_equals_formulaic(df, expr):
    from autoglmm.model_frame import _Columns, _formulaic_matrix, _numpy_matrix

    df["num_code"] = np.tile([3, 1, 2, 10], 15)
    df["float_code"] = np.tile([1.5, 2.0, 0.5], 20)
    df["x y"] = df["x1"] * 2 + 1
    df.loc[5, "x1"] = np.nan
    cols = _Columns(df)
    cols.mask = df.notna().all(axis=1).to_numpy()
    cols.used = list(df.columns)
    fast = _numpy_matrix(expr, cols)
    assert fast is not None
    slow = _formulaic_matrix(expr, cols)
    assert fast[1] == slow[1]
    np.testing.assert_array_equal(fast[0], slow[0])


@pytest.mark.parametrize(
    "expr", ["I(x1**2)", "C(cat):x1", "x1*x2", "np.log(x2 + 5)", "0 + C(cat)", "0 + x1 + cat"]
)
def test_other_terms_go_to_formulaic(df, expr):
    from autoglmm.model_frame import _Columns, _numpy_matrix

    assert _numpy_matrix(expr, _Columns(df)) is None
