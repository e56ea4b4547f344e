"""lrt: statistics against hand-computed chi-square tails, guards, and the mixture's size."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import autoglmm
from autoglmm.errors import UsageError
from autoglmm.likelihood_ratio import lrt, mixture_pvalue


def test_mixture_pvalue_closed_forms():
    # chi2_1 tail = erfc(sqrt(x/2)); chi2_2 tail = exp(-x/2)
    x = 3.2
    assert mixture_pvalue(x, 1) == pytest.approx(
        0.5 * math.erfc(math.sqrt(x / 2)) + 0.5 * math.exp(-x / 2), rel=1e-12
    )
    # q = 2: chi2_3 tail = erfc(sqrt(x/2)) + sqrt(2x/pi) exp(-x/2)
    chi3 = math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    assert mixture_pvalue(x, 2) == pytest.approx(0.5 * math.exp(-x / 2) + 0.5 * chi3, rel=1e-12)
    assert mixture_pvalue(0.0, 1) == 1.0
    # q = 0 (testing a first variance): 0.5 point mass at 0 + 0.5 chi2_1
    assert mixture_pvalue(x, 0) == pytest.approx(0.5 * math.erfc(math.sqrt(x / 2)), rel=1e-12)


@pytest.fixture(scope="module")
def sleep_fits(reference_data):
    d = reference_data("sleepstudy.csv")
    return {
        "ri": autoglmm.fit("Reaction ~ Days + (1 | Subject)", d),
        "slope": autoglmm.fit("Reaction ~ Days + (Days | Subject)", d),
        "null": autoglmm.fit("Reaction ~ 1 + (1 | Subject)", d),
        "reml": autoglmm.fit("Reaction ~ Days + (Days | Subject)", d, reml=True),
        "half": autoglmm.fit("Reaction ~ Days + (Days | Subject)", d.iloc[:90]),
    }


def test_lrt_fixed_effect_against_hand_computation(sleep_fits):
    small, big = sleep_fits["null"], sleep_fits["ri"]
    res = lrt(small, big)
    chisq = 2 * (big.loglik - small.loglik)
    assert res.chisq == pytest.approx(chisq, rel=1e-12) and res.df == 1
    assert res.p == pytest.approx(math.erfc(math.sqrt(chisq / 2)), rel=1e-9, abs=1e-300)


def test_lrt_slope_with_mixture(sleep_fits):
    small, big = sleep_fits["ri"], sleep_fits["slope"]
    res = lrt(small, big)
    # lme4: anova(ri, slope) gives Chisq 42.139 on 2 df for these data (ML fits)
    assert res.chisq == pytest.approx(42.139, abs=1e-3) and res.df == 2
    assert res.p == pytest.approx(math.exp(-res.chisq / 2), rel=1e-9)
    mix = lrt(small, big, mixture=True)
    assert mix.p == pytest.approx(
        0.5 * math.erfc(math.sqrt(res.chisq / 2)) + 0.5 * math.exp(-res.chisq / 2), rel=1e-9
    )
    assert mix.p < res.p


@pytest.mark.parametrize(
    ("small", "big", "needle"),
    [
        ("ri", "reml", "ML fits"),
        ("ri", "half", "different rows"),
        ("slope", "ri", "not nested"),
        ("null", "null", "more parameters"),
    ],
)
def test_guards(sleep_fits, small, big, needle):
    with pytest.raises(UsageError, match=needle):
        lrt(sleep_fits[small], sleep_fits[big])


def test_lrt_refuses_fixed_effects_that_are_not_nested(reference_data):
    d = reference_data("sleepstudy.csv").assign(z=lambda f: (f["Days"] % 3).astype(float))
    a = autoglmm.fit("Reaction ~ Days + (1 | Subject)", d)
    b = autoglmm.fit("Reaction ~ z + (Days | Subject)", d)
    with pytest.raises(UsageError, match="fixed effects are not nested"):
        lrt(a, b)


def test_mixture_pvalue_is_uniform_or_conservative_under_the_null():
    """No slope variance in truth: P(p < alpha) must not exceed alpha (beyond noise)."""
    rng = np.random.default_rng(20240611)
    reps, m, k = 120, 25, 8
    g = np.repeat(np.arange(m), k)
    pvals = []
    for _ in range(reps):
        x = rng.normal(size=m * k)
        y = 0.5 * x + rng.normal(size=m)[g] + rng.normal(size=m * k)
        d = pd.DataFrame({"y": y, "x": x, "g": g})
        small = autoglmm.fit("y ~ x + (1 | g)", d)
        big = autoglmm.fit("y ~ x + (1 + x | g)", d, start=small.start_values())
        pvals.append(lrt(small, big, mixture=True).p)
    pvals = np.array(pvals)
    for alpha in (0.05, 0.1, 0.25):
        # 2.5 binomial standard errors above alpha is a failure
        assert np.mean(pvals < alpha) <= alpha + 2.5 * math.sqrt(alpha * (1 - alpha) / reps)


def test_nesting_is_by_column_space_not_names(reference_data):
    d = reference_data("sleepstudy.csv")
    # same name, other values: the names match but the column spaces do not nest
    other = d.assign(Days=lambda f: (f["Days"] - 4.5) ** 2)
    a = autoglmm.fit("Reaction ~ Days + (1 | Subject)", d)
    b = autoglmm.fit("Reaction ~ Days + (Days | Subject)", other)
    with pytest.raises(UsageError, match="column space"):
        lrt(a, b)
    # different names, nested spaces: Days is inside the span of C(Days)'s dummies
    c = autoglmm.fit("Reaction ~ C(Days) + (1 | Subject)", d)
    res = lrt(a, c)
    assert res.df == 8 and res.chisq == pytest.approx(2 * (c.loglik - a.loglik), rel=1e-12)


def test_lrt_refuses_different_nagq(reference_data):
    df = reference_data("cbpp.csv")
    f = "incidence_rate ~ C(period) + (1 | herd)"
    small = autoglmm.fit("incidence_rate ~ 1 + (1 | herd)", df, family="binomial", weights="size")
    big = autoglmm.fit(f, df, family="binomial", weights="size", nagq=5)
    with pytest.raises(UsageError, match="nagq 1 vs 5"):
        lrt(small, big)


def test_mixture_requires_df_q_plus_1(reference_data):
    d = reference_data("sleepstudy.csv")
    small = autoglmm.fit("Reaction ~ Days + (1 | Subject)", d)
    # an uncorrelated slope adds 1 parameter, not q + 1 = 2: the mixture would be wrong
    uncorrelated = autoglmm.fit("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", d)
    assert uncorrelated.df - small.df == 1
    with pytest.raises(UsageError, match=r"df = 2\), but the models differ by 1"):
        lrt(small, uncorrelated, mixture=True)
    assert lrt(small, uncorrelated).df == 1
