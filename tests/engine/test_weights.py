"""Validation and scaling of sampling weights (engine.weights)."""

from __future__ import annotations

import numpy as np
import pytest

from autoglmm.engine.weights import prepare_weights
from autoglmm.errors import DataError, UsageError

STARTS = np.array([0, 3, 5])  # group 0: rows 0-2, group 1: rows 3-4


def test_unconditional_level1_weights_are_divided_by_the_group_weight():
    w1 = np.array([4.0, 8.0, 2.0, 9.0, 3.0])
    w2 = np.array([2.0, 2.0, 2.0, 3.0, 3.0])
    sw = prepare_weights(w1, w2, STARTS)
    np.testing.assert_allclose(sw.level1, [2.0, 4.0, 1.0, 3.0, 1.0])
    np.testing.assert_allclose(sw.level2, [2.0, 3.0])
    np.testing.assert_allclose(sw.total(np.array([0, 0, 0, 1, 1])), w1)
    cond = prepare_weights(sw.level1, w2, STARTS, conditional=True)
    np.testing.assert_allclose(cond.level1, sw.level1)


def test_missing_weights_default_to_one():
    sw = prepare_weights(None, None, STARTS)
    np.testing.assert_array_equal(sw.level1, np.ones(5))
    np.testing.assert_array_equal(sw.level2, np.ones(2))


def test_cluster_and_ess_scalings():
    w1 = np.array([1.0, 2.0, 3.0, 5.0, 5.0])
    cl = prepare_weights(w1, None, STARTS, scaling="cluster")
    np.testing.assert_allclose(np.add.reduceat(cl.level1, STARTS[:-1]), [3.0, 2.0])
    ess = prepare_weights(w1, None, STARTS, scaling="ess")
    # group 0: (1+2+3)^2 / (1+4+9) = 36/14 effective observations
    np.testing.assert_allclose(np.add.reduceat(ess.level1, STARTS[:-1]), [36 / 14, 2.0])
    np.testing.assert_allclose(ess.level1[:3] / w1[:3], 6 / 14)


@pytest.mark.parametrize(
    ("w1", "w2", "text"),
    [
        ([1, -1, 1, 1, 1], None, "negative"),
        ([1, np.nan, 1, 1, 1], None, "non-finite"),
        ([1, np.inf, 1, 1, 1], None, "non-finite"),
        (None, [1, 1, 2, 3, 3], "varies within 1 group"),
        (None, [0, 0, 0, 3, 3], "all weights zero"),
        ([1, 1, 1, 0, 0], None, "all weights zero"),
    ],
)
def test_bad_weights_are_one_line_data_errors(w1, w2, text):
    with pytest.raises(DataError, match=text) as err:
        prepare_weights(
            None if w1 is None else np.array(w1, float),
            None if w2 is None else np.array(w2, float),
            STARTS,
        )
    assert "\n" not in str(err.value)


def test_unknown_scaling_is_a_usage_error():
    with pytest.raises(UsageError, match="scaling"):
        prepare_weights(None, None, STARTS, scaling="sum")
