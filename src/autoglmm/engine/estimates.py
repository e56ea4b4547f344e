"""What an engine returns: the estimates of one fit and the record of its optimisation.

Both engines (``lmm.fit_lmm`` and ``glmm.fit_glmm``) return an :class:`EngineResult`;
``autoglmm.fitting.fit`` turns it into the user-facing ``Fit`` (with names and pandas).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ConvergenceReport:
    """Outcome of the optimisation and of the post-fit checks (lme4's checkConv, as data).

    converged : False if the optimizer failed, or the deviance is not finite, or lme4's
        scaled gradient ``max(pmin(|solve(chol(H), g)|, |g|))`` stayed above ``grad_tol``
        after one restart (a singular fit is exempt, as in lme4), or the Hessian over the
        covariance parameters is not positive semi-definite away from the boundary, or
        (GLMMs) PIRLS failed at the estimate (SPEC section 2, Convergence).
    singular : the optimum is on the boundary (a variance 0 or a correlation +-1).
    """

    converged: bool
    singular: bool
    optimizer: str
    optimizer_status: str
    n_evaluations: int
    restarted: bool
    scaled_gradient: float  # lme4's checkConv statistic (see converged), nan if not computed
    hessian_min_eigenvalue: float  # over the covariance parameters, nan if not computed
    grad_tol: float = 2e-3
    messages: tuple[str, ...] = ()
    optimizer_success: bool = True  # the optimizer's own flag (False also for ABNORMAL)
    evaluation_log: tuple[tuple[float, ...], ...] = field(default=(), repr=False)


@dataclass(frozen=True, eq=False)
class EngineResult:
    """Estimates of one fit, in the design's sorted row/group order.

    theta : relative covariance factor parameters (see engine.design).
    beta : fixed effects (p,), vcov_beta : (p, p) their covariance (as lme4's vcov).
    cov_re : (q, q) G, the random-effects covariance, on the response scale (sigma2 included).
    sigma2 : residual variance (gaussian); None for binomial/poisson.
    ranef : (m, q) conditional modes b_j.
    loglik : the log-likelihood (ML) or the REML criterion's log-likelihood (reml=True).
    deviance : -2 * loglik for ML fits (lme4's deviance for GLMMs: see glmm.py).
    n_params : p + n_theta (+1 for sigma2 in gaussian models).
    family, link, nagq, reml : what was fitted.
    """

    theta: np.ndarray
    beta: np.ndarray
    vcov_beta: np.ndarray
    cov_re: np.ndarray
    sigma2: float | None
    ranef: np.ndarray
    loglik: float
    deviance: float
    n_params: int
    family: str
    link: str
    nagq: int
    reml: bool
    convergence: ConvergenceReport
    fitted: np.ndarray | None = None  # (n,) conditional fitted values on the response scale
