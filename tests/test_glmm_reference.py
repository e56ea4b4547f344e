"""The GLMM engine against lme4: contraception (Laplace, slope, AGQ 9), cbpp, grouseticks.

Two kinds of lme4 values are used:

- ``tests/reference/lme4_reference.json`` (lme4's defaults). lme4 stops PIRLS at a
  relative change of 1e-7 in the penalised deviance, so its *reported* Laplace
  log-likelihood carries an error of up to ~3e-4 (first order, through log det L, in the
  error of the conditional modes), and its Hessian-based standard errors inherit noise
  from the same source (grouseticks: 0.41 instead of 1.40 for the intercept).
- ``tests/reference/lme4_engine.json`` (``Rscript make_reference.R tests/reference engine``):
  ``tight``, the same fits with ``glmerControl(tolPwrss = 1e-13)``, where PIRLS converges
  to rounding level (our objective reproduces these to ~1e-8); and ``devfun_at_default``,
  lme4's deviance function (same tight control) at the default fit's ``c(theta, fixef)``,
  as ``-dev/2`` (for grouseticks evaluated at lme4's final modes, see the R script).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

from autoglmm.engine.design import make_design, theta_from_cov
from autoglmm.engine.families import family_code
from autoglmm.engine.glmm import GlmmWorkspace, fit_glmm

ENGINE_REF = json.loads((Path(__file__).parent / "reference" / "lme4_engine.json").read_text())
LME4_TIGHT = ENGINE_REF["tight"]
DEVFUN_AT_DEFAULT_ESTIMATES = ENGINE_REF["devfun_at_default"]

CONTRA = "age + I(age**2) + urban + livch"
SPECS = {  # fixed part, outcome, random slope column (or None), group, weights column
    "contraception_int_laplace": (CONTRA, "use", None, "district", None),
    "contraception_int_agq9": (CONTRA, "use", None, "district", None),
    "contraception_slope_laplace": (CONTRA, "use", "urban", "district", None),
    "cbpp_weights_laplace": ("period", "incidence_rate", None, "herd", None),
    "grouseticks_poisson": ("YEAR + HEIGHT", "TICKS", None, "BROOD", None),
}
WEIGHTS = {"cbpp_weights_laplace": "size"}


def build(case: dict, spec, reference_data):
    """GroupedDesign of a reference case: R's factor levels, treatment contrasts."""
    fixed, outcome, slope, group, _ = spec
    df = reference_data(case["data"])
    for col in case["factors"]:
        levels = case["factor_levels"][col]
        df[col] = pd.Categorical(df[col].astype(str), categories=levels)
    X = model_matrix(fixed, df)
    y = df[outcome]
    y = (y == "Y").to_numpy(float) if outcome == "use" else y.to_numpy(float)
    Z = np.ones((len(df), 1))
    if slope is not None:
        Z = np.column_stack([Z, (df[slope] == "Y").to_numpy(float)])
    wcol = case.get("weights")
    w = None if wcol is None else df[wcol].to_numpy(float)
    design, _ = make_design(
        X.to_numpy(), y, Z, df[group].cat.codes.to_numpy(), re_blocks=(Z.shape[1],), weights=w
    )
    return design


@pytest.fixture(scope="module")
def designs(lme4_reference, reference_data):
    return {k: build(lme4_reference[k], s, reference_data) for k, s in SPECS.items()}


@pytest.fixture(scope="module")
def fits(lme4_reference, designs):
    return {
        k: fit_glmm(d, family=lme4_reference[k]["family"], nagq=lme4_reference[k]["nAGQ"])
        for k, d in designs.items()
    }


def _at_lme4_estimates(case, design):
    code, _ = family_code(case["family"])
    ws = GlmmWorkspace(design, code, case["nAGQ"])
    cov = np.atleast_2d(np.array(next(iter(case["cov_re"].values()))))
    theta = theta_from_cov(cov, 1.0, design.re_blocks)
    beta = np.array(list(case["fixef"].values()))
    return -0.5 * ws.deviance(theta, beta)


@pytest.mark.parametrize("key", sorted(DEVFUN_AT_DEFAULT_ESTIMATES))
def test_laplace_objective_at_lme4_estimates(key, lme4_reference, designs) -> None:
    case = lme4_reference[key]
    ours = _at_lme4_estimates(case, designs[key])
    assert ours == pytest.approx(DEVFUN_AT_DEFAULT_ESTIMATES[key], abs=1e-6)
    # lme4's own reported value differs only by its PIRLS tolerance
    assert ours == pytest.approx(case["logLik"], abs=3e-4)


def test_agq9_objective_at_lme4_estimates(lme4_reference, designs) -> None:
    # nine quadrature points make the integral insensitive to the mode's precision
    case = lme4_reference["contraception_int_agq9"]
    ours = _at_lme4_estimates(case, designs["contraception_int_agq9"])
    assert ours == pytest.approx(case["logLik"], abs=1e-6)


