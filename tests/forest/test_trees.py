"""The numba forest: binning, OOB bookkeeping, importance semantics, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from autoglmm.forest.importance import forest_importance, rank_order
from autoglmm.forest.trees import Binner, grow_forest, tree_seeds


def _grow(X, y, n_trees=60, mtry=None, leaf=1, seed=0, n_jobs=1, importance=True, w=None):
    binner = Binner.fit(X)
    return grow_forest(
        binner.transform(X), binner, y, n_trees=n_trees, mtry=mtry or X.shape[1],
        min_samples_leaf=leaf, seeds=tree_seeds(seed, 0, n_trees), importance=importance,
        n_jobs=n_jobs, sample_weight=w,
    )  # fmt: skip


@pytest.fixture(scope="module")
def step_data():
    """y = 3 * (x0 > 2) exactly; x0 is a 1..4 item, x1..x3 noise items."""
    rng = np.random.default_rng(0)
    X = rng.integers(1, 5, size=(2000, 4)).astype(float)
    return X, 3.0 * (X[:, 0] > 2)


def test_binner_is_exact_for_few_values_and_quantile_otherwise():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.integers(1, 5, 500), rng.normal(size=500)]).astype(float)
    b = Binner.fit(X, max_bins=16)
    np.testing.assert_array_equal(b.edges[0], [1.5, 2.5, 3.5])
    codes = b.transform(X)
    np.testing.assert_array_equal(codes[0], X[:, 0] - 1)
    assert b.n_bins.tolist() == [4, 16]
    counts = np.bincount(codes[1], minlength=16)
    assert counts.min() >= 500 // 16 - 2 and counts.max() <= 500 // 16 + 2


def test_step_function_importance_is_incmse(step_data):
    """Permuting x0 misroutes a row with prob 2 * 0.5 * 0.5, each costing 3^2: %IncMSE ~ 4.5."""
    X, y = step_data
    forest = _grow(X, y)
    imp = forest_importance(forest)
    p_high = np.mean(X[:, 0] > 2)
    expected = 9.0 * 2 * p_high * (1 - p_high)
    assert imp.permutation[0] == pytest.approx(expected, rel=0.05)
    # noise items never move a prediction: every leaf below the x0 split is already pure
    np.testing.assert_array_equal(imp.permutation[1:], 0.0)
    # impurity: the whole variance n * var(y) is removed at the x0 split of every tree
    assert imp.impurity[0] == pytest.approx(len(y) * np.var(y), rel=0.05)
    np.testing.assert_allclose(forest.oob_prediction, y)


def test_oob_bookkeeping_and_prediction(step_data):
    X, _ = step_data
    rng = np.random.default_rng(2)
    y = X[:, 0] + X[:, 1] + rng.normal(size=len(X))
    forest = _grow(X, y, n_trees=100, leaf=5)
    # a row is out of bag in a tree with probability (1 - 1/n)^n ~ e^-1
    assert forest.oob_count.mean() / 100 == pytest.approx(np.exp(-1), abs=0.01)
    inbag = np.mean((forest.predict(X) - y) ** 2)
    oob = np.mean((forest.oob_prediction - y) ** 2)
    assert inbag < oob  # in-sample predictions overfit, OOB ones do not
    assert oob == pytest.approx(1.0, rel=0.15)  # the noise variance, little forest error


def test_min_samples_leaf_counts_bootstrap_rows(step_data):
    X, y = step_data
    forest = _grow(X, y + np.arange(len(y)) * 1e-3, n_trees=5, leaf=50)
    n_leaves = np.sum(forest.feat < 0)
    assert n_leaves <= 5 * len(y) // 50


def test_same_seeds_same_forest_for_any_threads(step_data):
    X, _ = step_data
    y = X @ [1.0, 0.5, 0.0, 0.0] + np.random.default_rng(3).normal(size=len(X))
    a = _grow(X, y, n_trees=70, mtry=2, leaf=5, n_jobs=1)
    b = _grow(X, y, n_trees=70, mtry=2, leaf=5, n_jobs=2)
    for name in ("feat", "thr", "value", "offsets", "perm_importance", "oob_prediction"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = _grow(X, y, n_trees=70, mtry=2, leaf=5, seed=1)
    assert not np.array_equal(a.perm_importance, c.perm_importance)


def test_weights_shift_leaf_means():
    """A weighted leaf mean: with weight 3 on the y=1 rows of a single leaf, mean = 0.75."""
    X = np.ones((400, 1))
    y = np.tile([0.0, 1.0], 200)
    forest = _grow(X, y, n_trees=20, w=np.where(y == 1.0, 3.0, 1.0))
    assert forest.predict(X)[0] == pytest.approx(0.75, abs=0.02)


def test_rank_order_keeps_column_order_on_ties():
    np.testing.assert_array_equal(rank_order([0.5, 2.0, 0.5, 3.0]), [3, 2, 4, 1])


@pytest.fixture(scope="module")
def school_data():
    """y = school effect + x0 + noise; ``x_id`` is a school-level column with no effect
    of its own that identifies the schools (distinct value per school)."""
    rng = np.random.default_rng(4)
    m, size = 60, 20
    g = np.repeat(np.arange(m), size)
    u = rng.normal(0.0, 2.0, m)
    x0 = rng.normal(size=m * size)
    x_id = rng.permutation(m)[g].astype(float)
    X = np.column_stack([x0, x_id])
    return X, u[g] + x0 + rng.normal(0.0, 0.5, m * size), g


def test_group_bootstrap_oob_is_out_of_group(school_data):
    X, y, g = school_data
    binner = Binner.fit(X)
    kw = dict(n_trees=40, mtry=2, min_samples_leaf=5, seeds=tree_seeds(0, 0, 40))
    forest = grow_forest(binner.transform(X), binner, y, groups=g, group_bootstrap=True, **kw)
    counts = forest.oob_count.reshape(60, 20)
    assert (counts == counts[:, :1]).all()  # a whole school is out of bag, or none of it
    # a school is OOB in a tree with probability (1 - 1/m)^m
    assert counts[:, 0].mean() / 40 == pytest.approx((1 - 1 / 60) ** 60, abs=0.05)


def test_school_identifier_has_no_out_of_school_importance(school_data):
    """Row bootstrap: OOB students have in-bag classmates, so the school-identifying
    column carries their school's mean and gets a large importance. Out of school it
    predicts nothing, permuted across groups or not."""
    X, y, g = school_data
    binner = Binner.fit(X)
    Xb = binner.transform(X)
    kw = dict(n_trees=100, mtry=2, min_samples_leaf=5, seeds=tree_seeds(1, 0, 100))
    row = forest_importance(grow_forest(Xb, binner, y, importance=True, **kw)).permutation
    by_group = dict(groups=g, group_bootstrap=True, level2=np.array([False, True]))
    grp = forest_importance(grow_forest(Xb, binner, y, importance=True, **by_group, **kw))
    grp = grp.permutation
    assert row[1] > 2.0  # most of the school variance (4) through the identifier
    assert grp[1] < 0.1 * row[1]
    assert grp[0] > 0.5  # the student-level effect (variance 1) is still found


def test_categorical_feature_splits_on_level_subsets():
    """y = 3 on the odd codes of a 6-level nominal column: one subset split separates the
    levels, where a split on the codes' order would need five."""
    rng = np.random.default_rng(5)
    X = rng.integers(0, 6, size=(1200, 1)).astype(float)
    y = 3.0 * (X[:, 0] % 2)
    binner = Binner.fit(X)
    kw = dict(n_trees=20, mtry=1, min_samples_leaf=1, seeds=tree_seeds(0, 0, 20))
    cat = grow_forest(binner.transform(X), binner, y, categorical=np.array([True]), **kw)
    np.testing.assert_array_equal(np.diff(cat.offsets), 3)  # a root and two pure leaves
    roots = cat.mask[cat.offsets[:-1]]
    assert set(roots.tolist()) <= {0b101010, 0b010101}
    np.testing.assert_allclose(cat.predict(X), y)
    codes = grow_forest(binner.transform(X), binner, y, **kw)
    assert np.all(np.diff(codes.offsets) == 11)  # the same levels by their codes' order
    with pytest.raises(ValueError, match="64 levels"):
        Xw = np.arange(1000.0)[:, None]
        bw = Binner.fit(Xw, max_bins=128)
        grow_forest(bw.transform(Xw), bw, Xw[:, 0], categorical=np.array([True]), **kw)
