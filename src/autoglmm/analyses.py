"""Several analyses of one question: plausible values and imputations, searched and pooled.

An assessment score comes as M plausible values (PVs), and ``impute=N`` makes N imputed
data sets. Each is one *analysis*; analysis k pairs PV k with imputation k (the TIMSS and
PISA guides pair them so the PV and imputation variances are pooled together, and the
imputation of k uses PV k as its outcome). :func:`search_analyses`:

1. reads and prepares the data once (merge, conventions; :mod:`autoglmm.lsa`);
2. imputes (:mod:`autoglmm.missing`) when asked;
3. runs :func:`autoglmm.search` on each analysis: a list of ``SearchResult``;
4. counts how often each term was selected, takes the terms selected in more than half of
   the analyses (the majority model), fits it on every analysis and pools by Rubin's
   rules (:mod:`autoglmm.pooling`): pooling takes results, not data.

The ranking is computed once, on analysis 1, and reused by the others (``rank_each=False``,
the default). Measured on TIMSS-shaped data (benchmarks/RESULTS.md, "Plausible values and
imputation"), ranking every PV gave rankings that share 75-85% of their top 20 and the same
pooled model, at 3.7 times the CPU time; with one order, differences between PVs reflect
the PVs and imputations rather than the forest's randomness. ``rank_each=True`` ranks every
analysis and reports the agreement (``ranking_agreement``).

It returns the first analysis's ``SearchResult`` with ``pooled`` set, so every single-search
output (trace, tables, report) is there, plus the ``plausible_values`` block of result.json.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from autoglmm.errors import DataError, UsageError
from autoglmm.pooling import Pooled, rubin

__all__ = ["Pooling", "expand_outcomes", "is_multiple", "pool_results", "search_analyses"]

_GLOB = set("*?[")


def is_multiple(outcome: Any) -> bool:
    """True for a list of outcomes, a comma-separated string or a glob pattern."""
    if isinstance(outcome, str):
        return "," in outcome or bool(_GLOB & set(outcome))
    return isinstance(outcome, Sequence) and len(outcome) > 0


def expand_outcomes(outcome: str | Sequence[str], columns: Sequence[object]) -> list[str]:
    """The outcome columns named by a list, a comma list or a glob (``BSMMAT0[1-5]``)."""
    names = [str(c) for c in columns]
    parts = [p.strip() for p in outcome.split(",")] if isinstance(outcome, str) else outcome
    out: list[str] = []
    for part in parts:
        part = str(part)
        found = fnmatch.filter(names, part) if _GLOB & set(part) else [part]
        if not found:
            raise DataError(
                f"the outcome pattern '{part}' matches no column; check it, e.g. "
                "--outcome 'BSMMAT0[1-5]' or --outcome PV1MATH,PV2MATH"
            )
        out += [f for f in found if f not in out]
    if not out:
        raise UsageError("no outcome given; name one or more outcome columns")
    return out


@dataclass(frozen=True, eq=False)
class Pooling:
    """The pooled result of several analyses (result.json ``plausible_values``)."""

    outcomes: tuple[str, ...]
    imputations: int
    analyses: tuple[tuple[str, int | None], ...]  # (outcome, imputation) of each analysis
    results: tuple[Any, ...] = field(repr=False)
    selection_frequency: dict[str, float]
    formula: str
    fixef: dict[str, Pooled]
    cov_re: dict
    sigma2: float | None
    ranking: str
    ranking_agreement: dict
    warnings: tuple[str, ...] = ()

    @property
    def m(self) -> int:
        return len(self.analyses)

    def table(self) -> pd.DataFrame:
        """term, estimate, SE, df, p, FMI, selected (k of M): the report's pooled table."""
        rows = []
        for term, pooled in self.fixef.items():
            freq = self.selection_frequency.get(_base_term(term, list(self.selection_frequency)))
            k = None if freq is None else round(freq * self.m)
            rows.append(
                {"term": term, "estimate": pooled.estimate, "se": pooled.se, "df": pooled.df,
                 "p": pooled.p, "fmi": pooled.fmi,
                 "selected": "" if k is None else f"{k} of {self.m}"}
            )  # fmt: skip
        return pd.DataFrame(rows, columns=["term", "estimate", "se", "df", "p", "fmi", "selected"])

    def to_dict(self) -> dict:
        per = [
            {"outcome": o, "imputation": i, "optimal_terms": r.optimal_terms}
            for (o, i), r in zip(self.analyses, self.results, strict=True)
        ]
        return {
            "outcomes": list(self.outcomes),
            "imputations": self.imputations,
            "per_outcome": per,
            "selection_frequency": dict(self.selection_frequency),
            "ranking": self.ranking,
            "ranking_agreement": self.ranking_agreement,
            "pooled": {
                "formula": self.formula,
                "fixef": {t: p.to_dict() for t, p in self.fixef.items()},
                "cov_re": self.cov_re,
                "sigma2": self.sigma2,
                "m": self.m,
            },
        }


