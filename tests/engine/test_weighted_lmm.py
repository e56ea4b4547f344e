"""Pseudo-ML for gaussian LMMs: the objective at fixed parameters, identities, scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from autoglmm.engine import lmm
from autoglmm.engine.design import make_design
from autoglmm.engine.sandwich import lmm_group_scores, lmm_sandwich
from autoglmm.engine.weighted_lmm import (
    deviance,
    deviance_and_gradient,
    estimates_at,
    fit_weighted_lmm,
    make_weighted_workspace,
)
from autoglmm.engine.weights import SamplingWeights, prepare_weights


def _data(seed: int, m: int = 12, slope: bool = True):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 9, m)
    g = np.repeat(np.arange(m), sizes)
    n = len(g)
    x = rng.normal(size=n)
    b0, b1 = rng.normal(0, 0.8, m), rng.normal(0, 0.4, m)
    y = 2.0 + 0.5 * x + b0[g] + (b1[g] * x if slope else 0) + rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    Z = X.copy() if slope else np.ones((n, 1))
    design, _ = make_design(X, y, Z, g, re_blocks=(2,) if slope else (1,))
    w1 = rng.uniform(0.5, 3.0, n)
    w2 = rng.uniform(1.0, 5.0, m)[g]
    return design, w1, w2


def test_all_weights_one_is_the_unweighted_deviance():
    design, _, _ = _data(1)
    sw = prepare_weights(None, None, design.starts)
    ws = make_weighted_workspace(design, sw)
    ref = lmm.make_workspace(design)
    for theta in ([1.0, 0.0, 1.0], [0.7, -0.3, 0.2], [2.0, 0.5, 0.0]):
        t = np.array(theta)
        assert deviance(t, ws) == pytest.approx(lmm.deviance(t, ref), abs=1e-9)
        g = deviance_and_gradient(t, ws)[1]
        np.testing.assert_allclose(g, lmm.deviance_and_gradient(t, ref)[1], atol=1e-8)


def test_group_loglik_matches_numerical_integration():
    """l_j = log int prod_i phi(y_ij | b)^w_ij phi(b) db, by scipy quad (random intercept)."""
    design, w1, w2 = _data(2, m=5, slope=False)
    sw = prepare_weights(w1, w2, design.starts, conditional=True)
    ws = make_weighted_workspace(design, sw)
    theta, beta, sigma = np.array([0.8]), np.array([1.7, 0.4]), 1.3
    ll, _ = lmm_group_scores(theta, beta, sigma, ws)
    for j in range(design.m):
        rows = slice(design.starts[j], design.starts[j + 1])
        y, x, w = design.y[rows], design.X[rows] @ beta, sw.level1[rows]

        def integrand(b, y=y, x=x, w=w):
            dens = np.sum(w * stats.norm.logpdf(y, x + b, sigma))
            return np.exp(dens + stats.norm.logpdf(b, 0, sigma * theta[0]))

        val = integrate.quad(integrand, -12, 12, epsabs=0, epsrel=1e-12, limit=200)[0]
        assert ll[j] == pytest.approx(sw.level2[j] * np.log(val), rel=1e-9)


def test_profiled_deviance_is_minus_twice_the_summed_group_logliks():
    design, w1, w2 = _data(3)
    ws = make_weighted_workspace(design, prepare_weights(w1, w2, design.starts))
    theta = np.array([0.9, 0.2, 0.4])
    est = estimates_at(theta, ws)
    ll, scores = lmm_group_scores(theta, est.beta, np.sqrt(est.sigma2), ws)
    assert -2 * ll.sum() == pytest.approx(est.deviance, rel=1e-12)
    # beta and sigma are profiled: their summed scores vanish at any theta
    np.testing.assert_allclose(scores[:, :2].sum(0), 0, atol=1e-8)
    assert abs(scores[:, -1].sum()) < 1e-8


def test_group_scores_are_derivatives_of_group_logliks():
    design, w1, w2 = _data(4)
    ws = make_weighted_workspace(design, prepare_weights(w1, w2, design.starts))
    x = np.array([0.9, 0.2, 0.4, 1.9, 0.3, 1.1])  # theta (3), beta (2), sigma

    def ll(v):
        return lmm_group_scores(v[:3], v[3:5], v[5], ws)[0]

    scores = lmm_group_scores(x[:3], x[3:5], x[5], ws)[1]
    order = [3, 4, 0, 1, 2, 5]  # scores are (beta, theta, sigma)
    for col, k in enumerate(order):
        e = np.zeros(6)
        e[k] = 1e-6
        np.testing.assert_allclose(scores[:, col], (ll(x + e) - ll(x - e)) / 2e-6, atol=1e-5)


def test_integer_level2_weights_equal_replicated_groups():
    design, _, _ = _data(5)
    reps = np.random.default_rng(0).integers(1, 4, design.m)
    sw = SamplingWeights(level1=np.ones(design.n), level2=reps.astype(float))
    res, _, _ = fit_weighted_lmm(design, sw)
    idx, g = [], []
    for j in range(design.m):
        for _ in range(reps[j]):
            idx.extend(range(design.starts[j], design.starts[j + 1]))
            g.extend([len(set(g))] * int(design.starts[j + 1] - design.starts[j]))
    idx = np.array(idx)
    rep_design, _ = make_design(
        design.X[idx], design.y[idx], design.Z[idx], np.array(g), re_blocks=design.re_blocks
    )
    ref = lmm.fit_lmm(rep_design)
    assert res.loglik == pytest.approx(ref.loglik, abs=1e-7)
    np.testing.assert_allclose(res.beta, ref.beta, rtol=1e-6)
    np.testing.assert_allclose(res.cov_re, ref.cov_re, rtol=1e-5, atol=1e-8)
    assert res.sigma2 == pytest.approx(ref.sigma2, rel=1e-6)


def test_sandwich_scores_vanish_at_the_optimum():
    design, w1, w2 = _data(6, m=30)
    sw = prepare_weights(w1, w2, design.starts)
    res, ws, est = fit_weighted_lmm(design, sw)
    assert res.convergence.converged
    _, scores = lmm_group_scores(est.theta, est.beta, np.sqrt(est.sigma2), ws)
    total = np.abs(scores.sum(0))
    assert total.max() < 1e-3 * np.abs(scores).sum(0).max()
    sand = lmm_sandwich(ws, est)
    assert sand.vcov_beta.shape == (2, 2)
    assert np.all(np.isfinite(sand.vc_se)) and np.all(sand.vc_se > 0)
    assert len(sand.vc_se) == 4  # two variances, one covariance, the residual


def test_singular_fit_gives_no_standard_error_for_the_zero_variance():
    rng = np.random.default_rng(9)
    g = np.repeat(np.arange(30), 10)
    X = np.column_stack([np.ones(300), rng.normal(size=300)])
    e = rng.normal(size=300)
    y = e - np.bincount(g, e)[g] / 10  # every group mean 0: no between-group variance
    design, _ = make_design(X, y, X[:, :1], g, re_blocks=(1,))
    sw = prepare_weights(rng.uniform(1, 2, 300), np.repeat(rng.uniform(1, 3, 30), 10),
                         design.starts, conditional=True)  # fmt: skip
    res, ws, est = fit_weighted_lmm(design, sw)
    assert res.convergence.singular and est.cov_re[0, 0] == 0.0
    sand = lmm_sandwich(ws, est)
    assert np.isnan(sand.vc_se[0]) and np.isfinite(sand.vc_se[1])  # variance 0: no SE
    assert np.all(np.isfinite(np.diag(sand.vcov_beta)))
