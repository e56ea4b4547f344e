"""The search's prepared design fits exactly what fit() fits, formula for formula.

:class:`autoglmm.prepared.PreparedSample` evaluates each column once and keeps the
cross-products; every model it serves must agree with :func:`autoglmm.fit` on the same
formula: log-likelihood, estimates, names, dropped collinear columns and messages.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoglmm.datasets import simulate_lsa
from autoglmm.errors import DataError
from autoglmm.fitting import fit
from autoglmm.likelihood_ratio import lrt
from autoglmm.prepared import PreparedSample, Unprepared

FORMULAS = [
    "math ~ 1 + (1 | school)",
    "math ~ 1 + ses + (1 | school)",
    "math ~ 1 + ses + C(track) + (1 | school)",
    "math ~ 1 + ses + C(track) + ses:C(track) + (1 | school)",
    "math ~ 1 + ses + ses_copy + (1 | school)",  # collinear: ses_copy dropped
    "math ~ 1 + ses + study_hours + ses:study_hours + (1 + ses | school)",
    "math ~ 1 + ses + study_hours + (1 + ses + study_hours | school)",
    "math ~ 1 + ses + C(flag) + (1 + C(flag) | school)",
]


@pytest.fixture(scope="module")
def data():
    s = simulate_lsa(seed=21, n_schools=30, n_items=20)
    d = s.data.dropna(axis=1).copy()
    rng = np.random.default_rng(2)
    d["ses_copy"] = 3.0 * d["ses"] - 2.0
    d["track"] = rng.choice(["a", "b", "c"], len(d))
    d["flag"] = rng.choice(["no", "yes"], len(d))
    d["pass"] = (d["math"] > d["math"].median()).astype(int)
    return d


@pytest.fixture(scope="module")
def prepared(data):
    return PreparedSample(data, FORMULAS[0], "gaussian", "identity")


@pytest.mark.parametrize("formula", FORMULAS)
def test_prepared_fit_equals_fit(prepared, data, formula):
    ref = fit(formula, data)
    d = prepared.design(formula)
    got = prepared.fit(d)
    assert got.loglik == pytest.approx(ref.loglik, abs=1e-7)
    assert list(got.fixef.index) == list(ref.fixef.index)
    np.testing.assert_allclose(got.fixef.to_numpy(), ref.fixef.to_numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got.se.to_numpy(), ref.se.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(got.theta, ref.theta, rtol=1e-5, atol=1e-7)
    assert got.dropped_columns == ref.dropped_columns
    assert got.messages == ref.messages
    assert got.re_names == ref.re_names and got.df == ref.df and got.row_hash == ref.row_hash
    pd.testing.assert_frame_equal(got.ranef, ref.ranef, rtol=1e-5, atol=1e-6)


def test_collinear_column_is_named_as_fit_names_it(prepared):
    d = prepared.design(FORMULAS[4])
    assert d.dropped == ("ses_copy",) and "rank deficient" in d.messages[-1]


def test_warm_start_and_lrt_of_prepared_fits(prepared, data):
    small = prepared.fit(prepared.design(FORMULAS[1]))
    big_formula = "math ~ 1 + ses + (1 + ses | school)"
    big = prepared.fit(prepared.design(big_formula), small.start_values())
    ref = fit(big_formula, data)
    assert big.loglik == pytest.approx(ref.loglik, abs=1e-7)
    test = lrt(small, big, mixture=True)
    assert test.df == 2 and test.p == pytest.approx(lrt(fit(FORMULAS[1], data), ref, True).p)


def test_binomial_prepared_fit_equals_fit(data):
    formula = "pass ~ 1 + ses + C(track) + (1 + ses | school)"
    prep = PreparedSample(data, "pass ~ 1 + (1 | school)", "binomial", "logit")
    got, ref = prep.fit(prep.design(formula)), fit(formula, data, family="binomial")
    assert got.loglik == pytest.approx(ref.loglik, abs=1e-6)
    np.testing.assert_allclose(got.fixef.to_numpy(), ref.fixef.to_numpy(), rtol=1e-5)
    assert list(got.fixef.index) == list(ref.fixef.index)


def test_store_grows_and_keeps_its_cross_products(data):
    prep = PreparedSample(data, FORMULAS[0], "gaussian", "identity")
    skip = {"math", "school", "pass", "ses_copy", "ses"}
    items = [c for c in data.select_dtypes("number").columns if c not in skip]
    assert len(items) > 16
    for k in (5, len(items)):  # the second model grows the store past its capacity
        formula = "math ~ 1 + ses + " + " + ".join(items[:k]) + " + (1 + ses | school)"
        got, ref = prep.fit(prep.design(formula)), fit(formula, data)
        assert got.loglik == pytest.approx(ref.loglik, abs=1e-7)
        np.testing.assert_allclose(got.fixef.to_numpy(), ref.fixef.to_numpy(), rtol=1e-6)
    assert prep.store.C.shape[1] > 16


def test_rows_fit_would_drop_are_not_served(data):
    holes = data.copy()
    holes.loc[holes.index[:5], "ses"] = np.nan
    prep = PreparedSample(holes, FORMULAS[0], "gaussian", "identity")
    assert prep.design(FORMULAS[1]) is None  # fit() drops those rows: the search uses it
    holes.loc[holes.index[:5], "math"] = np.nan
    with pytest.raises(Unprepared):
        PreparedSample(holes, FORMULAS[0], "gaussian", "identity")


def test_huge_values_are_the_same_error_as_fit(data):
    bad = data.copy()
    bad["ses"] = bad["ses"] * 1e120
    prep = PreparedSample(bad, FORMULAS[0], "gaussian", "identity")
    with pytest.raises(DataError, match="values as large as") as got:
        prep.design(FORMULAS[1])
    with pytest.raises(DataError) as ref:
        fit(FORMULAS[1], bad)
    assert str(got.value) == str(ref.value)
