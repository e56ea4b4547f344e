"""Two-level multiple imputation of missing predictor values (seeded).

Complete cases over 230 questionnaire items, each 2-8% missing, keep a few percent of the
students (issue 13), so ``--impute N`` fills the gaps N times and the analyses are pooled by
Rubin's rules (:mod:`autoglmm.pooling`). A single-level imputation would be wrong for
students in schools: it ignores the school, so imputed values regress towards the overall
mean and the between-school variance (and the ICC) shrinks, and it may give a school-level
variable different values within one school. The method here follows the multilevel
recommendations of Grund, Lüdtke & Robitzsch (2018, *Organizational Research Methods*
21(1), 111-149; and 2016, *SAGE Open* 6(4)) for random-intercept analysis models:

1. **Level-2 variables** (constant within every group where observed) are imputed at the
   group level: one row per group, with the group means of the level-1 variables and of the
   outcome as predictors. The imputed value is then given to every member of the group, so
   it stays constant within groups. A group's observed value is simply copied to its rows
   with a missing entry (it is known, not imputed).
2. **Level-1 variables** are imputed with the group means of the level-1 variables (and of
   the outcome) as auxiliary predictors: the "manifest group means" approach, which keeps
   the between-group part of every association (Grund et al. 2018, section "Random
   intercept models"; Carpenter & Kenward 2013, ch. 9).

Each step is imputation by chained equations with Bayesian linear-regression draws (the
``norm`` method of mice; van Buuren 2018, section 3.2), so each imputation is a draw from the
posterior predictive distribution (proper multiple imputation), not a conditional mean.
Each regression uses the 30 most correlated columns, which keeps 230 items tractable
(scikit-learn's IterativeImputer does the same with ``n_nearest_features`` but took
minutes; this numpy version takes seconds). Values of
integer-coded items (Likert codes) are rounded and clipped to the observed range. Random
slopes are not part of the imputation model, so slope variances of imputed variables are
conservative (Grund et al. 2018 discuss this limitation). Text/categorical columns are not
imputed; complete cases still apply to them.

Imputation ``k`` uses the seed ``SeedSequence(seed).spawn(N)[k]``: the same seed gives the
same N data sets.

Examples
--------
>>> filled = impute_two_level(df, "school", ["ses", "sch_size"], n=5, seed=1)  # doctest: +SKIP
>>> len(filled)                                                             # doctest: +SKIP
5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from autoglmm.errors import UsageError

__all__ = ["impute_once", "impute_two_level", "level2_columns"]

_N_NEAREST, _MAX_ITER = 30, 5


def impute_two_level(
    frame: pd.DataFrame,
    group: str,
    columns: Sequence[str],
    n: int,
    seed: int | None,
    auxiliary: Sequence[Sequence[str]] | Sequence[str] = (),
) -> list[pd.DataFrame]:
    """``n`` imputed copies of ``frame`` (only ``columns`` are filled).

    ``auxiliary`` lists columns used as predictors but not filled (the outcome); give a list
    of lists to use different auxiliaries per imputation (plausible value k with imputation
    k).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise UsageError(f"impute must be a whole number >= 1, got {n!r}")
    seeds = np.random.SeedSequence(None if seed is None else int(seed)).spawn(int(n))
    aux = list(auxiliary)
    per = aux if aux and not isinstance(aux[0], str) else [aux] * int(n)
    return [
        impute_once(frame, group, columns, int(s.generate_state(1)[0]), per[k % len(per)])
        for k, s in enumerate(seeds)
    ]


def impute_once(
    frame: pd.DataFrame,
    group: str,
    columns: Sequence[str],
    seed: int,
    auxiliary: Sequence[str] = (),
) -> pd.DataFrame:
    """One imputed copy of ``frame``: level-2 columns first (group level), then level-1."""
    cols = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c].dtype)]
    out = frame.copy()
    out.attrs = {}  # pandas deep-copies attrs (labels) on every column operation
    present = out[group].notna().to_numpy()
    if not cols or not present.any():
        return out
    work = out.loc[present]
    codes, _ = pd.factorize(work[group])
    level2 = level2_columns(work, group, cols)
    level1 = [c for c in cols if c not in set(level2)]
    aux = [c for c in auxiliary if c in work.columns and c not in set(cols)]
    rng = np.random.SeedSequence(seed).generate_state(2)
    means = _group_means(work, codes, level1 + aux)
    if level2:
        filled = _impute_level2(work, codes, level2, means, int(rng[0]))
        work = work.assign(**{c: filled[:, j] for j, c in enumerate(level2)})
    if level1:
        filled = _impute_level1(work, codes, level1, level2 + aux, means, int(rng[1]))
        work = work.assign(**{c: filled[:, j] for j, c in enumerate(level1)})
    for c in cols:
        out.loc[present, c] = _as_observed(work[c].to_numpy(dtype=float), out[c])
    out.attrs = frame.attrs
    return out


