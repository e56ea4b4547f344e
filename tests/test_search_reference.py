"""A search with a given ranking, cross-checked against lme4 and against direct fits.

On the exam and hsb82 data (tests/reference, values from make_reference.R), the search
with a fixed ranking and the paper's rule (``patience=1``: each candidate at alpha, stop at
the first non-significant one) passes through lme4's reference models: their log-likelihoods must
agree with lme4's to 1e-5, and every model of the trace must equal a cold fit of its
formula. schgend (p = 0.10) and meanses:cses (p = 0.17) are not significant at 0.05, so
the per-stage levels alpha_fixed / alpha_interaction = 0.2 let the search reach lme4's
models (and exercise those settings).
"""

from __future__ import annotations

import numpy as np
import pytest

from autoglmm.fitting import fit
from autoglmm.selection import search


@pytest.fixture(scope="module")
def exam_search(reference_data):
    data = reference_data("exam.csv")
    data["school"] = data["school"].astype(str)
    return search(
        data, "normexam", "school", predictors=["standLRT", "sex", "schgend"],
        ranking=["standLRT", "sex", "schgend"], n_essential=0, min_group_size=1,
        alpha_fixed=0.2, patience=1, progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def hsb_search(reference_data):
    data = reference_data("hsb82.csv")
    ranking = ["meanses", "cses", "sector", "minrty", "sx"]
    return search(data, "mAch", "school", predictors=ranking, ranking=ranking, n_essential=2,
                  alpha_interaction=0.2, min_group_size=1, patience=1, progress=False)  # fmt: skip


def _step(result, stage, term):
    return next(s for s in result.steps if s.stage == stage and s.term == term)


def test_exam_models_equal_lme4(exam_search, lme4_reference):
    res = exam_search
    assert res.sample.n_obs == lme4_reference["exam_slope_ml"]["nobs"]
    assert res.null.loglik == pytest.approx(lme4_reference["exam_null_ml"]["logLik"], abs=1e-5)
    assert [(s.term, s.status) for s in res.steps if s.stage == "fixed"] == [
        ("standLRT", "accepted"), ("sex", "accepted"), ("schgend", "accepted")
    ]  # fmt: skip
    assert 0.05 < _step(res, "fixed", "schgend").p < 0.2  # accepted only by alpha_fixed
    slope = _step(res, "slope", "standLRT")
    ref = lme4_reference["exam_slope_ml"]
    assert slope.loglik == pytest.approx(ref["logLik"], abs=1e-5)
    assert slope.df == ref["df"]
    assert slope.status == "accepted"
    # sex is binary, so it may have a slope: tested with q = 2 random effects before
    sex = _step(res, "slope", "sex")
    assert sex.test_df == 3 and "chi2(2) and chi2(3)" in sex.reason


def test_exam_icc_matches_lme4(exam_search, lme4_reference):
    ref = lme4_reference["exam_null_ml"]
    tau2 = ref["cov_re"]["school"][0][0]
    assert exam_search.icc == pytest.approx(tau2 / (tau2 + ref["sigma2"]), rel=1e-4)


def test_hsb82_interaction_and_slope_equal_lme4(hsb_search, lme4_reference):
    res = hsb_search
    assert [s.status for s in res.steps if s.stage == "fixed"] == ["accepted"] * 5
    inter = [s for s in res.steps if s.stage == "interaction"]
    assert [(s.term, s.status) for s in inter] == [("meanses:cses", "accepted")]
    assert 0.05 < inter[0].p < 0.2  # accepted only by alpha_interaction
    assert _step(res, "slope", "meanses").status == "skipped"  # level 2
    ref = lme4_reference["hsb82_slope_ml"]
    slope = _step(res, "slope", "cses")
    assert slope.loglik == pytest.approx(ref["logLik"], abs=1e-5)
    assert slope.df == ref["df"]


@pytest.mark.parametrize("which", ["exam_search", "hsb_search"])
def test_every_trace_model_equals_a_direct_fit(which, request):
    res = request.getfixturevalue(which)
    data = res.sample.data
    for step in res.steps:
        if step.formula:
            direct = fit(step.formula, data, reml=False)
            assert step.loglik == pytest.approx(direct.loglik, abs=1e-6), step.formula
            assert (step.df, step.aic) == (direct.df, pytest.approx(direct.aic, abs=1e-5))


def test_binomial_search_passes_through_lme4_models(reference_data, lme4_reference):
    """contraception: ICC 0.07 stops the search unless forced; forced, it reaches lme4's
    models. lme4 stopped short there (max|grad| messages), so ours must be at least as good."""
    data = reference_data("contraception.csv")
    data["use"] = (data["use"] == "Y").astype(int)
    data["age2"] = data["age"] ** 2
    ranking = ["urban", "livch", "age2", "age"]
    kwargs = dict(family="binomial", predictors=ranking, ranking=ranking, n_essential=0,
                  min_group_size=1, patience=1, progress=False)  # fmt: skip
    stopped = search(data, "use", "district", **kwargs)
    assert stopped.stop_reason is not None and stopped.icc < 0.1 and stopped.steps == ()
    res = search(data, "use", "district", force=True, alpha_fixed=0.8, **kwargs)
    assert [s.status for s in res.steps if s.stage == "fixed"] == ["accepted"] * 4
    for step, case in ((res.steps[3], "contraception_int_laplace"),
                       (_step(res, "slope", "urban"), "contraception_slope_laplace")):  # fmt: skip
        ref = lme4_reference[case]["logLik"]
        assert ref - 1e-6 <= step.loglik < ref + 1e-3, (case, step.loglik, ref)
    assert "4 levels" in _step(res, "slope", "livch").reason


def test_poisson_search_matches_lme4(reference_data, lme4_reference):
    data = reference_data("grouseticks.csv")
    data["YEAR"] = data["YEAR"].astype(str)
    res = search(data, "TICKS", "BROOD", family="poisson", predictors=["YEAR", "HEIGHT"],
                 ranking=["YEAR", "HEIGHT"], n_essential=0, min_group_size=1,
                 patience=1, progress=False)  # fmt: skip
    ref = lme4_reference["grouseticks_poisson"]["logLik"]
    assert ref - 1e-6 <= res.base.loglik < ref + 1e-3
    # ICC with the lognormal level-1 variance ln(1 + 1/lambda), lambda = exp(b0 + tau2/2)
    tau2 = res.null.cov_re["BROOD"].iloc[0, 0]
    lam = np.exp(res.null.fixef.iloc[0] + tau2 / 2)
    assert res.icc == pytest.approx(tau2 / (tau2 + np.log1p(1 / lam)))
    # HEIGHT and YEAR are brood-level: no slopes
    assert {s.status for s in res.steps if s.stage == "slope"} == {"skipped"}
