"""Likelihood-ratio tests between nested fits, with the guards that keep them valid.

``lrt(small, big)`` refuses comparisons whose p-value would be meaningless (as
MixedModels.jl's ``likelihoodratiotest`` does): REML fits (their likelihoods depend on the
fixed effects), fits on different rows, fits with different ``nagq`` (different
approximations of the likelihood), fixed effects whose column spaces do not nest, random
terms that are not nested, and ``mixture=True`` when the df is not ``q + 1``.

With ``mixture=True`` the p-value is the 50:50 mixture of chi-square distributions used when
the larger model adds one random slope correlated with the ``q`` random effects already in
the smaller model (SPEC section 2 step 6; Stram & Lee 1994, Snijders & Bosker):
``p = 0.5 P(chi2_q > LR) + 0.5 P(chi2_{q+1} > LR)``.

Example
-------
>>> res = lrt(null_fit, slope_fit, mixture=True)  # doctest: +SKIP
>>> res.chisq, res.df, res.p  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from autoglmm.errors import UsageError
from autoglmm.result import Fit


@dataclass(frozen=True, repr=False)
class LRTResult:
    """LR statistic ``chisq = max(0, 2 (loglik_big - loglik_small))``, its df and p-value."""

    chisq: float
    df: int
    p: float
    mixture: bool
    loglik_small: float
    loglik_big: float
    df_small: int
    df_big: int

    def __repr__(self) -> str:
        """The comparison as a small table, so ``print(lrt(a, b))`` shows it in a script."""
        from autoglmm.report.table_model import format_p

        kind = (
            f"50:50 mixture of chi2({self.df - 1}) and chi2({self.df})"
            if self.mixture
            else f"chi2({self.df})"
        )
        rows = [
            ("Model", "df", "logLik", "Chisq", "Df", "p"),
            ("small", str(self.df_small), f"{self.loglik_small:.2f}", "", "", ""),
            ("big", str(self.df_big), f"{self.loglik_big:.2f}", f"{self.chisq:.2f}",
             str(self.df), format_p(self.p)),
        ]  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = [f"Likelihood-ratio test (p from the {kind} distribution)"]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    __str__ = __repr__

    def to_dict(self) -> dict:
        return {
            "chisq": self.chisq,
            "df": self.df,
            "p": self.p,
            "mixture": self.mixture,
            "loglik_small": self.loglik_small,
            "loglik_big": self.loglik_big,
            "df_small": self.df_small,
            "df_big": self.df_big,
        }


def mixture_pvalue(chisq: float, q: int) -> float:
    """``0.5 P(chi2_q > chisq) + 0.5 P(chi2_{q+1} > chisq)``; chi2_0 is a point mass at 0."""
    low = float(special.chdtrc(q, chisq)) if q > 0 else float(chisq <= 0)
    return 0.5 * low + 0.5 * float(special.chdtrc(q + 1, chisq))


def columns_nested(X_small: np.ndarray, X_big: np.ndarray, tol: float = 1e-7) -> bool:
    """True when every column of ``X_small`` lies in the column space of ``X_big``.

    The test of MixedModels.jl's ``_isnested``: nesting is a property of column spaces, not
    of names (``x`` is nested in ``C(x)``; ``z`` with the same name but other values is
    not). A column counts as inside when its residual after projection on ``X_big`` is
    below ``tol`` times its norm (the rank tolerance used for the model matrix).
    """
    if X_small.shape[0] != X_big.shape[0]:
        return False
    Q, _ = np.linalg.qr(X_big)
    resid = X_small - Q @ (Q.T @ X_small)
    resid = resid - Q @ (Q.T @ resid)  # re-orthogonalise
    norms = np.linalg.norm(X_small, axis=0)
    return bool(np.all(np.linalg.norm(resid, axis=0) <= tol * np.maximum(norms, 1e-300)))


def _check_fixed_nested(small: Fit, big: Fit) -> None:
    if small.x_matrix is not None and big.x_matrix is not None:
        if not columns_nested(small.x_matrix, big.x_matrix):
            raise UsageError(
                "fixed effects are not nested: the column space of the first model's fixed "
                "effects is not inside the second's; the larger model must contain the smaller"
            )
        return
    missing_fixed = [t for t in small.fixed_terms if t not in big.fixed_terms]
    if missing_fixed:
        raise UsageError(
            f"fixed effects are not nested: {', '.join(missing_fixed)} missing from the larger "
            "model; the larger model must contain every term of the smaller one"
        )


def _check_comparable(small: Fit, big: Fit) -> None:
    if small.reml or big.reml:
        raise UsageError("likelihood-ratio tests need ML fits; refit both models with reml=False")
    if small.family != big.family or small.link != big.link:
        raise UsageError(
            f"cannot compare a {small.family}/{small.link} fit with a {big.family}/{big.link} "
            "fit; use the same family and link"
        )
    if small.nobs != big.nobs or small.row_hash != big.row_hash:
        raise UsageError(
            f"the fits use different rows ({small.nobs} vs {big.nobs} observations or different "
            "responses); fit both models on the same analysis sample"
        )
    if small.nagq != big.nagq:
        raise UsageError(
            f"the fits use different quadrature (nagq {small.nagq} vs {big.nagq}), so their "
            "log-likelihoods are different approximations; refit both with the same nagq"
        )
    if small.group != big.group:
        raise UsageError(
            f"the fits group by different factors ({small.group} vs {big.group}); "
            "use the same grouping factor"
        )
    _check_fixed_nested(small, big)
    big_re = big.re_names[big.group]
    missing_re = [t for t in small.re_names[small.group] if t not in big_re]
    if missing_re:
        raise UsageError(
            f"random effects are not nested: {', '.join(missing_re)} missing from the larger "
            "model; the larger model must contain every random term of the smaller one"
        )
    if big.df <= small.df:
        raise UsageError(
            f"the second model must have more parameters than the first ({big.df} <= "
            f"{small.df}); pass the smaller model first"
        )


def lrt(small: Fit, big: Fit, mixture: bool = False) -> LRTResult:
    """Likelihood-ratio test of ``small`` nested in ``big`` (both ML fits on the same rows).

    ``mixture=True``: the chi-square mixture for one added correlated random slope, with
    ``q`` = the number of random effects per group in ``small``. Raises
    :class:`UsageError` when the comparison is invalid.
    """
    _check_comparable(small, big)
    chisq = max(0.0, 2.0 * (big.loglik - small.loglik))
    df = int(big.df - small.df)
    if mixture:
        q = small.n_re
        if df != q + 1:
            raise UsageError(
                f"mixture=True is for one added random slope correlated with the {q} random "
                f"effect(s) of the smaller model (df = {q + 1}), but the models differ by {df} "
                "parameters; use mixture=False"
            )
        p = mixture_pvalue(chisq, q)
    else:
        p = float(special.chdtrc(df, chisq))
    return LRTResult(
        chisq=float(chisq),
        df=df,
        p=p,
        mixture=bool(mixture),
        loglik_small=float(small.loglik),
        loglik_big=float(big.loglik),
        df_small=int(small.df),
        df_big=int(big.df),
    )
