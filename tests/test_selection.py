"""search(): every decision of SPEC section 2 against a brute-force oracle.

The oracle below re-runs the algorithm with its own loops: cold fits of each candidate
formula with :func:`autoglmm.fit` and p-values straight from scipy's chi-square
distribution. The search (warm starts, lrt, its own bookkeeping) must make the same
decision with the same log-likelihood and p-value at every step.
"""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import autoglmm.fitting
import autoglmm.prepared
from autoglmm.datasets import recovery, simulate_lsa
from autoglmm.errors import DataError, UsageError
from autoglmm.fitting import fit
from autoglmm.likelihood_ratio import lrt
from autoglmm.report import load_schema
from autoglmm.selection import SearchResult, search

ALPHA = 0.05


# --- data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    """Small simulated data plus a collinear copy of ses and a 3-level categorical effect."""
    s = simulate_lsa(seed=11, n_schools=60, n_items=50, n_true_items=1)
    data = s.data.copy()
    rng = np.random.default_rng(5)
    data["ses_copy"] = 2.0 * data["ses"] + 1.0
    data["track"] = rng.choice(["academic", "general", "vocational"], size=len(data))
    data["math"] = data["math"] + data["track"].map(
        {"academic": 20.0, "general": 0.0, "vocational": -15.0}
    )
    return s, data


def null_items(truth, data, k):
    """k complete Likert items of blocks without a true item (no effect, no correlate)."""
    true_blocks = {name.split("_")[0] for name in truth.fixed}
    names = [
        c
        for c in data.columns
        if c.endswith(tuple(f"_{i:02d}" for i in range(1, 11)))
        and c.split("_")[0] not in true_blocks
        and data[c].notna().all()
    ]
    return names[:k]


# --- the oracle ----------------------------------------------------------------------------


def oracle(data, outcome, group, ranking, *, categorical, level2, patience, n_essential,
           max_slopes=None, bonferroni=False):  # fmt: skip
    """SPEC section 2 steps 4-6, written plainly: cold fits and scipy p-values.

    ``patience=None`` tests every candidate; ``bonferroni`` tests each candidate of a stage at
    ALPHA / (the stage's candidates that can have the term: level-2 and many-level
    categorical predictors cannot have a slope).
    """

    def term(n):
        return f"C({n})" if n in categorical else n

    def formula(fixed, inter, slopes):
        rhs = ["1", *map(term, fixed), *(f"{term(a)}:{term(b)}" for a, b in inter)]
        re = ["1", *map(term, slopes)]
        return f"{outcome} ~ {' + '.join(rhs)} + ({' + '.join(re)} | {group})"

    trace = []

    def no_slope(cand):
        return cand in level2 or (cand in categorical and data[cand].nunique() > 2)

    def stage(name, model, current, candidates):
        misses = accepted = 0
        m = sum(not (name == "slope" and no_slope(c)) for c in candidates)
        level = ALPHA / max(m, 1) if bonferroni else ALPHA
        for cand in candidates:
            if name == "slope" and max_slopes is not None and accepted >= max_slopes:
                break
            label = ":".join(cand) if isinstance(cand, tuple) else cand
            if name == "slope" and no_slope(cand):
                trace.append((name, label, "skipped", None, None, None))
                continue
            fixed, inter, slopes = model
            new = {
                "fixed": (fixed + [cand], inter, slopes),
                "interaction": (fixed, inter + [cand], slopes),
                "slope": (fixed, inter, slopes + [cand]),
            }[name]
            f = fit(formula(*new), data, reml=False)
            if f.dropped_columns:
                trace.append((name, label, "skipped", f.loglik, None, None))
                continue
            if not f.converged:
                trace.append((name, label, "not_converged", f.loglik, None, None))
                continue
            lr = max(0.0, 2 * (f.loglik - current.loglik))
            if name == "slope":
                q = 1 + len(slopes)
                assert f.df - current.df == q + 1
                p = 0.5 * stats.chi2.sf(lr, q) + 0.5 * stats.chi2.sf(lr, q + 1)
            else:
                p = stats.chi2.sf(lr, f.df - current.df)
            direct = lrt(current, f, mixture=name == "slope")
            assert direct.p == pytest.approx(p, rel=1e-12, abs=1e-300)
            if p < level:
                trace.append((name, label, "accepted", f.loglik, lr, p))
                model, current, misses, accepted = new, f, 0, accepted + 1
            else:
                trace.append((name, label, "rejected", f.loglik, lr, p))
                misses += 1
                if patience is not None and misses >= patience:
                    break
        return model, current

    null = fit(formula([], [], []), data, reml=False)
    base, base_fit = stage("fixed", ([], [], []), null, ranking)
    essentials = [n for n in ranking if n in base[0]][:n_essential]
    pairs = [(a, b) for i, a in enumerate(essentials) for b in essentials[i + 1 :]]
    prelim, prelim_fit = stage("interaction", base, base_fit, pairs)
    optimal, _ = stage("slope", prelim, prelim_fit, [n for n in ranking if n in base[0]])
    return trace, {"fixed": base[0], "interactions": prelim[1], "slopes": optimal[2]}


