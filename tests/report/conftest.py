"""Search results for the report tests, built once per session.

``searched``: a real :func:`autoglmm.search` on small simulated TIMSS-like data with a given
ranking (no forest, so it is fast). ``hand_result``: the same kind of search done by hand here
with :func:`autoglmm.fit` and :func:`autoglmm.lrt`, packed into a ``SearchResult`` exactly as
the search contract describes it; it is an independent path to the same shapes.
``stopped``: a real search stopped at the ICC gate.
"""

from __future__ import annotations

from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import autoglmm
from autoglmm.datasets import simulate_lsa
from autoglmm.likelihood_ratio import lrt
from autoglmm.r2 import nakagawa, raudenbush_bryk
from autoglmm.sample import build_sample
from autoglmm.selection import SearchResult, Step

ALPHA = 0.05


@pytest.fixture(scope="session")
def lsa():
    """Small simulated assessment data with SPSS-style variable labels in ``attrs``."""
    sim = simulate_lsa(seed=7, n_schools=40, n_items=30)
    data = sim.data.copy()
    data.attrs["variable_labels"] = dict(sim.labels)
    return SimpleNamespace(data=data, truth=sim.truth, labels=sim.labels)


def given_ranking(lsa) -> list[str]:
    """Level-1 true predictors (strongest first), school-level ones, null items, a decoy."""
    truth = lsa.truth
    level1 = [k for k in truth.fixed if k not in truth.level2]
    level1.sort(key=lambda k: -abs(truth.fixed[k] * _sd(lsa.data[k])))
    nulls = [c for c in lsa.data.columns if c.startswith("like_") and c not in truth.fixed][:2]
    return level1 + list(truth.level2) + nulls + [truth.decoys[0]]


def _sd(x: pd.Series) -> float:
    return float(np.nanstd(x.to_numpy(dtype=float))) or 1.0


@pytest.fixture(scope="session")
def searched(lsa):
    """A real search with a given ranking and the paper's rule (as ``hand_result`` does)."""
    return autoglmm.search(
        lsa.data, "math", "school", ranking=given_ranking(lsa), seed=11, patience=1,
        progress=False,
    )  # fmt: skip


@pytest.fixture(scope="session")
def stopped(lsa):
    """A real search stopped at the ICC gate (threshold above any plausible ICC)."""
    return autoglmm.search(
        lsa.data, "math", "school", icc_threshold=0.99, ranking=given_ranking(lsa), progress=False
    )


# --- the hand-made search ------------------------------------------------------------------


class _Ranking:
    """The part of autoglmm.ranking.Ranking the report reads: ``to_frame()``."""

    def __init__(self, names: list[str], importance: list[float]) -> None:
        self._frame = pd.DataFrame({"predictor": names, "importance": importance})

    def to_frame(self) -> pd.DataFrame:
        return self._frame.copy()


def _formula(fixed: list[str], inter: list[str], slopes: list[str]) -> str:
    rhs = " + ".join(["1", *fixed, *inter])
    return f"math ~ {rhs} + (1{''.join(' + ' + s for s in slopes)} | school)"


def _try(stage, term, current, fixed, inter, slopes, data, q=None):
    formula = _formula(fixed, inter, slopes)
    fit = autoglmm.fit(formula, data)
    res = lrt(current, fit, mixture=stage == "slope")
    status = "accepted" if res.p < ALPHA else "rejected"
    reason = f"p = {res.p:.3g} {'<' if res.p < ALPHA else '>='} {ALPHA}"
    step = Step(
        stage, term, status, fit.loglik, fit.df, res.chisq, res.df, res.p, reason, formula,
        fit.aic, fit.bic,
    )  # fmt: skip
    return step, fit


def _r2(fit, null, data) -> dict:
    g = fit.cov_re["school"].to_numpy()
    g0 = null.cov_re["school"].to_numpy()
    level1, level2 = raudenbush_bryk(g0[0, 0], g[0, 0], null.sigma2, fit.sigma2)
    cols = []
    for name in fit.fixef.index:
        if name == "(Intercept)" or name == "Intercept":
            cols.append(np.ones(len(data)))
        else:
            cols.append(np.prod([data[p].to_numpy(float) for p in name.split(":")], axis=0))
    pred = np.column_stack(cols) @ fit.fixef.to_numpy()
    z_names = list(fit.cov_re["school"].index)
    Z = np.column_stack(
        [
            np.ones(len(data)) if n.endswith("Intercept)") else data[n].to_numpy(float)
            for n in z_names
        ]
    )
    marginal, conditional = nakagawa(pred, g, Z, fit.sigma2)
    return {"level1": level1, "level2": level2, "marginal": marginal, "conditional": conditional}


@pytest.fixture(scope="session")
def hand_result(lsa) -> SearchResult:
    """SPEC section 2 done by hand on the analysis sample, packed as a SearchResult."""
    sample = build_sample(lsa.data, "math", "school")
    data = sample.data
    order = [p for p in given_ranking(lsa) if p in sample.predictors]
    ranking = _Ranking(order, list(np.linspace(40.0, 2.0, len(order))))
    null = autoglmm.fit("math ~ 1 + (1 | school)", data)
    steps, fixed, inter, slopes, current = [], [], [], [], null
    for term in order:
        step, fit = _try("fixed", term, current, fixed + [term], inter, slopes, data)
        steps.append(step)
        if step.status != "accepted":
            break
        fixed, current = fixed + [term], fit
    base = current
    for a, b in combinations(fixed[:3], 2):
        step, fit = _try(
            "interaction", f"{a}:{b}", current, fixed, inter + [f"{a}:{b}"], slopes, data
        )
        steps.append(step)
        if step.status != "accepted":
            break
        inter, current = inter + [f"{a}:{b}"], fit
    preliminary = current
    for term in fixed:
        if term in sample.level2:
            steps.append(
                Step("slope", term, "skipped", None, None, None, None, None,
                     "level-2 predictor (constant within every group)", "", None, None)
            )  # fmt: skip
            continue
        step, fit = _try("slope", term, current, fixed, inter, slopes + [term], data)
        steps.append(step)
        if step.status != "accepted":
            break
        slopes, current = slopes + [term], fit
    optimal = current
    fits = {"null": null, "base": base, "preliminary": preliminary, "optimal": optimal}
    g0 = null.cov_re["school"].iloc[0, 0]
    return SearchResult(
        sample=sample,
        family="gaussian",
        icc=float(g0 / (g0 + null.sigma2)),
        glmm_needed=True,
        stop_reason=None,
        ranking=ranking,
        steps=tuple(steps),
        null=null,
        base=base,
        preliminary=preliminary,
        optimal=optimal,
        optimal_terms={"fixed": fixed, "interactions": inter, "random_slopes": slopes},
        r2={name: _r2(fit, null, data) for name, fit in fits.items()},
        params={"outcome": "math", "group": "school", "icc_threshold": 0.1, "alpha": ALPHA},
        manifest={
            "version": autoglmm.__version__,
            "seed": 11,
            "params": {"alpha": ALPHA},
            "data_hash": "0123456789abcdef",
            "timings": {"total": 1.0},
        },
    )