def search_analyses(
    data: Any,
    outcome: str | Sequence[str],
    group: str,
    *,
    impute: int = 0,
    merge: Sequence[Any] = (),
    lsa: str = "auto",
    seed: int | None = None,
    rank_each: bool = False,
    **options: Any,
) -> Any:
    """Search each plausible value (and imputation), then pool (see the module docstring).

    ``options`` are the other arguments of :func:`autoglmm.search`. Returns the first
    analysis's ``SearchResult`` with ``pooled`` (a :class:`Pooling`).
    """
    from autoglmm.lsa import prepare
    from autoglmm.selection import load_frame, search

    frame = load_frame(data)
    outcomes = expand_outcomes(outcome, frame.columns)
    frame, _, notes = prepare(frame, outcomes, group, merge, lsa)
    plan, more = _plan(outcomes, _check_impute(impute))
    notes += more
    frames = _imputed(frame, outcomes, group, impute, seed, options, lsa)
    options = {**options, "seed": seed, "lsa": lsa}
    results = []
    for k, (name, imp) in enumerate(plan):
        use = frames[imp] if imp is not None else frame
        if k > 0 and not rank_each and options.get("ranking") is None:
            first = results[0]
            if first.ranking is not None:
                options = {**options, "ranking": _ranked(first)}
        results.append(search(use, name, group, **options))
    if len(results) == 1:  # one imputation of one outcome: nothing to pool
        return results[0]
    agreement = _agreement(results) if rank_each else {}
    pooling = pool_results(results, plan, outcome, notes, options.get("standardize", False))
    pooling = replace(
        pooling,
        ranking="each" if rank_each else "once",
        ranking_agreement=agreement,
        imputations=int(impute or 0),
    )
    return replace(results[0], pooled=pooling)


def _check_impute(impute: Any) -> int:
    if isinstance(impute, bool) or not isinstance(impute, int | np.integer) or impute < 0:
        raise UsageError(f"impute must be a whole number >= 0, got {impute!r}")
    return int(impute)


def _plan(outcomes: list[str], impute: int) -> tuple[list[tuple[str, int | None]], list[str]]:
    """(outcome, imputation) of each analysis: PV k with imputation k."""
    m = max(len(outcomes), impute, 1)
    notes = []
    if impute and len(outcomes) > 1 and impute != len(outcomes):
        notes.append(
            f"{len(outcomes)} plausible values and {impute} imputations: {m} analyses pair "
            "them cyclically; use as many imputations as plausible values"
        )
    plan = [(outcomes[k % len(outcomes)], (k % impute) if impute else None) for k in range(m)]
    return plan, notes


def _imputed(frame, outcomes, group, impute, seed, options, lsa) -> list[pd.DataFrame]:
    """The imputed data sets; imputation k has plausible value k as its auxiliary."""
    if not impute:
        return []
    from autoglmm.lsa import classify
    from autoglmm.missing import impute_two_level

    ruled_out = set(classify(frame.columns, lsa, keep=[group]))
    wanted = options.get("predictors")
    excluded = set(options.get("exclude") or ())
    columns = [
        c for c in (wanted if wanted is not None else frame.columns)
        if c not in ruled_out and c not in excluded and c != group and c not in outcomes
    ]  # fmt: skip
    limit = options.get("max_missing", 0.2)
    columns = [c for c in columns if frame[c].isna().mean() <= limit]
    aux = [[outcomes[k % len(outcomes)]] for k in range(impute)]
    return impute_two_level(frame, group, columns, impute, seed, auxiliary=aux)


def _ranked(result: Any) -> list[str]:
    usable = set(result.sample.predictors)
    return [str(n) for n in result.ranking.names if str(n) in usable]


def _agreement(results: Sequence[Any]) -> dict:
    """Spearman correlation and top-20 overlap of each analysis's ranking with the first."""
    from scipy.stats import spearmanr

    first = results[0].ranking.names
    out = {"spearman": [], "top20_overlap": []}
    for res in results[1:]:
        other = res.ranking.names
        common = [n for n in first if n in set(other)]
        pos = {n: i for i, n in enumerate(other)}
        rho = spearmanr(range(len(common)), [pos[n] for n in common]).statistic
        out["spearman"].append(float(rho))
        out["top20_overlap"].append(len(set(first[:20]) & set(other[:20])) / 20)
    return out


# --- pooling -------------------------------------------------------------------------------


