"""The LMM's specialised kernels against their generic forms and independent computations:
q = 2 and 3 compiled with q a constant, one random effect written for scalars, the loop
and BLAS paths of Z'X beta, and the fitted values."""

from __future__ import annotations

import numpy as np
import pytest

from autoglmm.engine import lmm
from autoglmm.engine.design import fill_lambda, make_design, theta_positions


def _statistics(q: int, p: int, m: int = 12, seed: int = 3):
    """Per-group Z'Z, Z'X, Z'y of random data, and a Lambda with off-diagonal entries."""
    rng = np.random.default_rng(seed)
    ZtZ, ZtX, Zty = np.empty((m, q, q)), np.empty((m, q, p)), np.empty((m, q))
    for j in range(m):
        Z, X, y = rng.normal(size=(7, q)), rng.normal(size=(7, p)), rng.normal(size=7)
        ZtZ[j], ZtX[j], Zty[j] = Z.T @ Z, Z.T @ X, Z.T @ y
    rows, cols = theta_positions((q,))
    theta = rng.uniform(-0.5, 1.0, size=len(rows))
    return fill_lambda(theta, rows, cols, q), ZtZ, ZtX, Zty


@pytest.mark.parametrize("q", [2, 3])
def test_kernels_for_two_and_three_effects_equal_the_generic_body(q):
    lam, ZtZ, ZtX, Zty = _statistics(q, p=5)
    none = np.empty(0)
    fast = lmm._factor_groups(lam, ZtZ, ZtX, Zty, none)
    generic = lmm._factor_blocks(lam, ZtZ, ZtX, Zty, none, q)  # q a run-time value here
    for a, b in zip(fast, generic, strict=True):
        assert np.array_equal(a, b)
    L, RZX, cu, _ = fast
    beta = np.linspace(-1.0, 1.0, 5)
    u = lmm._modes(L, RZX, cu, beta)
    v = cu - lmm._stacked_times(RZX, beta)
    assert np.array_equal(u, lmm._block_back_solve(L, v, q))
    for j in range(len(u)):  # and u_j solves L_j' u_j = cu_j - RZX_j beta
        np.testing.assert_allclose(L[j].T @ u[j], v[j], rtol=1e-12, atol=1e-12)
    K = np.empty((0, 0, 0))
    G, T = lmm._gradient_sums(lam, ZtZ, ZtX, Zty, L, u, beta, K, K, False, none)
    G2, T2 = lmm._block_gradient_sums(lam, ZtZ, ZtX, Zty, L, u, beta, K, K, False, none, q)
    assert np.array_equal(G, G2) and np.array_equal(T, T2)


@pytest.mark.parametrize("p", [1, 3, 7, 8, 19])
@pytest.mark.parametrize("q", [1, 3])
def test_stacked_products_by_loop_and_by_blas_agree_with_einsum(p, q):
    _, _, ZtX, _ = _statistics(q, p)
    beta = np.random.default_rng(p).normal(size=p)
    np.testing.assert_allclose(
        lmm._stacked_times(ZtX, beta), np.einsum("jak,k->ja", ZtX, beta), rtol=1e-13, atol=1e-13
    )


@pytest.mark.parametrize("q", [1, 3])
def test_fitted_values_are_offset_plus_fixed_plus_random_parts(q):
    rng = np.random.default_rng(q)
    g = np.repeat(np.arange(6), [4, 7, 3, 5, 6, 2])
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    Z = np.column_stack([np.ones(n), rng.normal(size=(n, q - 1))])
    offset = rng.normal(size=n)
    design, order = make_design(X, rng.normal(size=n), Z, g, re_blocks=(q,), offset=offset)
    beta, ranef = rng.normal(size=3), rng.normal(size=(6, q))
    expected = offset + X @ beta + np.einsum("ij,ij->i", Z, ranef[g])
    np.testing.assert_allclose(lmm.fitted_values(design, beta, ranef), expected[order], rtol=1e-13)
