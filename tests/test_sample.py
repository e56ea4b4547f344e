"""build_sample on hand-made frames whose every count is known, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from autoglmm.errors import DataError, UsageError
from autoglmm.sample import AnalysisSample, build_sample, validate_outcome

ALL = [
    "x_num",
    "x_sparse",
    "x_const",
    "x_allnan",
    "x_str",
    "x_cat",
    "x_bool",
    "x_l2",
    "x_l2str",
    "x_date",
    "x_likert",
    "x_onlyC",
    "x_notl2",
]


@pytest.fixture
def frame() -> pd.DataFrame:
    """70 rows. Rows 0-1: group A, outcome missing. Rows 2-24 A, 25-49 B, 50-61 C.
    Rows 62-65: group missing. Rows 66-69: group D, outcome missing. So 60 analysis rows
    (2-61) in 3 groups; x_num is missing in rows 30 (B) and 55 (C), so complete cases
    leave A 23, B 24, C 11 rows."""
    rng = np.random.default_rng(7)
    n = 70
    g = np.array(["A"] * 25 + ["B"] * 25 + ["C"] * 12 + [None] * 4 + ["D"] * 4, dtype=object)
    y = rng.normal(size=n)
    y[[0, 1, 66, 67, 68, 69]] = np.nan
    x_num = rng.normal(size=n)
    x_num[[30, 55]] = np.nan
    x_sparse = rng.normal(size=n)
    x_sparse[2:20] = np.nan  # 18 of the 60 analysis rows: 30 %
    x_sparse[62:70] = np.nan  # outside the analysis rows: must not count
    school_value = {"A": 1.5, "B": 2.5, "C": 3.5, "D": 9.0, None: 4.5}
    x_onlyc = np.zeros(n)
    x_onlyc[52] = 1.0
    x_notl2 = np.array([school_value[v] for v in g])
    x_notl2[3] = 0.0
    return pd.DataFrame(
        {
            "y": y,
            "school": g,
            "x_num": x_num,
            "x_sparse": x_sparse,
            "x_const": 7.0,
            "x_allnan": np.nan,
            "x_str": pd.Series(rng.choice(["a", "b", "c"], size=n), dtype="str"),
            "x_cat": pd.Categorical(
                rng.choice(["lo", "hi"], size=n), categories=["lo", "hi", "zzz"]
            ),
            "x_bool": rng.random(n) < 0.5,
            "x_l2": [school_value[v] for v in g],
            "x_l2str": pd.Series(
                ["public" if v in ("A", "C") else "private" for v in g], dtype="str"
            ),
            "x_date": pd.date_range("2020-01-01", periods=n, freq="D"),
            "x_likert": rng.integers(1, 5, size=n),
            "x_onlyC": x_onlyc,
            "x_notl2": x_notl2,
        }
    )


@pytest.fixture
def sample(frame) -> AnalysisSample:
    return build_sample(frame, "y", "school", min_group_size=12)


def test_steps_count_rows_and_groups(sample):
    steps = {s.name: s for s in sample.report.steps}
    assert [s.name for s in sample.report.steps] == [
        "input",
        "missing_outcome_or_group",
        "exclude_predictors",
        "complete_cases",
        "min_group_size",
    ]
    counts = {
        name: (s.rows_before, s.rows_after, s.groups_before, s.groups_after)
        for name, s in steps.items()
    }
    assert counts == {
        "input": (70, 70, 4, 4),
        "missing_outcome_or_group": (70, 60, 4, 3),
        "exclude_predictors": (60, 60, 3, 3),
        "complete_cases": (60, 58, 3, 3),
        "min_group_size": (58, 47, 3, 2),
    }
    assert steps["missing_outcome_or_group"].detail == "6 missing outcome, 4 missing group"
    assert sample.report.n_obs == 47 == len(sample.data)
    assert sample.report.n_groups == 2
    assert sample.report.dropped_groups == (("C", 11),)


def test_each_exclusion_has_its_reason_and_number(sample):
    got = {e.column: (e.reason, e.value) for e in sample.report.exclusions}
    assert got == {
        "x_sparse": ("missing", pytest.approx(0.3)),
        "x_const": ("constant", 1),
        "x_allnan": ("missing", 1.0),
        "x_date": ("unsupported_type", None),
        "x_onlyC": ("constant_after_filtering", 1),
    }
    sparse = next(e for e in sample.report.exclusions if e.column == "x_sparse")
    assert sparse.detail == "30.0% missing (18 of 60 rows) > max_missing 20%"


def test_kept_rows_columns_and_index(sample, frame):
    kept = list(range(2, 25)) + [i for i in range(25, 50) if i != 30]
    assert sample.data.index.tolist() == kept
    assert sample.predictors == (
        "x_num",
        "x_str",
        "x_cat",
        "x_bool",
        "x_l2",
        "x_l2str",
        "x_likert",
        "x_notl2",
    )
    assert list(sample.data.columns) == ["y", "school", *sample.predictors]
    pd.testing.assert_series_equal(sample.data["x_num"], frame.loc[kept, "x_num"])
    assert sample.data.attrs == {}


def test_categorical_detection(sample):
    # strings, pandas categoricals and bools; numeric Likert codes stay numeric
    assert sample.categorical == ("x_str", "x_cat", "x_bool", "x_l2str")
    assert "x_likert" not in sample.categorical


def test_unused_categories_are_removed(sample, frame):
    assert "zzz" in frame["x_cat"].cat.categories
    assert list(sample.data["x_cat"].cat.categories) == ["lo", "hi"]


def test_level2_detection(sample):
    # x_notl2 differs in one row of school A; x_const/x_onlyC were excluded before
    assert sample.level2 == ("x_l2", "x_l2str")


def test_predictor_order_does_not_change_the_sample(frame):
    forward = build_sample(frame, "y", "school", predictors=ALL, min_group_size=12)
    order = np.random.default_rng(3).permutation(len(ALL))
    shuffled = build_sample(
        frame, "y", "school", predictors=[ALL[i] for i in order], min_group_size=12
    )
    backward = build_sample(frame, "y", "school", predictors=ALL[::-1], min_group_size=12)
    default = build_sample(frame, "y", "school", min_group_size=12)
    for other in (shuffled, backward, default):
        pd.testing.assert_frame_equal(other.data, forward.data)
        assert other.predictors == forward.predictors
        assert other.categorical == forward.categorical
        assert other.level2 == forward.level2
        assert other.report.to_dict() == forward.report.to_dict()


def test_input_frame_is_not_modified(frame):
    before = frame.copy()
    build_sample(frame, "y", "school", min_group_size=12)
    pd.testing.assert_frame_equal(frame, before)


def test_max_missing_is_a_strict_bound(frame):
    frame["x_edge"] = frame["x_likert"].astype(float)
    frame.loc[2:13, "x_edge"] = np.nan  # 12 of the 60 analysis rows: exactly 20 %
    at_bound = build_sample(frame, "y", "school", predictors=["x_edge"], min_group_size=1)
    assert at_bound.predictors == ("x_edge",)
    below = build_sample(
        frame, "y", "school", predictors=["x_edge", "x_num"], max_missing=0.19, min_group_size=1
    )
    assert below.predictors == ("x_num",)
    assert below.report.exclusions[0].value == pytest.approx(0.2)


def test_exclude_and_labels(frame):
    frame.attrs["variable_labels"] = {"x_num": "Number of books", "x_l2": "School size", "y": "Y"}
    frame.attrs["value_labels"] = {"x_likert": {1: "agree", 4: "disagree"}}
    s = build_sample(frame, "y", "school", exclude=["x_l2", "x_date"], min_group_size=12)
    assert "x_l2" not in s.predictors
    assert s.labels == {"x_num": "Number of books"}
    user = [e for e in s.report.exclusions if e.reason == "user"]
    assert [e.column for e in user] == ["x_l2", "x_date"]


def test_min_group_size_keeps_all_groups_when_small(frame):
    s = build_sample(frame, "y", "school", min_group_size=11)
    assert s.n_groups == 3
    assert s.n_obs == 58
    assert s.report.dropped_groups == ()
    # with school C kept, x_onlyC varies and stays; x_notl2 is still not level-2
    assert "x_onlyC" in s.predictors
    assert s.level2 == ("x_l2", "x_l2str")


def test_null_model_sample(frame):
    s = build_sample(frame, "y", "school", predictors=[], min_group_size=12)
    assert s.predictors == () and s.level2 == () and s.categorical == ()
    assert s.n_obs == 60  # no complete-case loss: A 23, B 25, C 12 rows, all kept
    assert s.n_groups == 3


def test_bool_outcome_becomes_0_1_for_binomial(frame):
    frame["passed"] = frame["x_bool"]
    s = build_sample(
        frame, "passed", "school", predictors=["x_num"], min_group_size=1, family="binomial"
    )
    assert s.data["passed"].dtype == np.int64
    assert set(s.data["passed"]) == {0, 1}


def test_report_is_json_ready_and_readable(frame):
    frame["school"] = frame["school"].map({"A": 1, "B": 2, "C": 3, "D": 4}).astype("Int64")
    s = build_sample(frame, "y", "school", min_group_size=12)
    d = json.loads(json.dumps(s.report.to_dict()))
    assert d["n_obs"] == 47
    assert d["dropped_groups"] == [{"group": 3, "rows": 11}]
    assert d["steps"][1]["rows_dropped"] == 10
    text = s.report.to_text()
    assert "rows 58 -> 47, groups 3 -> 2" in text
    assert "x_sparse: 30.0% missing" in text


def test_wide_frame_complete_cases_and_level2():
    rng = np.random.default_rng(0)
    n, p = 2000, 300
    x = rng.integers(1, 5, size=(n, p)).astype(float)
    x[rng.random((n, p)) < 0.001] = np.nan
    school = np.repeat(np.arange(80), 25)
    x[:, 5] = school * 2.0  # a level-2 item without missing values
    df = pd.DataFrame(x, columns=[f"v{j}" for j in range(p)])
    df["school"] = school
    df["y"] = rng.normal(size=n)
    s = build_sample(df, "y", "school", min_group_size=1)
    complete = ~np.isnan(x).any(axis=1)
    assert s.n_obs == complete.sum()
    assert s.data.index.tolist() == np.flatnonzero(complete).tolist()
    assert s.n_groups == np.unique(school[complete]).size
    assert s.level2 == ("v5",)
    assert len(s.predictors) == p


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"outcome": "yy"}, r"unknown outcome column: 'yy' \(did you mean 'y'\?\)"),
        ({"group": "scool"}, r"unknown group column: 'scool' \(did you mean 'school'\?\)"),
        ({"group": "School"}, r"did you mean 'school'\?"),
        ({"predictors": ["x_num", "x_nmu"]}, r"unknown predictor column: 'x_nmu'"),
        ({"exclude": ["qqq"]}, r"unknown excluded column: 'qqq' \(no close match\)"),
    ],
)
def test_unknown_columns(frame, kwargs, pattern):
    args = {"outcome": "y", "group": "school", **kwargs}
    with pytest.raises(DataError, match=pattern) as err:
        build_sample(frame, **args)
    assert "\n" not in str(err.value)


def test_binomial_outcome_must_be_0_1(frame):
    with pytest.raises(DataError, match="binomial outcome must be 0 or 1.*recode it to 0/1"):
        build_sample(frame, "y", "school", family="binomial")


def test_poisson_outcome_must_be_counts(frame):
    frame["count"] = frame["x_likert"] - 2  # has negatives
    with pytest.raises(DataError, match="non-negative integer counts"):
        build_sample(frame, "count", "school", family="poisson")
    frame["count"] = frame["x_likert"] + 0.5
    with pytest.raises(DataError, match=r"e\.g\. \d\.5"):
        build_sample(frame, "count", "school", family="poisson")
    frame["count"] = frame["x_likert"]
    assert build_sample(frame, "count", "school", family="poisson", min_group_size=1).n_obs > 0


def test_non_finite_outcome(frame):
    frame.loc[5, "y"] = np.inf
    with pytest.raises(DataError, match="outcome has 1 infinite values"):
        build_sample(frame, "y", "school")


def test_non_finite_predictor(frame):
    frame.loc[5, "x_num"] = -np.inf
    with pytest.raises(DataError, match=r"predictor 'x_num' has 1 infinite.*exclude=\['x_num'\]"):
        build_sample(frame, "y", "school")


def test_constant_group_column(frame):
    frame["one_school"] = "A"
    with pytest.raises(DataError, match="group column 'one_school' has a single value"):
        build_sample(frame, "y", "one_school")


def test_fewer_than_two_groups_after_filtering(frame):
    with pytest.raises(DataError, match="only 1 group.*lower min_group_size"):
        build_sample(frame, "y", "school", min_group_size=24)


def test_no_usable_predictors(frame):
    with pytest.raises(DataError, match=r"no usable predictors: all 2 .*1 missing, 1 constant"):
        build_sample(frame, "y", "school", predictors=["x_sparse", "x_const"])


def test_no_candidate_predictors(frame):
    with pytest.raises(DataError, match="no candidate predictors.*predictors=\\[\\]"):
        build_sample(frame[["y", "school"]], "y", "school")


def test_non_numeric_outcome(frame):
    with pytest.raises(DataError, match="outcome 'x_str' is not numeric"):
        build_sample(frame, "x_str", "school")


def test_constant_outcome(frame):
    frame["flat"] = 3.0
    with pytest.raises(DataError, match="outcome 'flat' is constant"):
        build_sample(frame, "flat", "school", min_group_size=1)


def test_usage_errors(frame):
    with pytest.raises(UsageError, match="unknown family 'gamma'; use one of gaussian"):
        build_sample(frame, "y", "school", family="gamma")
    with pytest.raises(UsageError, match="'y' is the outcome"):
        build_sample(frame, "y", "school", predictors=["x_num", "y"])
    with pytest.raises(UsageError, match="same column"):
        build_sample(frame, "y", "y")
    with pytest.raises(UsageError, match="max_missing"):
        build_sample(frame, "y", "school", max_missing=1.5)
    with pytest.raises(UsageError, match="min_group_size"):
        build_sample(frame, "y", "school", min_group_size=0)
    with pytest.raises(UsageError, match="lists of column names"):
        build_sample(frame, "y", "school", predictors="x_num")
    with pytest.raises(UsageError, match="pandas DataFrame"):
        build_sample(frame.to_dict(), "y", "school")


def test_validate_outcome():
    validate_outcome(np.array([0.0, 1.0, 1.0]), "binomial")
    validate_outcome(np.array([0, 3, 7]), "poisson")
    validate_outcome(np.array([-2.5, 3.0]), "gaussian")
    validate_outcome(np.array([0.25, 1.0]), "binomial", allow_proportions=True)
    with pytest.raises(DataError, match="proportions in"):
        validate_outcome(np.array([0.25, 1.5]), "binomial", allow_proportions=True)
    with pytest.raises(DataError, match="binomial outcome must be 0 or 1, but 1 values"):
        validate_outcome(np.array([0.0, 2.0]), "binomial")
    with pytest.raises(DataError, match="missing values"):
        validate_outcome(np.array([0.0, np.nan]), "gaussian")
    with pytest.raises(UsageError, match="unknown family"):
        validate_outcome(np.array([0.0]), "binomal")
