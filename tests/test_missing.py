"""Two-level multiple imputation: level-2 values constant within groups, seeded, unbiased."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoglmm.errors import UsageError
from autoglmm.missing import impute_two_level, level2_columns


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """60 schools of 30; a school variable w, student items x (Likert 1-4) and z, outcome y."""
    rng = np.random.default_rng(11)
    n_g, size = 60, 30
    g = np.repeat(np.arange(n_g), size)
    w = rng.normal(size=n_g)
    u = 0.8 * w + rng.normal(scale=0.6, size=n_g)
    z = u[g] + rng.normal(size=len(g))  # clustered: half of its variance is between schools
    x = np.clip(np.round(2.5 + 0.7 * z + rng.normal(size=len(g))), 1, 4)
    y = 1.0 + 0.5 * z + 0.3 * x + w[g] + rng.normal(size=len(g))
    df = pd.DataFrame({"g": g, "w": w[g], "x": x, "z": z, "y": y})
    full = df.copy()
    df.loc[rng.random(len(df)) < 0.15, "z"] = np.nan
    df.loc[rng.random(len(df)) < 0.1, "x"] = np.nan
    lost = rng.choice(n_g, size=12, replace=False)
    df.loc[df["g"].isin(lost), "w"] = np.nan  # the school questionnaire is missing
    df.loc[df["g"].isin([0, 1]) & (df.index % 2 == 0), "w"] = np.nan  # partly missing
    df.attrs["full"] = full
    return df


def test_level2_detection(frame):
    assert level2_columns(frame, "g", ["w", "x", "z"]) == ["w"]


def test_level2_values_are_constant_within_groups_and_known_values_kept(frame):
    imputed = impute_two_level(frame, "g", ["w", "x", "z"], n=3, seed=5, auxiliary=["y"])
    assert len(imputed) == 3
    for data in imputed:
        assert not data[["w", "x", "z"]].isna().any().any()
        assert (data.groupby("g")["w"].nunique() == 1).all()
        seen = frame["w"].notna()
        assert np.array_equal(data.loc[seen, "w"], frame.loc[seen, "w"])
        # group 0 had half its w missing: the observed school value is copied, not drawn
        assert (data.loc[data["g"] == 0, "w"] == frame["w"][frame["g"] == 0].dropna().iloc[0]).all()
        assert set(np.unique(data["x"])) <= {1.0, 2.0, 3.0, 4.0}
    # different imputations differ where values were missing (proper MI draws)
    gap = frame["z"].isna()
    assert not np.allclose(imputed[0].loc[gap, "z"], imputed[1].loc[gap, "z"])


def test_seeded_determinism(frame):
    a = impute_two_level(frame, "g", ["w", "x", "z"], n=2, seed=7, auxiliary=["y"])
    b = impute_two_level(frame, "g", ["w", "x", "z"], n=2, seed=7, auxiliary=["y"])
    c = impute_two_level(frame, "g", ["w", "x", "z"], n=2, seed=8, auxiliary=["y"])
    for left, right in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(left, right)
    assert not a[0].equals(c[0])


def test_group_means_keep_the_between_school_association(frame):
    """With group means as auxiliaries, the imputed z keeps its school-level variance."""
    full = frame.attrs["full"]
    imputed = impute_two_level(frame, "g", ["w", "x", "z"], n=5, seed=1, auxiliary=["y"])

    def between_share(z: pd.Series) -> float:
        means = z.groupby(frame["g"]).transform("mean")
        return float(means.var() / z.var())

    truth = between_share(full["z"])
    shares = [between_share(d["z"]) for d in imputed]
    assert np.mean(shares) == pytest.approx(truth, abs=0.03)
    slopes = [np.polyfit(d["z"], d["y"], 1)[0] for d in imputed]
    assert np.mean(slopes) == pytest.approx(np.polyfit(full["z"], full["y"], 1)[0], abs=0.05)


def test_bad_count():
    with pytest.raises(UsageError, match="impute must be"):
        impute_two_level(pd.DataFrame({"g": [1]}), "g", [], n=0, seed=1)
