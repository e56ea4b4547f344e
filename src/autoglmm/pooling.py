"""Rubin's rules: pool estimates over plausible values or multiple imputations.

Each of M analyses (one per plausible value, or per imputation, or per pair) gives an
estimate Q_m and its sampling variance U_m. Rubin (1987) pools them as

- Q̄ = mean(Q_m); within variance Ū = mean(U_m); between variance B = var(Q_m) (ddof 1);
- total variance T = Ū + (1 + 1/M) B, so the pooled SE is sqrt(T);
- λ = (1 + 1/M) B / T, the share of the variance due to missing information;
- degrees of freedom by Barnard & Rubin (1999), which stay below the complete-data
  df ν_com: ν_old = (M − 1)/λ², ν_obs = (ν_com + 1)/(ν_com + 3) · ν_com · (1 − λ),
  ν = ν_old ν_obs / (ν_old + ν_obs);
- the fraction of missing information FMI = (r + 2/(ν + 3)) / (1 + r), r = (1 + 1/M) B / Ū;
- p from the t distribution with ν df.

The TIMSS and PISA user guides require exactly this for plausible values (TIMSS 2019 User
Guide, ch. 4; PISA Data Analysis Manual, ch. 8); mixed-model tools apply it per fixed
effect (EdSurvey ``mixed.sdf``, MLMusingR ``mixPV``). Pooling takes results, not data.

Examples
--------
>>> row = rubin([1.0, 1.2, 0.9], [0.04, 0.05, 0.045], df_com=100)
>>> round(row.estimate, 4), round(row.se, 4)
(1.0333, 0.2759)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Pooled", "barnard_rubin_df", "rubin"]


@dataclass(frozen=True)
class Pooled:
    """One pooled parameter: estimate, SE, df, t statistic, p, FMI and the variance parts."""

    estimate: float
    se: float
    df: float
    stat: float
    p: float
    fmi: float
    within: float
    between: float
    m: int

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate, "se": self.se, "df": _finite(self.df),
            "stat": _finite(self.stat), "p": _finite(self.p), "fmi": _finite(self.fmi),
            "within": self.within, "between": self.between, "m": self.m,
        }  # fmt: skip


def barnard_rubin_df(m: int, lam: float, df_com: float) -> float:
    """Barnard–Rubin (1999) small-sample degrees of freedom (inf when there is no B)."""
    nu_obs = (df_com + 1) / (df_com + 3) * df_com * (1 - lam) if math.isfinite(df_com) else math.inf
    if lam <= 0:
        return nu_obs
    nu_old = (m - 1) / lam**2
    if not math.isfinite(nu_obs):
        return nu_old
    return nu_old * nu_obs / (nu_old + nu_obs)


def rubin(estimates: Sequence[float], variances: Sequence[float], df_com: float) -> Pooled:
    """Pool one parameter over M >= 2 analyses by Rubin's rules (see the module docstring)."""
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(variances, dtype=float)
    m = len(q)
    if m < 2 or len(u) != m:
        raise ValueError("rubin() needs at least 2 estimates and one variance per estimate")
    qbar, ubar = float(q.mean()), float(u.mean())
    b = float(q.var(ddof=1))
    t = ubar + (1 + 1 / m) * b
    lam = (1 + 1 / m) * b / t if t > 0 else 0.0
    df = barnard_rubin_df(m, lam, df_com)
    r = (1 + 1 / m) * b / ubar if ubar > 0 else math.inf
    fmi = (r + 2 / (df + 3)) / (1 + r) if math.isfinite(r) else 1.0
    se = math.sqrt(t)
    stat = qbar / se if se > 0 else math.nan
    p = float(2 * stats.t.sf(abs(stat), df)) if math.isfinite(stat) else math.nan
    return Pooled(qbar, se, df, stat, p, fmi, ubar, b, m)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
