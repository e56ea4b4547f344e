"""Pre-binning of the features: each column becomes at most ``max_bins`` uint8 codes.

Questionnaire items take a handful of values, so they keep every value and their splits
are exact; continuous columns get quantile bins. The forest then finds splits by scanning
histograms of codes instead of sorting values at every node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Binner"]


@dataclass(frozen=True, eq=False)
class Binner:
    """Per-feature bin edges: exact for few-valued features, quantiles otherwise.

    A value ``x`` of feature ``j`` gets the code ``searchsorted(edges[j], x, "right")``, so
    codes run ``0 .. len(edges[j])`` and a split ``code <= t`` means ``x < edges[j][t]``.
    """

    edges: tuple[np.ndarray, ...]

    @classmethod
    def fit(cls, X: np.ndarray, max_bins: int = 64) -> Binner:
        """Find the edges of each column of ``X`` (finite values, shape (n, p))."""
        if not 2 <= max_bins <= 255:
            raise ValueError("max_bins must be between 2 and 255")
        probs = np.linspace(0.0, 1.0, max_bins + 1)[1:-1]
        edges = []
        for col in np.asarray(X, dtype=np.float64).T:  # one call per feature, not per row
            values = np.unique(col)
            if len(values) <= max_bins:
                cut = (values[:-1] + values[1:]) / 2.0
            else:
                cut = np.unique(np.quantile(col, probs))
            edges.append(cut)
        return cls(tuple(edges))

    @property
    def n_bins(self) -> np.ndarray:
        return np.array([len(e) + 1 for e in self.edges], dtype=np.int32)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Codes of ``X`` as a feature-major ``(p, n)`` uint8 array."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty((X.shape[1], X.shape[0]), dtype=np.uint8)
        for j, cut in enumerate(self.edges):
            out[j] = np.searchsorted(cut, X[:, j], side="right")
        return out
