"""Explained variance of a mixed model: Raudenbush & Bryk and Nakagawa R².

Two definitions, because researchers report both:

- **Raudenbush & Bryk** (2002): the proportional reduction of the level-1 residual variance
  σ² and of the level-2 intercept variance τ₀₀ against the null model ``y ~ 1 + (1 | g)``.
  Level 1 needs σ², so it exists for gaussian models only. This is what the paper reports.
- **Nakagawa & Schielzeth** (2013, with Johnson's 2014 extension to random slopes and
  Nakagawa, Johnson & Schielzeth's 2017 distribution-specific variances): with σ²_f the
  variance of the fixed-effects linear predictor, σ²_re the mean over rows of z'Gz and σ²_ε
  the residual variance on the link scale, marginal R² = σ²_f / (σ²_f + σ²_re + σ²_ε) and
  conditional R² = (σ²_f + σ²_re) / (σ²_f + σ²_re + σ²_ε).

σ²_ε is σ² (gaussian), π²/3 (binomial logit), 1 (binomial probit) or ln(1 + 1/λ)
(poisson log, the lognormal approximation) with λ = exp(β₀ + τ₀₀/2) of the null model, the
same quantity the ICC of SPEC section 2 uses.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "distribution_variance",
    "nakagawa",
    "r2_all",
    "raudenbush_bryk",
    "random_effects_variance",
]


def distribution_variance(
    family: str, link: str | None = None, sigma2: float | None = None, lam: float | None = None
) -> float:
    """Residual variance on the link scale (σ²_ε of Nakagawa's R² and of the ICC).

    Parameters
    ----------
    family : "gaussian", "binomial" or "poisson".
    link : binomial "logit" (default) or "probit"; ignored otherwise.
    sigma2 : residual variance of a gaussian model.
    lam : poisson mean λ = exp(β₀ + τ₀₀/2) of the null model.
    """
    if family == "gaussian":
        if sigma2 is None:
            raise ValueError("a gaussian model needs sigma2")
        return float(sigma2)
    if family == "binomial":
        return 1.0 if link == "probit" else float(np.pi**2 / 3)
    if family == "poisson":
        if lam is None or not lam > 0:
            raise ValueError("a poisson model needs lam > 0")
        return float(np.log1p(1.0 / lam))
    raise ValueError(f"unknown family {family!r}")


def random_effects_variance(G: np.ndarray, Z: np.ndarray) -> float:
    """Mean over rows of z_i' G z_i: the variance the random effects add (Johnson 2014).

    With a random intercept only (Z = ones) this is τ₀₀.
    """
    G = np.atleast_2d(np.asarray(G, dtype=float))
    Z = np.asarray(Z, dtype=float).reshape(len(Z), -1)
    return float(np.mean(np.einsum("ij,jk,ik->i", Z, G, Z)))


def nakagawa(
    fixed_pred: np.ndarray, G: np.ndarray, Z: np.ndarray, resid_var: float
) -> tuple[float, float]:
    """Marginal and conditional R² from the fixed linear predictor X·β (without offset).

    Returns
    -------
    (marginal, conditional)

    Examples
    --------
    >>> m, c = nakagawa(np.array([-1.0, 1.0]), np.array([[1.0]]), np.ones((2, 1)), 2.0)
    >>> round(m, 4), round(c, 4)
    (0.25, 0.5)
    """
    fixed_pred = np.asarray(fixed_pred, dtype=float)
    var_f = float(np.var(fixed_pred))
    if var_f <= 1e-12 * max(float(np.mean(fixed_pred**2)), 1e-300):
        var_f = 0.0  # a constant prediction (null model): rounding noise, not variance
    var_re = random_effects_variance(G, Z)
    total = var_f + var_re + float(resid_var)
    return var_f / total, (var_f + var_re) / total


def raudenbush_bryk(
    null_tau00: float, tau00: float, null_sigma2: float | None = None, sigma2: float | None = None
) -> tuple[float | None, float]:
    """Level-1 and level-2 R²: proportional reduction of σ² and τ₀₀ against the null model.

    Level 1 is ``None`` when σ² is undefined (binomial, poisson). Both can be negative, as
    in Raudenbush & Bryk, when a predictor moves variance between the levels.
    """
    level1 = None
    if null_sigma2 is not None and sigma2 is not None:
        level1 = (null_sigma2 - sigma2) / null_sigma2
    level2 = (null_tau00 - tau00) / null_tau00 if null_tau00 > 0 else None
    return level1, level2


def r2_all(
    *,
    family: str,
    fixed_pred: np.ndarray,
    G: np.ndarray,
    Z: np.ndarray,
    sigma2: float | None,
    null_tau00: float,
    null_sigma2: float | None,
    link: str | None = None,
    lam: float | None = None,
) -> dict[str, float | None]:
    """All four R² of one model: ``level1``, ``level2``, ``marginal``, ``conditional``."""
    G = np.atleast_2d(np.asarray(G, dtype=float))
    level1, level2 = raudenbush_bryk(null_tau00, float(G[0, 0]), null_sigma2, sigma2)
    resid = distribution_variance(family, link, sigma2, lam)
    marginal, conditional = nakagawa(fixed_pred, G, Z, resid)
    return {"level1": level1, "level2": level2, "marginal": marginal, "conditional": conditional}
