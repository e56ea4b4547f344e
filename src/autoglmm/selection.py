"""The search of SPEC section 2: from a data set to the optimal two-level GLMM.

:func:`search` reads like the algorithm: fix the sample, fit the null model and apply the
ICC gate, rank the predictors, then three forward stages that share one rule ("fit the
current model plus a candidate, skip it when the fit fails or the candidate is collinear,
else test it by likelihood ratio; accept when p < alpha; stop after ``patience``
consecutive misses"):

1. fixed effects in rank order -> the **base** model;
2. pairwise interactions of the ``n_essential`` highest-ranked base predictors -> the
   **preliminary** model;
3. random slopes of the base predictors, tested with the 50:50 chi-square mixture ->
   the **optimal** model.

Every model is fitted by ML on the same rows (the analysis sample), each candidate
warm-started from the model it extends. The whole path, including rejected and skipped
candidates with their reasons, is kept in :class:`SearchResult`.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from autoglmm.errors import DataError, UsageError
from autoglmm.json_values import json_value
from autoglmm.search_result import SearchResult, Step, Terms, cov_re_of, data_hash
from autoglmm.stage_events import notify
from autoglmm.stopping import StoppingRule, resolve_rule

__all__ = ["SearchResult", "Step", "search"]  # SearchResult and Step are re-exported here


def search(
    data: pd.DataFrame | str | os.PathLike,
    outcome: str,
    group: str,
    family: str = "gaussian",
    predictors: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    ranking: Sequence[str] | str | os.PathLike | None = None,
    min_group_size: int = 20,
    icc_threshold: float = 0.1,
    force: bool = False,
    alpha: float = 0.05,
    alpha_fixed: float | None = None,
    alpha_interaction: float | None = None,
    alpha_slope: float | None = None,
    n_essential: int = 3,
    patience: int | str | None = None,
    threshold: str = "auto",
    max_slopes: int | None = None,
    ntree: int = 2000,
    mtry: int | None = None,
    max_missing: float = 0.2,
    standardize: bool = False,
    seed: int | None = None,
    progress: bool = True,
    n_jobs: int | None = None,
    merge: Sequence[Any] = (),
    lsa: str = "auto",
    impute: int = 0,
    level1_weights: str | None = None,
    level2_weights: str | None = None,
    conditional_weights: bool = False,
    weight_scaling: str = "raw",
) -> SearchResult:
    """Find the optimal two-level GLMM by the ranked likelihood-ratio search of SPEC 2.

    Parameters
    ----------
    data : DataFrame or a path that :func:`autoglmm.read_data` reads.
    outcome, group : the response and the grouping factor (e.g. the school ID).
    family : "gaussian", "binomial" or "poisson".
    predictors, exclude : candidate predictors (default: every other column) and exclusions.
    ranking : names in rank order, or a file with one name per line: skips the forest.
    min_group_size, max_missing : sample rules (SPEC 2, step 1).
    icc_threshold, force : the ICC gate; ``force`` runs the search below the threshold.
    alpha, alpha_fixed, alpha_interaction, alpha_slope : test levels (each defaults to alpha).
    n_essential : how many of the base model's top-ranked predictors enter interactions.
    patience, threshold : the stopping rule (:mod:`autoglmm.stopping`). ``patience`` is the
        number of consecutive non-significant candidates that end a stage, or None / "all"
        to test every candidate. ``threshold`` is "alpha", "bonferroni" (alpha / the number
        of candidates of the stage) or "auto" (Bonferroni when scanning, else alpha).
        ``patience=1`` alone is the paper's rule, reproduced exactly. The default (scan
        every candidate at the Bonferroni level) was chosen by the selection study
        (benchmarks/selection.py, benchmarks/RESULTS.md): on 13 simulated designs it found
        17.3 of 18 true predictors on average (gaussian and binomial), school-level ones
        included when their effects were strong, with no false addition, whatever the
        ranker; the paper's rule found 15.5 (gaussian) and 12.7 (binomial), never a
        school-level one, and added 0.75 noise predictors per null search against 0.25.
    max_slopes : most random slopes to add (None = no limit).
    ntree, mtry, seed, n_jobs : the MERF ranking's settings (``seed`` fixes it).
    standardize : z-score numeric predictors before fitting (coefficients per SD).
    progress : show rich progress bars.
    merge, lsa : files joined onto the data, and the assessment naming convention whose
        IDs, weights and plausible values are never candidates (:mod:`autoglmm.lsa`).
    impute : number of two-level multiple imputations (0 = complete cases). With several
        outcomes (a list, or a glob such as ``"BSMMAT0[1-5]"``, the plausible values) or
        ``impute``, one search runs per analysis and the results are pooled
        (:func:`autoglmm.analyses.search_analyses`); the result then has ``pooled``.
    level1_weights, level2_weights, conditional_weights, weight_scaling : sampling weight
        columns (see :func:`autoglmm.fit`). Selection stays unweighted; the four reported
        models are refitted with the weights (``SearchResult.weighted``; see
        :mod:`autoglmm.weighted_search`).

    Returns
    -------
    SearchResult

    Examples
    --------
    >>> from autoglmm.datasets import simulate_lsa
    >>> sim = simulate_lsa(seed=1, n_schools=60, n_items=40)
    >>> res = search(sim.data, "math", "school", ranking=list(sim.truth.fixed),
    ...              progress=False)  # doctest: +SKIP
    >>> res.optimal_terms["random_slopes"]  # doctest: +SKIP
    ['ses', ...]
    """
    args = dict(locals())
    from autoglmm.analyses import is_multiple, search_analyses
    from autoglmm.lsa import prepare
    from autoglmm.sample import build_sample
    from autoglmm.weighted_search import attach, refit_weighted, search_weights

    if impute or is_multiple(outcome):
        return search_analyses(**args)
    params = _check_params(args)
    clock = _Clock()
    frame, conventional, notes = prepare(load_frame(data), [outcome], group, merge, lsa)
    user_ranking = _user_ranking(ranking, frame, outcome, group)
    weights = search_weights(
        frame, level1_weights, level2_weights, conditional_weights, weight_scaling
    )
    if weights is not None:  # weight columns are never candidates
        exclude = [*([exclude] if isinstance(exclude, str) else exclude), *weights.columns]

    sample = build_sample(
        frame,
        outcome,
        group,
        predictors=predictors,
        exclude=exclude,
        max_missing=max_missing,
        min_group_size=min_group_size,
        family=family,
        conventional=conventional,
        warnings=notes,
    )
    clock.lap("sample", sample=sample)
    run_seed = _run_seed(seed)
    manifest = _manifest(params, run_seed, sample, clock)
    ctx = _Context(sample, family, _analysis_data(sample, standardize), progress)
    wdata = None if weights is None else attach(ctx.data, frame, sample.group, weights)
    try:
        null = ctx.fit_terms(Terms())
        icc = icc_of(null, family, sample.group)
        clock.lap("null_model", icc=icc)
        glmm_needed = bool(icc >= icc_threshold)
        if not glmm_needed and not force:
            reason = (
                f"ICC {icc:.3f} < {icc_threshold}: the groups explain too little variance, so "
                "a GLMM is not needed (a single-level model will do); use force=True "
                "(--force) to search anyway"
            )
            weighted = None
            if weights is not None:
                weighted = refit_weighted({"null": (Terms(), null)}, ctx.formula, wdata,
                                          family, weights)  # fmt: skip
            return _build(ctx, null, icc, False, reason, None, [], {}, params, manifest, clock,
                          weighted)  # fmt: skip
        if user_ranking is not None or not sample.predictors:
            rank = _user_ranking_object(user_ranking or [], sample)
        else:
            rank = _forest_ranking(sample, ctx.data, params, run_seed)
        clock.lap("ranking", ranking=rank)
        order = _ranked_predictors(rank, sample)
        steps, models, stages = _select(ctx, null, order, params, clock)
        weighted = None
        if weights is not None:
            reported = {"null": (Terms(), null), **models}
            weighted = refit_weighted(reported, ctx.formula, wdata, family, weights)
            clock.lap("weighted_refits")
    finally:
        ctx.close()
    return _build(ctx, null, icc, glmm_needed, None, rank, steps, models, params, manifest, clock,
                  weighted, stages)  # fmt: skip


def _select(ctx: _Context, null: Any, order: list[str], params: dict, clock: _Clock):
    """Steps 4-6: fixed effects -> base, interactions -> preliminary, slopes -> optimal."""
    rule = resolve_rule(params["patience"], params["threshold"])
    steps: list[Step] = []
    stages: list[dict] = []
    spec, fit, trace, info = ctx.stage("fixed", Terms(), null, order, params["alpha_fixed"], rule)
    models: dict[str, tuple[Terms, Any]] = {"base": (spec, fit)}
    steps += trace
    stages.append(info)
    clock.lap("fixed", steps=trace, start=null)

    essentials = _essentials(order, spec, ctx.level2, params["n_essential"], rule.name == "paper")
    pairs = list(combinations(essentials, 2))
    alpha = params["alpha_interaction"]
    spec, fit, trace, info = ctx.stage("interaction", spec, fit, pairs, alpha, rule)
    models["preliminary"] = (spec, fit)
    steps += trace
    stages.append(info)
    clock.lap("interaction", steps=trace, start=models["base"][1])

    candidates = [name for name in order if name in models["base"][0].fixed]
    alpha, most = params["alpha_slope"], params["max_slopes"]
    spec, fit, trace, info = ctx.stage("slope", spec, fit, candidates, alpha, rule, most)
    models["optimal"] = (spec, fit)
    steps += trace
    stages.append(info)
    clock.lap("slope", steps=trace, start=models["preliminary"][1])
    return steps, models, stages


def _essentials(order: list[str], spec: Terms, level2: set, n: int, paper: bool) -> list[str]:
    """The ``n`` predictors whose pairwise products the interaction stage tries.

    The paper's rule takes the ``n`` highest-ranked predictors of the base model, as SPEC
    step 5 says, and is kept exact. Every other rule takes the highest-ranked student-level
    (level-1) predictors first: a ranking that sees school-level predictors puts them at the
    top, and pairs of school items (or one school item with everything) would crowd out the
    student-level interactions that the essential predictors stand for. School-level
    predictors fill the list only when the base model has fewer than ``n`` level-1 ones.
    """
    in_base = [name for name in order if name in spec.fixed]
    if paper:
        return in_base[:n]
    level1 = [name for name in in_base if name not in level2]
    return (level1 + [name for name in in_base if name in level2])[:n]


# --- the stages ----------------------------------------------------------------------------


class _Context:
    """What every fit of one search shares: the rows, the family, the formula writer."""

    def __init__(self, sample: Any, family: str, data: pd.DataFrame, progress: bool) -> None:
        self.sample = sample
        self.family = family
        self.data = data
        self.outcome = sample.outcome
        self.group = sample.group
        self.categorical = set(sample.categorical)
        self.level2 = set(sample.level2)
        self.n_fits = 0
        self.progress = _Progress(progress)
        self._prepared: Any = None  # the search's PreparedSample (built with the null fit)

    def close(self) -> None:
        self.progress.close()

    def formula(self, terms: Terms) -> str:
        """lme4-style formula of a model of the search."""
        fixed = [self.term(name) for name in terms.fixed]
        fixed += [f"{self.term(a)}:{self.term(b)}" for a, b in terms.interactions]
        rhs = " + ".join(["1", *fixed])
        random = " + ".join(["1", *(self.term(s) for s in terms.slopes)])
        return f"{_quote(self.outcome)} ~ {rhs} + ({random} | {_quote(self.group)})"

    def term(self, name: str) -> str:
        return f"C({_quote(name)})" if name in self.categorical else _quote(name)

    def fit_terms(self, terms: Terms, start: Any = None) -> Any:
        """ML fit of ``terms`` on the analysis rows, warm-started from ``start`` (a Fit).

        The fit :func:`autoglmm.fit` would make, through the search's one prepared design
        (:mod:`autoglmm.prepared`): each candidate updates the columns and cross-products
        of the sample instead of rebuilding its model frame from the formula.
        """
        self.n_fits += 1
        warm = start.start_values() if start is not None else None
        formula = self.formula(terms)
        design = self.prepared_design(formula)
        if design is None:
            from autoglmm.fitting import fit

            return fit(formula, self.data, family=self.family, reml=False, start=warm)
        return self._prepared.fit(design, warm)

    def prepared_design(self, formula: str) -> Any:
        """The prepared design of ``formula`` (None: build it with :func:`fit`)."""
        if self._prepared is None:
            from autoglmm.fitting import _check_options
            from autoglmm.prepared import PreparedSample, Unprepared

            null = self.formula(Terms())
            _, link = _check_options(self.family, None, False, 1)
            try:
                self._prepared = PreparedSample(self.data, null, self.family, link)
            except Unprepared:
                self._prepared = False
        return self._prepared.design(formula) if self._prepared else None

    def skip_reason(self, stage: str, term: Any) -> str | None:
        """Why a slope candidate cannot have a random slope (None when it can)."""
        if stage != "slope":
            return None
        if term in self.level2:
            return "level-2 predictor (constant within every group): no random slope"
        if term in self.categorical and self.data[term].nunique() > 2:
            levels = self.data[term].nunique()
            return f"categorical predictor with {levels} levels (> 2): no random slope"
        return None

    def stage(
        self,
        stage: str,
        terms: Terms,
        current: Any,
        candidates: Sequence[Any],
        alpha: float,
        rule: StoppingRule,
        max_accept: int | None = None,
    ) -> tuple[Terms, Any, list[Step], dict]:
        """One forward stage: test candidates in order until the rule stops it.

        Skipped and not-converged candidates neither count as misses nor reset the count.
        Returns the model reached, its fit, the trace and the stage's summary (the level
        each candidate was tested at, how many candidates were tested and never tried).
        """
        testable = [c for c in candidates if self.skip_reason(stage, c) is None]
        level = rule.level(alpha, len(testable))
        steps: list[Step] = []
        misses = accepted = 0
        stop = "exhausted"
        self.progress.start(stage, len(candidates))
        for cand in candidates:
            if max_accept is not None and accepted >= max_accept:
                stop = "max_slopes"
                break
            name = ":".join(cand) if isinstance(cand, tuple) else cand
            self.progress.advance(stage, name)
            skip = self.skip_reason(stage, cand)
            if skip is not None:
                steps.append(_skipped(stage, name, skip))
                continue
            new_terms = terms.extend(stage, cand)
            step, fitted = self.evaluate(stage, name, current, new_terms, level)
            steps.append(step)
            if step.status == "accepted":
                terms, current, misses, accepted = new_terms, fitted, 0, accepted + 1
            elif step.status == "rejected":
                misses += 1
                if rule.stops(misses):
                    stop = "patience"
                    break
        self.progress.finish(stage)
        return terms, current, steps, _stage_info(stage, candidates, testable, steps, level, stop)

    def evaluate(
        self, stage: str, name: str, current: Any, new_terms: Terms, alpha: float
    ) -> tuple[Step, Any]:
        """Fit one candidate and decide: skipped, not_converged, accepted or rejected."""
        from autoglmm.likelihood_ratio import lrt

        formula = self.formula(new_terms)
        try:
            fitted = self.fit_terms(new_terms, start=current)
        except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError) as err:
            return _skipped(stage, name, f"not converged: {err}", "not_converged", formula), None
        base = {
            "stage": stage,
            "term": name,
            "loglik": float(fitted.loglik),
            "df": int(fitted.df),
            "formula": formula,
            "aic": float(fitted.aic),
            "bic": float(fitted.bic),
        }
        dropped = tuple(getattr(fitted, "dropped_columns", ()) or ())
        if dropped:
            reason = f"collinear with the model: column(s) {', '.join(dropped)} dropped"
            return Step(
                status="skipped", chisq=None, test_df=None, p=None, reason=reason, **base
            ), None
        if not fitted.converged:
            detail = "; ".join(fitted.messages) or "the optimizer did not converge"
            return Step(
                status="not_converged",
                chisq=None,
                test_df=None,
                p=None,
                reason=f"not converged: {detail}",
                **base,
            ), None
        test = lrt(current, fitted, mixture=stage == "slope")
        p = float(test.p)
        ok = p < alpha
        reason = f"p = {_fmt_p(p)} {'<' if ok else '>='} {alpha:g}"
        if stage == "slope":
            reason += f" (mixture of chi2({int(test.df) - 1}) and chi2({int(test.df)}))"
        step = Step(
            status="accepted" if ok else "rejected",
            chisq=float(test.chisq),
            test_df=int(test.df),
            p=p,
            reason=reason,
            **base,
        )
        return step, fitted


def _stage_info(stage, candidates, testable, steps, level, stop) -> dict:
    """Summary of one stage: candidates, tested, skipped, never tried, level, why it ended."""
    counts = Counter(s.status for s in steps)
    return {
        "stage": stage,
        "candidates": len(candidates),
        "testable": len(testable),
        "tried": len(steps),
        "not_tried": len(candidates) - len(steps),
        **{k: counts.get(k, 0) for k in ("accepted", "rejected", "not_converged", "skipped")},
        "level": float(level),
        "stopped_by": stop,
    }


def _skipped(stage: str, name: str, reason: str, status: str = "skipped", formula: str = ""):
    return Step(stage, name, status, None, None, None, None, None, reason, formula, None, None)


# --- ICC, ranking, sample helpers ----------------------------------------------------------


def icc_of(null: Any, family: str, group: str) -> float:
    """ICC of the null model with the family's level-1 variance (SPEC section 2, step 2)."""
    from autoglmm.icc import icc

    tau2 = float(cov_re_of(null, group).iloc[0, 0])
    return icc(family, tau2, link=getattr(null, "link", None), sigma2=null.sigma2,
               beta0=float(null.fixef.iloc[0]))  # fmt: skip


