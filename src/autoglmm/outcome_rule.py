"""The one rule for a text outcome, shared by ``fit`` and ``search`` (as R's ``glmer``).

A binomial outcome stored as text with exactly two levels ("no"/"yes") is coded 0/1 with the
second level as 1, as R codes a factor response. Any other text outcome is a
:class:`~autoglmm.errors.DataError` whose message shows the values and the recoding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from autoglmm.errors import DataError

__all__ = ["binary_text_outcome", "non_numeric_outcome"]


def binary_text_outcome(values: object, family: str):
    """The one rule for a text outcome, in ``fit`` and ``search`` alike (as R's ``glmer``).

    For ``family="binomial"`` a column with exactly two levels is coded 0/1: the second level
    (of a Categorical's order, else in sorted order) is 1, like a factor response in R.
    Missing values stay NaN. Returns ``None`` when the rule does not apply (the caller then
    raises :func:`non_numeric_outcome`).
    """
    values = pd.Series(values)
    if family != "binomial":
        return None
    present = values.dropna()
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = [c for c in values.cat.categories if (present == c).any()]
    else:
        levels = sorted(pd.unique(present).tolist(), key=str)
    if len(levels) != 2:
        return None
    return np.where(values.isna(), np.nan, (values == levels[1]).to_numpy(dtype=float))


def non_numeric_outcome(name: str, values: object) -> DataError:
    """The error for a text outcome that :func:`binary_text_outcome` cannot code."""
    levels = sorted(map(str, pd.Series(values).dropna().unique()))
    shown = ", ".join(f"'{v}'" for v in levels[:4]) + (", ..." if len(levels) > 4 else "")
    example = f", e.g. {name} = ({name} == '{levels[-1]}')" if len(levels) == 2 else ""
    return DataError(
        f"the outcome '{name}' is not numeric (values {shown}); recode it as numbers "
        f"(0/1 for a binary outcome{example})"
    )
