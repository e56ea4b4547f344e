"""fit() against lme4: every gaussian reference case, plus options, warm starts, edge cases.

Tolerances are those of tests/reference/README.md: loglik 1e-5 absolute, fixef 1e-4
relative, se and cov_re 1e-3 relative. cov_re is compared relative to the scale
sqrt(G_ii G_jj) of each element: an off-diagonal near 0 (hsb82: correlation -0.01) has no
meaningful relative error of its own, and lme4 stops where the deviance is flat in it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import autoglmm
from autoglmm.errors import UsageError

REFERENCE_DIR = Path(__file__).parent / "reference"

GAUSSIAN_CASES = [
    "sleepstudy_ml",
    "sleepstudy_reml",
    "exam_null_ml",
    "exam_slope_ml",
    "exam_slope_reml",
    "hsb82_slope_ml",
]


def _lme4_name(name: str) -> str:
    """formulaic's 'sex[T.M]' / 'C(x)[T.2]' -> lme4's 'sexM' / 'x2'."""
    return re.sub(r"(?:C\()?(\w+)\)?\[T\.([^\]]+)\]", r"\1\2", name)


@pytest.fixture(scope="module")
def fits(lme4_reference, reference_data):
    cache = {}

    def get(case):
        if case not in cache:
            c = lme4_reference[case]
            df = reference_data(c["data"])
            for col, levels in c["factor_levels"].items():
                if col in df.columns:  # R's level order (e.g. schgend: mixed, boys, girls)
                    df[col] = pd.Categorical(df[col].astype(str), categories=levels)
            cache[case] = autoglmm.fit(c["formula"], df, reml=c["REML"])
        return cache[case], lme4_reference[case]

    return get


@pytest.mark.parametrize("case", GAUSSIAN_CASES)
def test_loglik_and_criteria_match_lme4(fits, case):
    m, ref = fits(case)
    assert m.converged and not m.singular
    assert m.loglik == pytest.approx(ref["logLik"], abs=1e-5)
    assert m.df == ref["df"] and m.nobs == ref["nobs"]
    assert m.aic == pytest.approx(ref["AIC"], abs=2e-5)
    assert m.deviance == pytest.approx(ref["deviance"], abs=2e-5)


@pytest.mark.parametrize("case", GAUSSIAN_CASES)
def test_fixef_and_se_match_lme4(fits, case):
    m, ref = fits(case)
    fixef = {_lme4_name(k): v for k, v in m.fixef.items()}
    se = {_lme4_name(k): v for k, v in m.se.items()}
    assert set(fixef) == set(ref["fixef"])
    for name, value in ref["fixef"].items():
        assert fixef[name] == pytest.approx(value, rel=1e-4), name
        assert se[name] == pytest.approx(ref["se"][name], rel=1e-3), name


@pytest.mark.parametrize("case", GAUSSIAN_CASES)
def test_cov_re_and_sigma2_match_lme4(fits, case):
    m, ref = fits(case)
    group = next(iter(ref["cov_re"]))
    assert m.group == group
    assert m.re_names[group] == list(np.atleast_1d(ref["re_names"][group]))
    ours = m.cov_re[group].to_numpy()
    theirs = np.array(ref["cov_re"][group])
    scale = np.sqrt(np.outer(np.diag(theirs), np.diag(theirs)))
    assert np.all(np.abs(ours - theirs) <= 1e-3 * scale)
    assert m.sigma2 == pytest.approx(ref["sigma2"], rel=1e-3)
    assert m.ngroups == len(ref["factor_levels"][group])


def test_ranef_are_conditional_modes_as_lme4(reference_data):
    sleep = reference_data("sleepstudy.csv")
    m = autoglmm.fit("Reaction ~ Days + (Days | Subject)", sleep)
    # lme4 1.1-31: head(ranef(lmer(..., REML = FALSE))$Subject, 3)
    lme4_ranef = [
        [2.81578901967, 9.07550677755],
        [-40.04785491791, -8.64415166183],
        [-38.43249686708, -5.51347060482],
    ]
    assert list(m.ranef.index[:3]) == [308, 309, 310]
    # lme4's bobyqa stops theta ~4e-5 (relative) short of ours (our loglik is 1e-8 higher),
    # which moves these modes by up to 4e-5 relative: 1e-4 is the README's precision
    np.testing.assert_allclose(m.ranef.iloc[:3].to_numpy(), lme4_ranef, rtol=1e-4)
    # fitted values = X beta + Z b, in input row order
    row = sleep.iloc[0]
    expected = m.fixef["(Intercept)"] + m.fixef["Days"] * row["Days"]
    expected += m.ranef.loc[row["Subject"]].to_numpy() @ [1.0, row["Days"]]
    assert m.fitted.iloc[0] == pytest.approx(expected, rel=1e-12)


def _slope_data(seed, slope_sd):
    rng = np.random.default_rng(seed)
    m, k = 40, 15
    g = np.repeat(np.arange(m), k)
    x = rng.normal(size=m * k)
    b0, b1 = rng.normal(size=m), rng.normal(size=m) * slope_sd
    y = 1.0 + 0.5 * x + b0[g] + b1[g] * x + rng.normal(size=m * k)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def test_zero_slope_variance_gives_singular_converged_fit():
    m = autoglmm.fit("y ~ x + (1 + x | g)", _slope_data(seed=11, slope_sd=0.0))
    assert m.singular and m.converged
    # the boundary fit equals the random-intercept fit's likelihood or beats it
    m0 = autoglmm.fit("y ~ x + (1 | g)", _slope_data(seed=11, slope_sd=0.0))
    assert m.loglik >= m0.loglik - 1e-8
    assert any("singular" in msg for msg in m.messages)


def test_rank_deficient_design_names_dropped_column():
    df = _slope_data(seed=2, slope_sd=0.3)
    df["x_copy"] = 2.0 * df["x"]
    m = autoglmm.fit("y ~ x + x_copy + (1 | g)", df)
    assert m.dropped_columns == ("x_copy",)
    assert list(m.fixef.index) == ["(Intercept)", "x"]
    assert any("x_copy" in msg for msg in m.messages)
    ref = autoglmm.fit("y ~ x + (1 | g)", df)
    assert m.loglik == pytest.approx(ref.loglik, abs=1e-9)


def test_warm_start_from_smaller_model_reaches_same_optimum():
    df = _slope_data(seed=3, slope_sd=0.5)
    small = autoglmm.fit("y ~ x + (1 | g)", df)
    cold = autoglmm.fit("y ~ x + (1 + x | g)", df)
    warm = autoglmm.fit("y ~ x + (1 + x | g)", df, start=small.start_values())
    assert warm.loglik == pytest.approx(cold.loglik, abs=1e-7)
    assert warm.convergence.n_evaluations <= cold.convergence.n_evaluations + 10


def test_uncorrelated_terms_have_zero_covariance():
    df = _slope_data(seed=4, slope_sd=0.5)
    m = autoglmm.fit("y ~ x + (1 | g) + (0 + x | g)", df)
    assert m.cov_re["g"].iat[0, 1] == 0.0 and m.df == 5
    corr = autoglmm.fit("y ~ x + (1 + x | g)", df)
    assert corr.loglik >= m.loglik - 1e-8


def test_data_from_a_file_path(tmp_path):
    df = _slope_data(seed=5, slope_sd=0.5)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    a = autoglmm.fit("y ~ x + (1 | g)", path)
    b = autoglmm.fit("y ~ x + (1 | g)", df)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"family": "gamma"}, "unknown family"),
        ({"family": "poisson", "link": "logit"}, "not available"),
        ({"family": "binomial", "reml": True}, "REML"),
        ({"nagq": 5}, "nagq"),
    ],
)
def test_bad_options_are_usage_errors(kwargs, needle):
    with pytest.raises(UsageError, match=needle):
        autoglmm.fit("y ~ x + (1 | g)", _slope_data(seed=6, slope_sd=0.1), **kwargs)


@pytest.mark.parametrize(
    ("reml", "lme4_loglik"), [(False, -871.053285763927), (True, -866.841781293956)]
)
def test_prior_weights_match_lme4(reference_data, reml, lme4_loglik):
    """lme4 1.1-31 values, made with (sleepstudy.csv, Subject as factor):
    d$w <- 1 + (d$Days %% 3) / 2
    lmer(Reaction ~ Days + (Days | Subject), d, REML = reml, weights = w)
    """
    d = reference_data("sleepstudy.csv")
    d["w"] = 1 + (d["Days"] % 3) / 2
    m = autoglmm.fit("Reaction ~ Days + (Days | Subject)", d, weights="w", reml=reml)
    assert m.loglik == pytest.approx(lme4_loglik, abs=1e-5)
    if not reml:
        assert m.fixef["Days"] == pytest.approx(10.5978148052865, rel=1e-4)
        assert m.se["Days"] == pytest.approx(1.57630106501184, rel=1e-3)
        assert m.sigma2 == pytest.approx(838.138333748581, rel=1e-3)
        assert m.cov_re["Subject"].iat[0, 0] == pytest.approx(606.8522454616995, rel=1e-3)


def test_factor_random_effect_without_intercept_matches_lme4(reference_data):
    """lme4 1.1-31 (exam.csv, school and sex as factors):
    logLik(lmer(normexam ~ standLRT + (0 + sex | school), d, REML = FALSE))"""
    m = autoglmm.fit("normexam ~ standLRT + (0 + sex | school)", reference_data("exam.csv"))
    assert m.re_names["school"] == ["sex[F]", "sex[M]"]  # one random effect per level
    assert m.loglik == pytest.approx(-4676.7363954679, abs=1e-5)


def test_large_response_mean_does_not_cost_precision(reference_data):
    """Adding 1e8 to y only moves the intercept. The statistics are built from residuals of
    a least-squares fit; from raw y the penalised RSS loses 1e-16 * 1e16 / 25**2 of its
    precision to cancellation (measured: loglik off by 1.5 and not converged)."""
    d = reference_data("sleepstudy.csv")
    base = autoglmm.fit("Reaction ~ Days + (Days | Subject)", d)
    shifted = autoglmm.fit(
        "Reaction ~ Days + (Days | Subject)", d.assign(Reaction=d.Reaction + 1e8)
    )
    assert shifted.converged
    assert shifted.loglik == pytest.approx(base.loglik, abs=1e-7)
    assert shifted.fixef["(Intercept)"] - 1e8 == pytest.approx(base.fixef["(Intercept)"], abs=1e-6)
    assert shifted.fixef["Days"] == pytest.approx(base.fixef["Days"], rel=1e-9)


# --- lme4 syntax as R users write it (tests/reference/make_syntax_reference.R) --------------

SYNTAX_CASES = [
    "nlschools_I_power_int",  # I(SES^2) on an integer column: a power, not XOR
    "nlschools_I_power_float",
    "nlschools_factor",  # lme4 stops short here (max|grad| 1.5): ours must be >= lme4's
    "ratpup_treatment",  # a column named Treatment
    "mmmec_offset",  # Poisson rates: offset(log(expected))
    "ome_cbind",  # binomial counts: cbind(Correct, Trials - Correct)
    "arabidopsis_backticks",  # `total.fruits` and factor(nutrient)
    "odd_names",  # `it's score`, école, 学校, `1st`, factor(`x-y`), (1 | `school id`)
    "function_names",  # columns named Sum, log, scale, center, C, Q
]


@pytest.fixture(scope="module")
def syntax_fits():
    ref = json.loads((REFERENCE_DIR / "syntax_reference.json").read_text(encoding="utf-8"))
    cache = {}

    def get(case):
        if case not in cache:
            c = ref[case]
            df = pd.read_csv(REFERENCE_DIR / c["data"])
            cache[case] = autoglmm.fit(c["formula"], df, family=c["family"])
        return cache[case], ref[case]

    return get


def _r_style(name: str) -> str:
    """Our 'sex[T.Male]' -> lme4's 'sexMale'; lme4 backticks a non-syntactic column name."""
    from autoglmm.formula_syntax import quote_name

    parts = [re.sub(r"\[T\.([^\]]*)\]$", r"\1", p) for p in name.split(":")]
    return ":".join(p if "(" in p or p == "(Intercept)" else quote_name(p) for p in parts)


