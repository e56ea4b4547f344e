"""`autoglmm search` end to end on small files of every input format, and every bad input.

A given ranking file keeps these runs fast (no forest). Every bad input of SPEC section 4
must print one line, exit with the right code, and leave --out absent or untouched.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from typer.testing import CliRunner

from autoglmm.cli import app
from autoglmm.datasets import simulate_lsa

runner = CliRunner()


@pytest.fixture(scope="module")
def small():
    sim = simulate_lsa(seed=2, n_schools=30, n_items=20)
    truth = sim.truth
    keep = ["math", "school", "ses", truth.slopes[1], "study_hours", "sch_resources"]
    keep += [c for c in sim.data.columns if c.startswith("like_")][:4]
    data = sim.data[keep].copy()
    ranking = ["ses", truth.slopes[1], "study_hours", "sch_resources", "like_01"]
    return data, ranking


def write(data: pd.DataFrame, path) -> None:
    ext = path.suffix
    if ext == ".csv":
        data.to_csv(path, index=False)
    elif ext == ".parquet":
        data.to_parquet(path)
    elif ext == ".sav":
        labels = {c: f"label of {c}" for c in data.columns}
        pyreadstat.write_sav(data, str(path), column_labels=list(labels.values()))
    elif ext == ".dta":
        data.to_stata(path, write_index=False)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_search_each_format(small, tmp_path):
    data, ranking = small
    rank_file = tmp_path / "ranking.txt"
    rank_file.write_text("\n".join(ranking) + "\n")
    sizes = data.groupby("school").size()
    n_obs = int(sizes[sizes >= 20].sum())
    logliks = {}
    for ext in (".csv", ".parquet", ".sav", ".dta"):
        path = tmp_path / f"students{ext}"
        write(data, path)
        out = tmp_path / f"out{ext}"
        res = run("search", path, "--outcome", "math", "--group", "school", "--ranking",
                  rank_file, "--out", out, "--no-progress", "--seed", 1)  # fmt: skip
        assert res.exit_code == 0, (ext, res.output)
        for name in ("result.json", "report.html", "steps.csv", "comparison.md",
                     "equation.tex", "importance.png", "importance.svg"):  # fmt: skip
            assert (out / name).is_file(), (ext, name)
        result = json.loads((out / "result.json").read_text())
        assert result["n_obs"] == n_obs
        assert result["steps"][0]["term"] == "ses" and result["steps"][0]["status"] == "accepted"
        assert result["manifest"]["params"]["ranking"] == str(rank_file)
        # the console ends with the comparison tables and the equation
        assert "Forward selection of fixed effects" in res.output and "y_ij = " in res.output
        logliks[ext] = result["models"]["optimal"]["loglik"]
        if ext == ".sav":  # SPSS variable labels reach the report's variable map
            assert "label of ses" in (out / "report.html").read_text()
    assert max(logliks.values()) - min(logliks.values()) < 1e-6, logliks


def test_icc_gate_explains_and_writes_reason(small, tmp_path):
    data, ranking = small
    flat = data.copy()
    flat["school"] = np.random.default_rng(1).permutation(flat["school"].to_numpy())
    path = tmp_path / "flat.csv"
    flat.to_csv(path, index=False)
    out = tmp_path / "out"
    res = run("search", path, "-y", "math", "-g", "school", "--predictors", ",".join(ranking),
              "--out", out, "--no-progress")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Search stopped" in res.output and "force" in res.output
    result = json.loads((out / "result.json").read_text())
    assert result["glmm_needed"] is False and "ICC" in result["stop_reason"]
    assert result["steps"] == [] and result["models"]["optimal"] is None
    rank_file = tmp_path / "r.txt"
    rank_file.write_text("\n".join(ranking))
    forced = run("search", path, "-y", "math", "-g", "school", "--ranking", rank_file,
                 "--force", "--no-progress")  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert "Forward selection" in forced.output


def _bad_inputs(tmp_path, data, ranking):
    """(name, args, exit code, words of the message) for each SPEC section 4 case."""
    good = tmp_path / "good.csv"
    data.to_csv(good, index=False)
    txt = tmp_path / "data.txt"
    txt.write_text("not a data file")
    with_inf = data.copy()
    with_inf.loc[3, "ses"] = np.inf
    inf_path = tmp_path / "inf.csv"
    with_inf.to_csv(inf_path, index=False)
    const_group = data.assign(school=7)
    const_path = tmp_path / "const.csv"
    const_group.to_csv(const_path, index=False)
    constant = data.assign(flat=1.0)
    constant_path = tmp_path / "constant.csv"
    constant.to_csv(constant_path, index=False)
    bad_rank = tmp_path / "bad_rank.txt"
    bad_rank.write_text("ses\nnot_a_column\n")
    base = ["-y", "math", "-g", "school", "--no-progress"]
    return [
        ("missing file", [tmp_path / "nope.csv", *base], 1, "not found"),
        ("unreadable format", [txt, *base], 1, "unsupported data format"),
        ("unknown column", [good, "-y", "maths", "-g", "school"], 1, "unknown outcome"),
        ("outcome vs family", [good, *base, "--family", "binomial"], 1, "binomial"),
        ("too few groups", [good, *base, "--min-group-size", 100000], 1, "group"),
        ("no usable predictors", [constant_path, *base, "--predictors", "flat"], 1, "predictor"),
        ("non-finite values", [inf_path, *base], 1, "infinite"),
        ("constant group", [const_path, *base], 1, "group column"),
        ("ranking with unknown names", [good, *base, "--ranking", bad_rank], 1, "not_a_column"),
        ("unknown family", [good, *base, "--family", "gamma"], 2, "family"),
        ("alpha out of range", [good, *base, "--alpha", 2, "--ranking", bad_rank], 2, "alpha"),
    ]


def test_bad_inputs_write_nothing(small, tmp_path):
    data, ranking = small
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for name, args, code, words in _bad_inputs(tmp_path, data, ranking):
        for out in (tmp_path / f"new_{name.replace(' ', '_')}", kept):
            res = run("search", *args, "--out", out)
            assert res.exit_code == code, (name, res.output)
            lines = [line for line in res.output.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), (name, res.output)
            assert words in lines[0], (name, lines[0])
            assert "Traceback" not in res.output
            if out is kept:
                assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"], name
                assert (kept / "notes.txt").read_text() == "mine"
            else:
                assert not out.exists(), name


def test_demo_small(tmp_path, monkeypatch):
    """The demo path on small data: report written, recovered model printed next to truth."""
    import autoglmm.datasets as datasets

    real = datasets.simulate_lsa

    def small_sim(seed=0, family="gaussian", **kw):
        return real(seed=seed, family=family, n_schools=40, n_items=30)

    monkeypatch.setattr(datasets, "simulate_lsa", small_sim)
    out = tmp_path / "demo"
    res = run("demo", "--out", out, "--seed", 3, "--no-progress", "--ntree", 20)
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file()
    assert "Recovered model vs the true model" in res.output
    assert "true predictors found" in res.output and "true slopes found" in res.output
    assert "slope variance" in res.output and "Slope rows compare variances" in res.output


@pytest.mark.slow
def test_demo_full_scale(tmp_path):
    """The README's first command at full scale: recovery figures and time (slow)."""
    out = tmp_path / "demo"
    res = run("demo", "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    found = result["optimal_terms"]
    assert {"ses"} <= set(found["fixed"]) and len(found["random_slopes"]) == 2
    assert "true predictors found" in res.output


# --- output paths are checked before any work -------------------------------------------------


def _no_work(*args, **kwargs):
    raise AssertionError("the search or the forest started before the output path was checked")


@pytest.mark.parametrize("kind", ["file", "under a file"])
def test_search_out_is_checked_before_any_work(kind, small, tmp_path, monkeypatch):
    import autoglmm.selection

    monkeypatch.setattr(autoglmm.selection, "search", _no_work)
    data, ranking = small
    path = tmp_path / "good.csv"
    data.to_csv(path, index=False)
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    out = blocker if kind == "file" else blocker / "sub" / "out"
    res = run("search", path, "-y", "math", "-g", "school", "--out", out)
    assert res.exit_code == 2, res.output
    line = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(line) == 1 and line[0].startswith("error: ") and "is a file" in line[0]
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("kind", ["missing folder", "a folder"])
def test_rank_out_is_checked_before_any_work(kind, small, tmp_path, monkeypatch):
    import autoglmm.ranking

    monkeypatch.setattr(autoglmm.ranking, "rank_predictors", _no_work)
    data, _ = small
    path = tmp_path / "good.csv"
    data.to_csv(path, index=False)
    out = tmp_path / "missing" / "rank.csv" if kind == "missing folder" else tmp_path
    res = run("rank", path, "-y", "math", "-g", "school", "--out", out)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert ("does not exist" if kind == "missing folder" else "is a folder") in lines[0]


# --- ranking files as spreadsheets and editors save them ---------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le-bom", "utf-32"])
def test_ranking_file_with_a_bom_or_in_utf16_is_read(encoding, small, tmp_path):
    data, ranking = small
    path = tmp_path / "good.csv"
    data.to_csv(path, index=False)
    rank_file = tmp_path / "ranking.txt"
    text = "\r\n".join(ranking) + "\r\n"
    if encoding == "utf-16-le-bom":
        rank_file.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    else:
        rank_file.write_text(text, encoding=encoding, newline="")
    out = tmp_path / "out"
    res = run("search", path, "-y", "math", "-g", "school", "--ranking", rank_file,
              "--out", out, "--no-progress")  # fmt: skip
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    assert [r["predictor"] for r in result["ranking"]] == ranking  # no '\ufeffses'


@pytest.mark.parametrize(
    "content", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "ses\nBSBM17A\xe9\n".encode("latin-1")]
)
def test_binary_or_undecodable_ranking_file_is_one_line(content, small, tmp_path):
    data, _ = small
    path = tmp_path / "good.csv"
    data.to_csv(path, index=False)
    rank_file = tmp_path / "ranking.txt"
    rank_file.write_bytes(content)
    res = run("search", path, "-y", "math", "-g", "school", "--ranking", rank_file,
              "--out", tmp_path / "out")  # fmt: skip
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "is not a text file" in lines[0] and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


