"""The LMM engine at fixed theta: deviance and gradient against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from autoglmm.engine import lmm
from autoglmm.engine.design import lambda_from_theta, make_design, theta_canonical


def _small_design(re_blocks=(2,), weights=False, seed=0):
    """6 groups of unequal size, p=3, Z = [1, x] (q=2)."""
    rng = np.random.default_rng(seed)
    sizes = np.array([3, 5, 4, 6, 2, 5])
    g = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(g)  # rows not sorted by group: make_design must sort them
    n = len(g)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    Z = np.column_stack([np.ones(n), x])
    b = rng.normal(size=(len(sizes), 2)) * [1.0, 0.5]
    y = X @ [1.0, 2.0, -1.0] + np.einsum("ij,ij->i", Z, b[g]) + rng.normal(size=n) * 0.7
    w = rng.uniform(0.5, 2.0, size=n) if weights else None
    design, _ = make_design(X, y, Z, g, re_blocks=re_blocks, weights=w)
    return design


def _dense_deviance(design, theta, reml):
    """-2 log-likelihood from the full n x n marginal covariance, beta and sigma2 profiled.

    V = sigma2 (Z Lambda Lambda' Z' + W^-1) with Z block diagonal over groups.
    """
    n, p = design.X.shape
    lam = lambda_from_theta(theta, design.re_blocks)
    Zfull = np.zeros((n, design.m * design.q))
    for j in range(design.m):
        rows = slice(design.starts[j], design.starts[j + 1])
        Zfull[rows, j * design.q : (j + 1) * design.q] = design.Z[rows] @ lam
    V0 = Zfull @ Zfull.T + np.diag(1.0 / design.weights)
    Vi = np.linalg.inv(V0)
    X, y = design.X, design.y
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    if not reml:
        sigma2 = r @ Vi @ r / n
        return -2.0 * stats.multivariate_normal(X @ beta, sigma2 * V0).logpdf(y)
    sigma2 = r @ Vi @ r / (n - p)
    return (
        (n - p) * np.log(2 * np.pi * sigma2)
        + np.linalg.slogdet(V0)[1]
        + np.linalg.slogdet(X.T @ Vi @ X)[1]
        + (n - p)
    )


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("re_blocks", [(2,), (1, 1)])
@pytest.mark.parametrize("weights", [False, True])
def test_deviance_matches_dense_marginal_likelihood(reml, re_blocks, weights):
    design = _small_design(re_blocks, weights)
    ws = lmm.make_workspace(design)
    theta = np.array([0.8, -0.3, 0.45]) if re_blocks == (2,) else np.array([0.8, 0.45])
    assert lmm.deviance(theta, ws, reml) == pytest.approx(
        _dense_deviance(design, theta, reml), abs=1e-8
    )


@pytest.mark.parametrize("reml", [False, True])
def test_deviance_at_singular_theta_matches_dense(reml):
    design = _small_design((2,))
    ws = lmm.make_workspace(design)
    theta = np.array([0.0, 0.6, 0.2])  # intercept variance 0: a boundary point
    assert lmm.deviance(theta, ws, reml) == pytest.approx(
        _dense_deviance(design, theta, reml), abs=1e-8
    )


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("weights", [False, True])
def test_analytic_gradient_matches_central_differences(reml, weights):
    design = _small_design((2,), weights)
    ws = lmm.make_workspace(design)
    theta = np.array([0.9, 0.2, 0.35])
    _, grad = lmm.deviance_and_gradient(theta, ws, reml)
    h = 1e-6
    numeric = [
        (lmm.deviance(theta + h * e, ws, reml) - lmm.deviance(theta - h * e, ws, reml)) / (2 * h)
        for e in np.eye(3)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_deviance_is_invariant_under_column_sign_flips():
    design = _small_design((2,))
    ws = lmm.make_workspace(design)
    theta = np.array([-0.7, 0.3, -0.4])
    canon = theta_canonical(theta, (2,))
    np.testing.assert_allclose(canon, [0.7, -0.3, 0.4])
    assert lmm.deviance(theta, ws) == pytest.approx(lmm.deviance(canon, ws), abs=1e-10)


def test_estimates_at_theta_match_dense_gls():
    design = _small_design((2,))
    ws = lmm.make_workspace(design)
    theta = np.array([0.8, -0.3, 0.45])
    est = lmm.estimates_at(theta, ws)
    lam = lambda_from_theta(theta, (2,))
    n = design.n
    V0 = np.zeros((n, n))
    for j in range(design.m):
        r = slice(design.starts[j], design.starts[j + 1])
        V0[r, r] = design.Z[r] @ lam @ lam.T @ design.Z[r].T
    V0 += np.eye(n)
    Vi = np.linalg.inv(V0)
    X, y = design.X, design.y
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    sigma2 = (y - X @ beta) @ Vi @ (y - X @ beta) / n
    np.testing.assert_allclose(est.beta, beta, rtol=1e-10)
    assert est.sigma2 == pytest.approx(sigma2, rel=1e-10)
    np.testing.assert_allclose(est.vcov_beta, sigma2 * np.linalg.inv(X.T @ Vi @ X), rtol=1e-9)
    # conditional modes b_j = G Z_j' V_j^-1 (y_j - X_j beta)
    G = lam @ lam.T
    j = 2
    r = slice(design.starts[j], design.starts[j + 1])
    b_j = G @ design.Z[r].T @ np.linalg.solve(V0[r, r], (y - X @ beta)[r])
    np.testing.assert_allclose(est.ranef[j], b_j, rtol=1e-9, atol=1e-12)


def test_fit_lmm_recovers_simulated_truth():
    rng = np.random.default_rng(7)
    m, k = 150, 30
    g = np.repeat(np.arange(m), k)
    x = rng.normal(size=m * k)
    X = np.column_stack([np.ones(m * k), x])
    b = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=m)
    y = X @ [2.0, 1.0] + b[g, 0] + b[g, 1] * x + rng.normal(size=m * k)
    design, _ = make_design(X, y, X, g, re_blocks=(2,))
    res = lmm.fit_lmm(design)
    assert res.convergence.converged and not res.convergence.singular
    np.testing.assert_allclose(res.beta, [2.0, 1.0], atol=0.2)
    np.testing.assert_allclose(res.cov_re, [[1.0, 0.3], [0.3, 0.5]], atol=0.25)
    assert res.sigma2 == pytest.approx(1.0, abs=0.05)
    assert res.loglik == pytest.approx(-0.5 * lmm.deviance(res.theta, lmm.make_workspace(design)))


def test_three_correlated_effects_match_the_dense_likelihood():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(9), rng.integers(5, 9, size=9))
    n = len(g)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    X = np.column_stack([np.ones(n), x1, x2])
    Z = np.column_stack([np.ones(n), x1, x2])
    b = rng.normal(size=(9, 3)) * [0.9, 0.4, 0.3]
    y = X @ [1.0, 0.5, -0.5] + np.einsum("ij,ij->i", Z, b[g]) + rng.normal(size=n) * 0.6
    design, _ = make_design(X, y, Z, g, re_blocks=(3,))
    ws = lmm.make_workspace(design)
    theta = np.array([0.9, 0.2, -0.1, 0.5, 0.15, 0.3])
    for reml in (False, True):
        assert lmm.deviance(theta, ws, reml) == pytest.approx(
            _dense_deviance(design, theta, reml), abs=1e-8
        )