def level2_columns(frame: pd.DataFrame, group: str, columns: Sequence[str]) -> list[str]:
    """Columns constant within every group among their observed values."""
    counts = frame.groupby(group, sort=False)[list(columns)].nunique(dropna=True)
    return [c for c in columns if (counts[c] <= 1).all() and counts[c].max() == 1]


def _group_means(work: pd.DataFrame, codes: np.ndarray, cols: list[str]) -> np.ndarray:
    """Observed group means (groups x cols); NaN where a group has no observed value."""
    values = work[cols].to_numpy(dtype=float)
    seen = ~np.isnan(values)
    n_groups = int(codes.max()) + 1
    sums = np.zeros((n_groups, len(cols)))
    counts = np.zeros((n_groups, len(cols)))
    np.add.at(sums, codes, np.where(seen, values, 0.0))
    np.add.at(counts, codes, seen)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _impute_level2(work, codes, level2, means, seed) -> np.ndarray:
    """Fill level-2 columns at the group level and give each row its group's value."""
    n_groups = int(codes.max()) + 1
    table = np.full((n_groups, len(level2)), np.nan)
    values = work[level2].to_numpy(dtype=float)
    for j in range(len(level2)):  # the observed value of each group (constant within it)
        seen = ~np.isnan(values[:, j])
        table[codes[seen], j] = values[seen, j]
    filled = _chained(np.column_stack([table, means]), len(level2), seed)
    return filled[codes]


def _impute_level1(work, codes, level1, others, means, seed) -> np.ndarray:
    """Fill level-1 columns with level-2 values, auxiliaries and group means as predictors."""
    x = np.column_stack([work[level1 + others].to_numpy(dtype=float), means[codes]])
    return _chained(x, len(level1), seed)


def _chained(x: np.ndarray, n_target: int, seed: int) -> np.ndarray:
    """Chained Bayesian linear-regression draws for the first ``n_target`` columns of ``x``.

    mice's ``norm`` method (van Buuren 2018, *Flexible Imputation of Missing Data*, 3.2):
    for each column with missing values, regress it on its ``_N_NEAREST`` most correlated
    columns over the observed rows, draw σ² and β from their posterior, and draw the
    missing values; repeat over the columns ``_MAX_ITER`` times. Written with numpy
    because scikit-learn's IterativeImputer took minutes for 230 items.
    """
    rng = np.random.default_rng(seed)
    miss = np.isnan(x)
    with np.errstate(invalid="ignore"):
        means = np.where(miss.all(axis=0), 0.0, np.nanmean(np.where(miss, np.nan, x), axis=0))
    filled = np.asfortranarray(np.where(miss, means, x))  # column gathers stay contiguous
    targets = [j for j in range(n_target) if miss[:, j].any() and not miss[:, j].all()]
    if not targets:
        return filled[:, :n_target]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.abs(np.corrcoef(filled, rowvar=False)))
    predictors = {}
    for j in targets:  # the most correlated other columns (never the target itself)
        order = np.argsort(-corr[j], kind="stable")
        predictors[j] = order[order != j][:_N_NEAREST]
    for _ in range(_MAX_ITER):
        for j in targets:
            rows = miss[:, j]
            X = np.column_stack([np.ones(len(x)), filled[:, predictors[j]]])
            filled[rows, j] = _draw(rng, X[~rows], filled[~rows, j], X[rows])
    return filled[:, :n_target]


def _draw(rng: np.random.Generator, xo: np.ndarray, yo: np.ndarray, xm: np.ndarray):
    """Posterior-predictive draws of y at ``xm`` for a flat-prior normal linear model."""
    p = xo.shape[1]
    xtx = xo.T @ xo + 1e-8 * np.eye(p)
    chol = np.linalg.cholesky(xtx)
    beta = np.linalg.solve(xtx, xo.T @ yo)
    resid = yo - xo @ beta
    df = max(len(yo) - p, 1)
    sigma = np.sqrt(resid @ resid / rng.chisquare(df))
    # beta ~ N(beta_hat, sigma^2 (X'X)^-1): solve L' z = e with X'X = L L'
    beta = beta + sigma * np.linalg.solve(chol.T, rng.standard_normal(p))
    return xm @ beta + sigma * rng.standard_normal(len(xm))


def _as_observed(values: np.ndarray, original: pd.Series) -> np.ndarray:
    """Round integer-coded columns and clip to the observed range (a Likert code stays 1-4)."""
    seen = original.to_numpy(dtype=float, na_value=np.nan)
    seen = seen[~np.isnan(seen)]
    if seen.size == 0:
        return values
    if np.all(seen == np.round(seen)):
        values = np.round(values)
    return np.clip(values, seen.min(), seen.max())
