"""Rubin's rules against a hand computation (three plausible values)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from autoglmm.pooling import barnard_rubin_df, rubin


def test_three_plausible_values_by_hand():
    # Q = 0.50, 0.56, 0.47; U = 0.010, 0.012, 0.011; complete-data df 50.
    # Qbar = 0.51; B = (0.01^2 + 0.05^2 + 0.04^2) / 2 = 0.0021; Ubar = 0.011
    # T = 0.011 + (4/3) 0.0021 = 0.0138;  SE = sqrt(0.0138) = 0.1174734012
    # lambda = 0.0028 / 0.0138 = 0.2028985507; nu_old = 2 / lambda^2 = 48.5816326531
    # nu_obs = (51/53) * 50 * (1 - lambda) = 38.3511074651
    # nu = nu_old nu_obs / (nu_old + nu_obs) = 21.4321947310
    # r = 0.0028 / 0.011; FMI = (r + 2/(nu + 3)) / (1 + r) = 0.2681486405
    pooled = rubin([0.50, 0.56, 0.47], [0.010, 0.012, 0.011], df_com=50)
    assert pooled.estimate == pytest.approx(0.51, abs=1e-12)
    assert pooled.between == pytest.approx(0.0021, abs=1e-12)
    assert pooled.within == pytest.approx(0.011, abs=1e-12)
    assert pooled.se == pytest.approx(0.1174734012, abs=1e-9)
    assert pooled.df == pytest.approx(21.4321947310, abs=1e-8)
    assert pooled.fmi == pytest.approx(0.2681486405, abs=1e-9)
    t = 0.51 / 0.1174734012
    assert pooled.stat == pytest.approx(t, rel=1e-9)
    assert pooled.p == pytest.approx(2 * stats.t.sf(t, 21.4321947310), rel=1e-6)
    assert pooled.m == 3


def test_no_between_variance_gives_complete_data_df():
    pooled = rubin([1.0, 1.0, 1.0], [0.04, 0.04, 0.04], df_com=100)
    assert pooled.se == pytest.approx(0.2)
    assert pooled.df == pytest.approx(101 / 103 * 100)  # nu_obs with lambda = 0
    assert pooled.fmi == pytest.approx(2 / (pooled.df + 3))


def test_barnard_rubin_approaches_rubin_1987_for_large_samples():
    # With nu_com -> infinity the df is Rubin's (M - 1) / lambda^2.
    assert barnard_rubin_df(5, 0.3, math.inf) == pytest.approx(4 / 0.09)
    assert barnard_rubin_df(5, 0.3, 1e12) == pytest.approx(4 / 0.09, rel=1e-6)


def test_needs_two_analyses():
    with pytest.raises(ValueError, match="at least 2"):
        rubin([1.0], [0.1], df_com=10)
