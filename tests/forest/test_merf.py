"""MixedEffectsRandomForest against a known truth, and the scikit-learn contract."""

from __future__ import annotations

import numpy as np
import pytest
from merf_sim import simulate
from sklearn.utils.estimator_checks import parametrize_with_checks

from autoglmm.forest.merf import MixedEffectsRandomForest, _converged
from autoglmm.ranking import RANKERS

NTREE = 300  # final forest of the truth tests: small enough for CI, stable rankings


def _xy(sim):
    X = sim.data.drop(columns=["y", "school"])
    return X, sim.data["y"], sim.data["school"]


def _ranks(est, names) -> dict[str, int]:
    order = np.argsort(-est.feature_importances_, kind="stable")
    return {names[j]: i + 1 for i, j in enumerate(order)}


@pytest.fixture(scope="module")
def school_fits(sim):
    """The default (cluster-aware) MERF and autoglmm 0.1's row/LMM-start MERF."""
    X, y, g = _xy(sim)
    new = MixedEffectsRandomForest(NTREE, random_state=3, n_jobs=2).fit(X, y, g)
    old = MixedEffectsRandomForest(NTREE, random_state=3, n_jobs=2, **RANKERS["merf_rowlmm"])
    return new, old.fit(X, y, g), list(X.columns)


def test_school_level_truth_ranks_near_the_top(sim, school_fits):
    """Strong school effect near the top, true level-1 items above the proxies, school
    noise items (each one identifies the schools) at most once among the relevant ranks."""
    new, old, names = school_fits
    rank = _ranks(new, names)
    assert rank["s_strong"] <= 3
    assert rank["s_weak"] <= 12
    assert max(rank[c] for c in sim.level1) <= len(sim.true)
    relevant = len(sim.true) + len(sim.proxies)
    assert sum(rank[c] <= relevant for c in sim.level2_noise) <= 1
    assert new.level2_features_.sum() == len(sim.level2) + len(sim.level2_noise)
    # autoglmm 0.1's MERF: the LMM start gives the school effect to b, and it stays there
    assert _ranks(old, names)["s_strong"] > 10


def test_stopping_rules():
    lls = [0.0, 10.0, 9.0, 12.0, 13.0, 13.5, 13.2, 13.4, 13.3]
    stops = {
        rule: next(i for i in range(1, len(lls) + 1) if _converged(lls[:i], 1e-9, True, rule))
        for rule in ("first_fall", "plateau")
    }
    assert stops == {"first_fall": 3, "plateau": 8}  # one noisy fall vs 2 without a new best


@pytest.fixture(scope="module")
def variance_sim():
    """School-level effects, school noise items: the variances net of level 2 are known."""
    return simulate(seed=11, n_groups=120, n_noise=10, sigma2=2.0, tau2=1.0)


def test_variances_within_15_percent_of_truth(variance_sim):
    X, y, g = _xy(variance_sim)
    merf = MixedEffectsRandomForest(NTREE, random_state=0, n_jobs=2).fit(X, y, g)
    assert merf.converged_
    assert merf.sigma2_ == pytest.approx(variance_sim.sigma2, rel=0.15)
    assert merf.G_[0, 0] == pytest.approx(variance_sim.tau2, rel=0.15)
    # history: one entry per EM iteration plus the final full-forest update
    assert len(merf.loglik_) == len(merf.sigma2_history_) == merf.n_iter_ + 1
    assert merf.sigma2_history_[-1] == merf.sigma2_


def test_oob_fixed_part_does_not_collapse_sigma2(variance_sim):
    X, y, g = _xy(variance_sim)
    kw = dict(n_estimators=100, random_state=0, n_jobs=2)
    oob = MixedEffectsRandomForest(**kw).fit(X, y, g)
    inbag = MixedEffectsRandomForest(fixed_part="inbag", max_iter=10, **kw).fit(X, y, g)
    assert oob.sigma2_ == pytest.approx(variance_sim.sigma2, rel=0.15)
    assert inbag.sigma2_ < 0.6 * variance_sim.sigma2  # in-sample predictions absorb the noise


def test_random_slope_variance():
    sim = simulate(seed=5, n_groups=120, n_noise=10, sigma2=2.0, slope_var=0.5)
    X, y, g = _xy(sim)
    Z = np.column_stack([np.ones(len(y)), sim.data["t_cont"]])
    merf = MixedEffectsRandomForest(NTREE, random_state=0, n_jobs=2).fit(X, y, g, Z=Z)
    assert merf.G_.shape == (2, 2) and merf.b_.shape == (120, 2)
    assert merf.G_[0, 0] == pytest.approx(1.0, rel=0.15)
    assert merf.G_[1, 1] == pytest.approx(0.5, rel=0.15)
    assert merf.sigma2_ == pytest.approx(2.0, rel=0.15)


