"""``fit()``: the orchestrator, read like lme4's ``lmer()``.

parse formula -> build the grouped design -> run the engine (LMM or GLMM) -> wrap the
engine's arrays into the named, frozen :class:`~autoglmm.result.Fit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoglmm.engine.design import GroupedDesign, identity_order, theta_start
from autoglmm.engine.estimates import EngineResult
from autoglmm.engine.optimize import single_threaded_blas
from autoglmm.errors import UsageError
from autoglmm.formula import parse_formula
from autoglmm.model_frame import ModelFrame, RowIdentity, build_model_frame
from autoglmm.result import Fit

FAMILIES = {"gaussian": ("identity",), "binomial": ("logit", "probit"), "poisson": ("log",)}


def _check_options(family: str, link: str | None, reml: bool, nagq: int) -> tuple[str, str]:
    family = str(family).lower()
    if family not in FAMILIES:
        raise UsageError(f"unknown family {family!r}; use one of {', '.join(FAMILIES)}")
    link = FAMILIES[family][0] if link is None else str(link).lower()
    if link not in FAMILIES[family]:
        raise UsageError(
            f"link {link!r} is not available for family {family!r}; "
            f"use {' or '.join(FAMILIES[family])}"
        )
    if reml and family != "gaussian":
        raise UsageError("REML is only defined for the gaussian family; drop --reml")
    if int(nagq) < 1:
        raise UsageError(f"nagq must be at least 1, got {nagq}")
    if family == "gaussian" and int(nagq) != 1:
        raise UsageError("nagq applies to binomial/poisson fits only; drop --nagq")
    return family, link


def _as_frame(data: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, str | Path):
        from autoglmm.data import read_data

        return read_data(data)
    raise UsageError(f"data must be a pandas DataFrame or a file path, got {type(data).__name__}")


def _map_theta(start: dict[str, Any], design: GroupedDesign) -> np.ndarray | None:
    """Theta for ``design`` from a related model's start values, matched by names.

    Entries of Lambda whose row and column names both exist in the old model (in the same
    correlated block) are copied; new diagonal entries start at 1, new off-diagonals at 0.
    """
    theta = start.get("theta")
    if theta is None:
        return None
    theta = np.asarray(theta, dtype=float)
    n_theta = design.n_theta
    old_names, old_blocks = start.get("z_names"), start.get("re_blocks")
    if old_names is None or old_blocks is None:
        return theta if len(theta) == n_theta else None
    from autoglmm.engine.design import lambda_from_theta

    old_lam = lambda_from_theta(theta, tuple(old_blocks))
    old_pos = {name: i for i, name in enumerate(old_names)}
    new = theta_start(design.re_blocks)
    k, offset = 0, 0
    for size in design.re_blocks:
        for col in range(size):
            for row in range(col, size):
                rn, cn = design.z_names[offset + row], design.z_names[offset + col]
                if rn in old_pos and cn in old_pos:
                    new[k] = old_lam[old_pos[rn], old_pos[cn]]
                k += 1
        offset += size
    return new


def _map_beta(start: dict[str, Any], design: GroupedDesign) -> np.ndarray | None:
    beta = start.get("beta")
    if beta is None:
        return None
    if isinstance(beta, dict | pd.Series):
        return np.array([float(dict(beta).get(n, 0.0)) for n in design.x_names])
    beta = np.asarray(beta, dtype=float)
    return beta if len(beta) == design.p else None


def _run_engine(frame: ModelFrame, family, link, reml, nagq, start) -> EngineResult:
    design = frame.design
    theta0 = _map_theta(start, design) if start else None
    if family == "gaussian":
        from autoglmm.engine.lmm import fit_lmm

        return fit_lmm(design, reml=reml, start=theta0)
    from autoglmm.engine.glmm import fit_glmm

    glmm_start = None
    if start:
        glmm_start = {"theta": theta0, "beta": _map_beta(start, design)}
    return fit_glmm(design, family=family, link=link, nagq=nagq, start=glmm_start)


def fit(
    formula: str,
    data: pd.DataFrame | str | Path,
    family: str = "gaussian",
    reml: bool = False,
    nagq: int = 1,
    weights: str | np.ndarray | None = None,
    link: str | None = None,
    start: dict | None = None,
    level1_weights: str | np.ndarray | None = None,
    level2_weights: str | np.ndarray | None = None,
    conditional_weights: bool = False,
    weight_scaling: str = "raw",
) -> Fit:
    """Fit a two-level linear or generalized linear mixed model.

    Parameters
    ----------
    formula : lme4 syntax as in R, e.g. ``"y ~ x1 + factor(sex) + I(x1^2) + (1 + x1 | school)"``,
        ``offset(log(n))``, ``cbind(successes, failures) ~ ...`` (binomial), backticked names.
    data : a DataFrame, or a path read by :func:`autoglmm.read_data`.
    family : ``"gaussian"``, ``"binomial"`` or ``"poisson"``; ``link`` overrides the
        canonical link (binomial: ``"probit"``).
    reml : REML instead of ML (gaussian only; the search always uses ML).
    nagq : quadrature points per random effect (GLMMs; 1 = Laplace).
    weights : prior weights, a column name or an array with one value per row.
    start : warm start, e.g. ``other_fit.start_values()``; theta is matched by names.
    level1_weights, level2_weights : sampling weights (column names or arrays): the model
        is then fitted by pseudo-maximum likelihood as R's WeMix ``mix()``, with sandwich
        standard errors (see :mod:`autoglmm.weighted_fit`). Level-1 weights are
        unconditional (e.g. TIMSS ``TOTWGT``) unless ``conditional_weights`` is True
        (e.g. ``TOTWGT / SCHWGT``); ``weight_scaling`` is ``"raw"`` (default, as WeMix),
        ``"cluster"`` or ``"ess"`` (see :mod:`autoglmm.engine.weights`).

    Example
    -------
    >>> m = fit("Reaction ~ Days + (Days | Subject)", sleepstudy)  # doctest: +SKIP
    """
    parsed = parse_formula(formula)
    family, link = _check_options(family, link, reml, nagq)
    data = _as_frame(data)
    if level1_weights is not None or level2_weights is not None:
        from autoglmm.weighted_fit import fit_weighted

        return fit_weighted(
            formula, parsed, data, family=family, link=link, reml=reml, nagq=int(nagq),
            weights=weights, level1_weights=level1_weights, level2_weights=level2_weights,
            conditional_weights=conditional_weights, weight_scaling=weight_scaling,
        )  # fmt: skip
    with single_threaded_blas():  # small products only: BLAS threads cost more than they save
        frame = build_model_frame(parsed, data, family=family, weights=weights)
        engine = _run_engine(frame, family, link, reml, int(nagq), start)
        return make_fit(engine, frame, formula)


def make_fit(engine: EngineResult, frame: ModelFrame, formula: str) -> Fit:
    """Wrap an engine result with the names of its design into a frozen :class:`Fit`."""
    d = frame.design
    return assemble_fit(
        engine, formula=formula, x_names=d.x_names, z_names=d.z_names, re_blocks=d.re_blocks,
        nobs=d.n, group_levels=d.group_levels, group=frame.group_name,
        response=frame.response_name, messages=frame.messages,
        dropped_columns=frame.dropped_columns, row_hash=frame.row_hash,
        fitted=input_order(engine.fitted, frame.order), row_index=frame.row_index, x_matrix=d.X,
    )  # fmt: skip


def input_order(values: np.ndarray | None, order: np.ndarray) -> np.ndarray | None:
    """Per-row values of a sorted design back in the input's row order (``order`` is the
    design's permutation: design row i is input row order[i])."""
    if values is None:
        return None
    if order is identity_order(len(order)):  # the rows were in group order already
        return values
    out = np.empty(len(values))
    out[order] = values
    return out