def load_frame(data: Any) -> pd.DataFrame:
    """The data as a DataFrame: a DataFrame as it is, a path read by :func:`read_data`."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, str | os.PathLike):
        from autoglmm.data import read_data

        return read_data(data)
    raise UsageError(
        f"data must be a DataFrame or a file path, not {type(data).__name__}; "
        "pass a DataFrame or a .csv/.parquet/.sav/.dta/.sas7bdat path"
    )


def _user_ranking(ranking: Any, frame: pd.DataFrame, outcome: str, group: str):
    """Names of a user-supplied ranking (list or file), checked against the data."""
    if ranking is None:
        return None
    from_file = isinstance(ranking, str | os.PathLike)
    if from_file:
        from autoglmm.text_files import read_name_list

        names = read_name_list(ranking)
    else:
        names = [str(n) for n in ranking]
    bad = DataError if from_file else UsageError  # a file's content is data, a list is a call
    if not names:
        raise bad("the ranking is empty; give predictor names in rank order")
    unknown = [n for n in names if n not in frame.columns]
    if unknown:
        shown = ", ".join(f"'{n}'" for n in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise DataError(
            f"the ranking names {len(unknown)} column(s) not in the data: {shown}{more}; "
            "fix the names (they are case-sensitive) or remove them from the ranking"
        )
    role = [n for n in names if n in (outcome, group)]
    if role:
        raise bad(f"the ranking names the outcome or group ('{role[0]}'); remove it")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise bad(f"the ranking names '{dup}' twice; list each predictor once")
    return names


def _user_ranking_object(names: list[str], sample: Any) -> Any:
    """A :class:`~autoglmm.ranking.Ranking` of a user-given order: importances NaN.

    Names the sample excluded (too many missing values, constant) are dropped from it.
    """
    from autoglmm.ranking import Ranking

    usable = set(sample.predictors)
    kept = [n for n in names if n in usable]
    nan = np.full(len(kept), np.nan)
    table = pd.DataFrame(
        {
            "predictor": kept, "importance": nan, "se": nan,
            "rank": np.arange(1, len(kept) + 1), "impurity": nan,
            "level2": [n in set(sample.level2) for n in kept],
            "categorical": [n in set(sample.categorical) for n in kept],
            "label": [sample.labels.get(n, "") for n in kept],
        }
    )  # fmt: skip
    settings = {"source": "user", "n_obs": sample.n_obs, "n_groups": sample.n_groups}
    return Ranking(table=table, report=sample.report, settings=settings, sigma2=float("nan"),
                   G=np.zeros((0, 0)), n_iter=0)  # fmt: skip


def _forest_ranking(sample: Any, data: pd.DataFrame, params: dict, seed: int) -> Any:
    """The MERF ranking of the search's own sample (built once, not again for the forest)."""
    from autoglmm.ranking import rank_sample

    return rank_sample(
        sample,
        data=data,
        family=params["family"],
        ntree=params["ntree"],
        mtry=params["mtry"],
        seed=seed,
        n_jobs=params["n_jobs"],
        progress=params["progress"],
    )