def pool_results(
    results: Sequence[Any],
    plan: Sequence[tuple[str, int | None]],
    label: str | Sequence[str] = "",
    warnings: Sequence[str] = (),
    standardize: bool = False,
) -> Pooling:
    """Selection frequency, the majority model fitted on every analysis, Rubin-pooled."""
    freq = selection_frequency([r.optimal_terms for r in results], results[0].sample.group)
    notes = list(warnings)
    fits = []
    for res in results:
        if res.optimal is None:
            raise DataError(
                f"the search on '{res.sample.outcome}' stopped ({res.stop_reason}); "
                "there is no model to pool; use force=True (--force)"
            )
    terms = majority_terms(freq, results)
    for res in results:
        fits.append(_fit_majority(res, terms, standardize))
    fixef = _pool_fixef(fits)
    bad = [f"{r.sample.outcome}" for r, f in zip(results, fits, strict=True) if not f.converged]
    if bad:
        notes.append(f"the pooled model did not converge on {', '.join(bad)}")
    lhs = label if isinstance(label, str) else ",".join(label)
    formula = lhs + " ~ " + fits[0].formula.split("~", 1)[1].strip()
    return Pooling(
        outcomes=tuple(dict.fromkeys(o for o, _ in plan)),
        imputations=0,
        analyses=tuple(plan),
        results=tuple(results),
        selection_frequency=freq,
        formula=formula,
        fixef=fixef,
        cov_re=_mean_cov(fits, results[0].sample.group),
        sigma2=_mean_or_none([getattr(f, "sigma2", None) for f in fits]),
        ranking="once",
        ranking_agreement={},
        warnings=tuple(notes),
    )


def selection_frequency(terms: Sequence[dict], group: str) -> dict[str, float]:
    """Share of analyses whose optimal model has each term; slopes as ``(x | group)``."""
    counts: dict[str, int] = {}
    for t in terms:
        names = [*t["fixed"], *t["interactions"]]
        names += [f"({s} | {group})" for s in t["random_slopes"]]
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return {k: v / len(terms) for k, v in counts.items()}


def majority_terms(freq: dict[str, float], results: Sequence[Any]) -> dict[str, list]:
    """Terms selected in more than half of the analyses, in order of first selection.

    An interaction or slope enters only with its predictors (the model stays hierarchical).
    """
    group = results[0].sample.group
    fixed = [k for k, v in freq.items() if v > 0.5 and ":" not in k and not k.startswith("(")]
    inter = [
        tuple(k.split(":")) for k, v in freq.items()
        if v > 0.5 and ":" in k and not k.startswith("(") and set(k.split(":")) <= set(fixed)
    ]  # fmt: skip
    slopes = [k[1 : -len(f" | {group})")] for k, v in freq.items() if v > 0.5 and k.startswith("(")]
    return {"fixed": fixed, "interactions": inter, "slopes": [s for s in slopes if s in fixed]}


def _fit_majority(result: Any, terms: dict, standardize: bool) -> Any:
    """The majority model, fitted by ML on this analysis's own sample."""
    from autoglmm.fitting import fit
    from autoglmm.selection import _analysis_data, _quote

    sample = result.sample
    cats = set(sample.categorical)
    missing = [t for t in terms["fixed"] if t not in set(sample.predictors)]
    if missing:
        raise DataError(
            f"'{missing[0]}' was selected in most analyses but is not a predictor of the "
            f"analysis of '{sample.outcome}'; check its missing values"
        )

    def term(name: str) -> str:
        return f"C({_quote(name)})" if name in cats else _quote(name)

    fixed = [term(t) for t in terms["fixed"]]
    fixed += [f"{term(a)}:{term(b)}" for a, b in terms["interactions"]]
    random = " + ".join(["1", *(term(s) for s in terms["slopes"])])
    rhs = " + ".join(["1", *fixed])
    formula = f"{_quote(sample.outcome)} ~ {rhs} + ({random} | {_quote(sample.group)})"
    data = _analysis_data(sample, standardize)
    return fit(formula, data, family=result.family, reml=False)


def _pool_fixef(fits: Sequence[Any]) -> dict[str, Pooled]:
    """Rubin's rules per fixed effect; complete-data df = n - p (Barnard & Rubin 1999)."""
    out = {}
    for term in fits[0].fixef.index:
        est = [float(f.fixef[term]) for f in fits]
        var = [float(f.se[term]) ** 2 for f in fits]
        df_com = float(fits[0].nobs - len(fits[0].fixef))
        out[str(term)] = rubin(est, var, df_com)
    return out


def _mean_cov(fits: Sequence[Any], group: str) -> dict:
    from autoglmm.search_result import cov_re_of

    mats = [cov_re_of(f, group) for f in fits]
    mean = sum(m.to_numpy() for m in mats) / len(mats)
    names = [str(n) for n in mats[0].index]
    return {group: {r: {c: float(mean[i, j]) for j, c in enumerate(names)}
                    for i, r in enumerate(names)}}  # fmt: skip


def _mean_or_none(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


def _base_term(term: str, keys: Sequence[str] = ()) -> str:
    """The selection-frequency key of a fixed-effect column name.

    A categorical predictor's columns are named after it plus the level (``catb`` in R's
    style, ``C(cat)[T.b]`` in patsy's), so the longest key that starts the name is taken.
    """
    name = term
    if name.startswith("C(") and ")" in name:
        name = name[2 : name.index(")")]
    name = name.strip("`")
    if name in keys or not keys:
        return name
    prefixes = [k for k in keys if not k.startswith("(") and ":" not in k and name.startswith(k)]
    return max(prefixes, key=len) if prefixes else name
