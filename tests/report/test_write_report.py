"""write_report: every output of SPEC section 3, valid, self-contained, reproducible, atomic."""

from __future__ import annotations

import copy
import html
import json
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import jsonschema
import pandas as pd
import pytest

from autoglmm.errors import UsageError
from autoglmm.report import OUTPUT_FILES, load_schema, plots, validate_result_dict, write_report
from autoglmm.report.equation import model_equation
from autoglmm.report.tables import format_value, variable_map


@pytest.fixture(scope="module")
def report_dir(searched, tmp_path_factory):
    return searched.report(tmp_path_factory.mktemp("rep") / "out")  # delegates to write_report


@pytest.fixture(scope="module")
def hand_dir(hand_result, tmp_path_factory):
    return write_report(hand_result, tmp_path_factory.mktemp("hand") / "out")


@pytest.fixture(scope="module")
def stopped_dir(stopped, tmp_path_factory):
    return write_report(stopped, tmp_path_factory.mktemp("stop") / "out")


def test_all_outputs_are_written(report_dir):
    assert sorted(p.name for p in report_dir.iterdir()) == sorted(OUTPUT_FILES)
    assert [p.name for p in report_dir.parent.iterdir()] == ["out"]  # nothing beside it
    umask = os.umask(0)
    os.umask(umask)
    assert report_dir.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700


@pytest.mark.parametrize("which", ["report_dir", "hand_dir", "stopped_dir"])
def test_result_json_validates_against_the_schema(which, request):
    data = json.loads((request.getfixturevalue(which) / "result.json").read_text())
    jsonschema.Draft202012Validator.check_schema(load_schema())
    jsonschema.validate(data, load_schema(), cls=jsonschema.Draft202012Validator)


def test_result_json_holds_the_search(searched, report_dir):
    data = json.loads((report_dir / "result.json").read_text())
    assert data["n_obs"] == searched.null.nobs and data["n_groups"] == searched.null.ngroups
    assert data["optimal_terms"] == searched.optimal_terms
    assert [s["status"] for s in data["steps"]] == [s.status for s in searched.steps]
    assert data["models"]["optimal"]["loglik"] == pytest.approx(searched.optimal.loglik)
    assert data["stop_reason"] is None and data["glmm_needed"] is True


def test_schema_rejects_what_spec_section_3_forbids(searched):
    good = json.loads(json.dumps(searched.to_dict(), allow_nan=False))
    validate_result_dict(good)
    broken = [
        ("steps", 0, "status", "maybe"),
        ("steps", 0, "stage", "random"),
        ("models", "optimal", "fixef", "ses", "p", 1.5),
        ("models", "null", "cov_re", "school", "(Intercept)", "(Intercept)", "big"),
        ("manifest", "data_hash", None),
        ("icc", 1.2),
    ]
    for *path, value in broken:
        data = copy.deepcopy(good)
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ValueError, match="does not match its schema"):
            validate_result_dict(data)
    for key in ("models", "ranking", "manifest", "stop_reason"):
        data = {k: v for k, v in good.items() if k != key}
        with pytest.raises(ValueError, match="schema"):
            validate_result_dict(data)


def test_steps_csv_and_equation_tex(searched, report_dir):
    steps = pd.read_csv(report_dir / "steps.csv")
    assert list(steps.columns[:8]) == ["stage", "term", "status", "loglik", "df", "chisq"] + [
        "test_df",
        "p",
    ]
    assert list(steps["term"]) == [s.term for s in searched.steps]
    pd.testing.assert_series_equal(
        steps["loglik"], pd.Series([s.loglik for s in searched.steps], name="loglik", dtype=float)
    )
    tex = (report_dir / "equation.tex").read_text()
    assert tex.endswith(model_equation(searched, "latex") + "\n")
    assert "% V1 = " in tex


def test_comparison_md_has_every_stage(searched, report_dir):
    md = (report_dir / "comparison.md").read_text()
    assert "**Table 2. Forward selection of fixed effects**" in md
    assert "**Table 3. Interactions among the essential predictors**" in md
    assert "**Table 4. Random slopes**" in md
    first = next(s for s in searched.steps if s.stage == "fixed")
    chisq = format_value(first.chisq, type("C", (), {"kind": "float", "digits": 2})())
    assert f"| {chisq} |" in md
    assert "**Key to the V-numbers above" in md