def _ranked_predictors(rank: Any, sample: Any) -> list[str]:
    """Ranking order restricted to the sample's predictors (the rest were excluded)."""
    usable = set(sample.predictors)
    return [str(n) for n in rank.names if str(n) in usable]


def _analysis_data(sample: Any, standardize: bool) -> pd.DataFrame:
    """The rows every model is fitted on; numeric predictors z-scored when asked."""
    data = sample.data
    if not standardize:
        return data
    data = data.copy()
    numeric = [c for c in sample.predictors if c not in set(sample.categorical)]
    values = data[numeric].to_numpy(dtype=float)
    sd = values.std(axis=0, ddof=1)
    data[numeric] = (values - values.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return data


def _run_seed(seed: int | None) -> int:
    """The seed actually used (drawn and recorded when None, so a run can be repeated)."""
    if seed is not None:
        return int(seed)
    return int(np.random.SeedSequence().entropy % (2**31))


def _check_params(params: dict) -> dict:
    """Validate the search settings and fill the per-stage alphas; JSON-ready copy."""
    params = {k: v for k, v in params.items() if k not in ("data",)}
    for key in ("alpha_fixed", "alpha_interaction", "alpha_slope"):
        if params[key] is None:
            params[key] = params["alpha"]
    for key in ("alpha", "alpha_fixed", "alpha_interaction", "alpha_slope", "icc_threshold"):
        value = params[key]
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise UsageError(f"{key} must be a number in [0, 1], got {value!r}")
    rule = resolve_rule(params["patience"], params["threshold"])
    params["patience"], params["threshold"] = rule.patience, rule.threshold
    for key, low in (("n_essential", 0), ("ntree", 1)):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise UsageError(f"{key} must be a whole number >= {low}, got {value!r}")
    for key in ("max_slopes", "mtry", "n_jobs"):
        value = params[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"{key} must be a whole number or None, got {value!r}")
    if params["n_jobs"] == 0:
        raise UsageError("n_jobs must be a number of threads >= 1, or -1 for all cores; got 0")
    if params["max_slopes"] is not None and params["max_slopes"] < 0:
        raise UsageError(f"max_slopes must be >= 0, got {params['max_slopes']}")
    ranking = params["ranking"]
    if ranking is not None and not isinstance(ranking, str | os.PathLike):
        params["ranking"] = [str(n) for n in ranking]
    elif ranking is not None:
        params["ranking"] = str(ranking)
    for key in ("predictors", "exclude"):
        if params[key] is not None and not isinstance(params[key], str):
            params[key] = [str(n) for n in params[key]]
    merge = params["merge"]
    merge = [merge] if isinstance(merge, str | os.PathLike | pd.DataFrame) else list(merge)
    params["merge"] = [m if isinstance(m, str) else type(m).__name__ for m in map(_path, merge)]
    return params


# --- result assembly -----------------------------------------------------------------------


def _path(value: Any) -> Any:
    return str(value) if isinstance(value, os.PathLike) else value


class _Clock:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str, **event: Any) -> None:
        """Record the time of the stage that just ended and tell any stage listener."""
        now = time.perf_counter()
        self.timings[name] = round(now - self.last, 4)
        self.last = now
        notify(name, self.timings[name], **event)


