"""The shared small dense kernels (engine/kernels.py) against numpy/scipy."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from autoglmm.engine.design import lambda_from_theta, theta_positions
from autoglmm.engine.kernels import backward, chol_inplace, chol_lambda, chol_solve, forward


def _spd(q: int, seed: int = 0) -> np.ndarray:
    B = np.random.default_rng(seed).normal(size=(q, q))
    return B @ B.T + np.eye(q)


def test_cholesky_in_place_and_refusal() -> None:
    H = _spd(3)
    L = H.copy()
    assert chol_inplace(L)
    np.testing.assert_allclose(L, np.linalg.cholesky(H), rtol=1e-13)
    assert not chol_inplace(-np.eye(2))


def test_block_solves_in_place() -> None:
    H = _spd(4, seed=1)
    L = np.linalg.cholesky(H)
    B = np.random.default_rng(2).normal(size=(4, 3))
    X = B.copy()
    forward(L, X)
    np.testing.assert_allclose(X, linalg.solve_triangular(L, B, lower=True), rtol=1e-12)
    X = B.copy()
    backward(L, X)
    np.testing.assert_allclose(X, linalg.solve_triangular(L.T, B, lower=False), rtol=1e-12)
    x = np.array([1.0, 2.0, 3.0, 4.0])
    chol_solve(L, x.reshape((4, 1)))  # a vector as a (q, 1) view, solved in place
    np.testing.assert_allclose(H @ x, [1, 2, 3, 4], rtol=1e-12)


def test_chol_lambda_factors_the_group_system() -> None:
    ZtZ = _spd(3, seed=3)
    theta = np.array([0.9, 0.2, -0.1, 0.5, 0.3, 0.4])
    lam = lambda_from_theta(theta, (3,))
    L = np.zeros((3, 3))
    logdet = chol_lambda(lam, ZtZ, np.empty((3, 3)), L)
    M = lam.T @ ZtZ @ lam + np.eye(3)
    np.testing.assert_allclose(np.tril(L), np.linalg.cholesky(M), rtol=1e-13)
    assert abs(logdet - np.linalg.slogdet(M)[1]) < 1e-13
    assert chol_lambda(lam, -10 * ZtZ, np.empty((3, 3)), np.zeros((3, 3))) == np.inf


def test_one_theta_to_lambda_map() -> None:
    # (1 + x | g) + (0 + z | g): a 2x2 block and a 1x1 block, column-major lower triangles
    lam = lambda_from_theta(np.array([1.0, 2.0, 3.0, 4.0]), (2, 1))
    np.testing.assert_array_equal(lam, [[1, 0, 0], [2, 3, 0], [0, 0, 4]])
    rows, cols = theta_positions((2, 1))
    assert rows is theta_positions((2, 1))[0]  # cached, and read-only
    assert not rows.flags.writeable
