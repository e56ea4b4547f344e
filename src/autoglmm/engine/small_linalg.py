"""Cholesky factors and triangular solves of small dense matrices, at LAPACK's own cost.

A fit solves a handful of p x p systems (p about 1-30) outside its numba kernels: the
centring of the response, the covariance of beta, lme4's scaled gradient. scipy.linalg's
``cho_factor``, ``cho_solve`` and ``solve_triangular`` spend 10-15 microseconds each in
argument checks and array-API wrappers around a LAPACK call of 1-3 microseconds (measured
on p = 20); a small fit made about ten such calls. These functions call the same LAPACK
routines directly (``scipy.linalg.lapack``) and raise numpy's ``LinAlgError`` on failure.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack


def cholesky_upper(A: np.ndarray) -> np.ndarray:
    """Upper ``R`` with ``A = R'R`` (A symmetric positive definite; only its upper
    triangle is read). Raises ``LinAlgError`` when A is not positive definite."""
    R, info = lapack.dpotrf(A, lower=0, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"matrix is not positive definite (LAPACK dpotrf {info})")
    return R


def cholesky_solve(R: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x`` with ``R'R x = b``, ``R`` from :func:`cholesky_upper`."""
    x, info = lapack.dpotrs(R, b, lower=0)
    if info != 0:  # pragma: no cover - only for malformed arguments
        raise np.linalg.LinAlgError(f"LAPACK dpotrs failed ({info})")
    return x


def triangular_solve(R: np.ndarray, b: np.ndarray, *, trans: bool = False) -> np.ndarray:
    """``x`` with ``R x = b`` (``R' x = b`` when ``trans``), ``R`` upper triangular."""
    x, info = lapack.dtrtrs(R, b, lower=0, trans=1 if trans else 0)
    if info != 0:
        raise np.linalg.LinAlgError(f"triangular matrix is singular (LAPACK dtrtrs {info})")
    return x


def triangular_inverse(R: np.ndarray) -> np.ndarray:
    """``R^-1`` of an upper triangular ``R``."""
    inv, info = lapack.dtrtri(R, lower=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"triangular matrix is singular (LAPACK dtrtri {info})")
    return inv