def _manifest(params: dict, seed: int, sample: Any, clock: _Clock) -> dict:
    from autoglmm import __version__

    return {
        "version": __version__,
        "seed": seed,
        "params": {k: json_value(v) for k, v in params.items()},
        "data_hash": data_hash(sample.data),
        "timings": clock.timings,  # filled as the search runs
    }


def _build(
    ctx,
    null,
    icc,
    glmm_needed,
    stop_reason,
    rank,
    steps,
    models,
    params,
    manifest,
    clock,
    weighted=None,
    stages=(),
) -> SearchResult:
    models = {"null": (Terms(), null), **models}
    r2 = {name: model_r2(fit, null, ctx, terms) for name, (terms, fit) in models.items()}
    clock.lap("r2")
    manifest["timings"]["total"] = round(time.perf_counter() - clock.start, 4)
    manifest["n_fits"] = ctx.n_fits
    optimal = models.get("optimal", (Terms(), None))
    return SearchResult(
        sample=ctx.sample,
        family=ctx.family,
        icc=float(icc),
        glmm_needed=glmm_needed,
        stop_reason=stop_reason,
        ranking=rank,
        steps=tuple(steps),
        null=null,
        base=models.get("base", (None, None))[1],
        preliminary=models.get("preliminary", (None, None))[1],
        optimal=optimal[1],
        optimal_terms=optimal[0].to_dict(),
        r2=r2,
        params=manifest["params"],
        manifest=manifest,
        rule=resolve_rule(params["patience"], params["threshold"]).to_dict(),
        stages=tuple(stages),
        weighted=weighted,
    )