def test_importance_figure_files(hand_dir):
    png = (hand_dir / "importance.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    svg = ET.fromstring((hand_dir / "importance.svg").read_bytes())
    texts = "".join(svg.itertext())
    for v in ("V1", "V10"):
        assert v in texts
    assert "in the optimal model" in texts


class _Resources(HTMLParser):
    """Every URL-bearing attribute, every tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in {"src", "href", "data", "poster"} and v]


def test_report_html_is_self_contained(hand_dir):
    page = (hand_dir / "report.html").read_text()
    parser = _Resources()
    parser.feed(page)
    assert parser.urls and all(u.startswith("data:") for u in parser.urls)
    assert not {"script", "link", "iframe", "object"} & parser.tags
    assert not re.search(r"url\(|@import", page)  # no external CSS resources either
    assert "data:image/svg+xml;base64," in page


def test_report_html_has_every_section(hand_result, hand_dir):
    page = (hand_dir / "report.html").read_text()
    for needle in (
        "Analysis sample",
        "ICC = ",
        "Table 1. Predictors in ranking order",
        "Table 2. Forward selection of fixed effects",
        "Table 3. Interactions among the essential predictors",
        "Table 4. Random slopes",
        "Fixed effects",
        "Random effects",
        "Explained variance (R²)",
        "Search trace",
        hand_result.optimal.formula,
    ):
        assert needle in page, needle
    for rec in variable_map(hand_result).itertuples():
        assert f"<td>{rec.predictor}</td>" in page
    for step in hand_result.steps:
        assert step.reason.replace("<", "&lt;").replace(">", "&gt;") in page


def test_stopped_search_says_so_and_still_renders(stopped, stopped_dir):
    page = (stopped_dir / "report.html").read_text()
    assert "The search stopped at the ICC gate." in page
    assert html.escape(stopped.stop_reason, quote=False) in page
    assert "Search trace" not in page and "Forward selection of fixed effects" not in page
    data = json.loads((stopped_dir / "result.json").read_text())
    assert data["models"]["optimal"] is None and data["ranking"] == []
    assert data["stop_reason"] == stopped.stop_reason and data["glmm_needed"] is False
    md = (stopped_dir / "comparison.md").read_text()
    assert "stopped at the ICC gate" in md


def test_same_result_gives_identical_files(hand_result, hand_dir, tmp_path):
    again = write_report(hand_result, tmp_path / "again")
    for name in OUTPUT_FILES:
        assert (again / name).read_bytes() == (hand_dir / name).read_bytes(), name


# --- atomicity -----------------------------------------------------------------------------


def _boom(*args, **kwargs):
    raise RuntimeError("injected failure")


def test_failure_leaves_a_new_directory_absent(hand_result, tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "write_importance", _boom)
    target = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(RuntimeError, match="injected failure"):
        write_report(hand_result, target)
    assert list(tmp_path.iterdir()) == []  # neither the output nor its new parents remain


def test_failure_leaves_an_existing_directory_untouched(hand_result, tmp_path, monkeypatch):
    target = write_report(hand_result, tmp_path / "out")
    (target / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    monkeypatch.setattr("autoglmm.report.html.render_html", _boom)
    with pytest.raises(RuntimeError, match="injected failure"):
        write_report(hand_result, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_existing_directory_is_updated_and_other_files_kept(hand_result, stopped, tmp_path):
    target = write_report(hand_result, tmp_path / "out")
    (target / "notes.txt").write_text("mine")
    write_report(stopped, target)
    assert (target / "notes.txt").read_text() == "mine"
    assert "stopped at the ICC gate" in (target / "report.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_path_that_is_a_file_is_a_usage_error(hand_result, tmp_path):
    path = tmp_path / "out"
    path.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        write_report(hand_result, path)
    assert path.read_text() == "x"


# --- a binomial search -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def binomial(tmp_path_factory):
    from autoglmm import search
    from autoglmm.datasets import simulate_lsa

    sim = simulate_lsa(seed=2, n_schools=40, n_items=30, family="binomial")
    order = ["ses", list(sim.truth.fixed)[1], "study_hours", "like_02"]
    result = search(
        sim.data, "proficient", "school", family="binomial", ranking=order, progress=False
    )
    return result, write_report(result, tmp_path_factory.mktemp("bin") / "out")


def test_binomial_report(binomial):
    result, out = binomial
    data = json.loads((out / "result.json").read_text())
    jsonschema.validate(data, load_schema(), cls=jsonschema.Draft202012Validator)
    assert data["models"]["optimal"]["sigma2"] is None
    page = (out / "report.html").read_text()
    assert "logit(<i>π</i><sub><i>ij</i></sub>) = " in page
    assert "<i>σ</i>²" not in page  # no residual variance on the logit scale
    assert '<th scope="col" class="num">z</th>' in page  # Wald z, not t
    assert "R² level 1" in page and "level-1 residual" not in page  # undefined: not claimed
    tex = (out / "equation.tex").read_text()
    assert r"\operatorname{logit}(\pi_{ij}) &= " in tex and r"\varepsilon" not in tex


def test_summary_states_the_findings_in_words(hand_result, hand_dir):
    page = (hand_dir / "report.html").read_text()
    sample = hand_result.sample.report
    assert f"comprised {sample.n_obs:,} observations in {sample.n_groups:,} groups" in page
    assert f"intraclass correlation of the null model was {hand_result.icc:.3f}" in page
    r2 = hand_result.r2["optimal"]
    level1 = f"explains {100 * r2['level1']:.1f}% of the level-1 residual variance"
    assert r2["level1"] > 0 and level1 in page
    assert r2["level2"] < 0  # a slope moved variance: said as an increase, not "explains -x%"
    assert f"increases the level-2 intercept variance by {-100 * r2['level2']:.1f}%" in page
    n_fixed = len(hand_result.optimal_terms["fixed"])
    assert f"kept {n_fixed} fixed effects (the base model), no interactions" in page
