"""Assessment data as it comes (SPEC 6.2): merge files, apply naming conventions.

:func:`prepare` is the one call a search makes before fixing its sample: it joins the
``merge`` files, makes school IDs unique across countries, and lists the columns that an
assessment convention rules out (IDs, weights, jackknife, plausible values), each with its
reason, for :func:`autoglmm.sample.build_sample`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from autoglmm.lsa.conventions import CONVENTIONS, classify, detect
from autoglmm.lsa.merge import composite_group, merge_files

__all__ = ["CONVENTIONS", "classify", "detect", "merge_files", "prepare"]


def prepare(
    frame: pd.DataFrame,
    outcomes: Sequence[str],
    group: str,
    merge: Sequence[pd.DataFrame | str | os.PathLike] = (),
    lsa: str = "auto",
) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """Merged frame, convention exclusions {column: reason}, and warnings.

    ``outcomes`` (and ``group``) are never classified, so a plausible value can be the
    outcome while its siblings are excluded.
    """
    if isinstance(merge, str | os.PathLike | pd.DataFrame):
        merge = [merge]
    notes: list[str] = []
    if merge:
        frame, notes = merge_files(frame, list(merge), group)
    if group in frame.columns:
        frame, more = composite_group(frame, group)
        notes += more
    conventional = classify(frame.columns, lsa, keep=[*outcomes, group])
    return frame, conventional, notes