# --- input checks: one rule, readable messages, data errors exit 1 -----------------------------


def test_more_bad_inputs_are_data_errors(small, tmp_path):
    data, ranking = small
    cases = []
    inf_group = data.astype({"school": float})
    inf_group.loc[5, "school"] = np.inf
    cases.append(("inf group", inf_group, [], "group column 'school' has 1 infinite"))
    const = data.assign(school=1)
    cases.append(("constant group", const, [], "has a single value (1);"))
    flat = data.assign(flat_a=1.0, flat_b=2.0)
    cases.append(("constants only", flat, ["--predictors", "flat_a,flat_b"], "constant"))
    empty_rank = tmp_path / "empty.txt"
    empty_rank.write_text("\n\n")
    cases.append(("empty ranking file", data, ["--ranking", empty_rank], "ranking is empty"))
    dup_rank = tmp_path / "dup.txt"
    dup_rank.write_text("ses\nses\n")
    cases.append(("duplicate in ranking file", data, ["--ranking", dup_rank], "twice"))
    for name, frame, extra, words in cases:
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        frame.to_csv(path, index=False)
        res = run("search", path, "-y", "math", "-g", "school", "--no-progress", *extra)
        assert res.exit_code == 1, (name, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and words in lines[0], (name, lines)
        assert "np.int64" not in lines[0] and "np.float64" not in lines[0]
        if name == "constants only":  # names the real cause, not max_missing
            assert "max_missing" not in lines[0] and "constant columns" in lines[0]


def test_fit_and_search_code_a_two_level_text_outcome_alike(small, tmp_path):
    """One rule (as R's glmer): 'no'/'yes' is 0/1 with the second level as 1, in both."""
    import autoglmm

    data, ranking = small
    text = data.assign(passed=np.where(data["math"] > data["math"].median(), "yes", "no"))
    text = text.drop(columns="math")
    coded = text.assign(passed=(text["passed"] == "yes").astype(int))
    kw = dict(family="binomial", ranking=ranking[:2], progress=False)
    a = autoglmm.search(text, "passed", "school", **kw)
    b = autoglmm.search(coded, "passed", "school", **kw)
    assert a.optimal.loglik == pytest.approx(b.optimal.loglik, abs=1e-8)
    f = autoglmm.fit("passed ~ ses + (1 | school)", text, family="binomial")
    g = autoglmm.fit("passed ~ ses + (1 | school)", coded, family="binomial")
    assert f.loglik == pytest.approx(g.loglik, abs=1e-8)
    three = text.assign(passed=np.where(text["ses"] > 0.5, "maybe", text["passed"]))
    for call in (
        lambda: autoglmm.search(three, "passed", "school", **kw),
        lambda: autoglmm.fit("passed ~ ses + (1 | school)", three, family="binomial"),
    ):
        with pytest.raises(autoglmm.DataError, match="outcome 'passed' is not numeric"):
            call()


def test_piped_output_prints_a_line_per_stage_and_each_table_as_it_ends(small, tmp_path):
    data, ranking = small
    path = tmp_path / "good.csv"
    data.to_csv(path, index=False)
    rank_file = tmp_path / "ranking.txt"
    rank_file.write_text("\n".join(ranking))
    res = run("search", path, "-y", "math", "-g", "school", "--ranking", rank_file)
    assert res.exit_code == 0, res.output
    out = res.output
    marks = ["[sample] ", "[null model] ICC = ", "[ranking] 5 predictors ranked in the order given",
             "[fixed effects] ", "Forward selection of fixed effects", "[interactions] ",
             "Interactions among the essential predictors", "[random slopes] ", "Random slopes",
             "[R²] ", "Table 1. Predictors in ranking order", "y_ij = "]  # fmt: skip
    where = [out.index(m) for m in marks]
    assert where == sorted(where), out  # each stage's table right after its line
    assert out.count("Forward selection of fixed effects") == 1  # not repeated at the end
    assert "━" not in out and "\r" not in out  # no progress bars in a pipe
