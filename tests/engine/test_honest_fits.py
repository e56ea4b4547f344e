"""Issue 11: no fit is reported as converged unless it is (one test per reproducer).

Each test starts from a reproduced defect and asserts the honest outcome: a one-line data
error (CLI exit 1), or a fit whose ``converged`` is False with the reason in ``messages``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import autoglmm
from autoglmm.cli import app
from autoglmm.engine import glmm as glmm_module
from autoglmm.engine.design import make_design
from autoglmm.engine.glmm import GlmmWorkspace, _vcov_beta, _Whitened, fit_glmm
from autoglmm.engine.lmm import fit_lmm
from autoglmm.engine.optimize import RunRecord, _Check, build_report, optimize
from autoglmm.errors import DataError

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _binary(m=40, nper=12, seed=3, slope=False):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), nper)
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    b = rng.normal(0, 0.8, m)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.2 + 0.5 * X[:, 1] + b[g])))).astype(float)
    Z = X if slope else X[:, :1]
    return make_design(X, y, Z, g, re_blocks=(Z.shape[1],))[0]


# 1. non-finite log-likelihoods -------------------------------------------------------


def test_zero_prior_weight_is_a_data_error(reference_data) -> None:
    # was: loglik = -inf reported as converged after 6 evaluations (lme4: logLik -Inf)
    sleep = reference_data("sleepstudy.csv")
    sleep["w"] = 1.0
    sleep.loc[4, "w"] = 0.0
    msg = r"weights column 'w' has 1 zero weight\(s\) \(first at row 4\); prior weights must"
    with pytest.raises(DataError, match=msg):
        autoglmm.fit(SLEEP, sleep, weights="w")
    # the model frame refuses it (naming the column), and so does the engine on its own
    d = make_design(np.ones((6, 1)), np.arange(6.0), np.ones((6, 1)), np.repeat([0, 1], 3),
                    re_blocks=(1,), weights=np.array([1, 1, 0, 1, 1, 1.0]))[0]  # fmt: skip
    with pytest.raises(DataError, match="prior weights must be positive: 1 row"):
        fit_lmm(d)


def test_cli_fit_with_a_zero_weight_exits_1_naming_the_column(tmp_path, reference_data) -> None:
    sleep = reference_data("sleepstudy.csv")
    sleep["prec"] = 1.0
    sleep.loc[10, "prec"] = 0.0
    path = tmp_path / "sleep.csv"
    sleep.to_csv(path, index=False)
    out = CliRunner().invoke(app, ["fit", str(path), "--formula", SLEEP, "--weights", "prec"])
    assert out.exit_code == 1, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "weights column 'prec' has 1 zero weight" in lines[0]
    assert "Traceback" not in out.output


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_optimizer_never_calls_a_non_finite_deviance_converged(bad) -> None:
    x, f, rep = optimize(lambda x: bad, np.array([1.0]), np.array([0.0]))
    assert not rep.converged
    assert any("not finite" in m for m in rep.messages)


def test_non_finite_objective_with_gradient_is_not_converged() -> None:
    def fun(x):
        return np.inf, np.zeros(2)

    _, _, rep = optimize(fun, np.ones(2), np.full(2, -np.inf), jac=True)
    assert not rep.converged and any("not finite" in m for m in rep.messages)


def test_huge_outcome_is_a_data_error_naming_the_column(reference_data) -> None:
    # was: loglik = NaN, converged = true, exit 0
    sleep = reference_data("sleepstudy.csv")
    sleep.loc[7, "Reaction"] = 1e200
    with pytest.raises(DataError, match="column 'Reaction' has values as large as 1e\\+200"):
        autoglmm.fit(SLEEP, sleep)


def test_huge_predictor_is_a_data_error_not_a_collinear_skip(reference_data) -> None:
    # was: the predictor silently dropped as "collinear"
    sleep = reference_data("sleepstudy.csv")
    sleep["x"] = np.linspace(0, 1, len(sleep))
    sleep.loc[3, "x"] = 1e300
    with pytest.raises(DataError, match="column 'x' has values as large as 1e\\+300"):
        autoglmm.fit("Reaction ~ Days + x + (1 | Subject)", sleep)


def test_engine_refuses_huge_values_by_column_name() -> None:
    d = _binary()
    X = d.X.copy()
    X[0, 1] = -1e150
    bad = make_design(X, d.y, d.Z, d.group, re_blocks=(1,), x_names=("(Intercept)", "ses"))[0]
    with pytest.raises(DataError, match="fixed-effect column 'ses'"):
        fit_glmm(bad, family="binomial")


def test_cli_fit_and_search_exit_1_on_extreme_values(tmp_path, reference_data) -> None:
    # was: search failed with "tau2 must be a finite variance" and exit 2 (usage)
    sleep = reference_data("sleepstudy.csv")
    sleep["Days2"] = sleep["Days"] ** 2
    sleep.loc[0, "Reaction"] = 1e244  # an SPSS-style missing-value code
    path = tmp_path / "sleep.csv"
    sleep.to_csv(path, index=False)
    fit = CliRunner().invoke(app, ["fit", str(path), "--formula", SLEEP])
    assert fit.exit_code == 1 and "Reaction" in fit.output, fit.output
    ranking = tmp_path / "ranking.txt"
    ranking.write_text("Days\nDays2\n")
    args = ["search", str(path), "-y", "Reaction", "-g", "Subject", "--ranking", str(ranking)]
    out = CliRunner().invoke(app, [*args, "--min-group-size", "1", "--no-progress"])
    assert out.exit_code == 1, out.output
    assert "Reaction" in out.output and "RuntimeWarning" not in out.output


def test_non_finite_tau2_in_search_is_a_data_error_exit_1(tmp_path, reference_data, monkeypatch):
    # was: "tau2 must be a finite variance", a usage error (exit 2) for a data problem
    import autoglmm.selection as selection

    sleep = reference_data("sleepstudy.csv")
    path = tmp_path / "sleep.csv"
    sleep.to_csv(path, index=False)
    ranking = tmp_path / "ranking.txt"
    ranking.write_text("Days\n")
    real = selection.cov_re_of
    monkeypatch.setattr(selection, "cov_re_of", lambda fit, g: real(fit, g) * np.inf)
    args = ["search", str(path), "-y", "Reaction", "-g", "Subject", "--ranking", str(ranking)]
    out = CliRunner().invoke(app, [*args, "--min-group-size", "1", "--no-progress",
                                   "--out", str(tmp_path / "out")])  # fmt: skip
    assert out.exit_code == 1, out.output
    assert "tau2 of the null model is not finite" in out.output
    assert "recode" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "out").exists()


# 2. identifiability ------------------------------------------------------------------


def test_one_row_per_group_is_refused_as_lme4_does(reference_data) -> None:
    # was: exit 0 with tau2 = sigma2, "converged, not singular"; lme4: "number of levels of
    # each grouping factor must be < number of observations"
    sleep = reference_data("sleepstudy.csv")
    sleep["row"] = np.arange(len(sleep))
    with pytest.raises(DataError, match="180 levels for 180 observations"):
        autoglmm.fit("Reaction ~ Days + (1 | row)", sleep)


def test_search_grouped_by_a_row_id_exits_1(tmp_path, reference_data) -> None:
    # was: search --min-group-size 1 exit 0 with "converged, not singular"
    sleep = reference_data("sleepstudy.csv")
    sleep["row"] = np.arange(len(sleep))
    path = tmp_path / "sleep.csv"
    sleep.drop(columns="Subject").to_csv(path, index=False)
    ranking = tmp_path / "ranking.txt"
    ranking.write_text("Days\n")
    args = ["search", str(path), "-y", "Reaction", "-g", "row", "--ranking", str(ranking)]
    out = CliRunner().invoke(app, [*args, "--min-group-size", "1", "--no-progress"])
    assert out.exit_code == 1 and "levels for 180 observations" in out.output, out.output


def test_random_slopes_need_more_observations_than_random_effects() -> None:
    # 2 rows per group and (1 + x | g): 2 x 50 = 100 random effects for 100 rows
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(50), 2)
    X = np.column_stack([np.ones(100), rng.normal(size=100)])
    y = X @ [1.0, 0.5] + rng.normal(size=100)
    d = make_design(X, y, X, g, re_blocks=(2,), z_names=("(Intercept)", "x"))[0]
    with pytest.raises(DataError, match=r"\(\(Intercept\), x\) x 50 groups = 100 random effects"):
        fit_lmm(d)
    # uncorrelated terms are checked term by term, as lme4 does: 50 < 100 is identifiable
    assert fit_lmm(make_design(X, y, X, g, re_blocks=(1, 1))[0]).loglik < 0


def test_glmm_allows_an_observation_level_random_effect_as_lme4_does() -> None:
    # glmer accepts levels == observations (no residual variance to confound); more is refused
    d = _binary(m=60, nper=1)
    assert np.isfinite(fit_glmm(d, family="binomial").loglik)
    d2 = _binary(m=60, nper=1, slope=True)  # 2 x 60 random effects for 60 rows
    with pytest.raises(DataError, match="120 random effects for 60 observations"):
        fit_glmm(d2, family="binomial")


# 4. silent GLMM failures -------------------------------------------------------------


def test_pirls_failure_is_never_a_converged_fit(monkeypatch) -> None:
    real = glmm_module.pirls_modes

    def failing(*args):
        out = real(*args)
        out[4][0] = 2  # group 0: step-halving failed
        return out

    monkeypatch.setattr(glmm_module, "pirls_modes", failing)
    res = fit_glmm(_binary(), family="binomial")
    assert not res.convergence.converged
    assert any("PIRLS did not find the conditional modes" in m for m in res.convergence.messages)


def test_pirls_failure_makes_the_deviance_infinite() -> None:
    d = _binary()
    ws = GlmmWorkspace(d, glmm_module.family_code("binomial")[0])
    md = ws.modes(np.array([0.8]), np.array([0.2, 0.5]))
    assert md.ok and np.isfinite(ws.deviance_at(md))
    md.status[3] = 1
    assert ws.deviance_at(md) == np.inf
    assert md.failure() == "PIRLS did not find the conditional modes: 1 group(s) iteration limit"


def test_laplace_gradient_is_infinite_where_pirls_fails(monkeypatch) -> None:
    # the gradient's implicit derivative of the modes uses PIRLS's own factor of the
    # curvature at the mode: where PIRLS fails there is neither a deviance nor a gradient
    real = glmm_module.pirls_modes

    def failing(*args):
        out = real(*args)
        out[4][1] = 3  # group 1: curvature not positive definite
        return out

    monkeypatch.setattr(glmm_module, "pirls_modes", failing)
    ws = GlmmWorkspace(_binary(), glmm_module.family_code("binomial", "probit")[0])
    f, g, md = ws.laplace_and_gradient(np.array([0.8]), np.array([0.2, 0.5]))
    assert f == np.inf and g.shape == (3,) and not g.any()
    assert (
        md.failure()
        == "PIRLS did not find the conditional modes: 1 group(s) H not positive definite"
    )


def test_vcov_fallback_is_lme4s_rx_and_says_so() -> None:
    d = _binary()
    ws = GlmmWorkspace(d, glmm_module.family_code("binomial")[0])
    theta, beta = np.array([0.8]), np.array([0.2, 0.5])
    wh = _Whitened(1, beta, np.eye(2), np.ones(1))
    H = -np.eye(3)  # not positive definite
    vc, note = _vcov_beta(H, wh, ws, theta, beta, None)
    assert note is not None and "(RX'RX)^-1" in note
    R = ws.beta_information(theta, beta)
    np.testing.assert_allclose(vc, np.linalg.inv(R @ R.T), rtol=1e-12)
    good, none = _vcov_beta(2 * np.eye(3), wh, ws, theta, beta, None)
    assert none is None and np.allclose(good, np.eye(2))


def test_report_describes_the_returned_estimate(reference_data, laplace_hessian) -> None:
    # was: _newton_polish moved the estimate but kept the old flag and the old-point vcov
    from autoglmm.engine.optimize import lme4_scaled_gradient

    d = _binary(m=80, nper=15, slope=True)
    res = fit_glmm(d, family="binomial")
    ws = GlmmWorkspace(d, glmm_module.family_code("binomial")[0])
    H = laplace_hessian(ws, res.theta, res.beta)
    nt = len(res.theta)
    g = ws.laplace_and_gradient(res.theta, res.beta)[1]
    assert res.convergence.converged
    assert res.convergence.scaled_gradient == pytest.approx(lme4_scaled_gradient(g, H), abs=1e-6)
    np.testing.assert_allclose(res.vcov_beta, np.linalg.inv(H / 2)[nt:, nt:], rtol=1e-4)


def test_abnormal_line_search_is_not_success() -> None:
    # a gradient of the wrong sign: L-BFGS-B's line search fails (ABNORMAL) at once
    def fun(x):
        return float(x @ x), -2.0 * x

    _, _, rep = optimize(fun, np.array([3.0, 1.0]), np.full(2, -np.inf), jac=True)
    assert "ABNORMAL" in rep.optimizer_status
    assert not rep.converged and not rep.optimizer_success
    assert any("failed" in m for m in rep.messages)


def test_abnormal_stop_at_a_checked_optimum_is_accepted_and_said() -> None:
    run = RunRecord("L-BFGS-B", False, "ABNORMAL_TERMINATION_IN_LNSRCH", False, 10)
    good = _Check(1e-7, 1.0, True, True, ())
    rep = build_report(run, good, singular=False, grad_tol=2e-3)
    assert rep.converged and any("ABNORMAL" in m and "accepted" in m for m in rep.messages)
    bad = _Check(5e-2, 1.0, False, True, ("scaled gradient 0.05 above tolerance 0.002",))
    assert not build_report(run, bad, singular=False, grad_tol=2e-3).converged
    failed = build_report(run, good, singular=False, grad_tol=2e-3, extra=("PIRLS ...",))
    assert not failed.converged


def test_dataframe_weights_column_zero_in_glmm_is_refused() -> None:
    df = pd.DataFrame(
        {"y": [0.5, 0.25, 1.0, 0.0] * 5, "g": np.repeat(np.arange(5), 4), "n": [4.0] * 19 + [0.0]}
    )
    with pytest.raises(DataError, match="prior weights must be positive"):
        autoglmm.fit("y ~ 1 + (1 | g)", df, family="binomial", weights="n")
