"""The generic optimizer: optimum, boundary snapping, checks, restart and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from autoglmm.engine.design import theta_canonical
from autoglmm.engine.optimize import optimize


def _quadratic(center):
    center = np.asarray(center, dtype=float)

    def fun(x):
        d = x - center
        return float(d @ d), 2.0 * d

    return fun


def test_interior_optimum_with_gradient():
    x, f, rep = optimize(_quadratic([0.5, -2.0]), np.zeros(2), np.array([0.0, -np.inf]), jac=True)
    np.testing.assert_allclose(x, [0.5, -2.0], atol=1e-7)
    assert f == pytest.approx(0.0, abs=1e-12)
    assert rep.converged and not rep.singular and not rep.restarted
    assert rep.scaled_gradient < 1e-6
    assert rep.hessian_min_eigenvalue == pytest.approx(2.0, rel=1e-4)
    assert rep.n_evaluations == len(rep.evaluation_log) > 0


def test_bound_optimum_is_exactly_on_the_bound_and_singular():
    # unconstrained minimum at -0.3, below the bound 0 of a covariance parameter
    x, f, rep = optimize(_quadratic([-0.3, 1.0]), np.ones(2), np.array([0.0, -np.inf]), jac=True)
    assert x[0] == 0.0
    assert x[1] == pytest.approx(1.0, abs=1e-7)
    assert f == pytest.approx(0.09, abs=1e-9)
    assert rep.converged and rep.singular
    assert any("singular" in m for m in rep.messages)


def test_boundary_snapping_moves_near_zero_onto_the_bound():
    # f is flat-ish near 0 and minimal at 0: a derivative-free run stops near, not at, 0
    def fun(x):
        return float(x[0] ** 4 + (x[1] - 1.0) ** 2)

    x, _, rep = optimize(fun, np.array([0.5, 0.0]), np.array([0.0, -np.inf]))
    assert x[0] == 0.0
    assert rep.singular and rep.converged


def test_cov_mask_limits_singular_flag_to_covariance_parameters():
    # a bounded non-covariance parameter on its bound does not make the fit singular
    x, _, rep = optimize(
        _quadratic([-1.0, 1.0]),
        np.ones(2),
        np.array([0.0, 0.0]),
        jac=True,
        cov_mask=np.array([False, True]),
    )
    assert x[0] == 0.0 and not rep.singular


def test_derivative_free_rosenbrock():
    def rosen(x):
        return float(100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2)

    x, f, rep = optimize(rosen, np.array([-1.0, 1.5]), np.full(2, -np.inf))
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-4)
    assert rep.converged and rep.optimizer == "Nelder-Mead"


def test_saddle_is_reported_not_converged_after_restart():
    # x[0] = 0 is a stationary point in x[0] that is a maximum: f = -x0^2 + x1^2 near it,
    # bounded below at -1 so there is a minimum (at the bounds); with max_iter=0 the
    # optimizer cannot move and the Hessian check must catch the saddle.
    def fun(x):
        return float(-(x[0] ** 2) + x[1] ** 2), np.array([-2 * x[0], 2 * x[1]])

    lower, upper = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    _, _, rep = optimize(
        fun, np.zeros(2), lower, upper, jac=True, cov_mask=np.array([True, True]),
        max_iter=0, restart=False,
    )  # fmt: skip
    assert not rep.converged
    assert rep.hessian_min_eigenvalue == pytest.approx(-2.0, rel=1e-3)
    assert any("positive semi-definite" in m for m in rep.messages)
    x, f, rep2 = optimize(fun, np.zeros(2), lower, upper, jac=True)
    assert rep2.restarted  # the first run stopped at the saddle; the restart escapes it
    assert f == pytest.approx(-1.0, abs=1e-9) and abs(x[0]) == 1.0


def test_canonical_map_finds_optimum_behind_a_sign_flip():
    # a function of the covariance G = Lambda Lambda' only, for a 2x2 block; its minimum
    # needs a correlation of -0.6, reachable directly without bounds.
    target = np.array([[1.0, -0.6], [-0.6, 1.0]])

    def fun(theta):
        lam = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
        d = lam @ lam.T - target
        return float(np.sum(d**2))

    x, f, rep = optimize(
        fun,
        np.array([1.0, 0.0, 1.0]),
        np.array([0.0, -np.inf, 0.0]),
        canonical=lambda t: theta_canonical(t, (2,)),
    )
    assert f < 1e-12 and x[0] > 0 and x[2] > 0
    lam = np.array([[x[0], 0.0], [x[1], x[2]]])
    np.testing.assert_allclose(lam @ lam.T, target, atol=1e-5)


def test_same_seed_same_result():
    def fun(x):
        return float(np.sum(np.cos(3 * x) + 0.1 * x**2))

    runs = [optimize(fun, np.array([0.2, 0.4]), np.full(2, -np.inf), rng_seed=3) for _ in range(2)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][2].evaluation_log == runs[1][2].evaluation_log


def _slope_only_design(seed=0):
    """Random slopes, no random intercept: the random-intercept model is singular."""
    from autoglmm.engine.design import make_design

    rng = np.random.default_rng(seed)
    m, k = 60, 20
    g = np.repeat(np.arange(m), k)
    x = rng.normal(size=m * k)
    y = 1 + 0.5 * x + rng.normal(size=m)[g] * 0.6 * x + rng.normal(size=m * k)
    X = np.column_stack([np.ones(m * k), x])
    return make_design(X, y, X, g, re_blocks=(2,))[0]


def test_zero_diagonal_saddle_is_not_reported_converged_and_restart_escapes():
    """From theta = (0, 0, 1) the deviance is even in theta_1, so a gradient method stays on
    theta_1 = 0 and stops at a point that looks singular but is a saddle. Leaving the
    boundary parameter out of the Hessian (as for a true bound) would call it converged."""
    from autoglmm.engine import lmm

    design = _slope_only_design()
    ws = lmm.make_workspace(design)

    def objective(t):
        return lmm.deviance_and_gradient(t, ws)

    lower = np.array([0.0, -np.inf, 0.0])
    canon = lambda t: theta_canonical(t, (2,))  # noqa: E731
    start = np.array([0.0, 0.0, 1.0])
    x1, f1, rep1 = optimize(objective, start, lower, jac=True, canonical=canon, restart=False)
    assert x1[0] == 0.0 and x1[1] == 0.0  # stuck on the symmetric saddle
    assert not rep1.converged and rep1.hessian_min_eigenvalue < 0
    x2, f2, rep2 = optimize(objective, start, lower, jac=True, canonical=canon)
    assert rep2.restarted and rep2.converged
    assert f2 < f1 - 1.0  # lme4-level optimum: 0.72 log-likelihood units better
    cold, f_cold, _ = optimize(
        objective, np.array([1.0, 0.0, 1.0]), lower, jac=True, canonical=canon
    )
    assert f2 == pytest.approx(f_cold, abs=1e-8)


def test_newton_polish_finishes_where_only_the_gradient_check_fails():
    # a point L-BFGS-B might stop at: the scaled gradient is above 2e-3; one Newton step
    # with the check's Hessian lands on the optimum of a quadratic
    from autoglmm.engine.optimize import CountedObjective, _check, _newton_polish

    A = np.array([[4.0, 1.0], [1.0, 3.0]])
    opt = np.array([0.5, -1.0])

    def fun(x):
        d = x - opt
        return float(1e5 + 0.5 * d @ A @ d), A @ d

    obj = CountedObjective(fun, True)
    x = opt + np.array([1e-2, -2e-2])
    f = obj.both(x)[0]
    lower, upper = np.full(2, -np.inf), np.full(2, np.inf)
    chk = _check(obj, x, f, lower, upper, np.ones(2, bool), 2e-3, False, 1e-4, None)
    assert chk.hess_ok and not chk.grad_ok
    x2, f2, steps = _newton_polish(obj, x, f, chk, lower, upper, 2e-3, None)
    assert steps == 1
    np.testing.assert_allclose(x2, opt, atol=1e-9)
    assert f2 == pytest.approx(1e5, abs=1e-9) and f2 < f