def model_r2(fit: Any, null: Any, ctx: _Context, terms: Terms) -> dict:
    """Raudenbush & Bryk and Nakagawa R² of one model of the search (see autoglmm.r2)."""
    from autoglmm.r2 import r2_all

    design = _design_of(ctx, terms)
    beta = fit.fixef.reindex(list(design.x_names)).fillna(0.0).to_numpy(dtype=float)
    null_cov = cov_re_of(null, ctx.group)
    lam = None
    if ctx.family == "poisson":
        lam = math.exp(float(null.fixef.iloc[0]) + float(null_cov.iloc[0, 0]) / 2)
    return r2_all(
        family=ctx.family,
        fixed_pred=design.X @ beta,
        G=cov_re_of(fit, ctx.group).to_numpy(),
        Z=design.Z,
        sigma2=getattr(fit, "sigma2", None),
        null_tau00=float(null_cov.iloc[0, 0]),
        null_sigma2=getattr(null, "sigma2", None),
        link=getattr(fit, "link", None),
        lam=lam,
    )


def _design_of(ctx: _Context, terms: Terms) -> Any:
    """The sorted design of a model of the search: from its prepared columns when it has
    them (no model frame rebuilt), else from its formula."""
    formula = ctx.formula(terms)
    prepared = ctx.prepared_design(formula)
    if prepared is not None:
        return ctx._prepared.grouped_design(prepared)
    from autoglmm.formula import parse_formula
    from autoglmm.model_frame import build_model_frame

    return build_model_frame(parse_formula(formula), ctx.data, family=ctx.family).design


