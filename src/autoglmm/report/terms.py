"""V-numbers and term names: the one mapping that the tables, the equation and the plot share.

The paper's Table 1 numbers the predictors V1, V2, ... in ranking order, and its equation and
importance figure use those numbers, so every output here goes through :func:`v_numbers` and
:func:`term_parts`. A model coefficient's name (``"x"``, ``"C(x)[T.b]"``, ``"x[T.b]"``,
``"a:b"``) is split into ``(predictor, level)`` pairs that can be shown as V-numbers.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

__all__ = [
    "INTERCEPT_NAMES",
    "is_intercept",
    "model_fits",
    "ranking_frame",
    "term_parts",
    "v_numbers",
]

INTERCEPT_NAMES = frozenset({"Intercept", "(Intercept)", "1"})

#: The models of a search, in the order the search builds them.
MODEL_NAMES: tuple[str, ...] = ("null", "base", "preliminary", "optimal")

_CALL_LEVEL = re.compile(r"^C\((?P<name>.+?)(?:,.*)?\)\[(?:T\.)?(?P<level>.*)\]$")
_BARE_LEVEL = re.compile(r"^(?P<name>.+?)\[(?:T\.)?(?P<level>.*)\]$")


def is_intercept(name: str) -> bool:
    """True for the intercept's coefficient name, whichever convention the fit uses."""
    return str(name) in INTERCEPT_NAMES


def ranking_frame(ranking: Any) -> pd.DataFrame:
    """The ranking as a frame with columns ``predictor`` and ``importance``, best first.

    Accepts a :class:`autoglmm.ranking.Ranking` (its ``to_frame()``, ``table`` or
    ``predictors``/``importance`` attributes), a frame, a Series (name -> importance) or a
    list of names (importance NaN, as for a user-supplied ranking). ``None`` gives an empty
    frame (the ICC gate stopped the search before ranking).
    """
    empty = pd.DataFrame({"predictor": pd.Series(dtype=object), "importance": []})
    if ranking is None:
        return empty
    frame = _ranking_to_frame(ranking)
    if frame is None:
        raise TypeError(f"cannot read a ranking from {type(ranking).__name__}")
    frame = frame.reset_index(drop=True)
    if "rank" in frame.columns:
        frame = frame.sort_values("rank", kind="stable").reset_index(drop=True)
    importance = pd.to_numeric(frame.get("importance", math.nan), errors="coerce")
    return pd.DataFrame(
        {"predictor": frame["predictor"].astype(str).to_numpy(), "importance": importance}
    )


def _ranking_to_frame(ranking: Any) -> pd.DataFrame | None:
    if isinstance(ranking, pd.DataFrame):
        return _normalise_columns(ranking)
    if isinstance(ranking, pd.Series):
        return pd.DataFrame({"predictor": ranking.index, "importance": ranking.to_numpy()})
    for attr in ("to_frame", "frame", "table"):
        value = getattr(ranking, attr, None)
        if callable(value):
            value = value()
        if isinstance(value, pd.DataFrame):
            return _normalise_columns(value)
    predictors = getattr(ranking, "predictors", None)
    if predictors is not None and not isinstance(ranking, str):
        importance = getattr(ranking, "importance", None)
        if importance is None:
            importance = getattr(ranking, "importances", None)
        if isinstance(importance, pd.Series | Mapping) and not isinstance(importance, str):
            importance = [importance[p] for p in predictors]
        if importance is None:
            importance = [math.nan] * len(predictors)
        return pd.DataFrame({"predictor": list(predictors), "importance": list(importance)})
    if isinstance(ranking, Iterable) and not isinstance(ranking, str | bytes):
        names = list(ranking)
        return pd.DataFrame({"predictor": names, "importance": [math.nan] * len(names)})
    return None


def _normalise_columns(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    if "predictor" not in frame.columns:
        for alt in ("name", "variable", "feature"):
            if alt in frame.columns:
                frame = frame.rename(columns={alt: "predictor"})
                break
        else:
            frame = frame.rename_axis("predictor").reset_index()
    if "importance" not in frame.columns and "importance_mean" in frame.columns:
        frame = frame.rename(columns={"importance_mean": "importance"})
    return frame


_V_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def v_numbers(result: Any) -> dict[str, str]:
    """Predictor name -> ``"V1"``, ``"V2"``, ... in ranking order (the paper's Table 1).

    Predictors that appear in the trace but not in the ranking (which cannot happen in a
    normal search) are numbered after the ranked ones, so no term is ever left unnamed.
    Results are frozen, so the map is computed once per result.
    """
    try:
        return dict(_V_CACHE[result])
    except (KeyError, TypeError):
        pass
    vmap = _v_numbers(result)
    try:
        _V_CACHE[result] = vmap
    except TypeError:  # not weak-referenceable (e.g. a SimpleNamespace): no cache
        pass
    return dict(vmap)


def _v_numbers(result: Any) -> dict[str, str]:
    names = list(ranking_frame(getattr(result, "ranking", None))["predictor"])
    for step in getattr(result, "steps", ()) or ():
        for part in str(step.term).split(":"):
            if part not in names:
                names.append(part)
    return {name: f"V{i}" for i, name in enumerate(dict.fromkeys(names), start=1)}


def term_parts(name: str, predictors: Iterable[str]) -> list[tuple[str, str | None]]:
    """Split a coefficient name into ``(predictor, level)`` pairs, one per factor of ``a:b``.

    ``level`` is ``None`` for a numeric predictor. A factor that names no known predictor is
    returned as itself, so an unexpected name still shows up readably.

    Examples
    --------
    >>> term_parts("C(sex)[T.girl]:ses", ["sex", "ses"])
    [('sex', 'girl'), ('ses', None)]
    """
    known = set(predictors)
    parts: list[tuple[str, str | None]] = []
    for raw in _split_interaction(str(name), known):
        factor = raw.strip().strip("`")
        if factor in known:
            parts.append((factor, None))
            continue
        match = _CALL_LEVEL.match(factor) or _BARE_LEVEL.match(factor)
        if match and match.group("name").strip().strip("`") in known:
            parts.append((match.group("name").strip().strip("`"), match.group("level")))
        else:
            parts.append((factor, None))
    return parts


def _split_interaction(name: str, known: set[str]) -> list[str]:
    """Split on ':' outside brackets; a predictor whose own name contains ':' stays whole."""
    if name in known:
        return [name]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(name):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ":" and depth == 0:
            parts.append(name[start:i])
            start = i + 1
    parts.append(name[start:])
    return parts


def model_fits(result: Any) -> dict[str, Any]:
    """The fitted models of a search that exist, by name, in the order they were built."""
    fits = {}
    for name in MODEL_NAMES:
        fit = getattr(result, name, None)
        if fit is not None:
            fits[name] = fit
    return fits
