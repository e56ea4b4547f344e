"""A small two-level simulator with a known truth, shared by the forest tests.

Students in schools: ``n_true`` student-level predictors with real effects (Likert items
and one continuous variable), ``n_level2`` school-level noise items that are correlated with
the school effect but have no effect of their own (the trap for a plain forest), and
``n_noise`` student-level noise items. ``y = f(x) + u_school + e`` with known ``tau2`` and
``sigma2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Sim:
    data: pd.DataFrame
    true: tuple[str, ...]
    level2: tuple[str, ...]
    tau2: float
    sigma2: float


def simulate(
    seed: int = 0,
    n_groups: int = 120,
    group_size: int = 25,
    n_noise: int = 30,
    n_level2: int = 5,
    tau2: float = 1.0,
    sigma2: float = 1.0,
    level2_corr: float = 1.0,
    slope_var: float = 0.0,
    family: str = "gaussian",
) -> Sim:
    """Draw the data; the true fixed part is additive in 4 predictors.

    ``slope_var`` adds a random slope of ``t_cont``; ``family="binomial"`` draws a 0/1
    outcome from the logit of the (centred) linear predictor, ``"poisson"`` counts with log
    mean ``1 + eta / 2``; both ignore ``sigma2``.
    """
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), group_size)
    n = len(g)
    u = _exact(rng.normal(size=n_groups), tau2)
    cols: dict[str, np.ndarray] = {}
    cols["t_cont"] = rng.normal(size=n)
    for k in range(3):
        cols[f"t_item{k + 1}"] = rng.integers(1, 5, n).astype(float)
    effects = {"t_cont": 0.8, "t_item1": 0.6, "t_item2": -0.5, "t_item3": 0.4}
    for k in range(n_level2):  # school items that track the school effect
        raw = level2_corr * u / np.sqrt(tau2) + rng.normal(0.0, 0.5, n_groups)
        cols[f"l2_item{k + 1}"] = np.digitize(raw, [-1.0, 0.0, 1.0])[g].astype(float) + 1
    for k in range(n_noise):
        cols[f"noise{k + 1:02d}"] = rng.integers(1, 5, n).astype(float)
    fixed = sum(b * cols[name] for name, b in effects.items())
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
        true=tuple(effects),
        level2=tuple(f"l2_item{k + 1}" for k in range(n_level2)),
        tau2=tau2,
        sigma2=sigma2,
    )


def _exact(draws: np.ndarray, var: float) -> np.ndarray:
    """Centre and scale draws to the exact variance, so the truth is the realised value."""
    sd = draws.std()
    return (draws - draws.mean()) / sd * np.sqrt(var) if sd > 0 else draws * 0.0