def assert_same_trace(result: SearchResult, trace) -> None:
    got = [(s.stage, s.term, s.status) for s in result.steps]
    assert got == [t[:3] for t in trace]
    levels = {info["stage"]: info["level"] for info in result.stages}
    for step, (_, _, status, loglik, chisq, p) in zip(result.steps, trace, strict=True):
        if loglik is not None:
            assert step.loglik == pytest.approx(loglik, abs=1e-4)
        if status in ("accepted", "rejected"):
            assert step.chisq == pytest.approx(chisq, rel=1e-4, abs=1e-4)
            assert step.p == pytest.approx(p, rel=1e-3, abs=1e-8)
            assert (step.p < levels[step.stage]) == (status == "accepted")


# --- scenario A: patience 3, collinear and level-2/categorical skips ----------------------


@pytest.fixture(scope="module")
def scenario_a(sim):
    s, data = sim
    truth = s.truth
    conf = truth.slopes[1]
    nulls = null_items(truth, data, 6)
    ranking = ["ses", nulls[0], conf, "ses_copy", "sch_resources", "track", *nulls[1:]]
    result = search(data, "math", "school", ranking=ranking, patience=3, n_essential=2,
                    progress=False)  # fmt: skip
    return result, ranking


def test_scenario_a_matches_oracle(scenario_a):
    result, ranking = scenario_a
    sample = result.sample
    trace, terms = oracle(
        sample.data, "math", "school", ranking, categorical=set(sample.categorical),
        level2=set(sample.level2), patience=3, n_essential=2,
    )  # fmt: skip
    assert_same_trace(result, trace)
    assert result.optimal_terms["fixed"] == terms["fixed"]
    assert result.optimal_terms["interactions"] == [":".join(p) for p in terms["interactions"]]
    assert result.optimal_terms["random_slopes"] == terms["slopes"]


