"""R²: Raudenbush & Bryk against the null model, Nakagawa marginal/conditional per family."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoglmm.r2 import (
    distribution_variance,
    nakagawa,
    r2_all,
    random_effects_variance,
    raudenbush_bryk,
)
from autoglmm.selection import search


def test_distribution_variances():
    assert distribution_variance("gaussian", sigma2=2.5) == 2.5
    assert distribution_variance("binomial") == pytest.approx(math.pi**2 / 3)
    assert distribution_variance("binomial", "probit") == 1.0
    lam = math.exp(0.3 + 0.4 / 2)
    assert distribution_variance("poisson", lam=lam) == pytest.approx(math.log(1 + 1 / lam))
    with pytest.raises(ValueError):
        distribution_variance("gaussian")


def test_random_effects_variance_with_a_slope():
    """Johnson (2014): mean of G00 + 2 G01 x + G11 x² over the rows."""
    x = np.array([-1.0, 0.0, 2.0, 3.0])
    G = np.array([[2.0, 0.5], [0.5, 0.25]])
    want = np.mean(2.0 + 2 * 0.5 * x + 0.25 * x**2)
    Z = np.column_stack([np.ones_like(x), x])
    assert random_effects_variance(G, Z) == pytest.approx(want)
    assert random_effects_variance(np.array([[3.0]]), np.ones((5, 1))) == pytest.approx(3.0)


def test_nakagawa_and_raudenbush_bryk_by_hand():
    fixed = np.array([1.0, 2.0, 3.0, 6.0])  # variance 3.5
    marginal, conditional = nakagawa(fixed, np.array([[1.5]]), np.ones((4, 1)), 2.0)
    assert marginal == pytest.approx(3.5 / 7.0) and conditional == pytest.approx(5.0 / 7.0)
    # a constant prediction (the null model) has no fixed-effects variance
    assert nakagawa(np.full(4, 500.0), np.array([[1.5]]), np.ones((4, 1)), 2.0)[0] == 0.0
    level1, level2 = raudenbush_bryk(null_tau00=4.0, tau00=3.0, null_sigma2=10.0, sigma2=8.0)
    assert (level1, level2) == (pytest.approx(0.2), pytest.approx(0.25))
    assert raudenbush_bryk(4.0, 3.0)[0] is None  # no sigma² in a GLMM


def test_binomial_r2_uses_latent_variance():
    fixed = np.array([-1.0, 1.0])
    out = r2_all(family="binomial", fixed_pred=fixed, G=np.array([[1.0]]), Z=np.ones((2, 1)),
                 sigma2=None, null_tau00=2.0, null_sigma2=None)  # fmt: skip
    total = 1.0 + 1.0 + math.pi**2 / 3
    assert out["marginal"] == pytest.approx(1.0 / total)
    assert out["conditional"] == pytest.approx(2.0 / total)
    assert out["level1"] is None and out["level2"] == pytest.approx(0.5)


def test_search_r2_matches_lme4_estimates(reference_data, lme4_reference):
    """R² of the exam slope model, from lme4's own estimates, equals the search's R²."""
    data = reference_data("exam.csv")
    data["school"] = data["school"].astype(str)
    res = search(
        data, "normexam", "school", predictors=["standLRT", "sex", "schgend"],
        ranking=["standLRT", "sex", "schgend"], n_essential=0, min_group_size=1,
        alpha_fixed=0.2, max_slopes=1, patience=1, progress=False,
    )  # fmt: skip
    assert res.optimal.formula.endswith("(1 + standLRT | school)")
    ref, null = lme4_reference["exam_slope_ml"], lme4_reference["exam_null_ml"]
    b = ref["fixef"]
    x = data["standLRT"].to_numpy()
    fixed = (
        b["(Intercept)"] + b["standLRT"] * x + b["sexM"] * (data["sex"] == "M")
        + b["schgendboys"] * (data["schgend"] == "boys")
        + b["schgendgirls"] * (data["schgend"] == "girls")
    ).to_numpy(dtype=float)  # fmt: skip
    G = np.array(ref["cov_re"]["school"])
    var_f = fixed.var()
    var_re = np.mean(G[0, 0] + 2 * G[0, 1] * x + G[1, 1] * x**2)
    total = var_f + var_re + ref["sigma2"]
    got = res.r2["optimal"]
    assert got["marginal"] == pytest.approx(var_f / total, rel=1e-4)
    assert got["conditional"] == pytest.approx((var_f + var_re) / total, rel=1e-4)
    null_tau, null_s2 = null["cov_re"]["school"][0][0], null["sigma2"]
    assert got["level1"] == pytest.approx(1 - ref["sigma2"] / null_s2, rel=1e-4)
    assert got["level2"] == pytest.approx(1 - G[0, 0] / null_tau, rel=1e-3)
    # and the null model: no fixed-effects variance, conditional R² = ICC
    assert res.r2["null"]["marginal"] == 0.0
    assert res.r2["null"]["conditional"] == pytest.approx(res.icc, rel=1e-10)
    assert res.r2["null"]["level1"] == 0.0 and res.r2["null"]["level2"] == 0.0
