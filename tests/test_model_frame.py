"""Model frame: complete cases, factor coding as R, rank deficiency as lme4, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoglmm.errors import DataError, UsageError
from autoglmm.formula import parse_formula
from autoglmm.model_frame import build_model_frame, independent_columns

REFERENCE_DIR = Path(__file__).parent / "reference"


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


def _r_name(name: str) -> str:
    """Our 'cat[T.b]' / 'cat[b]' -> R's 'catb', part by part of an interaction."""
    return ":".join(re.sub(r"\[(?:T\.)?([^\]]*)\]$", r"\1", p) for p in name.split(":"))


@pytest.fixture(scope="module")
def r_matrices():
    ref = json.loads((REFERENCE_DIR / "syntax_reference.json").read_text(encoding="utf-8"))
    return ref["model_matrix"]["matrices"]


MODEL_MATRIX_CASES = [
    "~ x1 + cat",
    "~ 0 + cat",
    "~ 0 + x1 + cat",
    "~ cat:x1",
    "~ cat*f2",
    "~ cat:f2",
    "~ x1*x2 + I(x1^2) + log(x2 + 5)",
    "~ factor(k) + poly(x1, 2)",
    '~ scale(x2) + relevel(cat, ref = "b")',
    "~ (x1 + x2 + cat)^2",
    "~ x1 %in% cat",
    "~ flag + I(x1 > 0)",
    "~ poly(x1, 3, raw = TRUE) - 1",
    "~ log(x2 + 5, base = 2) + exp(x1/3) + sqrt(abs(x1)) + I(k %% 3) + I(k %/% 3)",
    "~ factor(k, levels = c(10, 1, 2, 3)) + scale(x1, scale = FALSE)",
    "~ x2 + x2:x1 + f2/x1",
]


@pytest.mark.parametrize("rhs", MODEL_MATRIX_CASES)
def test_fixed_part_is_rs_model_matrix(r_matrices, rhs):
    """Columns, their order, names and values as R's model.matrix (tests/reference)."""
    small = pd.read_csv(REFERENCE_DIR / "small.csv")
    small["y"], small["g"] = 0.0, np.arange(24) % 3
    fr = _frame(f"y {rhs} + (1 | g)", small)
    ref = r_matrices[rhs]
    X = np.empty((24, fr.design.p))
    X[fr.order] = fr.design.X
    R = np.column_stack(ref["columns"])
    ours = [_r_name(n) for n in fr.design.x_names]
    dropped = [_r_name(n) for n in fr.dropped_columns]  # rank deficiency, as lme4 drops
    assert ours == [n for n in ref["names"] if n not in dropped]
    assert dropped == (["catc:f2lo"] if rhs == "~ cat:f2" else [])
    np.testing.assert_allclose(X, R[:, [ref["names"].index(n) for n in ours]], atol=1e-12)


def test_offset_fills_the_design_offset(df):
    df["n"] = np.linspace(1, 5, 60)
    fr = _frame("y ~ x1 + offset(log(n)) + offset(x2) + (1 | g)", df)
    expected = np.log(df["n"]) + df["x2"]
    np.testing.assert_allclose(fr.design.offset, expected.to_numpy()[fr.order])
    assert fr.design.x_names == ("(Intercept)", "x1")
    assert not _frame("y ~ x1 + (1 | g)", df).design.offset.any()


def test_cbind_gives_proportions_with_trial_weights(df):
    df["s"] = np.arange(60) % 4
    df["f"] = np.arange(60) % 3
    df["w"] = 2.0
    fr = _frame("cbind(s, f) ~ x1 + (1 | g)", df, family="binomial", weights="w")
    n = (df["s"] + df["f"]).to_numpy()[fr.order]
    with np.errstate(invalid="ignore"):
        expected = np.where(n == 0, 0.0, df["s"].to_numpy()[fr.order] / n)
    np.testing.assert_allclose(fr.design.y, expected)
    np.testing.assert_allclose(fr.design.weights, 2.0 * n)
    with pytest.raises(UsageError, match="family='binomial'"):
        _frame("cbind(s, f) ~ x1 + (1 | g)", df)


def test_missing_values_of_evaluated_variables_drop_rows(df):
    df.loc[[1, 2], "x2"] = -6.0  # log(x2 + 5) is NaN there, as in R
    fr = _frame("y ~ log(x2 + 5) + (1 | g)", df)
    assert fr.n_dropped_rows == 2
    with pytest.raises(DataError, match="infinite"):
        _frame("y ~ log(x2 + 6) + (1 | g)", df)  # log(0)


def test_unused_factor_levels_are_dropped_after_missing_rows(df):
    df.loc[df["cat"] == "a", "x1"] = np.nan
    fr = _frame("y ~ x1 + cat + (1 | g)", df)
    assert fr.design.x_names == ("(Intercept)", "x1", "cat[T.c]")


