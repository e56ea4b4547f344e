"""fit_glmm on simulated data: bad input, known truth, optimality, AGQ fits, singular fits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from autoglmm.engine.design import make_design
from autoglmm.engine.families import BINOMIAL_LOGIT
from autoglmm.engine.glmm import GlmmWorkspace, fit_glmm
from autoglmm.errors import DataError, UsageError


def simulate(q=2, m=60, nper=25, seed=0, G=None, poisson=False, beta=(-0.3, 0.6, -0.4)):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), nper)
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    Z = np.column_stack([X, rng.normal(size=n)])[:, :q]
    G = np.diag([0.6, 0.3, 0.2, 0.2][:q]) if G is None else G
    b = rng.multivariate_normal(np.zeros(q), G, m)
    eta = X @ np.asarray(beta) + (Z * b[g]).sum(1)
    if poisson:
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return make_design(X, y, Z, g, re_blocks=(q,))[0]


@pytest.fixture(scope="module")
def slope_fit():
    d = simulate(q=2, m=120, nper=30, seed=1, G=np.array([[0.8, 0.2], [0.2, 0.4]]))
    return d, fit_glmm(d, family="binomial")


def test_recovers_the_simulated_truth(slope_fit) -> None:
    d, res = slope_fit
    assert res.convergence.converged and not res.convergence.singular
    se = np.sqrt(np.diag(res.vcov_beta))
    assert np.all(np.abs(res.beta - [-0.3, 0.6, -0.4]) < 3.5 * se)
    assert res.cov_re[0, 0] == pytest.approx(0.8, abs=0.35)
    assert res.cov_re[1, 1] == pytest.approx(0.4, abs=0.25)
    assert res.n_params == 3 + 3 and res.family == "binomial" and res.link == "logit"


def test_result_is_consistent_with_the_objective(slope_fit) -> None:
    d, res = slope_fit
    ws = GlmmWorkspace(d, BINOMIAL_LOGIT)
    dev = ws.deviance(res.theta, res.beta)
    assert res.loglik == pytest.approx(-dev / 2, abs=1e-9)
    assert res.deviance == pytest.approx(dev, abs=1e-9)
    lam = ws.lam(res.theta)
    np.testing.assert_allclose(res.cov_re, lam @ lam.T, rtol=1e-12)
    u = ws.modes(res.theta, res.beta).u
    np.testing.assert_allclose(res.ranef, u @ lam.T, rtol=1e-9, atol=1e-12)
    eta = d.X @ res.beta + (d.Z * res.ranef[d.group]).sum(1)
    np.testing.assert_allclose(res.fitted, 1 / (1 + np.exp(-eta)), rtol=1e-12)
    assert res.sigma2 is None and res.nagq == 1 and not res.reml


def test_no_better_point_nearby(slope_fit) -> None:
    d, res = slope_fit
    ws = GlmmWorkspace(d, BINOMIAL_LOGIT)
    nt = len(res.theta)
    x0 = np.concatenate([res.theta, res.beta])
    f0, g, _ = ws.laplace_and_gradient(res.theta, res.beta)
    assert np.max(np.abs(g)) < 1e-3
    polished = optimize.minimize(
        lambda x: ws.deviance(x[:nt], x[nt:]), x0, method="Nelder-Mead",
        options={"xatol": 1e-7, "fatol": 1e-10, "maxfev": 3000},
    )  # fmt: skip
    assert polished.fun >= f0 - 2e-6


def test_vcov_is_half_hessian_inverse(slope_fit, laplace_hessian) -> None:
    d, res = slope_fit
    ws = GlmmWorkspace(d, BINOMIAL_LOGIT)
    H = laplace_hessian(ws, res.theta, res.beta)
    vc = np.linalg.inv(H / 2)[len(res.theta) :, len(res.theta) :]
    np.testing.assert_allclose(res.vcov_beta, vc, rtol=1e-4)


def test_poisson_fit_and_deterministic() -> None:
    d = simulate(q=1, m=40, nper=10, seed=4, poisson=True, beta=(0.5, 0.3, -0.2))
    a = fit_glmm(d, family="poisson")
    b = fit_glmm(d, family="poisson")
    assert a.loglik == b.loglik
    np.testing.assert_array_equal(a.beta, b.beta)
    assert a.convergence.converged and a.link == "log"
    assert np.all(a.fitted > 0)


def test_start_at_the_optimum_returns_it(slope_fit) -> None:
    d, res = slope_fit
    again = fit_glmm(d, family="binomial", start={"theta": res.theta, "beta": res.beta})
    assert again.loglik == pytest.approx(res.loglik, abs=1e-7)


def test_zero_variance_is_singular_and_converged() -> None:
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(30), 20)
    X = np.column_stack([np.ones(600), rng.normal(size=600)])
    y = (rng.random(600) < 1 / (1 + np.exp(-(0.2 + 0.5 * X[:, 1])))).astype(float)
    d = make_design(X, y, X[:, :1], g, re_blocks=(1,))[0]
    # no group effect was simulated; for this draw the ML estimate of tau is exactly 0
    res = fit_glmm(d, family="binomial")
    assert res.theta[0] == 0.0
    assert res.convergence.singular and res.convergence.converged
    np.testing.assert_allclose(res.cov_re, 0.0)


def test_vector_agq_fit() -> None:
    d = simulate(q=2, m=40, nper=6, seed=2)
    lap = fit_glmm(d, family="binomial")
    one = fit_glmm(d, family="binomial", nagq=1)
    assert one.loglik == lap.loglik
    fits = {k: fit_glmm(d, family="binomial", nagq=k) for k in (3, 5, 7)}
    for r in fits.values():
        assert r.convergence.converged and r.nagq in (3, 5, 7)
    # maximised AGQ log-likelihoods settle as nagq grows
    assert abs(fits[7].loglik - fits[5].loglik) < abs(fits[5].loglik - fits[3].loglik)
    assert abs(fits[7].loglik - fits[5].loglik) < 1e-2
    assert abs(fits[7].loglik - lap.loglik) > 1e-3  # 6 rows per group: Laplace is off
    ws = GlmmWorkspace(d, BINOMIAL_LOGIT, 7)
    assert fits[7].loglik == pytest.approx(-0.5 * ws.deviance(fits[7].theta, fits[7].beta))


def test_bad_input() -> None:
    d = simulate(q=1, m=10, nper=5)
    frac = make_design(d.X, np.where(d.y > 0, 0.5, 0.0), d.Z, d.group, re_blocks=(1,))[0]
    with pytest.raises(DataError, match="not binary"):
        fit_glmm(frac, family="binomial")
    neg = make_design(d.X, d.y - 1.0, d.Z, d.group, re_blocks=(1,))[0]
    with pytest.raises(DataError, match="negative counts"):
        fit_glmm(neg, family="poisson")
    with pytest.raises(DataError, match="0/1"):
        fit_glmm(make_design(d.X, d.y * 3, d.Z, d.group, re_blocks=(1,))[0], family="binomial")
    with pytest.raises(UsageError, match="unknown link"):
        fit_glmm(d, family="poisson", link="logit")
    with pytest.raises(UsageError, match="unknown family"):
        fit_glmm(d, family="gamma")
    with pytest.raises(UsageError, match="positive integer"):
        fit_glmm(d, family="binomial", nagq=0)
    big = simulate(q=4, m=10, nper=5)
    with pytest.raises(UsageError, match="at most 3 random effects"):
        fit_glmm(big, family="binomial", nagq=3)