def _quote(name: str) -> str:
    """A column name as R reads it in a formula: backticked (and escaped) unless plain."""
    from autoglmm.formula_syntax import quote_name

    return quote_name(name)


def _fmt_p(p: float) -> str:
    from autoglmm.report.table_model import format_p  # the report's one p format

    return format_p(p)


# --- progress ------------------------------------------------------------------------------


class _Progress:
    """Rich progress bars, one per stage, advanced per candidate fit (no-op when off).

    The display starts with the first stage, after the forest's own bars have finished, so
    two live displays never share the terminal.
    """

    LABELS = {"fixed": "fixed effects", "interaction": "interactions", "slope": "random slopes"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.tasks: dict[str, int] = {}

    def start(self, stage: str, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("[dim]{task.fields[term]}"), console=Console(stderr=True),
            )  # fmt: skip
            self.bar.start()
        self.tasks[stage] = self.bar.add_task(self.LABELS[stage], total=total, term="")

    def advance(self, stage: str, term: str) -> None:
        if self.bar is not None:
            self.bar.update(self.tasks[stage], advance=1, term=term)

    def finish(self, stage: str) -> None:
        if self.bar is not None:
            task = self.tasks[stage]
            done = self.bar.tasks[task].completed
            self.bar.update(task, total=done, term="done")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        self.enabled = False
