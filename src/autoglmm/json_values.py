"""Plain JSON values from numpy/pandas results: one converter shared by results and the report.

It lives on its own so that :mod:`autoglmm.search_result` and :mod:`autoglmm.report` can both
use it while the dependency between them runs one way (result -> report).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

__all__ = ["json_value"]


def json_value(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN/inf -> None, containers recursed.

    >>> json_value({"a": np.float64("nan"), "b": (np.int64(2),)})
    {'a': None, 'b': [2]}
    """
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return str(value)
    return value
