"""A small two-level simulator with a known truth, shared by the forest tests.

Students in schools. ``y = f(x) + w(s) + u_school + e`` with known ``tau2`` and ``sigma2``:

- level 1, true: ``t_cont`` (continuous) and three Likert items ``t_item1..3``;
- level 1, correlated proxies: ``p_item1`` and ``p_item2`` share a latent trait with
  ``t_item1`` and ``t_item2`` (loading ``proxy_loading``) but have no effect of their own;
- level 2, true: ``s_strong`` and ``s_weak`` (standardized, one value per school), with
  effects ``level2_effects``;
- level 2, noise: ``n_level2`` school-level items with no effect, continuous, so each one
  identifies the schools (the trap for a row bootstrap);
- level 2, decoys (``n_decoys``, default 0): school items that track the school effect
  ``u`` (correlation ``decoy_corr``); they predict the school mean, though not in the model;
- ``n_noise`` student-level noise items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Sim:
    data: pd.DataFrame
    level1: tuple[str, ...]
    level2: tuple[str, ...]
    level2_noise: tuple[str, ...]
    proxies: tuple[str, ...]
    decoys: tuple[str, ...]
    tau2: float
    sigma2: float

    @property
    def true(self) -> tuple[str, ...]:
        return self.level1 + self.level2


def simulate(
    seed: int = 0,
    n_groups: int = 150,
    group_size: int = 25,
    n_noise: int = 30,
    n_level2: int = 5,
    tau2: float = 1.0,
    sigma2: float = 1.0,
    level2_effects: tuple[float, float] = (0.6, 0.35),
    proxy_loading: float = 0.7,
    n_decoys: int = 0,
    decoy_corr: float = 0.6,
    slope_var: float = 0.0,
    family: str = "gaussian",
) -> Sim:
    """Draw the data. ``slope_var`` adds a random slope of ``t_cont``;
    ``family="binomial"`` draws a 0/1 outcome from the logit of the (centred) linear
    predictor, ``"poisson"`` counts with log mean ``1 + eta / 2``; both ignore ``sigma2``.
    """
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), group_size)
    n = len(g)
    u = _exact(rng.normal(size=n_groups), tau2)
    cols: dict[str, np.ndarray] = {"t_cont": rng.normal(size=n)}
    latent = rng.normal(size=(n, 2))
    for k in range(3):
        raw = latent[:, k] if k < 2 else rng.normal(size=n)
        cols[f"t_item{k + 1}"] = _likert(proxy_loading * raw + _unique(rng, n, proxy_loading))
    for k in range(2):
        cols[f"p_item{k + 1}"] = _likert(
            proxy_loading * latent[:, k] + _unique(rng, n, proxy_loading)
        )
    effects = {"t_cont": 0.8, "t_item1": 0.6, "t_item2": -0.5, "t_item3": 0.4}
    school = {"s_strong": _exact(rng.normal(size=n_groups), 1.0)}
    school["s_weak"] = _exact(rng.normal(size=n_groups), 1.0)
    l2_effects = dict(zip(school, level2_effects, strict=True))
    for k in range(n_level2):
        school[f"l2_noise{k + 1}"] = np.round(rng.normal(size=n_groups), 3)
    for k in range(n_decoys):
        raw = decoy_corr * u / np.sqrt(tau2) + np.sqrt(1 - decoy_corr**2) * rng.normal(
            size=n_groups
        )
        school[f"l2_decoy{k + 1}"] = np.round(raw, 3)
    for name, values in school.items():
        cols[name] = values[g]
    for k in range(n_noise):
        cols[f"noise{k + 1:02d}"] = rng.integers(1, 5, n).astype(float)
    fixed = sum(b * cols[name] for name, b in effects.items())
    fixed = fixed + sum(b * cols[name] for name, b in l2_effects.items())
    v = _exact(rng.normal(size=n_groups), slope_var)  # random slope of t_cont
    eta = fixed + u[g] + v[g] * cols["t_cont"]
    if family == "binomial":
        eta = eta - np.mean(fixed)
        y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    elif family == "poisson":
        y = rng.poisson(np.exp(0.5 * (eta - np.mean(fixed)) + 1.0)).astype(float)
    else:
        y = 2.0 + eta + rng.normal(0.0, np.sqrt(sigma2), n)
    data = pd.DataFrame({"y": y, "school": g + 100, **cols})
    return Sim(
        data=data,
        level1=tuple(effects),
        level2=tuple(l2_effects),
        level2_noise=tuple(f"l2_noise{k + 1}" for k in range(n_level2)),
        proxies=("p_item1", "p_item2"),
        decoys=tuple(f"l2_decoy{k + 1}" for k in range(n_decoys)),
        tau2=tau2,
        sigma2=sigma2,
    )


def _likert(raw: np.ndarray) -> np.ndarray:
    """A 1-4 item from a standard normal trait (cuts at -1, 0, 1)."""
    return np.digitize(raw, [-0.8, 0.0, 0.8]).astype(float) + 1.0


def _unique(rng, n: int, loading: float) -> np.ndarray:
    return np.sqrt(1.0 - loading**2) * rng.normal(size=n)


def _exact(draws: np.ndarray, var: float) -> np.ndarray:
    """Centre and scale draws to the exact variance, so the truth is the realised value."""
    sd = draws.std()
    return (draws - draws.mean()) / sd * np.sqrt(var) if sd > 0 else draws * 0.0