@pytest.mark.parametrize("key", sorted(SPECS))
def test_fit_agrees_with_lme4(key, lme4_reference, fits) -> None:
    case, tight, res = lme4_reference[key], LME4_TIGHT[key], fits[key]
    assert res.convergence.converged
    assert res.convergence.scaled_gradient < 1e-4
    assert not res.convergence.singular
    # equal or better than lme4 as reported, and equal to lme4 with converged PIRLS
    assert res.loglik >= case["logLik"] - 1e-6
    assert res.loglik == pytest.approx(tight["logLik"], abs=1e-5)
    fixef = np.array(list(case["fixef"].values()))
    np.testing.assert_allclose(res.beta, fixef, rtol=1e-3)
    # lme4's bobyqa stops ~1e-7 short in loglik even with tight PIRLS: compare in SE units
    assert np.max(np.abs(res.beta - tight["fixef"]) / tight["se"]) < 1e-3
    np.testing.assert_allclose(np.sqrt(np.diag(res.vcov_beta)), tight["se"], rtol=1e-3)
    cov = np.atleast_2d(np.array(next(iter(case["cov_re"].values()))))
    np.testing.assert_allclose(res.cov_re, cov, rtol=2e-3, atol=2e-4)


def test_clean_lme4_case_loglik_within_1e4(lme4_reference, fits) -> None:
    # cbpp is the one case where lme4 converged without a message; its reported logLik is
    # 2.8e-4 short of the optimum because of PIRLS tolerance (see the module docstring)
    case = lme4_reference["cbpp_weights_laplace"]
    assert case["conv_messages"] == []
    res = fits["cbpp_weights_laplace"]
    assert res.loglik == pytest.approx(LME4_TIGHT["cbpp_weights_laplace"]["logLik"], abs=1e-6)
    assert 0 <= res.loglik - case["logLik"] < 3e-4


@pytest.mark.parametrize("key", sorted(SPECS))
def test_se_against_lme4_default_within_its_own_pirls_noise(key, lme4_reference, fits) -> None:
    # lme4's default SEs come from a Hessian of a deviance whose PIRLS stopped at
    # tolPwrss = 1e-7; its own rerun at 1e-13 moves them by up to 1.3% (cbpp) and 268%
    # (grouseticks). That, not our SEs, is why a 1.5e-2 tolerance was once needed: ours
    # agree with the tight rerun to 1e-3 (test_fit_agrees_with_lme4), so against the
    # default they are within 1e-3 plus lme4's own default-vs-tight difference.
    default = np.array(list(lme4_reference[key]["se"].values()))
    tight = np.array(LME4_TIGHT[key]["se"])
    ours = np.sqrt(np.diag(fits[key].vcov_beta))
    assert np.all(np.abs(ours - default) <= 1e-3 * tight + np.abs(tight - default))


def test_probit_link_agrees_with_lme4(lme4_reference, designs) -> None:
    res = fit_glmm(designs["contraception_int_laplace"], family="binomial", link="probit")
    tight = LME4_TIGHT["contraception_int_probit"]
    assert res.link == "probit" and res.convergence.converged
    assert res.loglik == pytest.approx(tight["logLik"], abs=1e-5)
    assert np.max(np.abs(res.beta - tight["fixef"]) / tight["se"]) < 1e-3
    np.testing.assert_allclose(np.sqrt(np.diag(res.vcov_beta)), tight["se"], rtol=1e-3)


def test_through_the_public_fit(reference_data) -> None:
    import autoglmm

    df = reference_data("cbpp.csv")
    res = autoglmm.fit(
        "incidence_rate ~ C(period) + (1 | herd)", df, family="binomial", weights="size"
    )
    tight = LME4_TIGHT["cbpp_weights_laplace"]
    assert res.family == "binomial" and res.link == "logit" and res.nagq == 1
    assert res.loglik == pytest.approx(tight["logLik"], abs=1e-6)
    assert res.df == 5 and res.nobs == 56 and res.ngroups == 15
    np.testing.assert_allclose(res.se.to_numpy(), tight["se"], rtol=1e-3)
    assert res.converged and not res.singular


def test_through_the_cli_with_agq(tmp_path, lme4_reference, reference_data) -> None:
    import json

    from typer.testing import CliRunner

    from autoglmm.cli import app

    path = tmp_path / "contraception.csv"
    reference_data("contraception.csv").to_csv(path, index=False)
    formula = "use ~ age + I(age**2) + urban + livch + (1 | district)"
    args = ["fit", str(path), "--formula", formula, "--family", "binomial", "--nagq", "9"]
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    case = lme4_reference["contraception_int_agq9"]
    assert got["loglik"] == pytest.approx(case["logLik"], abs=1e-6)
    assert got["converged"] is True
    bad = CliRunner().invoke(app, [*args[:-1], "0", "--json"])
    assert bad.exit_code == 2 and "nagq" in bad.output