def test_scenario_a_covers_every_rule(scenario_a, sim):
    result, ranking = scenario_a
    conf = sim[0].truth.slopes[1]
    steps = {(s.stage, s.term): s for s in result.steps}
    # collinear candidate: skipped with its reason, and it does not count as a miss
    dup = steps[("fixed", "ses_copy")]
    assert dup.status == "skipped" and "collinear" in dup.reason and "ses_copy" in dup.reason
    # a miss followed by an accept: the patience count restarts
    fixed = [s for s in result.steps if s.stage == "fixed"]
    assert [s.status for s in fixed[:3]] == ["accepted", "rejected", "accepted"]
    # the stage ends after exactly `patience` consecutive misses
    tail = [s.status for s in fixed if s.status != "skipped"][-3:]
    assert tail == ["rejected"] * 3
    # the categorical predictor adds levels - 1 = 2 parameters
    assert steps[("fixed", "track")].test_df == 2
    # essential predictors come from the base model: the rejected item ranked 2nd is not one
    assert [s.term for s in result.steps if s.stage == "interaction"] == [f"ses:{conf}"]
    # slopes: level-2 and 3-level categorical predictors are skipped with their reason
    assert "level-2" in steps[("slope", "sch_resources")].reason
    assert "3 levels" in steps[("slope", "track")].reason
    assert steps[("slope", "sch_resources")].status == "skipped"
    # mixture: q = random effects of the simpler model, test df = q + 1
    q = 1
    for s in (s for s in result.steps if s.stage == "slope" and s.status != "skipped"):
        assert s.test_df == q + 1
        mix = 0.5 * stats.chi2.sf(s.chisq, q) + 0.5 * stats.chi2.sf(s.chisq, q + 1)
        assert s.p == pytest.approx(mix, rel=1e-10)
        q += s.status == "accepted"


def test_trace_models_match_direct_fits(scenario_a):
    """Cross-check: every fitted model of the trace equals a cold fit of its formula."""
    result, _ = scenario_a
    data = result.sample.data
    for step in result.steps:
        if step.formula:
            direct = fit(step.formula, data, reml=False)
            assert step.loglik == pytest.approx(direct.loglik, abs=1e-4), step.formula
            assert step.df == direct.df
    for name in ("null", "base", "preliminary", "optimal"):
        model = getattr(result, name)
        assert fit(model.formula, data).loglik == pytest.approx(model.loglik, abs=1e-4)


def test_result_dict_and_frame(scenario_a, tmp_path):
    result, ranking = scenario_a
    d = result.to_dict()
    result.to_json(tmp_path / "result.json")
    assert json.loads((tmp_path / "result.json").read_text()) == json.loads(json.dumps(d))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.icc = 0.0
    assert d["n_obs"] == result.sample.n_obs and d["glmm_needed"] is True
    assert [r["predictor"] for r in d["ranking"]] == ranking
    assert all(r["importance"] is None for r in d["ranking"])
    assert len(d["steps"]) == len(result.steps)
    assert d["models"]["optimal"]["loglik"] == pytest.approx(result.optimal.loglik)
    assert d["manifest"]["params"]["patience"] == 3
    assert len(d["manifest"]["data_hash"]) == 64
    frame = result.steps_frame()
    assert list(frame.columns)[:3] == ["stage", "term", "status"] and len(frame) == len(d["steps"])
    jsonschema.validate(json.loads(json.dumps(d, allow_nan=False)), load_schema())
    # R² of the base model: R&B level 1 from sigma2, Nakagawa marginal below conditional
    r2 = result.r2["base"]
    want = 1 - result.base.sigma2 / result.null.sigma2
    assert r2["level1"] == pytest.approx(want)
    assert 0 < r2["marginal"] < r2["conditional"] < 1


# --- scenario B: the paper's rule (patience 1), max_slopes, non-convergence ---------------


def test_patience_one_stops_at_first_miss(sim):
    s, data = sim
    nulls = null_items(s.truth, data, 3)
    ranking = [s.truth.slopes[1], "ses", nulls[0], "study_hours", *nulls[1:]]
    result = search(data, "math", "school", ranking=ranking, max_slopes=1, patience=1,
                    progress=False)  # fmt: skip
    sample = result.sample
    trace, _ = oracle(
        sample.data, "math", "school", ranking, categorical=set(sample.categorical),
        level2=set(sample.level2), patience=1, n_essential=3, max_slopes=1,
    )  # fmt: skip
    assert_same_trace(result, trace)
    fixed = [(st.term, st.status) for st in result.steps if st.stage == "fixed"]
    assert fixed[-1] == (nulls[0], "rejected") and len(fixed) == 3
    assert len(result.optimal_terms["random_slopes"]) <= 1