def test_same_seed_identical_for_any_n_jobs(sim):
    X, y, g = _xy(sim)
    fits = [
        MixedEffectsRandomForest(80, em_estimators=30, random_state=7, n_jobs=j).fit(X, y, g)
        for j in (1, 2)
    ]
    np.testing.assert_array_equal(fits[0].feature_importances_, fits[1].feature_importances_)
    np.testing.assert_array_equal(fits[0].b_, fits[1].b_)
    assert fits[0].sigma2_ == fits[1].sigma2_


def test_predict_known_and_unseen_groups(variance_sim):
    X, y, g = _xy(variance_sim)
    merf = MixedEffectsRandomForest(60, em_estimators=30, random_state=0).fit(X, y, g)
    fixed = merf.predict(X)
    # the fixed part: the forest, the constant of the linear term in [1, Z] = [1], and
    # the linear term of the standardized level-2 columns
    l2 = X.loc[:, merf.level2_features_].to_numpy(float)
    W = np.column_stack([np.ones(len(X)), (l2 - l2.mean(0)) / l2.std(0)])  # balanced groups
    expected = merf.forest_.predict(X.to_numpy(float)) + merf.beta_[0] + W @ merf.level2_coef_
    np.testing.assert_allclose(fixed, expected)
    assert merf.level2_coef_[1] > 0.1  # part of s_strong's effect (0.6) stays linear
    with_re = merf.predict(X, groups=g)
    codes = np.searchsorted(merf.groups_, g)
    np.testing.assert_allclose(with_re - fixed, merf.b_[codes, 0])
    unseen = merf.predict(X.iloc[:5], groups=np.full(5, -99))
    np.testing.assert_allclose(unseen, fixed[:5])


def test_binomial_pql_ranks_true_predictors():
    sim = simulate(seed=5, family="binomial")
    X, y, g = _xy(sim)
    merf = MixedEffectsRandomForest(NTREE, family="binomial", random_state=0, n_jobs=2)
    merf.fit(X, y, g)
    rank = _ranks(merf, list(X.columns))
    assert max(rank[c] for c in sim.level1) <= len(sim.true)
    assert rank["s_strong"] <= 4
    relevant = len(sim.true) + len(sim.proxies)
    assert sum(rank[c] <= relevant for c in sim.level2_noise) <= 1
    p = merf.predict(X, groups=g)
    assert np.all((p > 0) & (p < 1))
    assert merf.sigma2_ == 1.0  # PQL: the working residual variance is fixed


def test_poisson_pql_ranks_true_predictors():
    sim = simulate(seed=8, family="poisson")
    X, y, g = _xy(sim)
    merf = MixedEffectsRandomForest(NTREE, family="poisson", random_state=0, n_jobs=2)
    merf.fit(X, y, g)
    rank = _ranks(merf, list(X.columns))
    assert max(rank[c] for c in (*sim.level1, "s_strong")) <= len(sim.true)
    mu = merf.predict(X, groups=g)
    assert np.all(mu > 0)
    assert np.mean(mu) == pytest.approx(np.mean(y), rel=0.1)


def test_bad_input():
    sim = simulate(seed=1, n_groups=10, group_size=5, n_noise=2, n_level2=1)
    X, y, g = _xy(sim)
    est = MixedEffectsRandomForest(10, em_estimators=5, random_state=0)
    with pytest.raises(ValueError, match="single group"):
        est.fit(X, y, np.zeros(len(y)))
    Xn = X.to_numpy(float, copy=True)
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(Xn, y, g)
    with pytest.raises(ValueError, match="binomial"):
        MixedEffectsRandomForest(10, family="binomial").fit(X, y, g)
    with pytest.raises(ValueError, match="family"):
        MixedEffectsRandomForest(10, family="gamma").fit(X, y, g)
    with pytest.raises(ValueError, match="bootstrap_unit"):
        MixedEffectsRandomForest(10, bootstrap_unit="school").fit(X, y, g)
    with pytest.raises(ValueError, match="64 levels"):
        Xw = np.arange(100.0)[:, None]
        MixedEffectsRandomForest(10, categorical_features=[0]).fit(Xw, Xw[:, 0])


# scikit-learn's generic checks call fit(X, y) without groups: that is the documented plain
# forest mode (no random effects), so every check applies and none is left out.
@parametrize_with_checks([MixedEffectsRandomForest(n_estimators=10, em_estimators=5)])
def test_sklearn_contract(estimator, check):
    check(estimator)
