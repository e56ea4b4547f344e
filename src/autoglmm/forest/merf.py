"""MixedEffectsRandomForest: a random forest for the fixed part, random effects by EM.

The EM loop is Hajjem, Bellavance & Larocque (2014): fit the forest to ``y - Z b``, update
``b``, ``sigma2`` and ``G`` in closed form (:mod:`autoglmm.forest.em`), and stop when the
generalised log-likelihood changes by less than ``tol`` (relative). The choices:

- The fixed part ``f(X)`` used in the updates is the forest's **out-of-bag** prediction.
  In-sample predictions of deep trees nearly reproduce ``y``, which drives ``sigma2``
  toward 0 and lets ``b`` absorb nothing (``fixed_part="inbag"`` exists only to show it).
- Out of bag means out of group (``bootstrap_unit="group"``): each tree draws whole
  groups, so the fixed part of a row is predicted by trees that never saw its group, and a
  school-level column cannot carry a school's mean from in-bag classmates. Level-2 columns
  are permuted across groups in the importance, and a split on one must leave
  ``min_groups_leaf`` groups on each side.
- The random effects are updated net of a linear effect of the level-2 columns (GLS on
  the group means, ``level2_fixed``): otherwise ``b`` takes the part of a school-level
  effect that the (shrinking) forest has not captured, the next forest's target loses it,
  and in a few iterations the school-level predictor disappears from the ranking.
- The EM starts at ``b = 0`` (Hajjem et al., LongituRF) and stops when the generalised
  log-likelihood has not improved on its best for 2 iterations in a row
  (``em_stop="plateau"``). With the two points above the log-likelihood levels off after
  2 or 3 iterations and then moves only by forest noise; with a patience of 3 the rule ran
  8 iterations at paper scale and cost 32% more CPU than autoglmm 0.1's ranking. The
  variants of autoglmm 0.1 (row bootstrap, start from the null LMM's random effects, stop
  at the first fall) remain as parameters for the selection study.
- The fixed part is the OOB forest plus a least-squares linear term in ``[1, Z]``
  (``beta_``): forests flatten a linear trend at the ends of its range, and with random
  slopes the leftover mean slope would otherwise be counted as slope variance. With a
  random intercept only, the term is a constant.
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
_CHOICES = {
    "fixed_part": ("oob", "inbag"),
    "bootstrap_unit": ("group", "row"),
    "level2_permutation": ("group", "row"),
    "em_start": ("zero", "lmm"),
    "em_stop": ("plateau", "first_fall"),
}
_PATIENCE = 2  # em_stop="plateau": iterations without a new best log-likelihood
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
    max_iter, tol : EM stops after ``max_iter`` iterations, when the generalised
        log-likelihood changes by less than ``tol`` times its size, or when its change
        reverses direction (forest noise has overtaken the EM's progress).
    em_estimators : trees of the forests inside the EM iterations.
    max_bins : bins per feature (features with fewer distinct values keep them all).
    family : "gaussian", "binomial" (logit) or "poisson" (log).
    fixed_part : "oob" (default) or "inbag"; "inbag" is a diagnostic that collapses sigma2.
    bootstrap_unit : what each tree's bootstrap draws, and so what "out of bag" means.
        "group": whole groups with replacement (as many draws as groups), so a row is out
        of bag only together with its whole group: OOB predictions, the EM's fixed part and
        the permutation importance are out-of-school, and a school-level column cannot
        pass a school's mean from in-bag classmates to an OOB student. "row": rows with
        replacement (randomForest, LongituRF). Without ``groups`` in ``fit`` it is "row".
    level2_permutation : how the importance permutes a level-2 column (one constant within
        every group; detected in ``fit``, see ``level2_features_``). "group": the OOB
        groups' values are shuffled across the OOB groups, all rows of a group together;
        "row": across OOB rows like every other column (randomForest).
    em_start : "zero": the EM starts at b = 0 (Hajjem et al., LongituRF), so the first
        forest sees the group-level signal; "lmm": it starts from the random effects of the
        linear mixed model ``y ~ Z + (Z | g)``, which take most of each group's mean first.
    em_stop : "first_fall": stop at the first fall of the log-likelihood (or a change below
        ``tol``); "plateau": stop when the log-likelihood changes by less than ``tol``, or
        has not improved on its best for 2 iterations in a row, so one noisy step does not
        end it.
    level2_fixed : True estimates the random effects net of a linear effect of the level-2
        columns, as a linear mixed model with those columns as fixed effects would (the
        coefficients by GLS on the group means of the residuals, ``level2_coef_``). Without
        it ``b`` takes the level-2 signal that the forest does not capture at once, the
        forest's next target loses it, and over the EM iterations a school-level predictor
        vanishes from the forest (forests shrink an effect, so this backfitting keeps only
        a small share of it).
    min_groups_leaf : a split on a level-2 column must leave at least this many distinct
        groups on each side (0: no limit), so level-2 columns cannot act as identifiers of
        a few in-bag groups and memorise their means; splits on student-level columns only
        obey ``min_samples_leaf``.
    categorical_features : None, or the nominal columns (indices or a (p,) bool mask) whose
        values are arbitrary codes (at most 64 levels): trees split them on subsets of
        levels, ordered by the mean target of the node's in-bag rows, so the codes' order
        never matters and no OOB row's outcome is used.
    random_effects : False fits one forest without random effects (a plain forest); the
        ``groups`` passed to ``fit`` are then used only for ``bootstrap_unit`` and
        ``level2_permutation``.
    random_state, n_jobs : seed and threads; results do not depend on ``n_jobs``.
    progress : optional callable ``progress(stage, done, total)``, stage "em" or "trees".

    Attributes
    ----------
    b_ : (m, q) random effects of ``groups_``; ``sigma2_``, ``G_``: variance components.
    beta_ : coefficients of the linear term in ``[1, Z]`` of the fixed part.
    level2_features_ : (p,) bool, features constant within every group (all False without
        ``groups``).
    level2_coef_ : with ``level2_fixed``, the linear coefficients of the level-2 features
        in the fixed part (intercept first, numeric features standardized, nominal ones as
        dummies); else an empty array.
    categorical_ : (p,) bool mask of the nominal features.
    n_iter_, converged_ : EM iterations (small forests) and whether the rule stopped them.
    loglik_, sigma2_history_, G_history_ : per EM iteration, plus the final full-forest
        update as the last entry. ``loglik_`` is ``-GLL / 2`` of Hajjem et al.
    feature_importances_, feature_importances_se_ : OOB permutation importance (%IncMSE)
        and its standard error over trees; ``impurity_importances_``; ``tree_importances_``.
    oob_prediction_ : the fixed part of each training row, out of bag.
    forest_ : the final :class:`~autoglmm.forest.trees.Forest`.

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
        bootstrap_unit: str = "group",
        level2_permutation: str = "group",
        em_start: str = "zero",
        em_stop: str = "plateau",
        level2_fixed: bool = True,
        min_groups_leaf: int = 5,
        categorical_features=None,
        random_effects: bool = True,
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
        self.bootstrap_unit = bootstrap_unit
        self.level2_permutation = level2_permutation
        self.em_start = em_start
        self.em_stop = em_stop
        self.random_effects = random_effects
        self.level2_fixed = level2_fixed
        self.min_groups_leaf = min_groups_leaf
        self.categorical_features = categorical_features
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
        self.categorical_ = self._resolve_categorical(X)
        binner = Binner.fit(X, self.max_bins)
        Xb = binner.transform(X)
        rng = check_random_state(self.random_state)
        self._seed = int(rng.randint(0, 2**31 - 1))
        self._gcode, self._W = None, None
        self.level2_features_ = np.zeros(p, dtype=bool)
        self.level2_coef_ = np.zeros(0)
        if groups is None:
            return self._fit_plain(Xb, binner, y)
        codes, labels = _group_codes(groups, n)
        if len(labels) < 2:
            raise ValueError("groups has a single group; a mixed model needs at least 2 groups")
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], np.arange(len(labels) + 1))
        self._gcode = codes[order]
        self.level2_features_ = _constant_within(Xb[:, order], starts)
        if not self.random_effects:
            self._fit_plain(Xb[:, order], binner, y[order])
            f = np.empty(n)
            f[order] = self.oob_prediction_
            self.oob_prediction_ = f
            return self
        Zm = np.ones((n, 1)) if Z is None else check_array(Z, dtype=np.float64)
        if Zm.shape[0] != n:
            raise ValueError(f"Z has {Zm.shape[0]} rows but X has {n}; pass one row per row")
        self._W = self._level2_design(X[order][starts[:-1]])
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
        self.n_iter_ = 1  # one forest, no EM (scikit-learn expects n_iter_ >= 1)
        self.converged_ = True
        self.loglik_, self.sigma2_history_, self.G_history_ = [], [], []
        self.oob_prediction_ = f
        return self

    def _em(self, Xb, binner, y, Z, starts) -> tuple[EMState, np.ndarray]:
        """The EM loop on rows sorted by group; returns the final state and fixed part."""
        gaussian = self.family == "gaussian"
        self.add_intercept_ = not np.any(np.all(Z == 1.0, axis=0))
        D = _linear_design(Z, self.add_intercept_)
        state = _initial_state(y, Z, len(starts) - 1, self.family)
        fixed = np.full(len(y), np.mean(y) if gaussian else _link(np.mean(y), self.family))
        if self.em_start == "lmm":
            state, fixed = _warm_start(y, Z, D, starts, fixed, state, self)
        lls, s2s, Gs = [], [], []
        self.converged_ = False
        n_em = int(min(self.em_estimators, self.n_estimators))
        for it in range(self.max_iter):
            # same tree seeds every iteration (common random numbers): the log-likelihood
            # then changes mostly through the target, not through a new forest's noise
            _, fixed, _, state, ll = self._iteration(Xb, binner, y, Z, D, starts, fixed,
                                                     state, 0, n_em)  # fmt: skip
            lls.append(ll)
            s2s.append(state.sigma2)
            Gs.append(state.G.copy())
            if self.progress is not None:
                self.progress("em", it + 1, self.max_iter)
            if _converged(lls, self.tol, gaussian, self.em_stop):
                self.converged_ = True
                break
        self.n_iter_ = len(lls)
        if self.progress is not None:
            self.progress("em", self.n_iter_, self.n_iter_)
        # the full forest, grown once on the converged target, and the final update
        forest, fixed, beta, state, ll = self._iteration(
            Xb, binner, y, Z, D, starts, fixed, state, _FINAL_STREAM, self.n_estimators
        )
        lls.append(ll)
        s2s.append(state.sigma2)
        Gs.append(state.G.copy())
        self.loglik_, self.sigma2_history_, self.G_history_ = lls, s2s, Gs
        self.beta_ = beta
        self._store_forest(forest)
        return state, fixed

    def _iteration(self, Xb, binner, y, Z, D, starts, fixed, state, stream, n_trees):
        """Forest on y - Zb, then the closed-form updates with its OOB fixed part.

        The fixed part is the OOB forest plus a least-squares linear term in ``[1, Z]``:
        forests flatten a linear trend at the ends of its range, and without that term
        the leftover mean slope would be taken for random-slope variance.
        """
        gaussian = self.family == "gaussian"
        zb = _zb(Z, state, starts)
        z, w = (y, np.ones(len(y))) if gaussian else _working(y, fixed + zb, self)
        final = stream == _FINAL_STREAM
        forest = self._grow(Xb, binner, z - zb, w, stream, n_trees, final)
        f = self._fixed_part(forest, Xb, z - zb)
        beta = _wls(D, z - f - zb, w)
        fixed = f + D @ beta
        if self._W is not None:
            # GLS on the group means of z - fixed: b is integrated out, not subtracted
            self.level2_coef_ = gamma = _level2_gls(self._W, z - fixed, w, starts, state)
            fixed = fixed + np.repeat(self._W @ gamma, np.diff(starts))
        ZtWZ = group_sums(Z, w, starts)
        state = em_step(z - fixed, Z, w, starts, ZtWZ, state, update_sigma2=gaussian)
        ll = generalized_loglik(z - fixed, Z, w, starts, state)
        return forest, fixed, beta, state, ll

    def _level2_design(self, Xg: np.ndarray) -> np.ndarray | None:
        """Group-level design ``[1, standardized level-2 columns]`` (m, 1 + k), or None."""
        self.level2_coef_ = np.zeros(0)
        cols = self.level2_features_
        if not self.level2_fixed or not cols.any():
            return None
        self._w_spec = []  # (column, levels or None, mean, scale) per level-2 feature
        for j in np.flatnonzero(cols):
            if self.categorical_[j]:
                self._w_spec.append((j, np.unique(Xg[:, j])[1:], 0.0, 1.0))
            else:
                sd = Xg[:, j].std()
                self._w_spec.append((j, None, Xg[:, j].mean(), sd if sd > 0 else 1.0))
        return self._level2_matrix(Xg)

    def _level2_matrix(self, X: np.ndarray) -> np.ndarray:
        """``[1, level-2 columns]``: numeric ones standardized, nominal ones as dummies."""
        parts = [np.ones((len(X), 1))]
        for j, levels, mean, scale in self._w_spec:
            if levels is None:
                parts.append(((X[:, j] - mean) / scale)[:, None])
            else:
                parts.append((X[:, j][:, None] == levels[None, :]).astype(float))
        return np.column_stack(parts)

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
            groups=self._gcode, group_bootstrap=self.bootstrap_unit == "group",
            level2=self.level2_features_,
            level2_permutation=self.level2_permutation == "group",
            min_groups_leaf=self.min_groups_leaf, categorical=self.categorical_,
        )  # fmt: skip

    def _fixed_part(self, forest: Forest, Xb: np.ndarray, target: np.ndarray) -> np.ndarray:
        if self.fixed_part == "inbag":
            return forest.predict_binned(Xb, self.n_jobs)
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
        if len(self.groups_):
            q = self.b_.shape[1]
            if Z is None and q > 1:
                raise ValueError(f"this forest has random slopes: pass Z with {q} columns")
            Zm = np.ones((X.shape[0], 1)) if Z is None else check_array(Z, dtype=np.float64)
            if Zm.shape != (X.shape[0], q):
                raise ValueError(f"Z needs one row per row of X and {q} columns, as in fit")
            eta += _linear_design(Zm, self.add_intercept_) @ self.beta_
            if len(self.level2_coef_):
                eta += self._level2_matrix(X) @ self.level2_coef_
        if groups is not None and len(self.groups_):
            groups = np.asarray(groups)
            if groups.shape[0] != X.shape[0]:
                raise ValueError("groups must have one label per row of X")
            idx = pd.Index(self.groups_).get_indexer(pd.Series(groups).to_numpy())
            known = idx >= 0
            eta[known] += np.einsum("nq,nq->n", Zm[known], self.b_[idx[known]])
        return _inverse_link(eta, self.family)

    # --- checks -------------------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.family not in _FAMILIES:
            raise ValueError(f"family must be one of {_FAMILIES}, got {self.family!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("n_estimators", "em_estimators", "min_samples_leaf", "max_iter"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer")
        if int(self.min_groups_leaf) < 0:
            raise ValueError("min_groups_leaf must be 0 or a positive integer")

    def _check_outcome(self, y: np.ndarray) -> None:
        if self.family == "binomial" and (y.min() < 0 or y.max() > 1):
            raise ValueError("a binomial outcome must be 0/1 (or a proportion in [0, 1])")
        if self.family == "poisson" and y.min() < 0:
            raise ValueError("a poisson outcome must be non-negative counts")

    def _resolve_categorical(self, X: np.ndarray) -> np.ndarray:
        """(p,) bool mask of the nominal columns; each may have at most 64 levels."""
        p = X.shape[1]
        cats = self.categorical_features
        mask = np.zeros(p, dtype=bool)
        if cats is None:
            return mask
        cats = np.asarray(cats)
        if cats.dtype == bool:
            if cats.shape != (p,):
                raise ValueError(f"categorical_features as a mask needs {p} entries")
            mask[:] = cats
        else:
            idx = cats.astype(np.int64).ravel()
            if idx.size and (idx.min() < 0 or idx.max() >= p):
                raise ValueError(f"categorical_features indices must be in 0..{p - 1}")
            mask[idx] = True
        for j in np.flatnonzero(mask):
            if len(np.unique(X[:, j])) > 64:
                raise ValueError(f"categorical column {j} has more than 64 levels")
        return mask

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


def _converged(lls: list[float], tol: float, gaussian: bool, rule: str) -> bool:
    """Stop when the log-likelihood changes by less than ``tol`` (relative), or

    - ``rule="first_fall"``: when its change reverses direction: then the forests' sampling
      noise has overtaken the progress of the iterations. EM increases it (gaussian); under
      PQL the working response moves too, so there the expected direction is that of the
      previous change. One noisy step can end the EM early.
    - ``rule="plateau"``: when the last ``_PATIENCE`` iterations have not improved on the
      best value before them by more than ``tol`` (relative); a single fall does not stop.
    """
    if len(lls) < 2:
        return False
    d = lls[-1] - lls[-2]
    if abs(d) <= tol * abs(lls[-2]):
        return True
    if rule == "plateau":
        if len(lls) <= _PATIENCE:
            return False
        best = max(lls[:-_PATIENCE])
        return max(lls[-_PATIENCE:]) <= best + tol * abs(best)
    if gaussian:
        return d < 0
    return len(lls) >= 3 and d * (lls[-2] - lls[-3]) < 0


def _level2_gls(W: np.ndarray, r: np.ndarray, w: np.ndarray, starts, state: EMState):
    """GLS coefficients of the group means of ``r`` on the group-level design ``W``.

    Under a random intercept, the (weighted) mean of group g has variance
    ``G00 + sigma2 / w_g`` (``w_g`` its total weight), so each mean gets the weight
    ``w_g / (sigma2 + w_g G00)``: the linear mixed model's estimate of a level-2 effect.
    """
    wg = np.add.reduceat(w, starts[:-1])
    rbar = np.add.reduceat(w * r, starts[:-1]) / wg
    a = wg / (state.sigma2 + wg * max(float(state.G[0, 0]), 0.0))
    return _wls(W, rbar, a)


def _constant_within(Xb: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(p,) bool: features whose (binned) value is constant within every group; rows sorted
    by group, ``starts`` the first row of each group plus the end."""
    lo = np.minimum.reduceat(Xb, starts[:-1], axis=1)
    hi = np.maximum.reduceat(Xb, starts[:-1], axis=1)
    return np.all(lo == hi, axis=1)


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


