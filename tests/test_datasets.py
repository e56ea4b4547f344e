"""simulate_lsa: the shape of a TIMSS-like file and an outcome that follows its truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoglmm.datasets import recovery, simulate_lsa
from autoglmm.errors import UsageError


@pytest.fixture(scope="module")
def full():
    return simulate_lsa(seed=0)


def test_full_scale_shape(full):
    data, truth = full.data, full.truth
    assert 8300 <= len(data) <= 9100
    sizes = data.groupby("school").size()
    assert len(sizes) == 270
    assert 10 <= (sizes < 20).sum() <= 50
    likert = [
        c
        for c in data.columns
        if c not in ("math", "school") and data[c].isin([1, 2, 3, 4, np.nan]).all()
    ]
    assert len(likert) == 230
    assert len(truth.fixed) == 18
    assert truth.slopes[0] == "ses" and truth.slopes[1] in truth.fixed
    assert set(truth.interaction) == set(truth.slopes)
    G = truth.G.to_numpy()
    assert np.all(np.linalg.eigvalsh(G) > 0) and G[0, 1] != 0
    assert truth.icc == pytest.approx(900 / (900 + 2500))
    # three null items have 30% missing values, the true predictors none
    missing = data.isna().mean()
    assert (missing > 0.2).sum() == 3 and missing[list(truth.fixed)].eq(0).all()


def test_school_items_are_level2_and_decoys_track_the_school_effect(full):
    data, truth = full.data, full.truth
    for name in (*truth.level2, *truth.decoys):
        assert data.groupby("school")[name].nunique().max() == 1
    # decoys correlate with the school mean of the outcome although they have no effect
    school_mean = data.groupby("school")["math"].mean()
    decoy = data.groupby("school")[truth.decoys[0]].first()
    assert np.corrcoef(school_mean, decoy)[0, 1] > 0.25
    assert truth.decoys[0] not in truth.fixed


def test_same_seed_same_data_other_seed_other_data():
    a = simulate_lsa(seed=3, n_schools=30, n_items=40)
    b = simulate_lsa(seed=3, n_schools=30, n_items=40)
    c = simulate_lsa(seed=4, n_schools=30, n_items=40)
    pd.testing.assert_frame_equal(a.data, b.data)
    assert a.truth.fixed == b.truth.fixed and a.truth.formula == b.truth.formula
    pd.testing.assert_frame_equal(a.truth.G, b.truth.G)
    assert not a.data.equals(c.data)


def test_student_level_coefficients_match_truth_within_school_ols():
    """Within-school OLS of the true student-level model recovers the true coefficients."""
    sim = simulate_lsa(seed=5, n_schools=200, n_items=60, n_true_items=4)
    data, truth = sim.data, sim.truth
    names = [k for k in truth.fixed if k not in truth.level2]
    a, b = truth.interaction
    X = np.column_stack([data[names].to_numpy(), data[a] * data[b]])
    dummies = pd.get_dummies(data["school"]).to_numpy(float)
    design = np.column_stack([X, dummies])
    coef, *_ = np.linalg.lstsq(design, data["math"].to_numpy(), rcond=None)
    resid = data["math"].to_numpy() - design @ coef
    s2 = resid @ resid / (len(resid) - design.shape[1])
    se = np.sqrt(np.diag(np.linalg.inv(design.T @ design))[: X.shape[1]] * s2)
    want = np.array([*(truth.fixed[k] for k in names), truth.interaction_coef])
    # random slopes add noise the OLS se ignores, so allow 5 se
    assert np.all(np.abs(coef[: X.shape[1]] - want) < 5 * se)


def test_binomial_outcome():
    sim = simulate_lsa(seed=2, n_schools=60, family="binomial", n_items=40, n_true_items=3)
    y = sim.data["proficient"]
    assert set(y.unique()) == {0, 1} and 0.3 < y.mean() < 0.7
    assert sim.truth.sigma2 is None
    assert sim.truth.icc == pytest.approx(1.44 / (1.44 + np.pi**2 / 3))
    assert sim.truth.fixed["ses"] == pytest.approx(8 / 25)


def test_recovery_scores_terms():
    truth = simulate_lsa(seed=1, n_schools=20, n_items=40, n_true_items=2).truth
    a, b = truth.interaction
    terms = {
        "fixed": [*list(truth.fixed)[:-1], "like_01"],
        "interactions": [f"{b}:{a}"],
        "random_slopes": ["ses"],
    }
    score = recovery(truth, terms)
    assert score["missed"] == [list(truth.fixed)[-1]]
    assert score["false"] == ["like_01"] and f"{a}:{b}" in score["found"]
    assert score["slopes_found"] == ["ses"] and score["slopes_missed"] == [truth.slopes[1]]


def test_bad_arguments():
    with pytest.raises(UsageError, match="family"):
        simulate_lsa(family="poisson")
    with pytest.raises(UsageError, match="n_true_items"):
        simulate_lsa(n_items=40, n_true_items=10)


def test_truth_table_lists_found_missed_and_false_terms():
    from types import SimpleNamespace

    from autoglmm.datasets import truth_table

    truth = simulate_lsa(seed=1, n_schools=20, n_items=40, n_true_items=2).truth
    a, b = truth.interaction
    terms = {"fixed": ["ses", "like_01"], "interactions": [f"{b}:{a}"], "random_slopes": ["ses"]}
    names = ["(Intercept)", "ses", "like_01", f"{b}:{a}"]
    fit = SimpleNamespace(
        fixef=pd.Series([500.0, 7.5, 0.3, 4.9], index=names),
        cov_re={"school": pd.DataFrame(np.diag([900.0, 99.0]), index=["(Intercept)", "ses"],
                                       columns=["(Intercept)", "ses"])},
    )  # fmt: skip
    table = truth_table(truth, terms, fit).set_index(["term", "kind"])
    assert table.loc[("ses", "fixed"), "status"] == "found"
    assert table.loc[("ses", "fixed"), "estimate"] == 7.5
    assert table.loc[(f"{a}:{b}", "interaction"), "estimate"] == 4.9
    assert table.loc[("like_01", "fixed"), "status"] == "false addition"
    assert table.loc[(truth.slopes[1], "fixed"), "status"] == "missed"
    assert table.loc[("ses", "slope"), ["true", "estimate"]].tolist() == [100.0, 99.0]
    assert table.loc[(truth.slopes[1], "slope"), "status"] == "missed"
