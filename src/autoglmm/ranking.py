"""Rank candidate predictors by MERF permutation importance (SPEC section 2, step 3).

A plain random forest is the wrong tool for grouped data: school-level items absorb the
school effect and crowd the top of its ranking. :func:`rank_predictors` fits a
:class:`~autoglmm.forest.merf.MixedEffectsRandomForest` on the analysis sample and ranks by
its out-of-bag permutation importance (randomForest's unscaled %IncMSE), highest first,
ties in column order. The result is a frozen :class:`Ranking`.

The default MERF is cluster-aware (SPEC 6.1): out of bag means out of school, so a
school-level item earns importance only by predicting other schools' outcomes; the random
effects are estimated net of the school-level items' linear effects, so they do not take
a school-level predictor's signal from the forest; categorical predictors are split on
subsets of levels. The other rankers of the selection study are in :data:`RANKERS`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoglmm.errors import DataError, UsageError
from autoglmm.forest.importance import rank_order

__all__ = [
    "DEFAULT_RANKER",
    "RANKERS",
    "Ranking",
    "encode_predictors",
    "nominal_mask",
    "rank_predictors",
]

#: The rankers of the selection study, as ``forest_options`` of :func:`rank_predictors`
#: (keyword arguments of :class:`~autoglmm.forest.merf.MixedEffectsRandomForest`):
#:
#: - ``"merf"`` (the default): the cluster-aware MERF: out of bag = out of group, level-2
#:   columns permuted across groups, random effects net of the level-2 columns' linear
#:   effects, EM from b = 0 stopped at a plateau;
#: - ``"merf_rowlmm"``: the MERF of autoglmm 0.1: row bootstrap, EM from the null LMM's
#:   random effects, stopped at the first fall of the log-likelihood, categorical
#:   predictors split as integer codes;
#: - ``"longiturf"``: LongituRF-like: row bootstrap and row permutation, EM from b = 0,
#:   stopped when the log-likelihood changes by less than 0.1% (LongituRF's ``delta``);
#: - ``"plain"``: one forest without random effects, row bootstrap (randomForest).
RANKERS: dict[str, dict[str, Any]] = {
    "merf": {
        "bootstrap_unit": "group", "level2_permutation": "group", "level2_fixed": True,
        "min_groups_leaf": 5, "em_start": "zero", "em_stop": "plateau",
    },
    "merf_rowlmm": {
        "bootstrap_unit": "row", "level2_permutation": "row", "level2_fixed": False,
        "min_groups_leaf": 0, "em_start": "lmm", "em_stop": "first_fall",
        "categorical_features": None,
    },
    "longiturf": {
        "bootstrap_unit": "row", "level2_permutation": "row", "level2_fixed": False,
        "min_groups_leaf": 0, "em_start": "zero", "em_stop": "plateau", "tol": 1e-3,
    },
    "plain": {
        "random_effects": False, "bootstrap_unit": "row", "level2_permutation": "row",
        "min_groups_leaf": 0,
    },
}  # fmt: skip
#: The ranker :func:`rank_predictors` (and so the search) uses when ``forest_options`` is
#: None: the cluster-aware MERF, chosen by the selection study (benchmarks/selection.py).
#: School-level items can rank at the top, so the search's interaction stage takes its
#: essential predictors from the student-level ones first (selection.py, ``_essentials``).
DEFAULT_RANKER = "merf"

ProgressArg = bool | Callable[[str, int, int], None] | None


@dataclass(frozen=True, eq=False)
class Ranking:
    """Predictors ranked by MERF permutation importance (frozen; read it, never change it).

    Attributes
    ----------
    table : one row per predictor in rank order: ``predictor``, ``importance`` (mean
        %IncMSE), ``se`` (over trees), ``rank``, ``impurity``, ``level2``, ``categorical``,
        ``label``, and with ``n_repeats > 1`` the rank interval ``rank_low``/``rank_high``.
    report : the analysis sample's :class:`~autoglmm.sample.SampleReport`.
    settings : family, ntree, mtry, min_samples_leaf, seed, n_repeats, n_obs, n_groups.
    sigma2, G, n_iter : the MERF's residual variance, random-effects covariance and EM
        iterations (of the first repeat).
    """

    table: pd.DataFrame = field(repr=False)
    report: Any = field(repr=False)
    settings: dict = field(repr=False)
    sigma2: float
    G: np.ndarray = field(repr=False)
    n_iter: int

    @property
    def names(self) -> list[str]:
        """Predictor names, most important first."""
        return list(self.table["predictor"])

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, column: str) -> pd.Series:
        return self.table[column].copy()

    def to_frame(self) -> pd.DataFrame:
        """A copy of the ranking table."""
        return self.table.copy()

    def to_dict(self) -> dict:
        """JSON-ready dict: the ``ranking`` list of result.json plus the settings."""
        cols = ["predictor", "importance", "se", "rank", "impurity"]
        if "rank_low" in self.table:
            cols += ["rank_low", "rank_high"]
        rows = [
            {k: _plain(v) for k, v in row.items()} for row in self.table[cols].to_dict("records")
        ]
        return {
            "ranking": rows,
            "settings": {k: _plain(v) for k, v in self.settings.items()},
            "sigma2": float(self.sigma2),
            "G": np.asarray(self.G).tolist(),
            "n_iter": int(self.n_iter),
        }

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as CSV atomically (temp file + rename): complete or untouched."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", newline="") as fh:
                self.table.to_csv(fh, index=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def plot(self, top: int = 30, labels: dict[str, str] | None = None):
        """Horizontal bar chart of the ``top`` importances (the paper's Figure 2).

        ``labels`` maps predictor names to display names (e.g. V-numbers). Bars carry
        +/- 1 standard error over trees. Returns a matplotlib ``Figure``.
        """
        from matplotlib.figure import Figure

        shown = self.table.head(top)
        names = [(labels or {}).get(p, p) for p in shown["predictor"]]
        fig = Figure(figsize=(7.0, 0.22 * len(shown) + 1.2), layout="constrained")
        ax = fig.add_subplot()
        pos = np.arange(len(shown))[::-1]
        ax.barh(pos, shown["importance"], xerr=shown["se"], color="#4c72b0", ecolor="#333333")
        ax.set_yticks(pos, names, fontsize=8)
        ax.set_xlabel("Permutation importance (increase in OOB MSE)")
        ax.set_title(f"MERF variable importance (top {len(shown)})")
        ax.axvline(0.0, color="black", linewidth=0.6)
        return fig

    def __repr__(self) -> str:
        head = self.table.head(10)[["rank", "predictor", "importance", "se"]]
        return (
            f"Ranking of {len(self)} predictors (MERF, ntree={self.settings.get('ntree')}, "
            f"seed={self.settings.get('seed')})\n{head.to_string(index=False)}"
        )

    def _repr_html_(self) -> str:
        return self.table.head(30).to_html(index=False)


def rank_predictors(
    data: pd.DataFrame,
    outcome: str,
    group: str,
    family: str = "gaussian",
    predictors: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    ntree: int = 2000,
    mtry: int | None = None,
    min_samples_leaf: int = 5,
    max_missing: float = 0.2,
    min_group_size: int = 20,
    seed: int | None = None,
    n_repeats: int = 1,
    n_jobs: int | None = None,
    progress: ProgressArg = False,
    forest_options: dict[str, Any] | str | None = None,
) -> Ranking:
    """Rank candidate predictors by MERF OOB permutation importance.

    Parameters
    ----------
    data, outcome, group, family, predictors, exclude, max_missing, min_group_size :
        define the analysis sample (:func:`autoglmm.sample.build_sample`).
    ntree, mtry, min_samples_leaf : forest settings (mtry None = floor(p/3)).
    seed : seed of every random step; None draws one and records it in ``settings``.
    n_repeats : with more than 1, the MERF is refit with seeds derived from ``seed`` and each
        predictor gets its rank interval (lowest, highest rank over the repeats); the
        importance is then the mean over repeats.
    n_jobs : threads; the ranking is identical for any value.
    progress : True for rich progress bars, or a callable ``(stage, done, total)``.
    forest_options : further keyword arguments of
        :class:`~autoglmm.forest.merf.MixedEffectsRandomForest` (``bootstrap_unit``,
        ``level2_permutation``, ``em_start``, ``em_stop``, ``random_effects``, ``max_iter``,
        ``em_estimators``, ...), or the name of a preset in :data:`RANKERS`
        (``"merf"``, ``"merf_rowlmm"``, ``"longiturf"``, ``"plain"``). None: the preset
        :data:`DEFAULT_RANKER`.

    Returns
    -------
    Ranking

    Examples
    --------
    >>> sim = autoglmm.datasets.simulate_lsa(seed=1)                      # doctest: +SKIP
    >>> r = rank_predictors(sim.data, "math", "school", ntree=500, seed=1)  # doctest: +SKIP
    >>> r.names[:5]                                                      # doctest: +SKIP
    """
    from autoglmm.sample import build_sample

    _check_counts(ntree, n_repeats)
    _forest_options(forest_options)  # a bad preset name is an error before the sample's
    sample = build_sample(
        data, outcome, group, predictors=predictors, exclude=exclude,
        max_missing=max_missing, min_group_size=min_group_size, family=family,
    )  # fmt: skip
    return rank_sample(
        sample, family=family, ntree=ntree, mtry=mtry, min_samples_leaf=min_samples_leaf,
        seed=seed, n_repeats=n_repeats, n_jobs=n_jobs, progress=progress,
        forest_options=forest_options,
    )  # fmt: skip


def _check_counts(ntree: int, n_repeats: int) -> None:
    if int(n_repeats) < 1 or int(ntree) < 1:
        raise UsageError("ntree and n_repeats must be positive integers; e.g. --ntree 2000")


def rank_sample(
    sample: Any,
    *,
    family: str = "gaussian",
    ntree: int = 2000,
    mtry: int | None = None,
    min_samples_leaf: int = 5,
    seed: int | None = None,
    n_repeats: int = 1,
    n_jobs: int | None = None,
    progress: ProgressArg = False,
    forest_options: dict[str, Any] | str | None = None,
    data: pd.DataFrame | None = None,
) -> Ranking:
    """:func:`rank_predictors` on an :class:`~autoglmm.sample.AnalysisSample` already built.

    The search builds its sample once and ranks it here. ``data`` replaces
    ``sample.data`` (same rows and columns, e.g. the search's standardized copy).
    """
    from autoglmm.forest.merf import MixedEffectsRandomForest

    _check_counts(ntree, n_repeats)
    options = _forest_options(forest_options)
    recorded = dict(options)
    outcome, group = sample.outcome, sample.group
    if data is not None:
        sample = replace(sample, data=data)
    names = list(sample.predictors)
    if mtry is not None and not 1 <= int(mtry) <= len(names):
        raise UsageError(f"mtry must be between 1 and the {len(names)} predictors, got {mtry}")
    X = encode_predictors(sample.data, names, sample.categorical)
    nominal = nominal_mask(sample.data, names, sample.categorical)
    many = [n for n, c in zip(names, nominal, strict=True) if c and sample.data[n].nunique() > 64]
    if many:
        raise DataError(
            f"categorical predictor(s) {', '.join(many[:5])} have more than 64 levels; "
            "exclude them or merge levels"
        )
    options.setdefault("categorical_features", nominal)
    y = sample.data[outcome].to_numpy(dtype=np.float64)
    groups = sample.data[group].to_numpy()
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    seeds = np.random.SeedSequence(int(seed)).generate_state(int(n_repeats))
    fits = []
    with _progress_callback(progress, int(n_repeats)) as report:
        for k, s in enumerate(seeds):
            merf = MixedEffectsRandomForest(
                n_estimators=int(ntree), max_features=None if mtry is None else int(mtry),
                min_samples_leaf=min_samples_leaf, family=family, random_state=int(s),
                n_jobs=n_jobs, progress=None if report is None else report.for_repeat(k),
                **options,
            )  # fmt: skip
            merf.fit(X, y, groups)
            del merf.forest_  # keep the importances, not ~100 MB of trees per repeat
            fits.append(merf)
    table = _ranking_table(fits, names, sample)
    first = fits[0]
    settings = {
        "family": family, "ntree": int(ntree), "mtry": int(first.max_features_),
        "min_samples_leaf": int(min_samples_leaf), "seed": int(seed),
        "n_repeats": int(n_repeats), "n_obs": int(len(y)),
        "n_groups": int(sample.n_groups), "forest_options": recorded,
    }  # fmt: skip
    return Ranking(
        table=table, report=sample.report, settings=settings,
        sigma2=float(first.sigma2_), G=np.array(first.G_), n_iter=int(first.n_iter_),
    )  # fmt: skip


_FIXED_BY_RANKING = ("n_estimators", "max_features", "min_samples_leaf", "family",
                     "random_state", "n_jobs", "progress")  # fmt: skip


def _forest_options(options: dict[str, Any] | str | None) -> dict[str, Any]:
    """The MERF keyword arguments of ``forest_options`` (a dict or a RANKERS name)."""
    from autoglmm.forest.merf import MixedEffectsRandomForest

    if options is None:
        options = DEFAULT_RANKER
    if isinstance(options, str):
        if options not in RANKERS:
            raise UsageError(f"unknown ranker {options!r}; choose one of {', '.join(RANKERS)}")
        return dict(RANKERS[options])
    known = set(MixedEffectsRandomForest().get_params()) - set(_FIXED_BY_RANKING)
    bad = sorted(set(options) - known)
    if bad:
        raise UsageError(
            f"forest_options has unknown or reserved key(s) {', '.join(bad)}; "
            f"allowed: {', '.join(sorted(known))}"
        )
    try:
        MixedEffectsRandomForest(**options)._check_params()
    except ValueError as err:
        raise UsageError(f"forest_options: {err}") from None
    return dict(options)


def nominal_mask(
    frame: pd.DataFrame, predictors: Sequence[str], categorical: Sequence[str] = ()
) -> np.ndarray:
    """(p,) bool: which predictors :func:`encode_predictors` codes as categories."""
    cats = set(categorical)
    return np.array(
        [n in cats or not pd.api.types.is_numeric_dtype(frame[n].dtype) for n in predictors],
        dtype=bool,
    )


def encode_predictors(
    frame: pd.DataFrame, predictors: Sequence[str], categorical: Sequence[str] = ()
) -> np.ndarray:
    """Numeric matrix of the predictors; categorical ones become codes of their levels.

    A categorical predictor is one column of codes (its category order, or sorted levels),
    so the forest permutes it as a whole and it counts once in the ranking. The codes'
    order carries no meaning: :func:`rank_predictors` passes :func:`nominal_mask` to the
    forest, which splits these columns on subsets of levels. Missing values
    must be gone (the sample step keeps complete cases); any left are an error.
    """
    cats = set(categorical)
    cols = []
    for name in predictors:
        col = frame[name]
        if name in cats or not pd.api.types.is_numeric_dtype(col.dtype):
            codes = pd.Categorical(col).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            cols.append(codes)
        else:
            cols.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
    X = np.column_stack(cols) if cols else np.zeros((len(frame), 0))
    bad = ~np.isfinite(X)
    if bad.any():
        which = [predictors[j] for j in np.flatnonzero(bad.any(axis=0))]
        raise DataError(
            f"predictors {', '.join(which[:5])} have {int(bad.sum())} missing or non-finite "
            "values after the sample step; drop those rows or exclude the predictors"
        )
    return X


def _ranking_table(fits: list, names: list[str], sample) -> pd.DataFrame:
    imps = np.array([f.feature_importances_ for f in fits])
    per_tree = np.concatenate([f.tree_importances_ for f in fits])
    importance = imps.mean(axis=0)
    n_trees = per_tree.shape[0]
    se = per_tree.std(axis=0, ddof=1) / np.sqrt(n_trees) if n_trees > 1 else 0.0 * importance
    table = pd.DataFrame(
        {
            "predictor": names,
            "importance": importance,
            "se": se,
            "rank": rank_order(importance),
            "impurity": np.mean([f.impurity_importances_ for f in fits], axis=0),
            "level2": [n in set(sample.level2) for n in names],
            "categorical": [n in set(sample.categorical) for n in names],
            "label": [sample.labels.get(n, "") for n in names],
        }
    )
    if len(fits) > 1:
        ranks = np.array([rank_order(v) for v in imps])
        table["rank_low"] = ranks.min(axis=0)
        table["rank_high"] = ranks.max(axis=0)
    return table.sort_values("rank", kind="stable").reset_index(drop=True)


class _progress_callback:
    """Context manager turning ``progress`` into per-repeat callbacks (or None)."""

    def __init__(self, progress: ProgressArg, n_repeats: int):
        self.progress = progress
        self.n_repeats = n_repeats
        self.bars = None

    def __enter__(self):
        if not self.progress:
            return None
        if self.progress is True:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bars = Progress(
                "[progress.description]{task.description}", BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), transient=False,
            )  # fmt: skip
            self.bars.__enter__()
            self.tasks: dict[tuple[int, str], Any] = {}
        return self

    def for_repeat(self, k: int) -> Callable[[str, int, int], None]:
        def callback(stage: str, done: int, total: int) -> None:
            if self.bars is None:
                self.progress(stage, done, total)
                return
            key = (k, stage)
            if key not in self.tasks:
                what = "EM iterations" if stage == "em" else "trees"
                rep = f" (repeat {k + 1}/{self.n_repeats})" if self.n_repeats > 1 else ""
                self.tasks[key] = self.bars.add_task(f"MERF {what}{rep}", total=total)
            self.bars.update(self.tasks[key], completed=done, total=total)

        return callback

    def __exit__(self, *exc):
        if self.bars is not None:
            self.bars.__exit__(*exc)


def _plain(value):
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, np.floating):
        return float(value)
    return value