def _warm_start(y, Z, D, starts, f, state: EMState, est, n_steps: int = 50):
    """Start b, sigma2 and G from the linear mixed model ``y ~ Z + (Z | g)``.

    Hajjem et al. start from b = 0; then the first forests learn the group effects through
    school-level items (which act as group identifiers) and the EM moves them back into
    ``b`` only slowly. Starting from the null model's random effects removes them first.
    The columns of ``Z`` get fixed effects here, so a random slope starts as a deviation
    from the mean slope rather than absorbing it. Returns the state and the fixed part.
    """
    gaussian = est.family == "gaussian"
    for _ in range(n_steps):
        zb = _zb(Z, state, starts)
        z, w = (y, np.ones(len(y))) if gaussian else _working(y, f + zb, est)
        f = D @ _wls(D, z - zb, w)
        ZtWZ = group_sums(Z, w, starts)
        state = em_step(z - f, Z, w, starts, ZtWZ, state, update_sigma2=gaussian)
    return state, f


def _linear_design(Z: np.ndarray, add_one: bool) -> np.ndarray:
    """``[1, Z]``, or ``Z`` when it already has a column of ones (``add_one=False``)."""
    return np.column_stack([np.ones(len(Z)), Z]) if add_one else Z


def _wls(D: np.ndarray, r: np.ndarray, w: np.ndarray) -> np.ndarray:
    sw = np.sqrt(w)
    return np.linalg.lstsq(D * sw[:, None], r * sw, rcond=None)[0]


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
