"""Designs of the selection study (benchmarks/selection.py): data sets with a known truth.

Every design is a :func:`autoglmm.datasets.simulate_lsa` draw (students in schools, Likert
items in correlated blocks, 18 true predictors of which two are school-level, one true
interaction, two true random slopes) with the knobs the study varies:

- family: gaussian or binomial;
- schools: 150 to 300 (about 31 students each after the small schools are dropped);
- item loadings on the block factor: 0.5-0.6, 0.6-0.7 or 0.7-0.8 (the higher, the closer
  the noise items of a block are to its true item: correlated proxies);
- school-level effects: strong (15 and 12 points per SD, tau = 30) or weak (8 and 5);
- 8 school-level noise items (no effect, not correlated with the school effect), which a
  forest with row bootstrap can use to identify schools.

Null designs keep every predictor and replace the outcome by a random intercept plus
noise (gaussian) or a Bernoulli draw from a random-intercept logit model (binomial): no
predictor matters, so every addition is false.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoglmm.datasets import simulate_lsa

N_ITEMS = 130  # 13 blocks: 12 true items besides the confidence item, as at paper scale
LOADINGS = {"low": (0.5, 0.6), "mid": (0.6, 0.7), "high": (0.7, 0.8)}
SCHOOL = {"strong": (15.0, 12.0), "weak": (8.0, 5.0)}


@dataclass(frozen=True)
class Design:
    """One simulated data set of the study."""

    name: str
    family: str
    n_schools: int
    loading: str
    school: str
    seed: int
    null: bool = False

    def simulate(self):
        """(data, truth or None): the data set, and its truth (None for a null design)."""
        sim = simulate_lsa(
            seed=self.seed, n_schools=self.n_schools, family=self.family, n_items=N_ITEMS,
            n_school_items=10, loading=LOADINGS[self.loading], school_effects=SCHOOL[self.school],
            decoy_corr=0.0,
        )  # fmt: skip
        if not self.null:
            return sim.data, sim.truth
        return null_outcome(sim.data, sim.truth.outcome, self.family, self.seed), None


def null_outcome(data, outcome: str, family: str, seed: int):
    """The data with the outcome replaced by a random intercept model without predictors."""
    rng = np.random.default_rng(10_000 + seed)
    codes, schools = np.unique(data["school"].to_numpy(), return_inverse=True)
    u = rng.normal(0.0, 30.0, len(codes))[schools]
    out = data.copy()
    if family == "gaussian":
        out[outcome] = np.round(500.0 + u + rng.normal(0.0, 50.0, len(out)), 2)
    else:
        eta = u / 25.0
        out[outcome] = (rng.random(len(out)) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    return out


def designs() -> list[Design]:
    """20 designs with a truth (10 gaussian, 10 binomial) and 4 null designs."""
    sizes = (150, 200, 250, 300, 200)
    loads = ("low", "mid", "high")
    out = []
    for family, tag in (("gaussian", "g"), ("binomial", "b")):
        for k in range(10):
            out.append(
                Design(
                    name=f"{tag}{k + 1:02d}", family=family, n_schools=sizes[k % 5],
                    loading=loads[k % 3], school="strong" if k % 2 == 0 else "weak",
                    seed=100 + k + (50 if family == "binomial" else 0),
                )
            )  # fmt: skip
    for k, (family, n) in enumerate((("gaussian", 200), ("gaussian", 250), ("binomial", 200),
                                     ("binomial", 250))):  # fmt: skip
        out.append(Design(f"null{k + 1}", family, n, loads[k % 3], "strong", 300 + k, null=True))
    return out
