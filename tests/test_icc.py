"""ICC of SPEC section 2 step 2 for every family and link, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from autoglmm.errors import DataError, UsageError
from autoglmm.icc import icc, level1_variance


def test_gaussian_icc_is_variance_share() -> None:
    assert icc("gaussian", 0.3, sigma2=0.7) == pytest.approx(0.3)


def test_gaussian_reference_exam_null(lme4_reference) -> None:
    case = lme4_reference["exam_null_ml"]
    tau2 = case["cov_re"]["school"][0][0]
    expected = tau2 / (tau2 + case["sigma2"])
    assert icc("gaussian", tau2, sigma2=case["sigma2"]) == pytest.approx(expected, rel=1e-12)
    assert 0.1 < expected < 0.2  # the well-known ~0.17 of the inner-London exam data


def test_binomial_logit_uses_logistic_variance() -> None:
    assert level1_variance("binomial") == pytest.approx(math.pi**2 / 3)
    # tau2 = pi^2/3 gives exactly one half
    assert icc("binomial", math.pi**2 / 3) == pytest.approx(0.5)
    assert icc("binomial", 0.225834866403457) == pytest.approx(0.0642, abs=1e-4)


def test_binomial_probit_uses_unit_variance() -> None:
    assert icc("binomial", 1.0, link="probit") == pytest.approx(0.5)
    assert icc("binomial", 0.25, link="probit") == pytest.approx(0.2)


def test_poisson_lognormal_level1_variance() -> None:
    beta0, tau2 = 0.5, 0.4
    lam = math.exp(beta0 + tau2 / 2)
    expected = tau2 / (tau2 + math.log(1 + 1 / lam))
    assert icc("poisson", tau2, beta0=beta0) == pytest.approx(expected, rel=1e-14)
    # larger counts -> smaller level-1 variance on the log scale -> larger ICC
    assert icc("poisson", tau2, beta0=3.0) > icc("poisson", tau2, beta0=0.0)


def test_zero_between_variance_gives_zero() -> None:
    assert icc("binomial", 0.0) == 0.0
    assert icc("gaussian", 0.0, sigma2=1.0) == 0.0


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("weibull", 1.0), {}, "unknown family"),
        (("binomial", 1.0), {"link": "cloglog"}, "no ICC"),
        (("gaussian", 1.0), {}, "sigma2"),
        (("poisson", 1.0), {}, "beta0"),
        (("binomial", -1.0), {}, "tau2"),
    ],
)
def test_bad_arguments(args, kwargs, match) -> None:
    with pytest.raises(UsageError, match=match):
        icc(*args, **kwargs)


@pytest.mark.parametrize("tau2", [math.inf, math.nan])
def test_non_finite_tau2_is_a_data_error_saying_what_to_do(tau2) -> None:
    # a fit on extreme values gives it: a data problem (exit 1), not a wrong call (exit 2)
    with pytest.raises(DataError, match="tau2 of the null model is not finite") as err:
        icc("gaussian", tau2, sigma2=1.0)
    assert err.value.exit_code == 1 and "recode" in str(err.value)
    assert "\n" not in str(err.value)
