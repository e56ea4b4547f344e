"""The frozen Fit: derived statistics, JSON, text and HTML views."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats

import autoglmm
from autoglmm.report.table_model import format_p


@pytest.fixture(scope="module")
def sleep_fit(reference_data):
    return autoglmm.fit("Reaction ~ Days + (Days | Subject)", reference_data("sleepstudy.csv"))


def test_fit_is_frozen(sleep_fit):
    with pytest.raises(dataclasses.FrozenInstanceError):
        sleep_fit.loglik = 0.0


def test_information_criteria_and_wald_statistics(sleep_fit, lme4_reference):
    ref = lme4_reference["sleepstudy_ml"]
    assert sleep_fit.aic == pytest.approx(ref["AIC"], abs=1e-5)
    assert sleep_fit.bic == pytest.approx(-2 * ref["logLik"] + 6 * math.log(180), abs=1e-5)
    # lme4's t value for Days: 10.4672859595958 / 1.50223021383204
    assert sleep_fit.stat["Days"] == pytest.approx(10.4672859595958 / 1.50223021383204, rel=1e-4)
    z = sleep_fit.stat["Days"]
    assert sleep_fit.pvalues["Days"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    table = sleep_fit.fixef_table()
    assert list(table.columns) == ["estimate", "se", "stat", "p"]
    assert sleep_fit.n_re == 2


def test_to_dict_is_json_with_the_contract_keys(sleep_fit):
    d = json.loads(json.dumps(sleep_fit.to_dict()))
    required = {
        "loglik", "df", "aic", "bic", "deviance", "fixef", "se", "cov_re", "re_names",
        "sigma2", "converged", "singular", "messages", "nobs", "ngroups", "formula",
        "family", "reml", "nagq",
    }  # fmt: skip
    assert required <= set(d)
    assert d["cov_re"]["Subject"][0][0] == pytest.approx(565.476966132419, rel=1e-3)
    assert d["re_names"] == {"Subject": ["(Intercept)", "Days"]}
    assert d["fixef"]["Days"] == pytest.approx(10.4672859595958, rel=1e-6)
    assert d["nobs"] == 180 and d["ngroups"] == 18 and d["df"] == 6
    conv = d["convergence"]
    assert conv["scaled_gradient"] < conv["grad_tol"] and conv["hessian_min_eigenvalue"] > 0


def test_summary_has_lme4_layout(sleep_fit):
    text = sleep_fit.summary()
    assert text.startswith("Linear mixed model fit by maximum likelihood")
    for part in ("Random effects:", "Fixed effects:", "Residual", "Number of obs: 180",
                 "Subject, 18", "z value", "Pr(>|z|)", "-876.0"):  # fmt: skip
        assert part in text, part
    assert "t value" not in text  # the p-value is from the normal: the statistic is a z
    corr_line = next(line for line in text.splitlines() if line.strip().startswith("Days"))
    assert "0.08" in corr_line  # lme4 prints Corr 0.08 for this fit


def test_html_view(sleep_fit):
    html = sleep_fit._repr_html_()
    assert html.startswith("<div>") and "<table" in html and "Days" in html


def test_wald_p_value_uses_normal_reference(sleep_fit):
    expected = 2 * stats.norm.sf(np.abs(sleep_fit.fixef / sleep_fit.se))
    np.testing.assert_allclose(sleep_fit.pvalues.to_numpy(), expected)


def test_lrt_result_prints_as_a_table(reference_data, sleep_fit):
    """In a script, print(lrt(...)) shows the comparison, not a dataclass dump."""
    small = autoglmm.fit("Reaction ~ Days + (1 | Subject)", reference_data("sleepstudy.csv"))
    res = autoglmm.lrt(small, sleep_fit, mixture=True)
    text = repr(res)
    assert str(res) == text
    lines = text.splitlines()
    assert lines[0].startswith("Likelihood-ratio test")
    assert "mixture" in lines[0]
    assert lines[1].split() == ["Model", "df", "logLik", "Chisq", "Df", "p"]
    assert lines[2].split()[:3] == ["small", "4", f"{small.loglik:.2f}"]
    big = lines[3].split()
    assert big[:5] == ["big", "6", f"{sleep_fit.loglik:.2f}", f"{res.chisq:.2f}", "2"]
    assert big[5] == format_p(res.p)
    assert res.p < 1e-6 and res.chisq == pytest.approx(2 * (sleep_fit.loglik - small.loglik))


def test_tables_are_views_of_the_arrays_built_once(sleep_fit):
    """The named tables are built on first use from the engine's arrays, and kept."""
    fit = dataclasses.replace(sleep_fit)  # a new Fit: nothing built yet
    assert "fixef" not in fit.__dict__
    assert list(fit.fixef.index) == list(fit.x_names) == ["(Intercept)", "Days"]
    np.testing.assert_array_equal(fit.fixef.to_numpy(), fit.beta)
    np.testing.assert_allclose(fit.se.to_numpy() ** 2, np.diag(fit.vcov.to_numpy()))
    assert fit.fixef is fit.fixef and fit.ranef is fit.ranef
    assert fit.ranef.index.name == "Subject" and list(fit.ranef.columns) == ["(Intercept)", "Days"]
    assert fit.ranef.shape == (18, 2)
    assert list(fit.cov_re) == ["Subject"] and fit.re_names == {"Subject": ["(Intercept)", "Days"]}


def test_fitted_values_follow_the_input_rows_when_groups_are_not_sorted(reference_data):
    """Rows not sorted by group are sorted for the engine; fitted values come back labelled
    by the input's rows, equal to those of the sorted input."""
    sleep = reference_data("sleepstudy.csv")
    shuffled = sleep.sample(frac=1.0, random_state=3)
    a = autoglmm.fit("Reaction ~ Days + (Days | Subject)", sleep)
    b = autoglmm.fit("Reaction ~ Days + (Days | Subject)", shuffled)
    assert list(b.fitted.index) == list(shuffled.index)
    np.testing.assert_allclose(b.fitted.loc[sleep.index], a.fitted, rtol=1e-6)
    fitted = a.fixef["(Intercept)"] + a.fixef["Days"] * sleep["Days"]
    b_rows = a.ranef.loc[sleep["Subject"]].to_numpy()
    fitted = fitted + b_rows[:, 0] + b_rows[:, 1] * sleep["Days"]
    np.testing.assert_allclose(a.fitted, fitted, rtol=1e-10)