@pytest.mark.parametrize("case", SYNTAX_CASES)
def test_r_syntax_gives_lme4s_model(syntax_fits, case):
    """The formula exactly as the R script has it: lme4's likelihood (or better), lme4's
    coefficients by lme4's names. GLMM values are lme4's defaults (PIRLS to 1e-7), so
    their fixef agree to 1e-3 there, as for the GLMM cases of tests/reference/README.md."""
    m, ref = syntax_fits(case)
    assert m.loglik >= ref["logLik"] - 1e-6
    if not ref["conv_messages"] or "singular" in ref["conv_messages"][0]:
        assert m.loglik == pytest.approx(
            ref["logLik"], abs=1e-5 if case != "mmmec_offset" else 3e-5
        )
        rel = 1e-4 if ref["family"] == "gaussian" else 1e-3
        fixef = {_r_style(k): v for k, v in m.fixef.items()}
        assert list(fixef) == list(ref["fixef"])
        for name, value in ref["fixef"].items():
            assert fixef[name] == pytest.approx(value, rel=rel, abs=1e-8), name
    assert m.df == ref["df"] and m.nobs == ref["nobs"]


def test_categorical_treatment_column_in_C_keeps_the_term(syntax_fits):
    """C(Treatment) on a text column named Treatment is that factor (was: silently dropped)."""
    _, ref = syntax_fits("ratpup_treatment")
    rats = pd.read_csv(REFERENCE_DIR / "ratpup.csv")
    m = autoglmm.fit("weight ~ sex + Lsize + C(Treatment) + (1 | Litter)", rats)
    assert "C(Treatment)[T.Low]" in m.fixef.index
    assert m.loglik == pytest.approx(ref["logLik"], abs=1e-5)


