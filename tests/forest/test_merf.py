"""MixedEffectsRandomForest against a known truth, and the scikit-learn contract."""

from __future__ import annotations

import numpy as np
import pytest
from merf_sim import simulate
from sklearn.utils.estimator_checks import parametrize_with_checks

from autoglmm.forest.merf import MixedEffectsRandomForest

NTREE = 300  # final forest of the truth tests: small enough for CI, stable rankings


def _xy(sim):
    X = sim.data.drop(columns=["y", "school"])
    return X, sim.data["y"], sim.data["school"]


def _top(est, names, k):
    order = np.argsort(-est.feature_importances_, kind="stable")
    return [names[j] for j in order[:k]]


@pytest.fixture(scope="module")
def decoy_fits(sim):
    """MERF and a plain forest on data whose school-level items track the school effect."""
    X, y, g = _xy(sim)
    merf = MixedEffectsRandomForest(NTREE, random_state=3, n_jobs=2).fit(X, y, g)
    plain = MixedEffectsRandomForest(NTREE, random_state=3, n_jobs=2).fit(X, y)
    return merf, plain, list(X.columns)


def test_merf_ranks_true_predictors_above_school_level_decoys(sim, decoy_fits):
    merf, plain, names = decoy_fits
    k = len(sim.true)
    merf_hits = len(set(_top(merf, names, k)) & set(sim.true))
    plain_hits = len(set(_top(plain, names, k)) & set(sim.true))
    assert merf_hits > plain_hits
    assert not set(_top(merf, names, k)) & set(sim.level2)
    assert set(_top(plain, names, k)) & set(sim.level2)  # the trap is real for a plain forest


@pytest.fixture(scope="module")
def variance_sim():
    """School-level items unrelated to the school effect: the variances are identified."""
    return simulate(seed=11, level2_corr=0.0, n_noise=10, sigma2=2.0, tau2=1.0)


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
    sim = simulate(seed=5, level2_corr=0.0, n_noise=10, sigma2=2.0, slope_var=0.5)
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
    # the fixed part: the forest plus the constant of the linear term in [1, Z] = [1]
    np.testing.assert_allclose(fixed, merf.forest_.predict(X.to_numpy(float)) + merf.beta_[0])
    with_re = merf.predict(X, groups=g)
    codes = np.searchsorted(merf.groups_, g)
    np.testing.assert_allclose(with_re - fixed, merf.b_[codes, 0])
    unseen = merf.predict(X.iloc[:5], groups=np.full(5, -99))
    np.testing.assert_allclose(unseen, fixed[:5])


def test_binomial_pql_ranks_true_predictors():
    sim = simulate(seed=5, level2_corr=1.0, n_groups=150, group_size=30, family="binomial")
    X, y, g = _xy(sim)
    merf = MixedEffectsRandomForest(NTREE, family="binomial", random_state=0, n_jobs=2)
    merf.fit(X, y, g)
    names = list(X.columns)
    assert set(_top(merf, names, 4)) == set(sim.true)
    p = merf.predict(X, groups=g)
    assert np.all((p > 0) & (p < 1))
    assert merf.sigma2_ == 1.0  # PQL: the working residual variance is fixed


def test_poisson_pql_ranks_true_predictors():
    sim = simulate(seed=8, level2_corr=1.0, family="poisson")
    X, y, g = _xy(sim)
    merf = MixedEffectsRandomForest(NTREE, family="poisson", random_state=0, n_jobs=2)
    merf.fit(X, y, g)
    assert set(_top(merf, list(X.columns), 4)) == set(sim.true)
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


# scikit-learn's generic checks call fit(X, y) without groups: that is the documented plain
# forest mode (no random effects), so every check applies and none is left out.
@parametrize_with_checks([MixedEffectsRandomForest(n_estimators=10, em_estimators=5)])
def test_sklearn_contract(estimator, check):
    check(estimator)
