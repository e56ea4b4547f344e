"""The LMM's dense BFGS (engine.bfgs): optimum, stopping rule, failures, and its use in fits."""

from __future__ import annotations

import numpy as np
import pytest

from autoglmm.engine import lmm
from autoglmm.engine.bfgs import _next_step, minimize_bfgs
from autoglmm.engine.design import make_design, theta_canonical
from autoglmm.engine.optimize import optimize


def _rosenbrock(x):
    a, b = x
    f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    g = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    return float(f), g


def test_rosenbrock_from_the_classic_start():
    res = minimize_bfgs(_rosenbrock, np.array([-1.2, 1.0]))
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-6)
    assert res.fun < 1e-12
    assert res.nit < 100


def test_ill_conditioned_quadratic_reaches_the_minimum():
    scales = np.array([1e4, 1.0, 1e-2])
    center = np.array([0.3, -2.0, 5.0])

    def fun(x):
        d = x - center
        return float(scales @ (d * d)), 2 * scales * d

    res = minimize_bfgs(fun, np.zeros(3))
    assert res.success
    np.testing.assert_allclose(res.x, center, atol=1e-5)


def test_a_non_finite_start_is_a_failure():
    res = minimize_bfgs(lambda x: (float("nan"), np.zeros(1)), np.zeros(1))
    assert not res.success and "ABNORMAL" in res.message


def test_a_gradient_of_the_wrong_sign_is_abnormal_not_converged():
    res = minimize_bfgs(lambda x: (float(x @ x), -2.0 * x), np.array([3.0, 1.0]))
    assert not res.success and "ABNORMAL" in res.message
    _, _, rep = optimize(
        lambda x: (float(x @ x), -2.0 * x), np.array([3.0, 1.0]), np.full(2, -np.inf),
        jac=True, method="BFGS",
    )  # fmt: skip
    assert not rep.converged and not rep.optimizer_success


def test_infinite_values_are_backed_off():
    # +inf outside the unit disc (as a deviance where a factorisation fails)
    def fun(x):
        if x @ x >= 1.0:
            return float("inf"), np.full(2, np.nan)
        return float((x[0] - 0.5) ** 2 + (x[1] + 0.5) ** 2), 2 * (x - [0.5, -0.5])

    res = minimize_bfgs(fun, np.array([0.0, 0.9]))
    assert res.success
    np.testing.assert_allclose(res.x, [0.5, -0.5], atol=1e-6)


def _slope_design(seed=3, m=60, k=12):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), k)
    x = rng.normal(size=m * k)
    b = rng.normal(size=(m, 2)) * [0.8, 0.4]
    y = 50 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=m * k)
    X = np.column_stack([np.ones(m * k), x])
    return make_design(X, y, X, g, re_blocks=(2,))[0]


def test_lmm_stops_within_rounding_of_the_tight_optimum():
    """The stopping rule on the promised decrease leaves less than 1e-12 of the deviance
    (a change-in-f rule at 1e-12 would leave up to 1e-7 at a deviance of 1e5)."""
    ws = lmm.make_workspace(_slope_design())

    def fun(t):
        return lmm.deviance_and_gradient(t, ws)

    start = np.array([1.0, 0.0, 1.0])
    default = minimize_bfgs(fun, start)
    tight = minimize_bfgs(fun, start, gtol=1e-12, ftol=1e-18)
    assert default.success and tight.success
    assert tight.fun <= default.fun <= tight.fun + 1e-12 * abs(tight.fun)
    np.testing.assert_allclose(
        theta_canonical(default.x, (2,)), theta_canonical(tight.x, (2,)), atol=1e-5
    )


def test_lmm_fit_uses_bfgs_and_passes_lme4s_check():
    res = lmm.fit_lmm(_slope_design())
    rep = res.convergence
    assert rep.optimizer == "BFGS" and rep.converged and rep.optimizer_success
    assert rep.scaled_gradient < 1e-4
    # every evaluation is counted once: the checks reuse the minimiser's last point
    xs = [tuple(row[1:]) for row in rep.evaluation_log]
    assert len(xs) == len(set(xs)) == rep.n_evaluations


def test_bfgs_is_refused_with_bounds():
    with pytest.raises(ValueError, match="no bounds"):
        optimize(lambda x: (float(x @ x), 2 * x), np.ones(1), np.zeros(1), jac=True, method="BFGS")


def test_backtracking_step_is_the_cubic_minimiser_within_its_guards():
    # phi(t) = (t - 0.3)^2: phi(0) = 0.09, phi'(0) = -0.6, phi(1) = 0.49, phi'(1) = 1.4
    assert _next_step(1.0, 0.09, -0.6, 0.49, 1.4) == pytest.approx(0.3)
    # phi(t) = t^3 - 1.2 t^2 + 0.36 t (minimum at 0.6 after a maximum at 0.2): on [0, 2]
    # the cubic is exact, its minimiser 0.6 lies in [0.25 t, 0.5 t] = [0.5, 1]
    phi = lambda t: t**3 - 1.2 * t**2 + 0.36 * t  # noqa: E731
    dphi = lambda t: 3 * t**2 - 2.4 * t + 0.36  # noqa: E731
    assert _next_step(2.0, phi(0), dphi(0), phi(2.0), dphi(2.0)) == pytest.approx(0.6)
    # a minimiser outside the guards is moved to them
    assert _next_step(1.0, 0.0, -1.0, 100.0, 0.0) == pytest.approx(0.25)
    assert _next_step(1.0, 0.25, -1.0, 0.25, 1.0) == pytest.approx(0.5)


def test_compiled_driver_and_python_driver_take_the_same_steps():
    """The LMM's compiled driver (one call per minimisation) and minimize_bfgs driving the
    same state machine from Python evaluate the same points and stop at the same one."""
    ws = lmm.make_workspace(_slope_design())
    objective = ws.objective()
    start = np.array([1.0, 0.0, 1.0])
    compiled = minimize_bfgs(objective, start)
    from_python = minimize_bfgs(lambda t: objective(np.ascontiguousarray(t)), start)
    assert compiled.success and from_python.success
    assert compiled.message == from_python.message and compiled.nit == from_python.nit
    np.testing.assert_array_equal(compiled.log, from_python.log)
    np.testing.assert_array_equal(compiled.x, from_python.x)
    # the log holds every evaluation: (deviance, *theta), the last one at the optimum
    assert compiled.log[-1, 0] == compiled.fun
    assert lmm.deviance(compiled.x, ws) == compiled.fun