FUNCTION_NAMES = ["Treatment", "center", "scale", "log", "C", "Q", "lag", "Sum", "Poly",
                  "Helmert", "I", "factor", "offset", "poly", "np", "T", "F", "pi"]  # fmt: skip


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_columns_named_like_functions_are_the_columns(df, name):
    df[name] = df["x1"] * 3 + 1
    fr = _frame(f"y ~ {name} + I({name}^2) + (1 | g)", df)
    X = fr.design.X
    np.testing.assert_allclose(X[:, 1], df[name].to_numpy()[fr.order])
    np.testing.assert_allclose(X[:, 2], df[name].to_numpy()[fr.order] ** 2)
    df[name] = df["cat"]  # a categorical column: C(name) is that factor, never dropped
    fr = _frame(f"y ~ C({name}) + (1 | g)", df)
    assert fr.design.x_names == ("(Intercept)", f"C({name})[T.b]", f"C({name})[T.c]")


def test_power_in_I_is_a_power_on_int_and_float(df):
    df["k"] = np.tile([3, 1, 2, 10], 15)
    fr = _frame("y ~ I(k^2) + I(x2**3) + (1 | g)", df)
    np.testing.assert_array_equal(fr.design.X[:, 1], (df["k"] ** 2).to_numpy()[fr.order])
    np.testing.assert_allclose(fr.design.X[:, 2], (df["x2"] ** 3).to_numpy()[fr.order])


@pytest.mark.parametrize(
    ("formula", "hint"),
    [
        ("y ~ X1 + (1 | g)", "did you mean x1?"),
        ("y ~ x1 + school.id + (1 | g)", "did you mean `school id`?"),  # R's make.names
        ("y ~ x1 + (1 | school_ID)", "did you mean `school id`?"),
        ("y ~ zzz + (1 | g)", "unknown column(s) zzz (check"),
    ],
)
def test_unknown_column_error_suggests_the_column(df, formula, hint):
    df["school id"] = df["g"]
    with pytest.raises(DataError) as info:
        _frame(formula, df)
    assert hint in str(info.value)


def test_duplicated_column_names_are_an_error_naming_the_fix(df):
    dup = pd.concat([df, df[["x1"]]], axis=1)
    with pytest.raises(DataError, match="'x1' appears 2 times"):
        _frame("y ~ x1 + (1 | g)", dup)


@pytest.mark.parametrize(
    ("formula", "error", "needle"),
    [
        ("y ~ center(x1) + (1 | g)", UsageError, "unknown function center"),
        ("y ~ I(cat^2) + (1 | g)", DataError, "categorical"),
        ("y ~ C(cat, Sum) + (1 | g)", UsageError, "treatment contrasts"),
        ('y ~ relevel(cat, ref = "z") + (1 | g)', DataError, "reference level 'z'"),
        ("y ~ x1 + (1 + offset(x2) | g)", UsageError, "fixed part"),
        ("y ~ nope + other + (1 | `no pe`)", DataError, "nope, other, no pe"),
        ("y ~ 3 + (1 | g)", UsageError, "not a model term"),
        ("y ~ . + (1 | g)", UsageError, "list the predictors"),
        ("y ~ x1 + (1 | g:cat)", UsageError, "nested"),
    ],
)
def test_bad_syntax_is_one_line_naming_the_fix(df, formula, error, needle):
    with pytest.raises(error, match=needle) as info:
        _frame(formula, df)
    assert "\n" not in str(info.value)


_NAME_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters="`\\"
)
_NAMES = st.one_of(
    st.text(_NAME_CHARS, min_size=1, max_size=12),
    st.sampled_from(FUNCTION_NAMES + ["if", "TRUE", "x y", "x|y", "~", "1st", "x-y", "it's",
                                      "学校", "école", "a:b", "(x)", "a`b", "a\\b"]),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(_NAMES, min_size=3, max_size=3, unique=True))
def test_any_column_name_is_the_column(names):
    """Random names (unicode, spaces, keywords, function names): the fit uses the column."""
    from autoglmm.formula_syntax import quote_name

    y, x, g = names
    rng = np.random.default_rng(3)
    data = pd.DataFrame({y: rng.normal(size=30), x: rng.normal(size=30), g: np.arange(30) % 3})
    fr = _frame(f"{quote_name(y)} ~ {quote_name(x)} + ({quote_name(x)} | {quote_name(g)})", data)
    np.testing.assert_array_equal(fr.design.X[:, 1], data[x].to_numpy()[fr.order])
    np.testing.assert_array_equal(fr.design.Z[:, 1], data[x].to_numpy()[fr.order])
    np.testing.assert_array_equal(fr.design.y, data[y].to_numpy()[fr.order])
    assert fr.design.x_names == ("(Intercept)", x) and fr.group_name == g
    assert fr.design.m == 3