def test_not_converged_candidate_is_recorded_and_skipped(sim, monkeypatch):
    s, data = sim
    nulls = null_items(s.truth, data, 3)
    real_fit = autoglmm.fitting.fit
    real_prepared_fit = autoglmm.prepared.PreparedSample.fit

    def forced(result):
        if "screen_time" in result.formula:
            return dataclasses.replace(result, converged=False, messages=["forced failure"])
        return result

    # the search fits through its prepared design, and through fit() when it cannot
    monkeypatch.setattr(autoglmm.fitting, "fit", lambda *a, **k: forced(real_fit(*a, **k)))
    monkeypatch.setattr(autoglmm.prepared.PreparedSample, "fit",
                        lambda *a, **k: forced(real_prepared_fit(*a, **k)))  # fmt: skip
    ranking = ["ses", "screen_time", s.truth.slopes[1], nulls[0]]
    result = search(data, "math", "school", ranking=ranking, n_essential=0, patience=1,
                    progress=False)  # fmt: skip
    fixed = [(st.term, st.status) for st in result.steps if st.stage == "fixed"]
    # not counted as a miss: with patience 1 the search goes on to the next predictor
    assert fixed[:3] == [
        ("ses", "accepted"), ("screen_time", "not_converged"), (s.truth.slopes[1], "accepted")
    ]  # fmt: skip
    step = result.steps[1]
    assert "forced failure" in step.reason and step.p is None
    assert "screen_time" not in result.optimal_terms["fixed"]


# --- ICC gate, standardize, bad input ------------------------------------------------------


def test_icc_gate_stops_unless_forced(sim):
    s, data = sim
    shuffled = data.copy()
    shuffled["school"] = np.random.default_rng(0).permutation(shuffled["school"].to_numpy())
    ranking = ["ses", s.truth.slopes[1]]
    stopped = search(shuffled, "math", "school", ranking=ranking, progress=False)
    assert not stopped.glmm_needed and stopped.icc < 0.1
    assert "ICC" in stopped.stop_reason and "force" in stopped.stop_reason
    assert stopped.steps == () and stopped.base is None and stopped.optimal is None
    d = stopped.to_dict()
    assert d["stop_reason"] == stopped.stop_reason and d["models"]["base"] is None
    jsonschema.validate(json.loads(json.dumps(d, allow_nan=False)), load_schema())
    forced = search(shuffled, "math", "school", ranking=ranking, force=True, progress=False)
    assert forced.stop_reason is None and forced.steps[0].term == "ses"
    # the ICC is tau2 / (tau2 + sigma2) of the null model
    tau2 = forced.null.cov_re["school"].iloc[0, 0]
    assert forced.icc == pytest.approx(tau2 / (tau2 + forced.null.sigma2))


def test_standardize_rescales_coefficients_not_logliks(sim):
    s, data = sim
    ranking = ["ses", "study_hours"]
    raw = search(data, "math", "school", ranking=ranking, n_essential=0, max_slopes=0,
                 progress=False)  # fmt: skip
    std = search(data, "math", "school", ranking=ranking, n_essential=0, max_slopes=0,
                 standardize=True, progress=False)  # fmt: skip
    assert std.base.loglik == pytest.approx(raw.base.loglik, abs=1e-5)
    sd = raw.sample.data["ses"].std(ddof=1)
    assert std.base.fixef["ses"] == pytest.approx(raw.base.fixef["ses"] * sd, rel=1e-5)


