"""Family kernels: -2 log p against scipy.stats, derivatives against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from autoglmm.engine.families import (
    BINOMIAL_LOGIT,
    BINOMIAL_PROBIT,
    POISSON_LOG,
    check_response,
    deviance_constant,
    family_code,
    glm_start,
    linkinv,
    row_all,
    row_dev,
    row_terms,
)
from autoglmm.errors import DataError, UsageError

CODES = [BINOMIAL_LOGIT, BINOMIAL_PROBIT, POISSON_LOG]


def _rows(code, eta, y, wt):
    return np.array([row_all(code, e, yy, w) for e, yy, w in zip(eta, y, wt, strict=True)])


def test_family_code_defaults_and_errors() -> None:
    assert family_code("binomial") == (BINOMIAL_LOGIT, "logit")
    assert family_code("binomial", "probit") == (BINOMIAL_PROBIT, "probit")
    assert family_code("poisson") == (POISSON_LOG, "log")
    with pytest.raises(UsageError, match="unknown link 'log' for family 'binomial'"):
        family_code("binomial", "log")
    with pytest.raises(UsageError, match="unknown family"):
        family_code("gamma")


def test_binomial_deviance_equals_minus_two_logpmf_with_trials() -> None:
    rng = np.random.default_rng(1)
    trials = rng.integers(1, 20, 50).astype(float)
    succ = rng.binomial(trials.astype(int), 0.3).astype(float)
    y = succ / trials
    eta = rng.normal(size=50)
    for code, mu in [
        (BINOMIAL_LOGIT, 1 / (1 + np.exp(-eta))),
        (BINOMIAL_PROBIT, stats.norm.cdf(eta)),
    ]:
        ours = _rows(code, eta, y, trials)[:, 0].sum() + deviance_constant(code, y, trials)
        expected = -2 * stats.binom.logpmf(succ, trials, mu).sum()
        assert ours == pytest.approx(expected, rel=1e-12)
        assert linkinv(code, eta) == pytest.approx(mu, rel=1e-12)


def test_poisson_deviance_equals_minus_two_logpmf() -> None:
    rng = np.random.default_rng(2)
    y = rng.poisson(3.0, 40).astype(float)
    eta = rng.normal(1.0, 0.5, 40)
    wt = np.ones(40)
    ours = _rows(POISSON_LOG, eta, y, wt)[:, 0].sum() + deviance_constant(POISSON_LOG, y, wt)
    assert ours == pytest.approx(-2 * stats.poisson.logpmf(y, np.exp(eta)).sum(), rel=1e-12)


@pytest.mark.parametrize("code", CODES)
def test_derivatives_match_finite_differences(code) -> None:
    rng = np.random.default_rng(3)
    eta = rng.normal(0, 1.5, 30)
    y = (rng.random(30) < 0.4).astype(float) if code != POISSON_LOG else rng.poisson(2, 30) * 1.0
    wt = rng.uniform(0.5, 2.0, 30)
    h = 1e-6
    r0, rp, rm = (_rows(code, eta + d, y, wt) for d in (0.0, h, -h))
    # columns: dev, s = ddev/deta, s2 = d2dev/deta2, w (Fisher weight), w1 = dw/deta
    np.testing.assert_allclose(r0[:, 1], (rp[:, 0] - rm[:, 0]) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(r0[:, 2], (rp[:, 1] - rm[:, 1]) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(r0[:, 4], (rp[:, 3] - rm[:, 3]) / (2 * h), rtol=1e-6, atol=1e-8)
    devs = [row_dev(code, *a) for a in zip(eta, y, wt, strict=True)]
    np.testing.assert_allclose(devs, r0[:, 0], rtol=1e-14)


@pytest.mark.parametrize("code", CODES)
def test_fisher_weight_is_expected_curvature(code) -> None:
    # w = E[s^2] / 4 = wt * mu_eta^2 / V(mu), and for canonical links s2 = 2 w exactly
    eta = np.array([-1.3, 0.2, 0.9])
    wt = np.ones(3)
    mu = linkinv(code, eta)
    if code == POISSON_LOG:
        ys = np.arange(0, 60.0)
        probs = stats.poisson.pmf(ys[:, None], mu)
    else:
        ys = np.array([0.0, 1.0])
        probs = np.vstack([1 - mu, mu])
    s2 = np.array([[row_all(code, e, yy, 1.0)[1] ** 2 for e in eta] for yy in ys])
    w = _rows(code, eta, np.zeros(3), wt)[:, 3]
    np.testing.assert_allclose((probs * s2).sum(0) / 4, w, rtol=1e-10)
    if code != BINOMIAL_PROBIT:
        r = _rows(code, eta, np.ones(3), wt)
        np.testing.assert_allclose(r[:, 2], 2 * r[:, 3], rtol=1e-14)


def test_extreme_linear_predictor_stays_finite() -> None:
    for code in (BINOMIAL_LOGIT, BINOMIAL_PROBIT):
        for eta in (-60.0, 60.0):
            assert np.all(np.isfinite(row_all(code, eta, 1.0, 1.0)))


def test_glm_start_solves_the_glm_score_equations() -> None:
    rng = np.random.default_rng(4)
    X = np.column_stack([np.ones(300), rng.normal(size=(300, 2))])
    y = rng.poisson(np.exp(X @ [0.3, 0.5, -0.2])).astype(float)
    beta, R = glm_start(POISSON_LOG, X, y, np.ones(300), np.zeros(300))
    # score equations of the poisson GLM: X'(y - mu) = 0, and R R' = X'WX
    mu = np.exp(X @ beta)
    np.testing.assert_allclose(X.T @ (y - mu), 0, atol=1e-8)
    np.testing.assert_allclose(R @ R.T, X.T @ (X * mu[:, None]), rtol=1e-6)


def test_check_response_errors() -> None:
    ones = np.ones(3)
    check_response("binomial", np.array([0.0, 1.0, 1.0]), ones)
    check_response("binomial", np.array([0.25, 0.5, 1.0]), np.array([4.0, 2.0, 3.0]))
    check_response("poisson", np.array([0.0, 3.0, 7.0]), ones)
    with pytest.raises(DataError, match="not binary"):
        check_response("binomial", np.array([0.0, 0.5, 1.0]), ones)
    with pytest.raises(DataError, match="0/1"):
        check_response("binomial", np.array([0.0, 2.0, 1.0]), ones)
    with pytest.raises(DataError, match="negative counts"):
        check_response("poisson", np.array([0.0, -1.0, 1.0]), ones)
    with pytest.raises(DataError, match="non-integer"):
        check_response("poisson", np.array([0.0, 1.5, 1.0]), ones)
    with pytest.raises(DataError, match="non-finite"):
        check_response("poisson", np.array([0.0, np.nan, 1.0]), ones)
    with pytest.raises(DataError, match="weights"):
        check_response("poisson", np.array([0.0, 1.0, 1.0]), -ones)


@pytest.mark.parametrize("code", [BINOMIAL_LOGIT, BINOMIAL_PROBIT, POISSON_LOG])
@pytest.mark.parametrize("wt", [1.0, 3.0])
def test_row_terms_are_row_all_with_the_log_left_to_the_caller(code, wt) -> None:
    eta = np.array([-40.0, -5.0, -0.3, 0.0, 0.2, 3.0, 38.0])
    for y in (0.0, 1.0) if code != POISSON_LOG else (0.0, 2.0):
        for e in eta:
            lin, fac, *rest = row_terms(code, e, y, wt)
            dev, *ref = row_all(code, e, y, wt)
            assert lin + 2.0 * np.log(fac) == pytest.approx(dev, rel=1e-13, abs=1e-13)
            # absolute 1e-15: at |eta| = 38 row_all's w = mu (1 - mu) cancels to 0, row_terms
            # keeps exp(-|eta|) / (1 + exp(-|eta|))^2
            np.testing.assert_allclose(rest, ref, rtol=1e-13, atol=1e-15)
            # only binary logit rows leave a factor (1 + exp(-|eta|)) to the caller
            assert (fac != 1.0) == (code == BINOMIAL_LOGIT and wt == 1.0 and abs(e) < 37)
    if code == BINOMIAL_LOGIT:
        w = row_terms(code, 38.0, 1.0, wt)[4]
        assert w == pytest.approx(wt * np.exp(-38.0) / (1 + np.exp(-38.0)) ** 2, rel=1e-14)