@settings(max_examples=25, deadline=None)
@given(names=st.lists(_NAMES, min_size=3, max_size=3, unique=True))
def test_fit_with_any_names_equals_the_fit_with_plain_names(names):
    """The fit itself, not just the design: same likelihood and estimates as plain names."""
    import autoglmm
    from autoglmm.formula_syntax import quote_name

    y, x, g = names
    rng = np.random.default_rng(4)
    plain = pd.DataFrame({"y": rng.normal(size=40), "x": rng.normal(size=40)})
    plain["g"] = np.arange(40) % 4
    plain["y"] += plain["x"] + plain["g"]
    ref = autoglmm.fit("y ~ x + (1 | g)", plain)
    odd = plain.rename(columns={"y": y, "x": x, "g": g})
    m = autoglmm.fit(f"{quote_name(y)} ~ {quote_name(x)} + (1 | {quote_name(g)})", odd)
    assert m.loglik == pytest.approx(ref.loglik, abs=1e-9)
    assert m.fixef[x] == pytest.approx(ref.fixef["x"], rel=1e-9)
    assert m.group == g and m.response == y


def test_centering_with_r_summaries(df):
    df.loc[3, "x1"] = np.nan
    fr = _frame("y ~ I(x1 - mean(x1, na.rm = TRUE)) + I(x2 / sd(x2)) + (1 | g)", df)
    x1, x2 = df["x1"].to_numpy(), df["x2"].to_numpy()
    X = np.empty_like(fr.design.X)
    X[fr.order] = fr.design.X
    np.testing.assert_allclose(X[:, 1], np.delete(x1 - np.nanmean(x1), 3))
    np.testing.assert_allclose(X[:, 2], np.delete(x2 / np.std(x2, ddof=1), 3))


class _CopyCounter:
    """An ``attrs`` entry that counts how often pandas deep-copies it."""

    copies = 0

    def __deepcopy__(self, memo):
        type(self).copies += 1
        return self


def test_model_frame_does_not_deep_copy_attrs_per_column():
    # pandas deep-copies DataFrame.attrs on every column access: with hundreds of labels in a
    # plain dict that cost more than the fit, so the model frame reads a frame without them
    rng = np.random.default_rng(0)
    data = pd.DataFrame({f"x{k}": rng.normal(size=60) for k in range(8)})
    data["y"] = rng.normal(size=60)
    data["g"] = np.repeat(np.arange(12), 5)
    probe = _CopyCounter()
    data.attrs["labels"] = probe
    _CopyCounter.copies = 0
    formula = "y ~ " + " + ".join(f"x{k}" for k in range(8)) + " + (1 | g)"
    frame = build_model_frame(parse_formula(formula), data)
    assert frame.design.X.shape == (60, 9)
    assert _CopyCounter.copies <= 1
    assert data.attrs["labels"] is probe


def test_layouts_and_group_codes_of_sorted_and_unsorted_rows():
    """Gaussian designs keep the column-major matrices the frame builds (the LMM reduces
    them to cross-products once); GLMM designs get row-major ones. Integer group ids that
    are already sorted are coded without hashing, as pd.factorize(sort=True) codes them."""
    rng = np.random.default_rng(5)
    g = np.repeat([3, 7, 8, 20, 21], 6)
    data = pd.DataFrame({"y": rng.integers(0, 2, 30).astype(float), "x": rng.normal(size=30),
                         "g": g})  # fmt: skip
    lmm = build_model_frame(parse_formula("y ~ x + (x | g)"), data).design
    glmm = build_model_frame(parse_formula("y ~ x + (x | g)"), data, family="binomial").design
    assert lmm.X.flags.f_contiguous and glmm.X.flags.c_contiguous and glmm.Z.flags.c_contiguous
    np.testing.assert_array_equal(lmm.X, glmm.X)
    np.testing.assert_array_equal(lmm.X[:, 1], data["x"].to_numpy())
    np.testing.assert_allclose(lmm.xtx, lmm.X.T @ lmm.X)
    np.testing.assert_array_equal(lmm.group, pd.factorize(g, sort=True)[0])
    assert lmm.group_levels == (3, 7, 8, 20, 21)
    shuffled = data.sample(frac=1.0, random_state=1)
    frame = build_model_frame(parse_formula("y ~ x + (x | g)"), shuffled)
    np.testing.assert_array_equal(frame.design.group, lmm.group)
    np.testing.assert_array_equal(frame.design.y, shuffled["y"].to_numpy()[frame.order])
