"""The inverse of a small triangular matrix, at LAPACK's own cost.

A fit inverts the p x p Cholesky factor of the fixed-effects block once, for the
covariance of beta (p about 1-30). scipy.linalg's wrappers spend 10-15 microseconds in
argument checks and array-API layers around a LAPACK call of 1-3 microseconds (measured on
p = 20), so this calls the LAPACK routine directly (``scipy.linalg.lapack``) and raises
numpy's ``LinAlgError`` on failure. (The other small factorisations and solves of a fit
run inside its compiled kernels: :mod:`autoglmm.engine.kernels`.)
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack


def triangular_inverse(R: np.ndarray) -> np.ndarray:
    """``R^-1`` of an upper triangular ``R``."""
    inv, info = lapack.dtrtri(R, lower=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"triangular matrix is singular (LAPACK dtrtri {info})")
    return inv
