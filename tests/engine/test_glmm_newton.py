"""The GLMM's Newton steps (engine.glmm_newton): the structured Hessian and a 3-RE guard.

Guard: a 3-RE binomial GLMM where L-BFGS-B alone stops short of lme4's convergence check
(its relative-reduction test, ``ftol`` 1e-12 of a deviance of ~1.5e4, leaves a scaled
gradient above 2e-3). The first fix, Newton steps with the failed check's Hessian,
needed about 240 evaluations; the structured Newton steps before L-BFGS-B reach the
optimum in 107 (L-BFGS-B then stops at once; 52 of them are the check's Hessian). The
data are those of ``benchmarks/growth.py`` (16,000 rows, 458 schools).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import autoglmm
from autoglmm.engine.design import make_design
from autoglmm.engine.families import BINOMIAL_LOGIT
from autoglmm.engine.glmm import GlmmWorkspace
from autoglmm.engine.glmm_newton import GTOL, newton, structured_hessian, theta_columns

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import common  # noqa: E402

THETA = np.array([0.8, -0.3, 0.2, 0.5, 0.1, 0.4])
BETA = np.array([0.1, 0.4, -0.3])


def test_three_re_binomial_passes_lme4_check_without_restart() -> None:
    data = common.growth_data(16000, 458, family="binomial", seed=2)
    res = autoglmm.fit(data.formulas()["rs3"], data.frame, family="binomial")
    conv = res.convergence
    assert conv.converged, conv.messages
    assert conv.scaled_gradient < 2e-3 * 1e-2
    assert not conv.restarted
    assert conv.optimizer_success and "PROJECTED GRADIENT" in conv.optimizer_status
    # L-BFGS-B alone (and the Newton polish after it) took about 240 evaluations
    assert conv.n_evaluations <= 120
    # at least as good as the old path's end point (restart included)
    assert res.loglik >= -7594.847853 - 1e-6


def _three_re_binary(m: int = 40, nper: int = 25, seed: int = 3):
    """Binary outcome, intercept and two slopes random (seeded)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), nper)
    X = np.column_stack([np.ones(m * nper), rng.normal(size=(m * nper, 2))])
    b = rng.normal(0, 0.7, (m, 3))
    eta = X @ [0.2, 0.5, -0.4] + (X * b[g]).sum(1)
    y = (rng.random(m * nper) < 1 / (1 + np.exp(-eta))).astype(float)
    return make_design(X, y, X, g, re_blocks=(3,))[0]


def _objective(ws: GlmmWorkspace, nt: int):
    def fun(x):
        f, g, _ = ws.laplace_and_gradient(x[:nt], x[nt:])
        return f, g

    return fun


def test_structured_hessian_has_exact_theta_columns_and_rx_beta_block(laplace_hessian) -> None:
    d = _three_re_binary()
    ws = GlmmWorkspace(d, BINOMIAL_LOGIT)
    nt = len(THETA)
    x = np.concatenate([THETA, BETA])
    fun = _objective(ws, nt)
    R = ws.beta_information(THETA, BETA)
    H = structured_hessian(theta_columns(fun, x, fun(x)[1], nt), 2.0 * R @ R.T)
    exact = laplace_hessian(ws, THETA, BETA)
    # theta columns: forward differences of the analytic gradient (first order in 1e-4)
    np.testing.assert_allclose(H[:, :nt], exact[:, :nt], rtol=2e-3, atol=2e-3)
    # beta block: 2 RX'RX misses only the log-determinant's curvature in beta
    np.testing.assert_allclose(H[nt:, nt:], exact[nt:, nt:], rtol=0.1)
    assert not np.allclose(H[nt:, nt:], exact[nt:, nt:], rtol=1e-6)


def test_newton_reaches_lbfgsb_tolerance_from_lme4_start() -> None:
    d = _three_re_binary()
    ws = GlmmWorkspace(d, BINOMIAL_LOGIT)
    nt = len(THETA)
    fun = _objective(ws, nt)
    calls = []

    def beta_block(x):
        calls.append(x)
        R = ws.beta_information(x[:nt], x[nt:])
        return 2.0 * R @ R.T

    lower = np.array([0.0, -np.inf, -np.inf, 0.0, -np.inf, 0.0, *np.full(3, -np.inf)])
    x0 = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    x = newton(fun, x0, lower, nt, beta_block)
    f, g = fun(x)
    assert np.max(np.abs(g)) <= GTOL
    assert f < fun(x0)[0] - 1.0
    assert 2 <= len(calls) <= 12  # one Hessian per iteration: a handful of iterations
    assert np.all(x[lower == 0.0] > 0.0)  # strictly inside the bounds
    assert f == pytest.approx(ws.deviance(x[:nt], x[nt:]), abs=1e-9)


def test_mirrored_point_starts_from_extrapolated_modes() -> None:
    # lme4's check evaluates c + h e_i, then c - h e_i: the second PIRLS starts from
    # 2 u(c) - u(c + h e_i), and the deviance and gradient are those of a cold start
    from autoglmm.engine.glmm import _Warm

    d = _three_re_binary()
    ws = GlmmWorkspace(d, BINOMIAL_LOGIT)
    nt = len(THETA)
    c = np.concatenate([THETA, BETA])
    e = np.zeros(len(c))
    e[1] = 1e-4
    warm = _Warm(d.m, d.q)
    for x, grad in ((c, np.full(len(c), 1e-7)), (c + e, np.full(len(c), 1e-3))):
        f, g, md = ws.laplace_and_gradient(x[:nt], x[nt:], warm.start(x))
        warm.keep(f, md, x.tobytes(), x, grad)
    u_c = ws.modes(THETA, BETA).u
    u_plus = ws.modes((c + e)[:nt], (c + e)[nt:]).u
    start = warm.start(c - e)
    np.testing.assert_allclose(start, 2 * u_c - u_plus, atol=1e-12)
    exact = ws.modes((c - e)[:nt], (c - e)[nt:]).u
    # second order: far closer than the last point's modes
    assert np.max(np.abs(start - exact)) < 1e-3 * np.max(np.abs(u_plus - exact))
    f0, g0, _ = ws.laplace_and_gradient((c - e)[:nt], (c - e)[nt:])
    f1, g1, _ = ws.laplace_and_gradient((c - e)[:nt], (c - e)[nt:], start)
    assert f1 == pytest.approx(f0, abs=1e-9)
    np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-9)
    # a point that mirrors nothing starts from the last modes
    assert warm.start(c + 2 * e) is warm.u
