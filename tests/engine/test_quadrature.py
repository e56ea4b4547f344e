"""Adaptive Gauss-Hermite quadrature: rules, nagq=1 == Laplace, brute-force integrals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from autoglmm.engine.design import make_design
from autoglmm.engine.families import BINOMIAL_LOGIT, POISSON_LOG
from autoglmm.engine.glmm import GlmmWorkspace
from autoglmm.engine.quadrature import gauss_hermite, product_rule


def test_gauss_hermite_moments_of_the_standard_normal() -> None:
    z, w = gauss_hermite(9)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    # exact for polynomials up to degree 2n - 1 = 17
    for k, moment in [(1, 0.0), (2, 1.0), (4, 3.0), (6, 15.0), (8, 105.0), (16, 2027025.0)]:
        assert (w * z**k).sum() == pytest.approx(moment, rel=1e-10, abs=1e-12)
    np.testing.assert_array_equal(z, -z[::-1])


def test_product_rule_layout() -> None:
    nodes, logw = product_rule(3, 2)
    z, w = gauss_hermite(3)
    assert nodes.shape == (9, 2)
    # log w + |z|^2 / 2 for every pair, in itertools.product order
    expected = np.log(np.outer(w, w)).ravel() + 0.5 * (z[:, None] ** 2 + z[None, :] ** 2).ravel()
    np.testing.assert_allclose(logw, expected, rtol=1e-14)


def _binary_design(q: int, m: int = 6, nper: int = 8, seed: int = 3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), nper)
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    Z = np.column_stack([X, rng.normal(size=n)])[:, :q]
    eta = -0.2 + 0.5 * X[:, 1] + (Z * rng.normal(0, 0.8, (m, q))[g]).sum(1)
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return make_design(X, y, Z, g, re_blocks=(q,))[0]


def _group_f(d, beta, lam, j):
    sl = slice(d.starts[j], d.starts[j + 1])

    def F(u):
        e = d.X[sl] @ beta + d.Z[sl] @ (lam @ u)
        return -2 * (d.y[sl] * e - np.logaddexp(0, e)).sum() + u @ u

    return F


def test_vector_agq_matches_brute_force_integration() -> None:
    # brute force: the trapezoid rule on a fine 2-D grid, which converges geometrically
    # for these smooth, fast-decaying integrands (halving the grid changes nothing)
    d = _binary_design(q=2)
    theta, beta = np.array([0.9, 0.2, 0.6]), np.array([-0.2, 0.5])
    lam = np.array([[0.9, 0.0], [0.2, 0.6]])
    grid = np.linspace(-9, 9, 361)
    U1, U2 = np.meshgrid(grid, grid, indexing="ij")
    U = np.stack([U1.ravel(), U2.ravel()], axis=1)
    total = 0.0
    for j in range(d.m):
        sl = slice(d.starts[j], d.starts[j + 1])
        e = (d.X[sl] @ beta)[None, :] + U @ (d.Z[sl] @ lam).T
        F = -2 * (d.y[sl] * e - np.logaddexp(0, e)).sum(1) + (U**2).sum(1)
        dens = np.exp(-0.5 * F).reshape(U1.shape) / (2 * np.pi)
        val = integrate.trapezoid(integrate.trapezoid(dens, grid, axis=1), grid)
        coarse = integrate.trapezoid(integrate.trapezoid(dens[::2, ::2], grid[::2], axis=1),
                                     grid[::2])  # fmt: skip
        assert val == pytest.approx(coarse, rel=1e-11)  # the grid has converged
        total += -2 * np.log(val)
    diffs = {k: GlmmWorkspace(d, BINOMIAL_LOGIT, k).deviance(theta, beta) - total
             for k in (1, 3, 5, 7, 9, 11, 20, 25)}  # fmt: skip
    assert abs(diffs[20]) < 1e-6
    assert abs(diffs[25]) < 1e-6
    # the error shrinks as nagq grows
    odd = np.abs([diffs[k] for k in (1, 3, 5, 7, 9, 11)])
    assert np.all(odd[1:] < odd[:-1])
    assert abs(diffs[1]) > 0.1  # Laplace is visibly off on 8 binary rows per group


def test_scalar_agq_matches_brute_force_for_poisson() -> None:
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(5), 4)
    X = np.ones((20, 1))
    y = rng.poisson(np.exp(0.3 + rng.normal(0, 0.8, 5)[g])).astype(float)
    d = make_design(X, y, X, g, re_blocks=(1,))[0]
    theta, beta = np.array([0.8]), np.array([0.3])
    total = 0.0
    for j in range(d.m):
        yj = d.y[d.starts[j] : d.starts[j + 1]]

        def dens(u, yj=yj):
            e = 0.3 + 0.8 * u
            logp = (yj * e - np.exp(e)).sum() - sum(np.log(np.arange(1, k + 1)).sum() for k in yj)
            return np.exp(logp - 0.5 * u * u) / np.sqrt(2 * np.pi)

        total += -2 * np.log(integrate.quad(dens, -15, 15, epsabs=1e-15, epsrel=1e-13)[0])
    assert GlmmWorkspace(d, POISSON_LOG, 25).deviance(theta, beta) == pytest.approx(total, abs=1e-7)


@pytest.mark.parametrize("q", [1, 2, 3])
def test_one_point_rule_is_the_laplace_value(q) -> None:
    d = _binary_design(q=q, m=10, nper=12)
    theta = {1: [0.7], 2: [0.7, 0.1, 0.5], 3: [0.7, 0.1, -0.1, 0.5, 0.05, 0.4]}[q]
    theta, beta = np.array(theta), np.array([-0.2, 0.5])
    laplace = GlmmWorkspace(d, BINOMIAL_LOGIT, 1).laplace_and_gradient(theta, beta)[0]
    rule = GlmmWorkspace(d, BINOMIAL_LOGIT, 3)
    rule.rule = product_rule(1, q)  # the one-node rule through the quadrature kernel
    assert rule.deviance(theta, beta) == pytest.approx(laplace, abs=1e-10)
