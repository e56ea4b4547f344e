"""MixedEffectsRandomForest: a random forest for the fixed part, random effects by EM.

The EM loop is Hajjem, Bellavance & Larocque (2014): fit the forest to ``y - Z b``, update
``b``, ``sigma2`` and ``G`` in closed form (:mod:`autoglmm.forest.em`), and stop when the
generalised log-likelihood changes by less than ``tol`` (relative). Two choices matter:

- The fixed part ``f(X)`` used in the updates is the forest's **out-of-bag** prediction.
  In-sample predictions of deep trees nearly reproduce ``y``, which drives ``sigma2``
  toward 0 and lets ``b`` absorb nothing (``fixed_part="inbag"`` exists only to show it).
- The EM starts from the null mixed model's random effects (a constant fixed part), not
  from ``b = 0``: otherwise the first forests learn the group effects through school-level
  items that identify the groups, and EM moves them back into ``b`` only over dozens of
  iterations. It stops when the generalised log-likelihood gains less than ``tol``
  (relative) in an iteration: EM increases it, and a fall means the forests' sampling
  noise has taken over.
- The EM iterations use a smaller forest (``em_estimators`` trees, default 100, enough for
  every row to be out of bag in about 37 trees); the full ``n_estimators`` forest is grown
  once, on the converged ``y - Z b``, and gives the predictions, the final variance update
  and the OOB permutation importance. The EM's cost is then a fraction of one full forest.

Binomial and poisson outcomes use a generalized MERF built on penalized quasi-likelihood
(PQL): each iteration linearises the link at the current ``eta = f + Z b``, fits the forest
to the working response ``z - Z b`` with the working weights (weighted splits), and updates
``b`` and ``G`` with the residual variance fixed at 1. PQL was chosen over a Laplace or
adaptive-quadrature fit per iteration because it reuses the same closed-form EM updates and
the same weighted forest, is what the GMERF literature does (Hajjem et al. 2017), and the
ranking only needs the fixed part to be separated from the group effect, not an exact
likelihood; the exact GLMM fits of the search are done later by the engine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from autoglmm.forest.em import EMState, em_step, generalized_loglik, group_sums
from autoglmm.forest.importance import forest_importance
from autoglmm.forest.trees import Binner, Forest, grow_forest, tree_seeds

__all__ = ["MixedEffectsRandomForest"]

_FAMILIES = ("gaussian", "binomial", "poisson")
_FINAL_STREAM = 1_000_003  # seed stream of the final forest, apart from the EM streams
Progress = Callable[[str, int, int], None]


class MixedEffectsRandomForest(RegressorMixin, BaseEstimator):
    """Mixed-effects random forest (MERF) regressor with OOB permutation importance.

    Parameters
    ----------
    n_estimators : trees of the final forest (randomForest's ``ntree``).
    max_features : features tried per split: None = floor(p/3) as randomForest's
        regression default, an int, a float fraction of p, or "sqrt".
    min_samples_leaf : least in-bag rows (bootstrap duplicates count) in each child.
    max_iter, tol : EM stops after ``max_iter`` iterations or when the generalised
        log-likelihood changes by less than ``tol`` times its size.
    em_estimators : trees of the forests inside the EM iterations.
    max_bins : bins per feature (features with fewer distinct values keep them all).
    family : "gaussian", "binomial" (logit) or "poisson" (log).
    fixed_part : "oob" (default) or "inbag"; "inbag" is a diagnostic that collapses sigma2.
    random_state, n_jobs : seed and threads; results do not depend on ``n_jobs``.
    progress : optional callable ``progress(stage, done, total)``, stage "em" or "trees".

    Examples
    --------
    >>> merf = MixedEffectsRandomForest(n_estimators=300, random_state=0)  # doctest: +SKIP
    >>> merf.fit(X, y, groups=school).sigma2_, merf.G_                     # doctest: +SKIP
    """

    def __init__(
        self,
        n_estimators: int = 2000,
        *,
        max_features: int | float | str | None = None,
        min_samples_leaf: int = 5,
        max_iter: int = 30,
        tol: float = 1e-4,
        em_estimators: int = 100,
        max_bins: int = 64,
        family: str = "gaussian",
        fixed_part: str = "oob",
        random_state=None,
        n_jobs: int | None = None,
        progress: Progress | None = None,
    ):
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.max_iter = max_iter
        self.tol = tol
        self.em_estimators = em_estimators
        self.max_bins = max_bins
        self.family = family
        self.fixed_part = fixed_part
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.progress = progress

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, X, y, groups=None, Z=None) -> MixedEffectsRandomForest:
        """Fit by EM. ``groups`` (n,) labels the clusters; ``Z`` (n, q) adds random slopes.

        With ``groups=None`` there are no random effects and this is a plain forest (that
        also lets scikit-learn's generic estimator checks run).
        """
        self._check_params()
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self._check_outcome(y)
        n, p = X.shape
        self.max_features_ = self._resolve_mtry(p)
        binner = Binner.fit(X, self.max_bins)
        Xb = binner.transform(X)
        rng = check_random_state(self.random_state)
        self._seed = int(rng.randint(0, 2**31 - 1))
        if groups is None:
            return self._fit_plain(Xb, binner, y)
        codes, labels = _group_codes(groups, n)
        if len(labels) < 2:
            raise ValueError("groups has a single group; a mixed model needs at least 2 groups")
        Zm = np.ones((n, 1)) if Z is None else check_array(Z, dtype=np.float64)
        if Zm.shape[0] != n:
            raise ValueError(f"Z has {Zm.shape[0]} rows but X has {n}; pass one row per row")
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], np.arange(len(labels) + 1))
        state, f_sorted = self._em(Xb[:, order], binner, y[order], Zm[order], starts)
        self.groups_ = labels
        self.b_ = state.b
        self.sigma2_ = state.sigma2
        self.G_ = state.G
        oob = np.empty(n)
        oob[order] = f_sorted
        self.oob_prediction_ = oob
        return self

    def _fit_plain(self, Xb: np.ndarray, binner: Binner, y: np.ndarray):
        forest = self._grow(Xb, binner, y, None, _FINAL_STREAM, self.n_estimators, True)
        f = _fill_oob(forest, y)
        self._store_forest(forest)
        self.groups_ = np.array([], dtype=object)
        self.b_ = np.zeros((0, 1))
        self.sigma2_ = float(np.mean((y - f) ** 2)) if self.family == "gaussian" else 1.0
        self.G_ = np.zeros((1, 1))
        self.n_iter_ = 0
        self.converged_ = True
        self.loglik_, self.sigma2_history_, self.G_history_ = [], [], []
        self.oob_prediction_ = f
        return self

    def _em(self, Xb, binner, y, Z, starts) -> tuple[EMState, np.ndarray]:
        """The EM loop on rows sorted by group; returns the final state and the OOB f."""
        n, q = Z.shape
        gaussian = self.family == "gaussian"
        state = _initial_state(y, Z, len(starts) - 1, self.family)
        f = np.full(n, np.mean(y) if gaussian else _link(np.mean(y), self.family))
        state = _warm_start(y, Z, starts, f, state, self)
        lls, s2s, Gs = [], [], []
        self.converged_ = False
        n_em = int(min(self.em_estimators, self.n_estimators))
        for it in range(self.max_iter):
            z, w = (y, np.ones(n)) if gaussian else _working(y, f + _zb(Z, state, starts), self)
            ZtWZ = group_sums(Z, w, starts)
            # same tree seeds every iteration (common random numbers): the log-likelihood
            # then changes only through the target, so its convergence can be detected
            forest = self._grow(Xb, binner, z - _zb(Z, state, starts), w, 0, n_em, False)
            f = self._fixed_part(forest, Xb, z - _zb(Z, state, starts))
            state = em_step(z - f, Z, w, starts, ZtWZ, state, update_sigma2=gaussian)
            lls.append(generalized_loglik(z - f, Z, w, starts, state))
            s2s.append(state.sigma2)
            Gs.append(state.G.copy())
            if self.progress is not None:
                self.progress("em", it + 1, self.max_iter)
            # EM increases the log-likelihood; once it gains less than tol (relative), or
            # the forest's own noise makes it fall, the iterations have converged
            if it > 0 and lls[-1] - lls[-2] <= self.tol * abs(lls[-2]):
                self.converged_ = True
                break
        self.n_iter_ = len(lls)
        if self.progress is not None:
            self.progress("em", self.n_iter_, self.n_iter_)
        # the full forest, grown once on the converged target, and the final update
        z, w = (y, np.ones(n)) if gaussian else _working(y, f + _zb(Z, state, starts), self)
        forest = self._grow(
            Xb, binner, z - _zb(Z, state, starts), w, _FINAL_STREAM, self.n_estimators, True
        )
        f = self._fixed_part(forest, Xb, z - _zb(Z, state, starts))
        state = em_step(
            z - f, Z, w, starts, group_sums(Z, w, starts), state, update_sigma2=gaussian
        )
        lls.append(generalized_loglik(z - f, Z, w, starts, state))
        s2s.append(state.sigma2)
        Gs.append(state.G.copy())
        self.loglik_, self.sigma2_history_, self.G_history_ = lls, s2s, Gs
        self._store_forest(forest)
        return state, f

    def _grow(self, Xb, binner, target, w, stream, n_trees, importance) -> Forest:
        report = None
        if importance and self.progress is not None:

            def report(done: int, total: int) -> None:
                self.progress("trees", done, total)

        return grow_forest(
            Xb, binner, target,
            n_trees=int(n_trees), mtry=self.max_features_,
            min_samples_leaf=self.min_samples_leaf,
            seeds=tree_seeds(self._seed, stream, int(n_trees)),
            sample_weight=w, importance=importance, n_jobs=self.n_jobs, progress=report,
        )  # fmt: skip

    def _fixed_part(self, forest: Forest, Xb: np.ndarray, target: np.ndarray) -> np.ndarray:
        if self.fixed_part == "inbag":
            from autoglmm.forest.trees import _predict, _threads

            with _threads(self.n_jobs):
                return _predict(
                    Xb, forest.feat, forest.thr, forest.left, forest.value, forest.offsets
                )
        return _fill_oob(forest, target)

    def _store_forest(self, forest: Forest) -> None:
        self.forest_ = forest
        self.n_estimators_ = forest.n_trees
        self.importance_ = imp = forest_importance(forest)
        self.tree_importances_ = imp.per_tree
        self.feature_importances_ = imp.permutation
        self.feature_importances_se_ = imp.permutation_se
        self.impurity_importances_ = imp.impurity

    # --- prediction ---------------------------------------------------------------------------

    def predict(self, X, groups=None, Z=None) -> np.ndarray:
        """Predict the mean response; rows of unseen (or no) groups get the fixed part only."""
        check_is_fitted(self, "forest_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        eta = self.forest_.predict(X, n_jobs=self.n_jobs)
        if groups is not None and len(self.groups_):
            groups = np.asarray(groups)
            if groups.shape[0] != X.shape[0]:
                raise ValueError("groups must have one label per row of X")
            Zm = np.ones((X.shape[0], 1)) if Z is None else check_array(Z, dtype=np.float64)
            if Zm.shape[1] != self.b_.shape[1]:
                raise ValueError(f"Z needs {self.b_.shape[1]} columns, as in fit")
            idx = pd.Index(self.groups_).get_indexer(pd.Series(groups).to_numpy())
            known = idx >= 0
            eta[known] += np.einsum("nq,nq->n", Zm[known], self.b_[idx[known]])
        return _inverse_link(eta, self.family)

    # --- checks -------------------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.family not in _FAMILIES:
            raise ValueError(f"family must be one of {_FAMILIES}, got {self.family!r}")
        if self.fixed_part not in ("oob", "inbag"):
            raise ValueError("fixed_part must be 'oob' or 'inbag'")
        for name in ("n_estimators", "em_estimators", "min_samples_leaf", "max_iter"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer")

    def _check_outcome(self, y: np.ndarray) -> None:
        if self.family == "binomial" and (y.min() < 0 or y.max() > 1):
            raise ValueError("a binomial outcome must be 0/1 (or a proportion in [0, 1])")
        if self.family == "poisson" and y.min() < 0:
            raise ValueError("a poisson outcome must be non-negative counts")

    def _resolve_mtry(self, p: int) -> int:
        mf = self.max_features
        if mf is None:
            return max(1, p // 3)
        if mf == "sqrt":
            return max(1, int(np.sqrt(p)))
        if isinstance(mf, float | np.floating) and 0 < mf <= 1:
            return max(1, int(mf * p))
        if isinstance(mf, int | np.integer) and mf >= 1:
            return int(min(mf, p))
        raise ValueError(f"max_features must be None, 'sqrt', a fraction or a count, got {mf!r}")


# --- helpers ---------------------------------------------------------------------------------


def _group_codes(groups, n: int) -> tuple[np.ndarray, np.ndarray]:
    g = pd.Series(np.asarray(groups).ravel() if not isinstance(groups, pd.Series) else groups)
    if len(g) != n:
        raise ValueError(f"groups has {len(g)} labels but X has {n} rows; pass one per row")
    if g.isna().any():
        raise ValueError("groups has missing labels; drop those rows or give them a group")
    codes, labels = pd.factorize(g, sort=True)
    return codes.astype(np.int64), np.asarray(labels)


def _fill_oob(forest: Forest, target: np.ndarray) -> np.ndarray:
    """OOB predictions; a row never out of bag (rare) gets the whole-forest mean target."""
    f = forest.oob_prediction
    if np.isnan(f).any():
        f = np.where(np.isnan(f), np.mean(target), f)
    return f


def _zb(Z: np.ndarray, state: EMState, starts: np.ndarray) -> np.ndarray:
    return np.einsum("nq,nq->n", Z, np.repeat(state.b, np.diff(starts), axis=0))


def _initial_state(y: np.ndarray, Z: np.ndarray, m: int, family: str) -> EMState:
    """b = 0; sigma2 and G each take half the outcome's variance (1 on the link scale)."""
    q = Z.shape[1]
    half = 0.5 * float(np.var(y)) if family == "gaussian" else 0.5
    half = half if half > 0 else 1.0
    scale = np.maximum(np.mean(Z * Z, axis=0), 1e-12)
    return EMState(
        b=np.zeros((m, q)),
        sigma2=half if family == "gaussian" else 1.0,
        G=np.diag(half / scale),
    )


def _warm_start(y, Z, starts, f, state: EMState, est, n_steps: int = 50) -> EMState:
    """Start b, sigma2 and G from the null mixed model (fixed part = a constant).

    Hajjem et al. start from b = 0; then the first forests learn the group effects through
    school-level items (which act as group identifiers) and the EM moves them back into
    ``b`` only slowly. Starting from the null model's random effects removes them first.
    """
    gaussian = est.family == "gaussian"
    for _ in range(n_steps):
        z, w = (y, np.ones(len(y))) if gaussian else _working(y, f + _zb(Z, state, starts), est)
        if not gaussian:
            f = np.full(len(y), np.average(z - _zb(Z, state, starts), weights=w))
        else:
            f = np.full(len(y), np.mean(y - _zb(Z, state, starts)))
        state = em_step(
            z - f, Z, w, starts, group_sums(Z, w, starts), state, update_sigma2=gaussian
        )
    return state


def _link(mu: float, family: str) -> float:
    mu = float(np.clip(mu, 1e-3, 1 - 1e-3)) if family == "binomial" else max(mu, 1e-3)
    return float(np.log(mu / (1 - mu))) if family == "binomial" else float(np.log(mu))


def _inverse_link(eta: np.ndarray, family: str) -> np.ndarray:
    if family == "binomial":
        return 1.0 / (1.0 + np.exp(-eta))
    if family == "poisson":
        return np.exp(eta)
    return eta


def _working(y: np.ndarray, eta: np.ndarray, est) -> tuple[np.ndarray, np.ndarray]:
    """PQL working response and weights at the linear predictor ``eta``."""
    eta = np.clip(eta, -30.0, 30.0)
    mu = _inverse_link(eta, est.family)
    if est.family == "binomial":
        dmu = np.clip(mu * (1.0 - mu), 1e-6, None)
    else:
        dmu = np.clip(mu, 1e-6, None)
    return eta + (y - mu) / dmu, dmu