def test_ranking_file_and_unknown_names(sim, tmp_path):
    s, data = sim
    path = tmp_path / "ranking.txt"
    path.write_text("ses\n\n" + s.truth.slopes[1] + "\n")
    result = search(data, "math", "school", ranking=path, n_essential=0, max_slopes=0,
                    progress=False)  # fmt: skip
    assert [st.term for st in result.steps][:2] == ["ses", s.truth.slopes[1]]
    with pytest.raises(DataError, match="not in the data: 'nope'"):
        search(data, "math", "school", ranking=["ses", "nope"], progress=False)
    with pytest.raises(UsageError, match="patience"):
        search(data, "math", "school", ranking=["ses"], patience=0, progress=False)
    with pytest.raises(UsageError, match="alpha"):
        search(data, "math", "school", ranking=["ses"], alpha=1.5, progress=False)


def test_same_seed_same_result(sim):
    s, data = sim
    ranking = ["ses", s.truth.slopes[1], "study_hours"]
    a = search(data, "math", "school", ranking=ranking, seed=3, progress=False).to_dict()
    b = search(data, "math", "school", ranking=ranking, seed=3, progress=False).to_dict()
    a["manifest"].pop("timings"), b["manifest"].pop("timings")
    assert a == b
    assert isinstance(pd.DataFrame(a["steps"]), pd.DataFrame)


# --- recovery with the MERF ranking --------------------------------------------------------


def test_recovery_on_small_simulated_data():
    """With a small forest, the search finds the strong true terms, the school-level ones
    included, and both true slopes."""
    sim = simulate_lsa(seed=2, n_schools=100, n_items=60)
    truth = sim.truth
    result = search(sim.data, "math", "school", ntree=100, seed=2, progress=False)
    strongest = sorted(truth.fixed, key=lambda k: -abs(truth.fixed[k]))[:5]
    found = set(result.optimal_terms["fixed"])
    assert set(strongest) | set(truth.level2) <= found
    assert result.optimal_terms["interactions"] == [":".join(truth.interaction)]
    assert result.optimal_terms["random_slopes"] == list(truth.slopes)
    # the ranking came from the forest: importances, highest first
    frame = result.ranking.to_frame()
    assert frame["importance"].is_monotonic_decreasing and frame["importance"].iloc[0] > 0
    assert result.manifest["seed"] == 2 and result.manifest["timings"]["ranking"] > 0


def test_binomial_search_recovers_strong_terms():
    sim = simulate_lsa(seed=3, n_schools=100, n_items=60, family="binomial")
    truth = sim.truth
    result = search(sim.data, "proficient", "school", family="binomial", ntree=100, seed=3,
                    progress=False)  # fmt: skip
    tau2 = result.null.cov_re["school"].iloc[0, 0]
    assert result.icc == pytest.approx(tau2 / (tau2 + np.pi**2 / 3))
    found = set(result.optimal_terms["fixed"])
    assert set(truth.slopes) <= found
    pairs = [set(t.split(":")) for t in result.optimal_terms["interactions"]]
    assert set(truth.interaction) in pairs
    # a GLMM has no sigma²: no level-1 R², Nakagawa R² on the latent scale
    assert result.r2["optimal"]["level1"] is None
    assert 0 < result.r2["optimal"]["marginal"] < result.r2["optimal"]["conditional"] < 1


# --- stopping rules ------------------------------------------------------------------------


