"""``fit()`` with sampling weights at two levels: the pandas edge of pseudo-ML.

Reads the weight columns, aligns them with the model's rows, validates them
(:func:`autoglmm.engine.weights.prepare_weights`), runs the weighted engine (gaussian:
:mod:`~autoglmm.engine.weighted_lmm`; binomial: :mod:`~autoglmm.engine.weighted_glmm`),
and replaces the standard errors by the sandwich ones (:mod:`~autoglmm.engine.sandwich`),
as WeMix's ``mix()`` reports them. The model-based standard errors and the robust
standard errors of the variance components are kept in ``Fit.sampling``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from autoglmm.engine.sandwich import Sandwich, glmm_sandwich, lmm_sandwich
from autoglmm.engine.weighted_glmm import fit_weighted_glmm
from autoglmm.engine.weighted_lmm import fit_weighted_lmm
from autoglmm.engine.weights import SamplingWeights, prepare_weights
from autoglmm.errors import DataError, UsageError
from autoglmm.formula import ParsedFormula
from autoglmm.model_frame import ModelFrame, build_model_frame
from autoglmm.result import Fit


def _weight_values(spec, data: pd.DataFrame, what: str) -> tuple[np.ndarray | None, str | None]:
    """A weight column (by name) or array as floats aligned with ``data``'s rows."""
    if spec is None:
        return None, None
    if isinstance(spec, str):
        if spec not in data.columns:
            raise DataError(f"unknown {what} column '{spec}'; check the column names")
        values = pd.to_numeric(data[spec], errors="coerce").to_numpy(dtype=float)
        return values, spec
    values = np.asarray(spec, dtype=float)
    if values.shape != (len(data),):
        raise UsageError(f"{what} must have one value per row ({len(data)}), got {values.shape}")
    return values, None


def _check_options(family: str, reml: bool, weights) -> None:
    if reml:
        raise UsageError("sampling weights use pseudo-maximum likelihood; drop --reml")
    if weights is not None:
        raise UsageError(
            "weights= (prior weights) cannot be combined with sampling weights; "
            "use level1_weights/level2_weights only"
        )
    if family not in ("gaussian", "binomial"):
        raise UsageError(
            f"sampling weights are implemented for gaussian and binomial models, not {family}"
        )


def weighted_frame(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    family: str,
    level1_weights,
    level2_weights,
    conditional_weights: bool,
    scaling: str,
) -> tuple[ModelFrame, SamplingWeights, dict[str, Any]]:
    """The model frame and its sampling weights in the design's row order."""
    w1, name1 = _weight_values(level1_weights, data, "level-1 weights")
    w2, name2 = _weight_values(level2_weights, data, "level-2 weights")
    positional = data.set_axis(pd.RangeIndex(len(data)), axis=0)
    frame = build_model_frame(parsed, positional, family=family)
    used = frame.row_index.to_numpy()  # positions of the used rows, input order
    frame = replace(frame, row_index=data.index[used])
    take = used[frame.order]  # input position of each design row
    sw = prepare_weights(
        None if w1 is None else w1[take],
        None if w2 is None else w2[take],
        frame.design.starts,
        conditional=conditional_weights,
        scaling=scaling,
        names=(
            f"level-1 weights{f' {name1!r}' if name1 else ''}",
            f"level-2 weights{f' {name2!r}' if name2 else ''}",
        ),
    )
    info = {
        "level1_weights": name1 if name1 else ("array" if w1 is not None else None),
        "level2_weights": name2 if name2 else ("array" if w2 is not None else None),
        "conditional_weights": bool(conditional_weights),
        "scaling": scaling,
        "sum_level2_weights": float(sw.level2.sum()),
        "weighted_nobs": sw.weighted_n(frame.design.group),
    }
    return frame, sw, info


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _vc_names(group: str, z_names: tuple[str, ...], pairs) -> list[str]:
    out = []
    for pair in pairs:
        if pair is None:
            out.append("Residual")
        elif pair[0] == pair[1]:
            out.append(f"{group}: {z_names[pair[0]]}")
        else:
            out.append(f"{group}: {z_names[pair[1]]}, {z_names[pair[0]]}")
    return out


def fit_weighted(
    formula: str,
    parsed: ParsedFormula,
    data: pd.DataFrame,
    *,
    family: str,
    link: str | None,
    reml: bool,
    nagq: int,
    weights,
    level1_weights,
    level2_weights,
    conditional_weights: bool = False,
    weight_scaling: str = "raw",
) -> Fit:
    """Pseudo-ML fit with sampling weights; called by :func:`autoglmm.fit`."""
    from autoglmm.fitting import make_fit

    _check_options(family, reml, weights)
    frame, sw, info = weighted_frame(
        parsed, data, family, level1_weights, level2_weights, conditional_weights, weight_scaling
    )
    sandwich: Sandwich
    if family == "gaussian":
        engine, ws, est = fit_weighted_lmm(frame.design, sw)
        sandwich = lmm_sandwich(ws, est)
    else:
        engine, extra = fit_weighted_glmm(frame.design, sw, family=family, link=link, nagq=nagq)
        sandwich = glmm_sandwich(extra)
    model_se = np.sqrt(np.diag(engine.vcov_beta))
    engine = replace(engine, vcov_beta=sandwich.vcov_beta)
    fit = make_fit(engine, frame, formula)
    d = frame.design
    info["se_model"] = dict(zip(d.x_names, map(_num, model_se), strict=True))
    names = _vc_names(frame.group_name, d.z_names, sandwich.vc_pairs)
    info["vc_se"] = dict(zip(names, map(_num, sandwich.vc_se), strict=True))
    note = (
        "pseudo-maximum likelihood with sampling weights (Rabe-Hesketh & Skrondal 2006); "
        "standard errors are sandwich (robust) estimates clustered by group"
    )
    return replace(fit, sampling=info, messages=[*fit.messages, note])


__all__ = ["fit_weighted", "weighted_frame"]