def test_offset_is_the_same_as_lme4s_offset_argument(syntax_fits):
    """offset(log(expected)) in the formula = subtracting it from eta: the intercept-only
    rate model equals the count model with log(expected) as a fixed coefficient 1."""
    m, ref = syntax_fits("mmmec_offset")
    assert m.fixef["uvb"] == pytest.approx(ref["fixef"]["uvb"], rel=1e-3)
    mmmec = pd.read_csv(REFERENCE_DIR / "mmmec.csv")
    without = autoglmm.fit("deaths ~ uvb + (1 | region)", mmmec, family="poisson")
    assert without.loglik < m.loglik - 100  # the offset really reaches the engine


def _odd_names_data(names):
    rng = np.random.default_rng(1)
    m, k = 30, 25
    g = np.repeat(np.arange(m), k)
    a, b = rng.normal(size=(2, m * k))
    y = 0.5 * a + 0.4 * b + rng.normal(size=m)[g] + rng.normal(size=m * k)
    return pd.DataFrame({"out come": y, names[0]: a, names[1]: b, names[2]: g})


@pytest.mark.parametrize("names", [("x|y", "~", "school id"), ("a`b", "TRUE", "学校")])
def test_search_quotes_any_predictor_and_group_name(names):
    """Names with '|', '~', a backtick, or R's TRUE reach the search's formulas intact."""
    df = _odd_names_data(names)
    res = autoglmm.search(
        df, "out come", names[2], ranking=list(names[:2]), progress=False, seed=1, patience=1
    )
    accepted = [s.term for s in res.steps if s.status == "accepted" and s.stage == "fixed"]
    assert accepted == list(names[:2])
    direct = autoglmm.fit(res.steps[1].formula, df)
    assert list(direct.fixef.index) == ["(Intercept)", *names[:2]]


def test_duplicate_column_names_in_a_file_are_renamed_and_said(tmp_path, reference_data):
    from autoglmm.sample import build_sample

    d = reference_data("sleepstudy.csv")[["Reaction", "Days", "Subject"]]
    path = tmp_path / "dup.csv"
    d.assign(Days2=d["Days"] * 2).rename(columns={"Days2": "Days"}).to_csv(path, index=False)
    with pytest.warns(UserWarning, match="'Days' -> 'Days.1'"):
        data = autoglmm.read_data(path)
    sample = build_sample(data, "Reaction", "Subject", min_group_size=5)
    assert "repeated column 'Days' renamed 'Days.1'" in sample.report.to_text()
