"""Helpers shared by the engine tests."""

from __future__ import annotations

import numpy as np
import pytest


def _laplace_hessian(ws, theta: np.ndarray, beta: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Symmetrised central differences of the Laplace gradient over (theta, beta).

    Written independently of the engine's own convergence check, so tests can compare
    against it.
    """
    x0 = np.concatenate([theta, beta])
    nt, k = len(theta), len(x0)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h
        gp = ws.laplace_and_gradient((x0 + e)[:nt], (x0 + e)[nt:])[1]
        gm = ws.laplace_and_gradient((x0 - e)[:nt], (x0 - e)[nt:])[1]
        H[:, i] = (gp - gm) / (2 * h)
    return 0.5 * (H + H.T)


@pytest.fixture
def laplace_hessian():
    """:func:`_laplace_hessian`: the Laplace deviance's Hessian by central differences."""
    return _laplace_hessian
