"""Sampling weights at two levels for pseudo-maximum likelihood (arrays only).

Rabe-Hesketh & Skrondal (2006, JRSS A 169:805) weight a two-level likelihood as

    l_w(beta, theta) = sum_j w_j log int prod_i p(y_ij | b_j)^(w_{i|j}) p(b_j) db_j,

with ``w_j`` the level-2 (group) weight and ``w_{i|j}`` the level-1 weight *conditional on
the group*. Survey files usually ship the unconditional (total) level-1 weight
``w_ij = w_{i|j} w_j`` (TIMSS ``TOTWGT``, PISA ``W_FSTUWT``); WeMix's ``mix()`` takes those
by default and divides by ``w_j``, and so do we (``conditional=False``). With
``conditional=True`` the level-1 weights are ``w_{i|j}`` already (TIMSS
``TOTWGT / SCHWGT``).

Scaling of the level-1 weights (within each group; changes the variance components, not
the consistency of the fixed effects; Pfeffermann et al. 1998, Rabe-Hesketh & Skrondal
2006 section 5, WeMix issue #4):

- ``"raw"`` (default, as WeMix): ``w_{i|j}`` as given;
- ``"cluster"``: ``w_{i|j} n_j / sum_i w_{i|j}`` (they sum to the group size, method 1 of
  Rabe-Hesketh & Skrondal, "method A" of Pfeffermann et al.);
- ``"ess"``: ``w_{i|j} sum_i w_{i|j} / sum_i w_{i|j}^2`` (they sum to the effective
  sample size of the group, method 2, "method B").

The engine receives the result as arrays on the prepared design (rows sorted by group):
the conditional level-1 weights per row and the level-2 weight per group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoglmm.errors import DataError, UsageError

SCALINGS = ("raw", "cluster", "ess")


@dataclass(frozen=True, eq=False)
class SamplingWeights:
    """Pseudo-likelihood weights of one design, in the design's sorted row order.

    level1 : (n,) ``w_{i|j}``, the level-1 weights conditional on the group (scaled).
    level2 : (m,) ``w_j``, one weight per group.
    scaling : how ``level1`` was scaled (see the module docstring).
    """

    level1: np.ndarray
    level2: np.ndarray
    scaling: str = "raw"

    def total(self, group: np.ndarray) -> np.ndarray:
        """Unconditional row weights ``w_{i|j} w_j`` (group codes per row)."""
        return self.level1 * self.level2[group]

    def weighted_n(self, group: np.ndarray) -> float:
        """``sum_j w_j sum_i w_{i|j}``: the weighted number of observations."""
        return float(np.sum(self.total(group)))


def _check_finite_nonnegative(w: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(w)
    if bad.any():
        raise DataError(
            f"{what} has {int(bad.sum())} missing or non-finite value(s); "
            "drop those rows or fix the weights"
        )
    if (w < 0).any():
        raise DataError(
            f"{what} has {int((w < 0).sum())} negative value(s); sampling weights must be >= 0"
        )


def _group_level2(level2: np.ndarray, starts: np.ndarray, name: str) -> np.ndarray:
    """One level-2 weight per group; an error if it varies within a group."""
    first = level2[starts[:-1]]
    lo = np.minimum.reduceat(level2, starts[:-1])
    hi = np.maximum.reduceat(level2, starts[:-1])
    varies = hi - lo > 1e-8 * np.maximum(1.0, np.abs(first))
    if varies.any():
        raise DataError(
            f"{name} varies within {int(varies.sum())} group(s) (first: group #"
            f"{int(np.argmax(varies)) + 1}); a level-2 weight must be constant within a group"
        )
    return first


def _scale(level1: np.ndarray, starts: np.ndarray, scaling: str) -> np.ndarray:
    if scaling == "raw":
        return level1
    s1 = np.add.reduceat(level1, starts[:-1])
    if scaling == "cluster":
        factor = np.diff(starts) / s1
    else:  # "ess"
        factor = s1 / np.add.reduceat(level1 * level1, starts[:-1])
    return level1 * np.repeat(factor, np.diff(starts))


def prepare_weights(
    level1: np.ndarray | None,
    level2: np.ndarray | None,
    starts: np.ndarray,
    *,
    conditional: bool = False,
    scaling: str = "raw",
    names: tuple[str, str] = ("level-1 weights", "level-2 weights"),
) -> SamplingWeights:
    """Validate the weights of a sorted design and return :class:`SamplingWeights`.

    ``level1`` and ``level2`` are per-row arrays in the design's sorted order (None means
    all ones). Unconditional level-1 weights (``conditional=False``) are divided by the
    group's level-2 weight. Raises a one-line :class:`DataError` for non-finite or negative
    weights, a level-2 weight that varies within a group, and a group whose weights are
    all zero (its pseudo-likelihood contribution would be empty); :class:`UsageError` for
    an unknown scaling.

    Example
    -------
    >>> sw = prepare_weights(np.array([2.0, 4, 3]), np.array([2.0, 2, 3]), np.array([0, 2, 3]))
    >>> sw.level1, sw.level2
    (array([1., 2., 1.]), array([2., 3.]))
    """
    if scaling not in SCALINGS:
        raise UsageError(f"unknown weight scaling {scaling!r}; use one of {', '.join(SCALINGS)}")
    starts = np.asarray(starts, dtype=np.int64)
    n = int(starts[-1])
    w2_rows = np.ones(n) if level2 is None else np.asarray(level2, dtype=float)
    w1 = np.ones(n) if level1 is None else np.asarray(level1, dtype=float)
    _check_finite_nonnegative(w1, names[0])
    _check_finite_nonnegative(w2_rows, names[1])
    w2 = _group_level2(w2_rows, starts, names[1])
    if level1 is not None and not conditional:
        with np.errstate(divide="ignore", invalid="ignore"):
            w1 = np.where(w2_rows > 0, w1 / w2_rows, 0.0)
    zero = (w2 <= 0) | (np.add.reduceat(w1, starts[:-1]) <= 0)
    if zero.any():
        raise DataError(
            f"{int(zero.sum())} group(s) have all weights zero (first: group #"
            f"{int(np.argmax(zero)) + 1}); drop those groups before fitting"
        )
    return SamplingWeights(level1=_scale(w1, starts, scaling), level2=w2, scaling=scaling)


__all__ = ["SCALINGS", "SamplingWeights", "prepare_weights"]
