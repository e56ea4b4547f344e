"""Sampling weights in ``search``: the reported models refitted by pseudo-ML.

Selection follows the unweighted likelihood-ratio path (SPEC 6.3): pseudo-likelihood
ratios are not chi-square distributed, so the paper's tests stay unweighted. The null,
base, preliminary and optimal models are then refitted with the sampling weights
(:func:`autoglmm.fit` with ``level1_weights``/``level2_weights``) on the same rows and
reported beside the unweighted fits (``SearchResult.weighted``, ``result.json``
``models.<name>.weighted``).

The weight columns are never candidate predictors. They are checked on the analysis rows
before the search starts, so bad weights stop the run at once with a one-line error
rather than after the forest and the selection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from autoglmm.engine.weights import SCALINGS, prepare_weights
from autoglmm.errors import DataError, UsageError


@dataclass(frozen=True)
class SearchWeights:
    """The sampling-weight settings of a search (column names, not arrays)."""

    level1: str | None
    level2: str | None
    conditional: bool = False
    scaling: str = "raw"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.level1, self.level2) if c is not None)


def search_weights(
    data: pd.DataFrame, level1, level2, conditional: bool, scaling: str
) -> SearchWeights | None:
    """Validate the options against the data; None when no sampling weights are given."""
    if level1 is None and level2 is None:
        if conditional:
            raise UsageError("conditional_weights needs level1_weights; add --level1-weights")
        return None
    for what, col in (("level-1", level1), ("level-2", level2)):
        if col is not None and not isinstance(col, str):
            raise UsageError(f"search takes the {what} weights as a column name")
        if col is not None and col not in data.columns:
            raise DataError(f"unknown {what} weights column '{col}'; check the column names")
    if scaling not in SCALINGS:
        raise UsageError(f"unknown weight scaling {scaling!r}; use one of {', '.join(SCALINGS)}")
    return SearchWeights(level1, level2, bool(conditional), scaling)


def attach(
    data: pd.DataFrame, frame: pd.DataFrame, group: str, weights: SearchWeights
) -> pd.DataFrame:
    """The analysis rows with the weight columns (from the full ``frame``), validated.

    ``data`` keeps the original row labels of ``frame`` (the sample builder's contract).
    """
    extra = frame.loc[data.index, list(weights.columns)]
    out = data.assign(**{c: pd.to_numeric(extra[c], errors="coerce") for c in weights.columns})
    codes = pd.factorize(out[group], sort=True)[0]
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes))])

    def column(name: str | None) -> np.ndarray | None:
        return None if name is None else out[name].to_numpy(dtype=float)[order]

    prepare_weights(
        column(weights.level1),
        column(weights.level2),
        starts,
        conditional=weights.conditional,
        scaling=weights.scaling,
        names=(f"level-1 weights '{weights.level1}'", f"level-2 weights '{weights.level2}'"),
    )
    return out


def refit_weighted(
    models: dict[str, tuple[Any, Any]],
    formula_of: Callable[[Any], str],
    data: pd.DataFrame,
    family: str,
    weights: SearchWeights,
) -> dict[str, Any]:
    """Each reported model refitted with the sampling weights (pseudo-ML, sandwich SEs)."""
    from autoglmm.fitting import fit

    out = {}
    for name, (terms, unweighted) in models.items():
        if unweighted is None:
            continue
        out[name] = fit(
            formula_of(terms), data, family=family,
            level1_weights=weights.level1, level2_weights=weights.level2,
            conditional_weights=weights.conditional, weight_scaling=weights.scaling,
        )  # fmt: skip
    return out


__all__ = ["SearchWeights", "attach", "refit_weighted", "search_weights"]
