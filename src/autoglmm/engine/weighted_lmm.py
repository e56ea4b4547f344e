"""Linear mixed models by pseudo-maximum likelihood with weights at two levels.

With level-1 weights ``w_{i|j}`` (conditional on the group) and level-2 weights ``w_j``
(see :mod:`autoglmm.engine.weights`), the pseudo-log-likelihood of a gaussian model is
exact (no approximation) and has the same algebra as the unweighted one:

    -2 l_w = sum_j w_j log|M_j| + N_w log(2 pi sigma2) + r2(beta, theta) / sigma2,

``M_j = Lambda' Z_j'W_j Z_j Lambda + I`` with ``W_j = diag(w_{i|j})``,
``N_w = sum_j w_j sum_i w_{i|j}`` and ``r2`` the penalised residual sum of squares
``sum_j w_j min_u (|y_j - X_j beta - Z_j Lambda u|^2_{W_j} + |u|^2)``. ``r2`` is quadratic
in beta and sigma2 enters only as above, so both are still profiled out exactly
(``sigma2 = r2 / N_w``, beta by weighted generalised least squares) and the objective
is a pure function of theta over per-group statistics computed once:
``Z_j'W_jZ_j, Z_j'W_jX_j, Z_j'W_jy_j`` (and ``X_j'W_jX_j, X_j'W_jy_j, y_j'W_jy_j`` for the
per-group scores of the sandwich). The level-2 weights only multiply each group's
contribution inside the kernel. This is the likelihood WeMix's ``mix()`` maximises
(its ``analyticSolve``: ``2 lndetLz + nx log(2 pi sigma^2) + discrep / sigma^2``).

With all weights equal to 1 the objective is lme4's ML deviance exactly. REML has no
accepted pseudo-likelihood version and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoglmm.engine.bfgs import CompiledObjective
from autoglmm.engine.design import GroupedDesign, theta_positions
from autoglmm.engine.estimates import EngineResult
from autoglmm.engine.lmm import (
    _group_crossproducts,
    fitted_values,
    gaussian_result,
    optimize_theta,
    solution_at,
    theta_objective,
)
from autoglmm.engine.optimize import single_threaded_blas
from autoglmm.engine.small_linalg import triangular_inverse
from autoglmm.engine.weights import SamplingWeights


@dataclass(frozen=True, eq=False)
class WeightedWorkspace:
    """Per-group statistics with conditional level-1 weights, and the level-2 weights.

    The statistics are those of ``e0 = y - offset - X beta0`` (``beta0`` the weighted least
    squares fit), which keeps ``r2`` from cancelling large numbers when y has a large mean.
    The per-group ``XtX, Xty, yty`` serve the sandwich's scores; the objective needs only
    their sums weighted by ``w2`` (``*_w``), which do not depend on theta.
    """

    ZtZ: np.ndarray  # (m, q, q)
    ZtX: np.ndarray  # (m, q, p)
    Zty: np.ndarray  # (m, q)
    XtX: np.ndarray  # (m, p, p)
    Xty: np.ndarray  # (m, p)
    yty: np.ndarray  # (m,)
    XtX_w: np.ndarray  # (p, p) sum_j w_j XtX_j
    Xty_w: np.ndarray  # (p,)
    yty_w: float
    nw: np.ndarray  # (m,) sum_i w_{i|j}
    w2: np.ndarray  # (m,) level-2 weights
    n_weighted: float  # N_w
    re_blocks: tuple[int, ...]
    rows: np.ndarray
    cols: np.ndarray
    beta0: np.ndarray

    @property
    def m(self) -> int:
        return self.ZtZ.shape[0]

    @property
    def q(self) -> int:
        return self.ZtZ.shape[1]

    @property
    def p(self) -> int:
        return self.XtX.shape[1]

    def objective(self) -> CompiledObjective:
        """The unweighted engine's compiled objective with the level-2 weights ``w2`` and
        the weighted sums: the pseudo-deviance and its gradient in theta."""
        return theta_objective(
            self.ZtZ, self.ZtX, self.Zty, self.XtX_w, self.Xty_w, self.w2, self.rows,
            self.cols, yty=self.yty_w, n=self.n_weighted, p=self.p, sum_log_w=0.0, reml=False,
        )  # fmt: skip


def make_weighted_workspace(design: GroupedDesign, sw: SamplingWeights) -> WeightedWorkspace:
    """Reduce the design to per-group weighted statistics, once per model.

    The same one-pass kernel as the unweighted workspace, with the level-1 weights; a
    second pass with X in Z's place gives the per-group ``X'WX`` and ``X'We``.
    """
    w1 = np.ascontiguousarray(sw.level1, dtype=float)
    wt = sw.total(design.group)
    X = design.X
    y = design.y - design.offset
    s = np.sqrt(wt)
    beta0 = np.linalg.lstsq(X * s[:, None], y * s, rcond=None)[0]
    e0 = np.ascontiguousarray(y - X @ beta0)
    ZtZ, ZtX, Zty = _group_crossproducts(X, design.Z, e0, w1, design.starts)
    XtX, _, Xty = _group_crossproducts(X, X, e0, w1, design.starts)
    yty = np.add.reduceat(w1 * e0 * e0, design.starts[:-1])
    rows, cols = theta_positions(design.re_blocks)
    nw = np.add.reduceat(w1, design.starts[:-1])
    w2 = np.ascontiguousarray(sw.level2, dtype=float)
    return WeightedWorkspace(
        ZtZ=ZtZ,
        ZtX=ZtX,
        Zty=Zty,
        XtX=XtX,
        Xty=Xty,
        yty=yty,
        XtX_w=np.einsum("j,jkl->kl", w2, XtX),
        Xty_w=w2 @ Xty,
        yty_w=float(w2 @ yty),
        nw=nw,
        w2=w2,
        n_weighted=float(np.dot(w2, nw)),
        re_blocks=design.re_blocks,
        rows=rows,
        cols=cols,
        beta0=beta0,
    )


def deviance_and_gradient(theta: np.ndarray, ws: WeightedWorkspace) -> tuple[float, np.ndarray]:
    """Profiled pseudo-deviance (-2 l_w at the profiled beta, sigma2) and its gradient."""
    dev, grad = ws.objective()(np.ascontiguousarray(theta, dtype=float))
    return float(dev), grad


def deviance(theta: np.ndarray, ws: WeightedWorkspace) -> float:
    """Profiled pseudo-deviance at ``theta`` (``inf`` where it cannot be evaluated)."""
    return deviance_and_gradient(theta, ws)[0]


@dataclass(frozen=True, eq=False)
class WeightedLMMEstimates:
    """Estimates at one theta, and what the sandwich needs."""

    theta: np.ndarray
    beta: np.ndarray  # on the original scale
    sigma2: float
    cov_re: np.ndarray
    u: np.ndarray  # (m, q) spherical modes
    ranef: np.ndarray  # (m, q) b_j = Lambda u_j
    vcov_model: np.ndarray  # sigma2 (RX'RX)^-1: the inverse information on beta
    deviance: float


def estimates_at(theta: np.ndarray, ws: WeightedWorkspace) -> WeightedLMMEstimates:
    """beta, sigma2, G and the modes at ``theta`` (the optimum, for a fit)."""
    s = solution_at(theta, ws.objective())
    sigma2 = s.r2 / ws.n_weighted
    rx_inv = triangular_inverse(s.RX)
    return WeightedLMMEstimates(
        theta=np.asarray(theta, dtype=float),
        beta=s.beta + ws.beta0,
        sigma2=sigma2,
        cov_re=sigma2 * s.lam @ s.lam.T,
        u=s.u,
        ranef=s.u @ s.lam.T,
        vcov_model=sigma2 * rx_inv @ rx_inv.T,
        deviance=s.deviance,
    )


def fit_weighted_lmm(
    design: GroupedDesign,
    sw: SamplingWeights,
    start: np.ndarray | None = None,
    *,
    rng_seed: int = 0,
) -> tuple[EngineResult, WeightedWorkspace, WeightedLMMEstimates]:
    """Fit a gaussian LMM by pseudo-ML; returns the engine result, workspace and estimates.

    The optimisation is the unweighted engine's (:func:`~autoglmm.engine.lmm.optimize_theta`:
    theta only, analytic gradient, the shared optimizer with its convergence checks).
    ``vcov_beta`` of the result is the model-based one; the sandwich lives in
    :mod:`autoglmm.engine.sandwich`.
    """
    with single_threaded_blas():
        ws = make_weighted_workspace(design, sw)
        theta, report = optimize_theta(ws.objective(), design.re_blocks, start, rng_seed)
        est = estimates_at(theta, ws)
    fitted = fitted_values(design, est.beta, est.ranef)
    result = gaussian_result(
        theta, est, design.p, False, report, vcov_beta=est.vcov_model, fitted=fitted
    )
    return result, ws, est


__all__ = [
    "WeightedLMMEstimates",
    "WeightedWorkspace",
    "deviance",
    "deviance_and_gradient",
    "estimates_at",
    "fit_weighted_lmm",
    "make_weighted_workspace",
]
