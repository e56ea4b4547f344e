"""PIRLS modes, log-determinant and the analytic Laplace gradient, against direct numerics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from autoglmm.engine.design import make_design
from autoglmm.engine.families import BINOMIAL_LOGIT, BINOMIAL_PROBIT, POISSON_LOG, row_dev
from autoglmm.engine.glmm import GlmmWorkspace


def simulate(code: int, re_blocks=(2,), m=12, nper=15, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), nper)
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    Z = X[:, : sum(re_blocks)]
    b = rng.normal(0, 0.7, (m, Z.shape[1]))
    eta = X @ [0.2, 0.5, -0.4] + (Z * b[g]).sum(1)
    if code == POISSON_LOG:
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return make_design(X, y, Z, g, re_blocks=re_blocks)[0]


THETA = {
    (2,): np.array([0.8, -0.3, 0.5]),
    (1, 1): np.array([0.8, 0.5]),
    (3,): np.array([0.8, -0.3, 0.2, 0.5, 0.1, 0.4]),
    (1, 2): np.array([0.8, 0.5, -0.2, 0.3]),
}
BETA = np.array([0.1, 0.4, -0.3])


@pytest.mark.parametrize("code", [BINOMIAL_LOGIT, BINOMIAL_PROBIT, POISSON_LOG])
def test_modes_and_logdet_against_direct_minimisation(code) -> None:
    d = simulate(code)
    ws = GlmmWorkspace(d, code)
    theta = THETA[(2,)]
    md = ws.modes(theta, BETA)
    eta0, A, dev, usq, logdet, rows = md.eta0, md.A, md.dev, md.usq, md.logdet, md.rows
    assert np.all(md.status == 0) and md.ok and md.failure() is None
    for j in range(d.m):
        sl = slice(d.starts[j], d.starts[j + 1])

        def F(u, sl=sl):
            eta = eta0[sl] + A[sl] @ u
            rows = zip(eta, d.y[sl], d.weights[sl], strict=True)
            return sum(row_dev(code, e, y, w) for e, y, w in rows)

        res = optimize.minimize(lambda u, F=F: F(u) + u @ u, np.zeros(2), method="BFGS",
                                options={"gtol": 1e-10})  # fmt: skip
        np.testing.assert_allclose(md.u[j], res.x, atol=1e-5)
        assert dev[j] + usq[j] == pytest.approx(res.fun, abs=1e-9)
        # log det (A' W A + I) with Fisher weights at the mode, computed densely
        w = rows[2, sl]
        H = A[sl].T @ (A[sl] * w[:, None]) + np.eye(2)
        assert logdet[j] == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)


@pytest.mark.parametrize("code", [BINOMIAL_LOGIT, BINOMIAL_PROBIT, POISSON_LOG])
@pytest.mark.parametrize("blocks", [(2,), (1, 1), (3,), (1, 2)])
def test_laplace_gradient_matches_central_differences(code, blocks) -> None:
    d = simulate(code, blocks, seed=5)
    ws = GlmmWorkspace(d, code)
    x0 = np.concatenate([THETA[blocks], BETA])
    nt = len(THETA[blocks])
    f0, g, _ = ws.laplace_and_gradient(x0[:nt], x0[nt:])
    fd = np.empty_like(x0)
    h = 1e-5
    for k in range(len(x0)):
        e = np.zeros_like(x0)
        e[k] = h
        fp = ws.laplace_and_gradient((x0 + e)[:nt], (x0 + e)[nt:])[0]
        fm = ws.laplace_and_gradient((x0 - e)[:nt], (x0 - e)[nt:])[0]
        fd[k] = (fp - fm) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=2e-6)
    assert np.isfinite(f0)


def test_pirls_warm_start_gives_the_same_deviance() -> None:
    d = simulate(BINOMIAL_LOGIT)
    ws = GlmmWorkspace(d, BINOMIAL_LOGIT)
    theta = THETA[(2,)]
    cold = ws.deviance(theta, BETA)
    far = ws.modes(theta * 1.5, BETA + 0.2).u  # the modes of another point
    assert ws.deviance(theta, BETA, far) == pytest.approx(cold, abs=1e-10)
    assert ws.deviance(theta, BETA) == cold  # a pure function: no state between calls


@pytest.mark.parametrize("code", [BINOMIAL_LOGIT, BINOMIAL_PROBIT, POISSON_LOG])
def test_beta_information_is_lme4s_rx_computed_densely(code) -> None:
    # RX'RX = X'WX - X'WA H^-1 A'WX, with every group's blocks formed as dense matrices
    d = simulate(code, (3,), seed=2)
    ws = GlmmWorkspace(d, code)
    theta = THETA[(3,)]
    md = ws.modes(theta, BETA)
    w = md.rows[2]
    info = d.X.T @ (d.X * w[:, None])
    for j in range(d.m):
        sl = slice(d.starts[j], d.starts[j + 1])
        A = d.Z[sl] @ ws.lam(theta)
        H = A.T @ (A * w[sl, None]) + np.eye(3)
        C = A.T @ (d.X[sl] * w[sl, None])
        info -= C.T @ np.linalg.solve(H, C)
    R = ws.beta_information(theta, BETA)
    np.testing.assert_allclose(R @ R.T, info, rtol=1e-10, atol=1e-10)


def test_one_large_group_keeps_the_deviance_exact() -> None:
    # 3000 binary rows near eta = 0: the product of the rows' factors 1 + exp(-|eta|)
    # (families.row_terms) is renormalised inside the group, and the deviance is still
    # the sum of the rows' own -2 log p
    rng = np.random.default_rng(4)
    n = 3000
    X = np.column_stack([np.ones(n), rng.normal(0, 0.1, n)])
    y = (rng.random(n) < 0.5).astype(float)
    d = make_design(X, y, X[:, :1], np.zeros(n, dtype=int), re_blocks=(1,))[0]
    ws = GlmmWorkspace(d, BINOMIAL_LOGIT)
    md = ws.modes(np.array([0.3]), np.array([0.05, 0.2]))
    eta = md.eta0 + md.A[:, 0] * md.u[0, 0]
    direct = sum(row_dev(BINOMIAL_LOGIT, e, yy, 1.0) for e, yy in zip(eta, d.y, strict=True))
    assert md.ok and md.dev[0] == pytest.approx(direct, rel=1e-13)
    assert direct > 2 * n * np.log(2) * 0.9  # many factors near 2: past 1e250 in the product