def test_default_scan_at_bonferroni_matches_oracle(sim):
    """The default rule: every candidate of a stage tested at alpha / m."""
    s, data = sim
    conf = s.truth.slopes[1]
    nulls = null_items(s.truth, data, 4)
    ranking = ["ses", nulls[0], conf, "ses_copy", "sch_resources", "track", *nulls[1:]]
    result = search(data, "math", "school", ranking=ranking, n_essential=2, progress=False)
    sample = result.sample
    trace, terms = oracle(
        sample.data, "math", "school", ranking, categorical=set(sample.categorical),
        level2=set(sample.level2), patience=None, n_essential=2, bonferroni=True,
    )  # fmt: skip
    assert_same_trace(result, trace)
    assert result.optimal_terms["fixed"] == terms["fixed"]
    assert result.optimal_terms["random_slopes"] == terms["slopes"]
    assert result.rule["name"] == "scan-bonferroni" and result.rule["patience"] is None
    fixed, inter, slope = result.stages
    assert fixed["level"] == pytest.approx(ALPHA / len(ranking))
    assert fixed["tried"] == len(ranking) and fixed["not_tried"] == 0
    assert fixed["stopped_by"] == "exhausted"
    assert inter["candidates"] == 1 and inter["level"] == pytest.approx(ALPHA)
    # slopes: level-2 and 3-level categorical predictors cannot have one, so m excludes them
    testable = [n for n in terms["fixed"] if n not in ("sch_resources", "track")]
    assert slope["testable"] == len(testable)
    assert slope["level"] == pytest.approx(ALPHA / len(testable))
    d = result.to_dict()
    assert d["rule"]["threshold"] == "bonferroni" and len(d["stages"]) == 3
    jsonschema.validate(json.loads(json.dumps(d, allow_nan=False)), load_schema())


def test_paper_rule_reports_never_tried_candidates(sim):
    """patience=1 alone is the paper's rule; the candidates it never reached are counted."""
    s, data = sim
    nulls = null_items(s.truth, data, 3)
    ranking = [s.truth.slopes[1], "ses", nulls[0], "study_hours", *nulls[1:]]
    result = search(data, "math", "school", ranking=ranking, patience=1, progress=False)
    assert result.rule["name"] == "paper" and result.rule["threshold"] == "alpha"
    fixed = result.stages[0]
    assert (fixed["candidates"], fixed["tried"], fixed["not_tried"]) == (6, 3, 3)
    assert fixed["stopped_by"] == "patience" and fixed["level"] == ALPHA
    assert all(info["level"] == ALPHA for info in result.stages)
    # the report says it in words
    from autoglmm.report.selection_notes import rule_sentence, stage_sentences

    assert "paper" in rule_sentence(result)
    assert "3 never tried" in stage_sentences(result)[0]


def test_resolve_rule():
    from autoglmm.stopping import resolve_rule

    assert resolve_rule(1, None).name == "paper"
    assert resolve_rule(1, "auto").threshold == "alpha"
    assert resolve_rule(None, "auto").name == "scan-bonferroni"
    assert resolve_rule("all", "alpha").name == "scan"
    assert resolve_rule("3", "bonferroni").name == "patience-3-bonferroni"
    assert resolve_rule(None, "bonferroni").level(0.05, 200) == pytest.approx(0.00025)
    for bad in (0, -1, 1.5, True, "x"):
        with pytest.raises(UsageError, match="patience"):
            resolve_rule(bad, None)
    with pytest.raises(UsageError, match="threshold"):
        resolve_rule(1, "holm")


# --- truth: school-level effects, school-level noise, correlated proxies ----------------


@pytest.fixture(scope="module")
def proxy_sim():
    """Strong school effects, 6 school-level noise items, blocks of close proxies.

    With 120 schools a school-level effect is estimated from 120 school means, so the
    school effects are made strong enough (25 and 20 points per SD, tau = 30) to be found
    at the default level; benchmarks/selection.py measures realistic sizes at 150-300.
    """
    return simulate_lsa(seed=21, n_schools=120, n_items=60, loading=(0.7, 0.8),
                        school_effects=(25.0, 20.0), decoy_corr=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def proxy_search(proxy_sim):
    return search(proxy_sim.data, "math", "school", ntree=100, seed=4, progress=False)


def test_default_search_recovers_school_level_truth(proxy_sim, proxy_search):
    truth, result = proxy_sim.truth, proxy_search
    found = set(result.optimal_terms["fixed"])
    assert set(truth.level2) <= found  # both true school-level predictors
    noise_l2 = set(result.sample.level2) - set(truth.level2)
    assert len(noise_l2) == 6 and not noise_l2 & found  # no school-level noise item
    score = recovery(truth, result.optimal_terms)
    assert len(score["missed"]) <= 1 and len(score["false"]) <= 2, score
    assert result.optimal_terms["random_slopes"] == list(truth.slopes)


def test_paper_rule_misses_what_the_default_finds(proxy_sim, proxy_search):
    """Same ranking, paper's rule: it stops early and leaves true predictors untested."""
    ranking = proxy_search.ranking.names
    paper = search(proxy_sim.data, "math", "school", ranking=ranking, patience=1,
                   progress=False)  # fmt: skip
    never = paper.stages[0]["not_tried"]
    assert never > 0
    got = len(recovery(proxy_sim.truth, paper.optimal_terms)["found"])
    want = len(recovery(proxy_sim.truth, proxy_search.optimal_terms)["found"])
    assert got <= want


def test_default_search_adds_nothing_on_null_outcome(proxy_sim):
    """No predictor matters: outcome = school intercept + noise."""
    data = proxy_sim.data.copy()
    rng = np.random.default_rng(8)
    codes = pd.factorize(data["school"])[0]
    data["math"] = 500 + rng.normal(0, 30, codes.max() + 1)[codes] + rng.normal(0, 50, len(data))
    result = search(data, "math", "school", ntree=100, seed=5, progress=False)
    assert result.optimal_terms == {"fixed": [], "interactions": [], "random_slopes": []}
    assert result.stages[0]["tried"] == result.stages[0]["candidates"]


# --- honesty in the report -----------------------------------------------------------------


def test_report_names_rule_never_tried_and_caveat(sim, tmp_path):
    s, data = sim
    nulls = null_items(s.truth, data, 3)
    ranking = [s.truth.slopes[1], "ses", nulls[0], "study_hours", *nulls[1:]]
    result = search(data, "math", "school", ranking=ranking, patience=1, progress=False)
    out = result.report(tmp_path / "out")
    html = (out / "report.html").read_text()
    assert "Stopping rule &#39;paper&#39;" in html or "Stopping rule 'paper'" in html
    assert "3 never tried" in html  # fixed stage: 6 ranked, 3 tried
    never = sum(info["not_tried"] for info in result.stages)
    assert f"A further {never} ranked candidates" in " ".join(html.split())
    assert "optimistic" in html
    saved = json.loads((out / "result.json").read_text())
    assert saved["rule"]["name"] == "paper"
    assert [st["not_tried"] for st in saved["stages"]] == [st["not_tried"] for st in result.stages]


def test_importance_plot_marks_level2(proxy_search):
    from autoglmm.report.plots import importance_figure

    fig = importance_figure(proxy_search, top=len(proxy_search.ranking))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    level2 = set(proxy_search.sample.level2)
    names = list(proxy_search.ranking.names)
    assert len(level2) == 8
    assert len(labels) == len(names)
    for label, name in zip(labels, names, strict=True):
        assert label.endswith("(L2)") == (name in level2)


# --- the targets at realistic scale (slow) -----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "min_found", "max_false"), [("gaussian", 14, 2), ("binomial", 12, 3)]
)
def test_default_search_meets_targets_at_scale(family, min_found, max_false):
    """250 schools, 130 items, strong school effects, 8 school-level noise items."""
    sim = simulate_lsa(seed=41, n_schools=250, family=family, n_items=130, n_school_items=10,
                       decoy_corr=0.0)  # fmt: skip
    truth = sim.truth
    result = search(sim.data, truth.outcome, "school", family=family, ntree=300, seed=41,
                    progress=False)  # fmt: skip
    score = recovery(truth, result.optimal_terms)
    found = [t for t in truth.fixed if t in score["found"]]
    assert len(found) >= min_found and len(score["false"]) <= max_false, score
    assert truth.level2[0] in found  # the strong school-level predictor
    if family == "gaussian":
        assert set(truth.level2) <= set(found)
        assert result.optimal_terms["random_slopes"] == list(truth.slopes)
