"""The frozen :class:`Fit`: one fitted mixed model, with names, ready to present.

A ``Fit`` is built once by :func:`autoglmm.fitting.fit` and never mutated. Text
(:meth:`Fit.summary`), HTML (:meth:`Fit._repr_html_`) and JSON (:meth:`Fit.to_dict`) are
all rendered from the same tables (:meth:`Fit.fixef_table`, :meth:`Fit.re_table`).

Example
-------
>>> m = autoglmm.fit("Reaction ~ Days + (Days | Subject)", sleep)  # doctest: +SKIP
>>> m.loglik, m.fixef["Days"], m.cov_re["Subject"]  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import special

from autoglmm.engine.estimates import ConvergenceReport

if TYPE_CHECKING:
    from autoglmm.model_frame import RowIdentity


@dataclass(frozen=True, eq=False)
class Fit:
    """One fitted two-level (G)LMM (SPEC section 1).

    ``stat`` and ``pvalues`` are Wald statistics ``fixef / se`` with a normal reference, so
    they are called z for every family (lme4 prints a "t value" without a p-value for gaussian
    models; with a p from the normal distribution the statistic is a z).
    ``row_hash`` identifies the rows and response used, for :func:`autoglmm.lrt`.
    ``theta`` and ``z_names`` allow a warm start of a related model (:meth:`start_values`).

    A Fit holds the engine's arrays and their names; the named pandas tables (``fixef``,
    ``se``, ``vcov``, ``cov_re``, ``ranef``, ``fitted``) are built on first use and kept.
    Building them for every fit cost more than a small model's optimisation, and a search
    reads them for a few models only.
    """

    formula: str
    family: str
    link: str
    nagq: int
    reml: bool
    loglik: float
    deviance: float
    df: int
    nobs: int
    ngroups: int
    group: str
    response: str
    x_names: tuple[str, ...]
    beta: np.ndarray = field(repr=False)  # (p,) fixed effects, in x_names' order
    vcov_beta: np.ndarray = field(repr=False)  # (p, p)
    z_names: tuple[str, ...]
    re_blocks: tuple[int, ...]
    cov_re_matrix: np.ndarray = field(repr=False)  # (q, q) covariance of the random effects
    sigma2: float | None
    ranef_values: np.ndarray = field(repr=False)  # (m, q) conditional modes, by group level
    group_levels: tuple | pd.Index = field(repr=False)
    converged: bool
    singular: bool
    messages: list[str]
    dropped_columns: tuple[str, ...]
    row_hash: str | RowIdentity
    theta: np.ndarray
    convergence: ConvergenceReport
    # fitted values in the input's row order, labelled by ``row_index`` (None: not kept)
    fitted_values: np.ndarray | None = field(default=None, repr=False)
    row_index: pd.Index | None = field(default=None, repr=False)
    sampling: dict[str, Any] | None = None  # sampling weights (pseudo-ML): see weighted_fit
    # the fixed-effects model matrix (rows in the design's order), for lrt's nesting check
    x_matrix: np.ndarray | None = field(default=None, repr=False)

    # --- named tables, built on first use ---------------------------------------------
    @cached_property
    def _x_index(self) -> pd.Index:
        return pd.Index(list(self.x_names))

    @cached_property
    def _z_index(self) -> pd.Index:
        return pd.Index(list(self.z_names))

    @cached_property
    def fixef(self) -> pd.Series:
        """Fixed-effect estimates, named by model-matrix column."""
        return pd.Series(self.beta, index=self._x_index, name="estimate", copy=False)

    @cached_property
    def se(self) -> pd.Series:
        """Standard errors of the fixed effects (from :attr:`vcov`)."""
        values = np.sqrt(np.diag(self.vcov_beta))
        return pd.Series(values, index=self._x_index, name="se", copy=False)

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects."""
        idx = self._x_index
        return pd.DataFrame(self.vcov_beta, index=idx, columns=idx, copy=False)

    @cached_property
    def cov_re(self) -> dict[str, pd.DataFrame]:
        """Covariance matrix of the random effects, per grouping factor."""
        idx = self._z_index
        return {self.group: pd.DataFrame(self.cov_re_matrix, index=idx, columns=idx, copy=False)}

    @cached_property
    def re_names(self) -> dict[str, list[str]]:
        """Random-effect names (Z's columns), per grouping factor."""
        return {self.group: list(self.z_names)}

    @cached_property
    def ranef(self) -> pd.DataFrame:
        """Conditional modes of the random effects, one row per group level."""
        levels = self.group_levels
        levels = levels if isinstance(levels, pd.Index) else pd.Index(levels)
        return pd.DataFrame(
            self.ranef_values, index=levels.rename(self.group), columns=self._z_index, copy=False
        )

    @cached_property
    def fitted(self) -> pd.Series | None:
        """Conditional fitted values on the response scale (lme4's ``fitted()``), by input row."""
        if self.fitted_values is None:
            return None
        return pd.Series(self.fitted_values, index=self.row_index, name="fitted", copy=False)

    # --- derived statistics -----------------------------------------------------------
    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + self.df * math.log(self.nobs)

    @property
    def stat(self) -> pd.Series:
        """Wald statistics fixef / se: z values, referred to the standard normal."""
        return (self.fixef / self.se).rename("stat")

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided Wald p-values with a standard normal reference."""
        p = 2.0 * special.ndtr(-np.abs(self.stat.to_numpy()))
        return pd.Series(p, index=self.fixef.index, name="p")

    @property
    def fixed_terms(self) -> tuple[str, ...]:
        return tuple(self.fixef.index)

    @property
    def n_re(self) -> int:
        """Number of random effects per group (q), e.g. 2 for (1 + x | g)."""
        return sum(len(v) for v in self.re_names.values())

    def start_values(self) -> dict[str, Any]:
        """Warm start for a related model: theta with its random-effect names, and beta."""
        return {
            "theta": self.theta.copy(),
            "z_names": tuple(self.re_names[self.group]),
            "re_blocks": self.re_blocks,
            "beta": self.fixef.to_dict(),
        }

    # --- tables -----------------------------------------------------------------------
    def fixef_table(self) -> pd.DataFrame:
        """Estimate, standard error, Wald statistic and p-value of each fixed effect."""
        return pd.DataFrame(
            {"estimate": self.fixef, "se": self.se, "stat": self.stat, "p": self.pvalues}
        )

    def re_table(self) -> pd.DataFrame:
        """Variance, standard deviation and correlations of the random effects (+ residual)."""
        rows = []
        for grp, cov in self.cov_re.items():
            sd = np.sqrt(np.clip(np.diag(cov.to_numpy()), 0, None))
            for i, name in enumerate(cov.index):
                corr = [
                    cov.iat[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                    for j in range(i)
                ]
                rows.append(
                    {"group": grp, "name": name, "variance": cov.iat[i, i], "sd": sd[i],
                     "corr": corr}
                )  # fmt: skip
        if self.sigma2 is not None:
            rows.append(
                {"group": "Residual", "name": "", "variance": self.sigma2,
                 "sd": math.sqrt(self.sigma2), "corr": []}
            )  # fmt: skip
        return pd.DataFrame(rows)

    # --- presentation -------------------------------------------------------------------
    def _title(self) -> str:
        crit = "REML" if self.reml else "maximum likelihood"
        if self.sampling is not None:  # sampling weights: the criterion is a pseudo-likelihood
            crit = "pseudo-maximum likelihood with sampling weights"
        if self.family == "gaussian":
            return f"Linear mixed model fit by {crit}"
        approx = (
            "Laplace approximation" if self.nagq == 1 else f"adaptive Gauss-Hermite ({self.nagq})"
        )
        return (
            f"Generalized linear mixed model fit by {crit} ({approx})\n"
            f" Family: {self.family} ( {self.link} )"
        )

    def summary(self) -> str:
        """Text summary in lme4's layout (criteria, random effects, fixed effects, messages)."""
        lines = [self._title(), f"Formula: {self.formula}", ""]
        crit = pd.DataFrame(
            [[self.aic, self.bic, self.loglik, self.deviance, self.nobs - self.df]],
            columns=["AIC", "BIC", "logLik", "deviance", "df.resid"],
        )
        lines += [crit.to_string(index=False, float_format=lambda v: f"{v:.1f}"), ""]
        lines.append("Random effects:")
        lines.append(self._re_text())
        lines.append(f"Number of obs: {self.nobs}, groups:  {self.group}, {self.ngroups}")
        lines += ["", "Fixed effects:"]
        tab = self.fixef_table()
        tab.columns = ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
        tab["Pr(>|z|)"] = tab["Pr(>|z|)"].map(_fmt_p)
        lines.append(tab.to_string(float_format=lambda v: f"{v:.4g}"))
        if self.dropped_columns:
            lines.append("dropped (rank deficient): " + ", ".join(self.dropped_columns))
        if self.messages:
            lines.append("")
            lines += [f"note: {m}" for m in self.messages]
        return "\n".join(lines)

    def _re_text(self) -> str:
        rows = []
        for rec in self.re_table().itertuples(index=False):
            corr = " ".join(f"{c:5.2f}" for c in rec.corr)
            rows.append([rec.group, rec.name, f"{rec.variance:.4g}", f"{rec.sd:.4g}", corr])
        tab = pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", "Corr"])
        tab.loc[tab["Groups"].duplicated(), "Groups"] = ""
        return tab.to_string(index=False)

    def _repr_html_(self) -> str:
        head = html.escape(self._title()).replace("\n", "<br>")
        crit = (
            f"AIC {self.aic:.1f} &middot; BIC {self.bic:.1f} &middot; logLik {self.loglik:.2f}"
            f" &middot; df {self.df} &middot; nobs {self.nobs} &middot; "
            f"groups ({html.escape(self.group)}) {self.ngroups}"
        )
        re_tab = self.re_table().assign(
            corr=lambda d: d["corr"].map(lambda c: " ".join(f"{v:.2f}" for v in c))
        )
        notes = "".join(f"<li>{html.escape(m)}</li>" for m in self.messages)
        return (
            f"<div><p><b>{head}</b><br><code>{html.escape(self.formula)}</code></p>"
            f"<p>{crit}</p><p>Random effects</p>"
            f"{re_tab.to_html(index=False, float_format=lambda v: f'{v:.4g}')}"
            f"<p>Fixed effects</p>"
            f"{self.fixef_table().to_html(float_format=lambda v: f'{v:.4g}')}"
            f"{'<ul>' + notes + '</ul>' if notes else ''}</div>"
        )

    def __repr__(self) -> str:
        return (
            f"Fit({self.formula!r}, family={self.family!r}, loglik={self.loglik:.4f}, "
            f"df={self.df}, nobs={self.nobs}, converged={self.converged}, "
            f"singular={self.singular})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become None)."""
        return {
            "formula": self.formula,
            "family": self.family,
            "link": self.link,
            "reml": self.reml,
            "nagq": self.nagq,
            "loglik": _num(self.loglik),
            "df": int(self.df),
            "aic": _num(self.aic),
            "bic": _num(self.bic),
            "deviance": _num(self.deviance),
            "fixef": {k: _num(v) for k, v in self.fixef.items()},
            "se": {k: _num(v) for k, v in self.se.items()},
            "stat": {k: _num(v) for k, v in self.stat.items()},
            "p": {k: _num(v) for k, v in self.pvalues.items()},
            "cov_re": {
                g: [[_num(v) for v in row] for row in c.to_numpy()] for g, c in self.cov_re.items()
            },
            "re_names": {g: list(v) for g, v in self.re_names.items()},
            "sigma2": _num(self.sigma2) if self.sigma2 is not None else None,
            "converged": bool(self.converged),
            "singular": bool(self.singular),
            "messages": list(self.messages),
            "nobs": int(self.nobs),
            "ngroups": int(self.ngroups),
            "dropped_columns": list(self.dropped_columns),
            "convergence": {
                "optimizer": self.convergence.optimizer,
                "status": self.convergence.optimizer_status,
                "n_evaluations": int(self.convergence.n_evaluations),
                "restarted": bool(self.convergence.restarted),
                "scaled_gradient": _num(self.convergence.scaled_gradient),
                "hessian_min_eigenvalue": _num(self.convergence.hessian_min_eigenvalue),
                "grad_tol": float(self.convergence.grad_tol),
            },
            **({"sampling_weights": self.sampling} if self.sampling is not None else {}),
        }


def _fmt_p(p: float) -> str:
    """p-values as R prints them: tiny ones as '< 2e-16' (below double precision's reach)."""
    return "< 2e-16" if p < 2e-16 else f"{p:.3g}"


def _num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None