def assemble_fit(
    engine: EngineResult,
    *,
    formula: str,
    x_names: tuple[str, ...],
    z_names: tuple[str, ...],
    re_blocks: tuple[int, ...],
    nobs: int,
    group_levels: tuple,
    group: str,
    response: str,
    messages: tuple[str, ...],
    dropped_columns: tuple[str, ...],
    row_hash: str | RowIdentity,
    fitted: np.ndarray | None = None,
    row_index: pd.Index | None = None,
    x_matrix: np.ndarray | None = None,
) -> Fit:
    """The :class:`Fit` of an engine result, from names alone (no design needed).

    The search's prepared designs (:mod:`autoglmm.prepared`) call this directly; the
    engine's arrays are kept, not copied, and the named tables are built on first use.
    ``fitted`` are per-row values in the input's row order, labelled by ``row_index``.
    """
    return Fit(
        formula=formula,
        family=engine.family,
        link=engine.link,
        nagq=engine.nagq,
        reml=engine.reml,
        loglik=float(engine.loglik),
        deviance=float(engine.deviance),
        df=int(engine.n_params),
        nobs=nobs,
        ngroups=len(group_levels),
        group=group,
        response=response,
        x_names=tuple(x_names),
        beta=engine.beta,
        vcov_beta=engine.vcov_beta,
        z_names=tuple(z_names),
        re_blocks=re_blocks,
        cov_re_matrix=engine.cov_re,
        sigma2=None if engine.sigma2 is None else float(engine.sigma2),
        ranef_values=engine.ranef,
        group_levels=group_levels,
        converged=bool(engine.convergence.converged),
        singular=bool(engine.convergence.singular),
        messages=list(messages) + list(engine.convergence.messages),
        dropped_columns=dropped_columns,
        row_hash=row_hash,
        theta=np.asarray(engine.theta, dtype=float),
        convergence=engine.convergence,
        fitted_values=fitted,
        row_index=row_index if fitted is not None else None,
        x_matrix=x_matrix,
    )
