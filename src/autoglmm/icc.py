"""Intraclass correlation of the null model ``y ~ 1 + (1 | g)`` for every family (SPEC 2.2).

The ICC compares the between-group variance ``tau2`` with a level-1 variance on the
same (latent or link) scale:

- gaussian: ``tau2 / (tau2 + sigma2)``;
- binomial, logit link: ``tau2 / (tau2 + pi^2 / 3)`` (the variance of the standard
  logistic distribution, the latent-variable formulation);
- binomial, probit link: ``tau2 / (tau2 + 1)``;
- poisson, log link: ``tau2 / (tau2 + ln(1 + 1 / lambda))`` with
  ``lambda = exp(beta0 + tau2 / 2)``, the lognormal approximation of the level-1
  variance on the log scale (Nakagawa, Johnson & Schielzeth 2017).

Pure functions of the estimates: no fitting here.
"""

from __future__ import annotations

import math

from autoglmm.errors import DataError, UsageError

_DEFAULT_LINK = {"gaussian": "identity", "binomial": "logit", "poisson": "log"}


def level1_variance(
    family: str, link: str | None = None, *, sigma2: float | None = None,
    tau2: float | None = None, beta0: float | None = None,
) -> float:  # fmt: skip
    """The level-1 variance on the scale of the random effects, per family and link.

    Example
    -------
    >>> round(level1_variance("binomial"), 6)
    3.289868
    """
    if family not in _DEFAULT_LINK:
        raise UsageError(f"unknown family {family!r}; use 'gaussian', 'binomial' or 'poisson'")
    link = link or _DEFAULT_LINK[family]
    if family == "gaussian" and link == "identity":
        if sigma2 is None:
            raise UsageError("the gaussian ICC needs sigma2, the residual variance")
        return float(sigma2)
    if family == "binomial" and link == "logit":
        return math.pi**2 / 3.0
    if family == "binomial" and link == "probit":
        return 1.0
    if family == "poisson" and link == "log":
        if beta0 is None or tau2 is None:
            raise UsageError("the poisson ICC needs beta0 (the intercept) and tau2")
        lam = math.exp(beta0 + tau2 / 2.0)
        return math.log1p(1.0 / lam)
    raise UsageError(f"no ICC is defined for family {family!r} with link {link!r}")


def icc(
    family: str, tau2: float, *, link: str | None = None, sigma2: float | None = None,
    beta0: float | None = None,
) -> float:  # fmt: skip
    """ICC = tau2 / (tau2 + level-1 variance), see the module docstring for each family.

    Parameters
    ----------
    family, link : the model's family and link (default link if None).
    tau2 : between-group (random intercept) variance.
    sigma2 : residual variance (gaussian only).
    beta0 : the null model's intercept (poisson only).

    Example
    -------
    >>> round(icc("binomial", 0.5, link="probit"), 4)
    0.3333
    """
    if not math.isfinite(tau2):  # a fit on extreme values, not a wrong call
        raise DataError(
            f"the between-group variance tau2 of the null model is not finite ({tau2}); "
            "check the outcome for extreme values or missing-value codes and recode them"
        )
    if tau2 < 0:
        raise UsageError(f"tau2 must be a variance >= 0, got {tau2}")
    v1 = level1_variance(family, link, sigma2=sigma2, tau2=tau2, beta0=beta0)
    total = tau2 + v1
    return float(tau2 / total) if total > 0 else 0.0
