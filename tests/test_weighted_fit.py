"""fit() with sampling weights at two levels: agreement with WeMix, identities, bad input.

The WeMix values (tests/reference/wemix_reference.json) come from
tests/reference/make_wemix_reference.R on tests/reference/wemix_sample.csv, a two-stage
sample with informative selection at both levels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from autoglmm import fit
from autoglmm.cli import app
from autoglmm.errors import DataError, UsageError

REFERENCE_DIR = Path(__file__).parent / "reference"

WEIGHTS = {"level1_weights": "w_total", "level2_weights": "w_school"}


@pytest.fixture(scope="module")
def wemix():
    with open(REFERENCE_DIR / "wemix_reference.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def sample():
    return pd.read_csv(REFERENCE_DIR / "wemix_sample.csv")


def _vc_value(m, key: str) -> float:
    if key == "Residual":
        return m.sigma2
    names = key.split(":")[1:]
    cov = m.cov_re["school"]
    return float(cov.loc[names[0], names[-1]])


def _vc_se(m, key: str) -> float:
    if key == "Residual":
        return m.sampling["vc_se"]["Residual"]
    names = key.split(":")[1:]
    ours = f"school: {names[0]}" if len(names) == 1 else f"school: {names[0]}, {names[1]}"
    return m.sampling["vc_se"][ours]


@pytest.mark.parametrize(
    ("case", "family", "nagq", "ll_tol"),
    [
        ("gaussian_intercept", "gaussian", 1, 1e-3),
        ("gaussian_slope", "gaussian", 1, 1e-3),
        ("binomial_intercept", "binomial", 13, 1e-2),
    ],
)
def test_agrees_with_wemix(wemix, sample, case, family, nagq, ll_tol):
    ref = wemix[case]
    m = fit(ref["formula"], sample, family=family, nagq=nagq, **WEIGHTS)
    assert m.converged
    assert m.loglik == pytest.approx(ref["lnl"], abs=ll_tol)
    for name, value in ref["coef"].items():
        assert m.fixef[name] == pytest.approx(value, rel=1e-3)
        assert m.se[name] == pytest.approx(ref["se"][name], rel=2e-2)
    named = ref.get("vars_named") or {k.replace(".", ":"): v for k, v in ref["vars"].items()}
    for key, value in named.items():
        assert _vc_value(m, key) == pytest.approx(value, rel=1e-2)
        assert _vc_se(m, key) == pytest.approx(ref["vars_se"][key], rel=2e-2)


def test_conditional_weights_give_the_same_fit(sample):
    a = fit("y ~ x1 + z + (1 | school)", sample, **WEIGHTS)
    b = fit(
        "y ~ x1 + z + (1 | school)",
        sample,
        level1_weights="w_cond",
        level2_weights="w_school",
        conditional_weights=True,
    )
    assert b.loglik == pytest.approx(a.loglik, abs=1e-8)
    np.testing.assert_allclose(b.fixef, a.fixef, rtol=1e-8)
    np.testing.assert_allclose(b.se, a.se, rtol=1e-6)


@pytest.mark.parametrize(
    ("formula", "family"),
    [("y ~ x1 + z + (1 + x1 | school)", "gaussian"), ("ybin ~ x1 + z + (1 | school)", "binomial")],
)
def test_all_weights_one_equals_the_unweighted_fit(sample, formula, family):
    data = sample.assign(one=1.0)
    ref = fit(formula, data, family=family)
    m = fit(formula, data, family=family, level1_weights="one", level2_weights="one")
    assert m.loglik == pytest.approx(ref.loglik, abs=1e-6)
    np.testing.assert_allclose(m.fixef, ref.fixef, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        m.cov_re["school"].to_numpy(), ref.cov_re["school"].to_numpy(), rtol=1e-4, atol=1e-7
    )


def test_integer_level2_weights_equal_replicated_groups_binomial(sample):
    data = sample[sample.school.isin(sorted(sample.school.unique())[:40])].copy()
    schools = sorted(data.school.unique())
    reps = dict(zip(schools, np.random.default_rng(3).integers(1, 4, len(schools)), strict=True))
    data["rep"] = data.school.map(reps).astype(float)
    copies = [
        data[data.school == s].assign(school=f"{s}_{k}") for s in schools for k in range(reps[s])
    ]
    replicated = pd.concat(copies, ignore_index=True)
    formula = "ybin ~ x1 + z + (1 | school)"
    for nagq in (1, 7):
        ref = fit(formula, replicated, family="binomial", nagq=nagq)
        m = fit(formula, data, family="binomial", nagq=nagq, level2_weights="rep")
        assert m.loglik == pytest.approx(ref.loglik, abs=1e-5)
        np.testing.assert_allclose(m.fixef, ref.fixef, rtol=1e-4)
        assert m.cov_re["school"].iat[0, 0] == pytest.approx(
            ref.cov_re["school"].iat[0, 0], rel=1e-3
        )


def _informative_sample(seed: int) -> pd.DataFrame:
    """Population intercept 1, slope 0.5; schools and students with high outcomes are
    more likely to be sampled."""
    rng = np.random.default_rng(seed)
    n_schools, size = 600, 40
    u = rng.normal(0, 0.7, n_schools)
    g = np.repeat(np.arange(n_schools), size)
    x = rng.normal(size=g.size)
    e = rng.normal(size=g.size)
    y = 1.0 + 0.5 * x + u[g] + e
    p_school = 1 / (1 + np.exp(-(-1.5 + 2.0 * u)))
    p_student = 1 / (1 + np.exp(-(-0.5 + 1.2 * e)))
    take = (rng.uniform(size=n_schools) < p_school)[g] & (rng.uniform(size=g.size) < p_student)
    d = pd.DataFrame({"y": y, "x": x, "school": g, "w2": 1 / p_school[g], "w1": 1 / p_student})
    return d[take]


def test_weighted_estimates_remove_informative_sampling_bias():
    d = _informative_sample(11)
    weighted = fit("y ~ x + (1 | school)", d, level1_weights="w1", level2_weights="w2",
                   conditional_weights=True)  # fmt: skip
    unweighted = fit("y ~ x + (1 | school)", d)
    assert abs(unweighted.fixef["(Intercept)"] - 1.0) > 0.5  # biased upwards
    assert abs(weighted.fixef["(Intercept)"] - 1.0) < 0.15
    assert abs(weighted.fixef["(Intercept)"] - 1.0) < 2.5 * weighted.se["(Intercept)"]
    assert abs(weighted.fixef["x"] - 0.5) < 0.1


def test_cluster_scaling_ignores_a_constant_factor_within_groups(sample):
    factor = sample.school.str[1:].astype(int) % 5 + 1.0
    data = sample.assign(w=sample.w_cond * factor)
    formula = "y ~ x1 + (1 | school)"
    opts = {"level2_weights": "w_school", "conditional_weights": True}
    a = fit(formula, data, level1_weights="w_cond", weight_scaling="cluster", **opts)
    b = fit(formula, data, level1_weights="w", weight_scaling="cluster", **opts)
    assert b.loglik == pytest.approx(a.loglik, abs=1e-8)
    np.testing.assert_allclose(b.fixef, a.fixef, rtol=1e-8)
    assert a.sampling["scaling"] == "cluster"
    raw_a = fit(formula, data, level1_weights="w_cond", **opts)
    raw_b = fit(formula, data, level1_weights="w", **opts)
    assert raw_b.fixef["x1"] != pytest.approx(raw_a.fixef["x1"], rel=1e-3)  # raw: they differ


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"level1_weights": "nope"}, DataError, "unknown level-1 weights column 'nope'"),
        ({"level2_weights": "w_total"}, DataError, "varies within"),
        ({"level1_weights": "neg"}, DataError, "negative"),
        ({"level1_weights": "w_total", "reml": True}, UsageError, "drop --reml"),
        ({"level1_weights": "w_total", "weights": "w_total"}, UsageError, "cannot be combined"),
        ({"level1_weights": "w_total", "family": "poisson"}, UsageError, "gaussian and binomial"),
    ],
)
def test_bad_input_is_a_one_line_error(sample, kwargs, error, text):
    data = sample.assign(neg=np.where(np.arange(len(sample)) == 5, -1.0, 1.0))
    with pytest.raises(error, match=text) as err:
        fit("y ~ x1 + (1 | school)", data, **kwargs)
    assert "\n" not in str(err.value)


def test_cli_fit_with_sampling_weights(tmp_path, sample):
    path = tmp_path / "d.csv"
    sample.to_csv(path, index=False)
    args = ["fit", str(path), "--formula", "y ~ x1 + z + (1 | school)", "--json",
            "--level1-weights", "w_total", "--level2-weights", "w_school"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["sampling_weights"]["level2_weights"] == "w_school"
    assert out["loglik"] == pytest.approx(-24333.2608889572, abs=1e-3)
    text = CliRunner().invoke(app, [a for a in args if a != "--json"])  # the summary
    assert text.exit_code == 0 and "fit by pseudo-maximum likelihood" in text.output
    assert "sandwich (robust)" in text.output
    bad = CliRunner().invoke(app, [*args[:-1], "w_total"])
    assert bad.exit_code == 1
    assert "varies within" in bad.output
