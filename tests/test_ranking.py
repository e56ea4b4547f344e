"""rank_predictors and Ranking on small simulated data with a known truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from autoglmm.errors import DataError, UsageError
from autoglmm.ranking import Ranking, encode_predictors, nominal_mask, rank_predictors

TRUE = ("x_cont", "x_item", "x_cat")


def simulate(seed: int = 0, n_groups: int = 60, size: int = 25) -> pd.DataFrame:
    """Students in schools: 3 true predictors (one a string category), 2 school-level items
    tracking the school effect, 12 noise items. y = f(x) + u + e, tau2 = 1, sigma2 = 1."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    n = len(g)
    u = rng.normal(size=n_groups)
    d = {"school": g + 1, "x_cont": rng.normal(size=n), "x_item": rng.integers(1, 5, n) * 1.0}
    d["x_cat"] = rng.choice(["low", "mid", "high"], n)
    for k in range(2):
        d[f"l2_{k}"] = np.digitize(u + rng.normal(0, 0.4, n_groups), [-0.5, 0.5])[g] * 1.0
    for k in range(12):
        d[f"noise_{k:02d}"] = rng.integers(1, 5, n) * 1.0
    cat = pd.Series(d["x_cat"]).map({"low": -1.0, "mid": 0.0, "high": 1.0}).to_numpy()
    y = 1.0 * d["x_cont"] + 0.7 * d["x_item"] + 1.2 * cat + u[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, **d})


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate()


@pytest.fixture(scope="module")
def ranking(data) -> Ranking:
    return rank_predictors(data, "y", "school", ntree=200, seed=5, n_jobs=2)


def test_true_predictors_first_and_categorical_counts_once(ranking):
    assert set(ranking.names[:3]) == set(TRUE)
    assert len(ranking) == 17  # the 3-level string column is one predictor
    table = ranking.to_frame()
    assert table.loc[table.predictor == "x_cat", "categorical"].item()
    assert table["rank"].tolist() == list(range(1, 18))
    assert (table["importance"].diff().dropna() <= 0).all()
    assert (table["se"] > 0).all()
    assert table.loc[table.predictor.str.startswith("l2_"), "level2"].all()
    assert ranking.settings["mtry"] == 17 // 3 and ranking.settings["seed"] == 5


def test_ranking_is_frozen_and_exports(ranking, tmp_path):
    with pytest.raises(dataclasses.FrozenInstanceError):
        ranking.sigma2 = 0.0
    frame = ranking.to_frame()
    frame.loc[0, "predictor"] = "changed"
    assert ranking.names[0] != "changed"
    d = ranking.to_dict()
    assert [r["predictor"] for r in d["ranking"]] == ranking.names
    assert isinstance(d["ranking"][0]["rank"], int)
    path = ranking.to_csv(tmp_path / "ranking.csv")
    assert pd.read_csv(path)["predictor"].tolist() == ranking.names
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_plot_top_bars(ranking):
    fig = ranking.plot(top=5)
    ax = fig.axes[0]
    assert len(ax.patches) == 5
    assert [t.get_text() for t in ax.get_yticklabels()] == ranking.names[:5]


def test_same_seed_same_ranking_for_any_n_jobs(data):
    a = rank_predictors(data, "y", "school", ntree=60, seed=9, n_jobs=1)
    b = rank_predictors(data, "y", "school", ntree=60, seed=9, n_jobs=2)
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame())


def test_repeats_give_rank_intervals(data):
    r = rank_predictors(data, "y", "school", ntree=60, seed=2, n_repeats=3)
    t = r.to_frame()
    assert (t["rank_low"] <= t["rank_high"]).all()
    ranks = t.set_index("predictor")[["rank_low", "rank_high"]]
    # x_cont and x_cat are equally strong in truth (1.0 x sd 1 against 1.2 x sd 0.82), so
    # repeats may swap them; x_item (0.7 x sd 1.1) is third in every repeat.
    assert ranks.loc["x_cont"].tolist() in ([1, 1], [1, 2], [2, 2])
    assert ranks.loc["x_cat"].tolist() in ([1, 1], [1, 2], [2, 2])
    assert ranks.loc["x_item"].tolist() == [3, 3]


def test_progress_callback(data):
    seen = []
    rank_predictors(data, "y", "school", ntree=70, seed=1, progress=lambda *a: seen.append(a))
    assert ("trees", 70, 70) in seen
    assert any(stage == "em" for stage, _, _ in seen)


def test_bad_input(data):
    one_group = data.assign(school=1)
    with pytest.raises(DataError):
        rank_predictors(one_group, "y", "school", ntree=10)
    with pytest.raises(UsageError):
        rank_predictors(data, "y", "school", ntree=10, mtry=100)
    frame = pd.DataFrame({"a": [1.0, np.nan, 2.0], "b": ["x", "y", "x"]})
    with pytest.raises(DataError, match="'?a"):
        encode_predictors(frame, ["a", "b"], ["b"])
    codes = encode_predictors(frame.fillna(0.0), ["a", "b"], ["b"])
    np.testing.assert_array_equal(codes[:, 1], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(nominal_mask(frame, ["a", "b"]), [False, True])


def test_forest_options_presets_and_errors(data):
    from autoglmm.ranking import RANKERS

    assert set(RANKERS) == {"merf", "merf_rowlmm", "longiturf", "plain"}
    plain = rank_predictors(data, "y", "school", ntree=60, seed=3, forest_options="plain")
    assert plain.settings["forest_options"] == RANKERS["plain"]
    assert plain.n_iter == 1 and plain.G[0, 0] == 0.0  # one forest, no random effects
    opts = {"bootstrap_unit": "group", "em_start": "zero", "max_iter": 4}
    r = rank_predictors(data, "y", "school", ntree=60, seed=3, forest_options=opts)
    assert r.settings["forest_options"] == opts and r.n_iter <= 4
    with pytest.raises(UsageError, match="unknown ranker"):
        rank_predictors(data, "y", "school", ntree=10, forest_options="nope")
    with pytest.raises(UsageError, match="n_estimators"):
        rank_predictors(data, "y", "school", ntree=10, forest_options={"n_estimators": 5})
    with pytest.raises(UsageError, match="bootstrap_unit"):
        rank_predictors(data, "y", "school", ntree=10, forest_options={"bootstrap_unit": "x"})


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_demo_data_school_level_truth(family):
    """The demo's data at full size: the true school-level items rank in the top 12, the
    school-level noise items (no effect, no link to the school effect) take at most one
    of the top 18 places, and at most 2 true student-level items fall below rank 24."""
    from autoglmm.datasets import simulate_lsa

    sim = simulate_lsa(seed=1, family=family)
    t = sim.truth
    r = rank_predictors(
        sim.data, t.outcome, t.group, family=family, ntree=300, seed=1, forest_options="merf"
    )
    pos = {n: i + 1 for i, n in enumerate(r.names)}
    assert max(pos[c] for c in t.level2) <= 12
    school = [c for c in sim.data.columns if c.startswith("sch_")]
    noise = [c for c in school if c not in t.fixed and c not in t.decoys]
    assert sum(pos[c] <= 18 for c in noise) <= 1
    level1 = [c for c in t.fixed if c not in t.level2]
    assert sum(pos[c] > 24 for c in level1) <= 2
