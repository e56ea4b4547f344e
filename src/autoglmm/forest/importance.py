"""Importance of a grown forest: OOB permutation (%IncMSE) and impurity, as a typed result.

The per-tree numbers are computed while the trees grow (:mod:`autoglmm.forest.trees`), from
per-tree seeds derived once from one seed; this module only summarises them, so the same
seed gives the same importance whatever the number of threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoglmm.forest.trees import Forest

__all__ = ["ForestImportance", "forest_importance", "rank_order"]


@dataclass(frozen=True, eq=False)
class ForestImportance:
    """Importance of each feature of a forest.

    Attributes
    ----------
    permutation : (p,) randomForest's unscaled %IncMSE: the mean over trees of the
        increase of the tree's OOB mean squared error when the feature is permuted.
    permutation_se : (p,) its standard error over trees, sd / sqrt(n_trees).
    impurity : (p,) mean over trees of the decrease of the residual sum of squares at the
        feature's splits (randomForest's IncNodePurity divided by ntree).
    per_tree : (n_trees, p) the per-tree permutation importances.
    """

    permutation: np.ndarray
    permutation_se: np.ndarray
    impurity: np.ndarray
    per_tree: np.ndarray

    @property
    def n_trees(self) -> int:
        return self.per_tree.shape[0]


def forest_importance(forest: Forest) -> ForestImportance:
    """Summarise the per-tree importances of ``forest`` (grown with ``importance=True``)."""
    per_tree = forest.perm_importance
    n_trees = per_tree.shape[0]
    sd = per_tree.std(axis=0, ddof=1) if n_trees > 1 else np.zeros(per_tree.shape[1])
    return ForestImportance(
        permutation=per_tree.mean(axis=0),
        permutation_se=sd / np.sqrt(n_trees),
        impurity=forest.impurity_importance.mean(axis=0),
        per_tree=per_tree,
    )


def rank_order(values: np.ndarray) -> np.ndarray:
    """Ranks 1..p by decreasing value; ties keep the original (column) order."""
    order = np.argsort(-np.asarray(values, dtype=float), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks
