"""The table model and the report's tables: layouts, numbers, and agreement with the search."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from autoglmm.report import tables
from autoglmm.report.tables import Column, Table
from autoglmm.report.terms import ranking_frame, term_parts, v_numbers


def small_table() -> Table:
    return Table(
        (Column("Model"), Column("df", "int"), Column("logLik", "float", 2), Column("p", "p")),
        (("null", 3, -12.345, None), ("+ x_1", 4, -10.0, 0.0004), ("+ a|b", 5, -9.5, 0.3127)),
        title="Table 9. Demo",
        note="a & b",
        row_classes=("start", "accepted", "rejected"),
    )


def test_table_renders_the_same_cells_in_every_format():
    t = small_table()
    assert t.to_text().splitlines() == [
        "Table 9. Demo",
        "-------------------------",
        "Model  df  logLik       p",
        "-------------------------",
        "null    3  -12.35       –",
        "+ x_1   4  -10.00  4.0e-4",
        "+ a|b   5   -9.50   0.313",
        "-------------------------",
        "a & b",
    ]
    md = t.to_markdown().splitlines()
    assert md[2:6] == [
        "| Model | df | logLik | p |",
        "|:---|---:|---:|---:|",
        "| null | 3 | -12.35 | – |",
        "| + x_1 | 4 | -10.00 | 4.0e-4 |",
    ]
    assert md[6] == "| + a\\|b | 5 | -9.50 | 0.313 |"  # a pipe in a cell is escaped
    html = t.to_html()
    assert "<caption>Table 9. Demo</caption>" in html
    assert '<tr class="accepted"><td>+ x_1</td><td class="num">4</td>' in html
    assert '<td class="num">\u221212.35</td>' in html  # typographic minus in HTML
    assert "4.0e\u22124" in html and "a &amp; b" in html
    tex = t.to_latex()
    assert r"\begin{tabular}{lrrr}" in tex
    assert r"+ x\_1 & 4 & -10.00 & 4.0e-4 \\" in tex
    assert r"null & 3 & -12.35 & -- \\" in tex
    assert r"a \& b" in tex
    assert t.to_frame().shape == (3, 4)


def test_format_number_keeps_four_significant_digits():
    assert tables.format_number(512.345) == "512.3"
    assert tables.format_number(-0.012345) == "-0.01235"
    assert tables.format_number(8.0) == "8.000"
    assert tables.format_number(123456.0) == "123456"
    assert tables.format_number(1.5e-6) == "1.500e-06"


def test_term_parts_reads_formulaic_names():
    known = ["sex", "ses", "grade level"]
    assert term_parts("ses", known) == [("ses", None)]
    assert term_parts("C(sex)[T.girl]", known) == [("sex", "girl")]
    assert term_parts("sex[T.girl]:ses", known) == [("sex", "girl"), ("ses", None)]
    assert term_parts("C(sex, Treatment('boy'))[T.girl]", known) == [("sex", "girl")]
    assert term_parts("`grade level`", known) == [("grade level", None)]
    assert term_parts("mystery", known) == [("mystery", None)]


def test_ranking_frame_accepts_the_shapes_a_ranking_comes_in():
    frame = pd.DataFrame({"predictor": ["b", "a"], "importance": [2.0, 1.0], "rank": [1, 2]})
    assert list(ranking_frame(frame)["predictor"]) == ["b", "a"]
    shuffled = frame.iloc[::-1]
    assert list(ranking_frame(shuffled)["predictor"]) == ["b", "a"]  # sorted by rank
    names = ranking_frame(["x", "y"])
    assert list(names["predictor"]) == ["x", "y"] and names["importance"].isna().all()
    assert ranking_frame(None).empty


def _current_logliks(frame: pd.DataFrame) -> list[float]:
    """The loglik of the model each candidate was compared with (the last accepted one)."""
    current, out = frame["logLik"].iloc[0], []
    for rec in frame.iloc[1:].itertuples(index=False):
        out.append(current)
        if rec.status == "accepted":
            current = rec.logLik
    return out


@pytest.mark.parametrize("which", ["searched", "hand_result"])
def test_comparison_tables_follow_the_likelihood_ratio_arithmetic(which, request):
    result = request.getfixturevalue(which)
    start = {"fixed": result.null, "interaction": result.base, "slope": result.preliminary}
    n_candidates = 0
    for stage, fit in start.items():
        frame = tables.comparison_table(result, stage)
        assert list(frame.columns[:6]) == ["Model", "df", "AIC", "logLik", "Δχ²", "p"]
        assert frame.iloc[0]["logLik"] == fit.loglik and frame.iloc[0]["df"] == fit.df
        assert frame.iloc[0]["AIC"] == pytest.approx(-2 * fit.loglik + 2 * fit.df)
        q = sum(len(g) for g in fit.cov_re.values())  # random effects before a slope
        previous = _current_logliks(frame)
        for rec, ll0 in zip(frame.iloc[1:].itertuples(index=False), previous, strict=True):
            n_candidates += 1
            assert rec.AIC == pytest.approx(-2 * rec.logLik + 2 * rec.df, rel=1e-12)
            lr = max(0.0, 2 * (rec.logLik - ll0))
            assert rec[4] == pytest.approx(lr, abs=1e-8)  # Δχ² = 2·ΔlogLik
            if stage == "slope":
                p = 0.5 * stats.chi2.sf(lr, q) + 0.5 * stats.chi2.sf(lr, q + 1)
                assert rec.test_df == q + 1
            else:
                p = stats.chi2.sf(lr, rec.test_df)
            assert rec.p == pytest.approx(p, rel=1e-6, abs=1e-300)
            assert (rec.status == "accepted") == (rec.p < 0.05)
            if rec.status == "accepted" and stage == "slope":
                q += 1
    assert n_candidates == sum(s.status != "skipped" for s in result.steps)


def test_hand_search_and_real_search_agree(searched, hand_result):
    """Two independent paths to the same trace: every decision and number matches."""
    assert [(s.stage, s.term, s.status) for s in searched.steps] == [
        (s.stage, s.term, s.status) for s in hand_result.steps
    ]
    for a, b in zip(searched.steps, hand_result.steps, strict=True):
        if b.loglik is not None:
            assert a.loglik == pytest.approx(b.loglik, abs=1e-6)
            assert a.p == pytest.approx(b.p, rel=1e-5)
    assert searched.optimal_terms == hand_result.optimal_terms


def test_comparison_table_of_a_stopped_search_has_only_the_null_model(stopped):
    fixed = tables.comparison_table(stopped, "fixed")
    assert list(fixed["Model"]) == ["Null model"]
    assert tables.comparison_table(stopped, "slope").empty
    with pytest.raises(ValueError, match="unknown stage"):
        tables.comparison_table(stopped, "random")


def test_variable_map_is_the_papers_table_1(hand_result, lsa):
    vmap = tables.variable_map(hand_result)
    ranked = hand_result.ranking.to_frame()
    assert list(vmap.columns) == ["V", "predictor", "label", "importance"]
    assert list(vmap["V"]) == [f"V{i}" for i in range(1, len(ranked) + 1)]
    assert list(vmap["predictor"]) == list(ranked["predictor"])
    np.testing.assert_array_equal(vmap["importance"], ranked["importance"])
    assert list(vmap["label"]) == [lsa.labels[p] for p in ranked["predictor"]]
    assert v_numbers(hand_result)[ranked["predictor"][0]] == "V1"


def test_fixed_effects_table_matches_the_fit_and_result_json(searched):
    fit = searched.optimal
    frame = tables.fixed_effects_table(fit, searched).to_frame()
    np.testing.assert_allclose(frame["Estimate"], fit.fixef.to_numpy())
    np.testing.assert_allclose(frame["SE"], fit.se.to_numpy())
    z = fit.fixef.to_numpy() / fit.se.to_numpy()
    np.testing.assert_allclose(frame["z"], z)  # called z for every family
    np.testing.assert_allclose(frame["p"], 2 * stats.norm.sf(np.abs(z)))
    saved = searched.to_dict()["models"]["optimal"]["fixef"]
    for name, est, p in zip(fit.fixef.index, frame["Estimate"], frame["p"], strict=True):
        assert saved[name]["estimate"] == pytest.approx(est)
        assert saved[name]["p"] == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert frame["Term"].iloc[0] == "Intercept"
    vmap = v_numbers(searched)
    assert list(frame["Term"].iloc[1:]) == [vmap[n] for n in fit.fixef.index[1:]]


def test_random_effects_table_reports_g_and_sigma2(searched):
    fit = searched.optimal
    g = fit.cov_re["school"].to_numpy()
    assert g.shape == (2, 2)  # intercept and one slope in this search
    frame = tables.random_effects_table(fit, searched).to_frame()
    np.testing.assert_allclose(frame["Variance"][:2], np.diag(g))
    np.testing.assert_allclose(frame["SD"][:2], np.sqrt(np.diag(g)))
    assert frame["Corr 1"][1] == pytest.approx(g[0, 1] / math.sqrt(g[0, 0] * g[1, 1]))
    assert frame["Group"].iloc[-1] == "Residual"
    assert frame["Variance"].iloc[-1] == pytest.approx(fit.sigma2)


def test_r2_and_trace_tables(searched):
    r2 = tables.r2_table(searched).to_frame()
    assert list(r2["Model"]) == ["Null", "Base", "Preliminary", "Optimal"]
    for key, col in (("level1", "R² level 1"), ("conditional", "R² conditional")):
        expected = [searched.r2[m][key] for m in ("null", "base", "preliminary", "optimal")]
        np.testing.assert_allclose(r2[col], expected)
    assert r2["R² level 1"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    trace = tables.trace_table(searched).to_frame()
    assert len(trace) == len(searched.steps)
    assert list(trace["Reason"]) == [s.reason for s in searched.steps]
    assert trace["Decision"].iloc[0] == "accepted"  # the words of result.json


def test_skipped_and_not_converged_candidates(hand_result):
    """Skipped candidates appear only in the trace; a failed fit is listed without a test."""
    from dataclasses import replace

    from autoglmm.selection import Step

    failed = Step(
        "fixed",
        "like_02",
        "not_converged",
        -6700.5,
        8,
        None,
        None,
        None,
        "not converged: gradient 0.02 > 0.002 after a restart",
        "f",
        13417.0,
        13450.0,
    )
    skipped = Step("slope", "sch_resources", "skipped", None, None, None, None, None,
                   "level-2 predictor (constant within every group)", "", None, None)  # fmt: skip
    steps = list(hand_result.steps)
    last_fixed = max(i for i, s in enumerate(steps) if s.stage == "fixed")
    steps.insert(last_fixed, failed)
    steps.append(skipped)
    result = replace(hand_result, steps=tuple(steps))
    fixed = tables.comparison_table(result, "fixed")
    row = fixed[fixed["term"] == "like_02"].iloc[0]
    assert row["status"] == "not_converged" and row["logLik"] == -6700.5
    assert np.isnan(row["Δχ²"]) and np.isnan(row["p"])
    assert "sch_resources" not in set(tables.comparison_table(result, "slope")["term"])
    trace = tables.trace_table(result)
    frame = trace.to_frame()
    assert list(frame["Decision"].iloc[[last_fixed, -1]]) == ["not converged", "skipped"]
    assert frame["Reason"].iloc[-1] == "level-2 predictor (constant within every group)"
    html = trace.to_html()
    assert '<tr class="skipped">' in html and '<tr class="not_converged">' in html
    assert tables.comparison(result, "fixed").to_text().count("not converged") == 1
