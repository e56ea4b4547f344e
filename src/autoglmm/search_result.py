"""The result of a search: the trace (:class:`Step`), the terms and :class:`SearchResult`.

``SearchResult`` is frozen and exists to present: the step trace as a frame, the report's
tables and equation (delegated to :mod:`autoglmm.report`), and ``to_dict`` in the schema of
result.json (SPEC section 3, ``autoglmm/report/result_schema.json``).

The dependency runs one way: this module imports the report, the report never imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from autoglmm.json_values import json_value
from autoglmm.report import tables
from autoglmm.report.equation import model_equation
from autoglmm.report.writer import write_report

if TYPE_CHECKING:
    from autoglmm.analyses import Pooling
    from autoglmm.ranking import Ranking
    from autoglmm.result import Fit
    from autoglmm.sample import AnalysisSample

__all__ = [
    "STAGES", "STATUSES", "SearchResult", "Step", "Terms", "cov_re_of", "data_hash", "json_value",
]  # fmt: skip

STAGES = ("fixed", "interaction", "slope")
STATUSES = ("accepted", "rejected", "not_converged", "skipped")


@dataclass(frozen=True)
class Step:
    """One candidate of the trace: what was tried, how it fitted and what was decided."""

    stage: str
    term: str
    status: str
    loglik: float | None
    df: int | None
    chisq: float | None
    test_df: int | None
    p: float | None
    reason: str
    formula: str
    aic: float | None
    bic: float | None

    def to_dict(self) -> dict:
        return {k: json_value(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Terms:
    """The terms of one model of the search, in the order they were added."""

    fixed: tuple[str, ...] = ()
    interactions: tuple[tuple[str, str], ...] = ()
    slopes: tuple[str, ...] = ()

    def extend(self, stage: str, term: Any) -> Terms:
        if stage == "fixed":
            return replace(self, fixed=(*self.fixed, term))
        if stage == "interaction":
            return replace(self, interactions=(*self.interactions, term))
        return replace(self, slopes=(*self.slopes, term))

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "fixed": list(self.fixed),
            "interactions": [":".join(pair) for pair in self.interactions],
            "random_slopes": list(self.slopes),
        }


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Everything a search found, frozen: the sample, the trace, the four models, R².

    ``null``, ``base``, ``preliminary`` and ``optimal`` are :class:`autoglmm.result.Fit`
    objects (the last three are ``None`` when the ICC gate stopped the search, and so is
    ``ranking``). ``optimal_terms`` is ``{"fixed": [...], "interactions": ["a:b"],
    "random_slopes": [...]}``; ``r2`` maps each model's name to its R² values by kind
    (``level1``, ``level2``, ``marginal``, ``conditional``). ``rule`` is the
    stopping rule used (:class:`autoglmm.stopping.StoppingRule` as a dict) and ``stages``
    one summary per stage: candidates, tried, never tried, the per-candidate test level and
    why the stage ended.
    """

    sample: AnalysisSample
    family: str
    icc: float
    glmm_needed: bool
    stop_reason: str | None
    ranking: Ranking | None
    steps: tuple[Step, ...]
    null: Fit
    base: Fit | None
    preliminary: Fit | None
    optimal: Fit | None
    optimal_terms: dict[str, list[str]]
    r2: dict[str, dict[str, float | None]]
    params: dict[str, Any]
    manifest: dict[str, Any]
    rule: dict = field(default_factory=dict)
    stages: tuple[dict, ...] = ()
    pooled: Pooling | None = None  # several analyses (plausible values, imputations) pooled
    weighted: dict[str, Fit] | None = None  # name -> Fit refitted with sampling weights

    @property
    def warnings(self) -> list[str]:
        """Data warnings a reader must see: sample loss, tokens read as missing, merges."""
        notes = list(getattr(self.sample.report, "warnings", ()))
        if self.pooled is not None:
            notes += [w for w in self.pooled.warnings if w not in notes]
        return notes

    def steps_frame(self) -> pd.DataFrame:
        """The trace, one row per candidate, columns in :class:`Step`'s field order."""
        columns = [f.name for f in fields(Step)]
        return pd.DataFrame([asdict(s) for s in self.steps], columns=columns)

    def comparison_table(self, stage: str) -> tables.ComparisonFrame:
        """The paper's Tables 2/3 for one stage (Model, df, AIC, logLik, Δχ², p).

        A DataFrame whose ``repr`` (and ``print``) is the formatted table of the report.
        """
        return tables.comparison_frame(self, stage)

    def variable_map(self) -> pd.DataFrame:
        """V1, V2, ... -> predictor, label, importance (the paper's Table 1)."""
        return tables.variable_map(self)

    def equation(self, kind: str = "text") -> str:
        """The optimal model's equation, as ``"text"`` or ``"latex"``."""
        return model_equation(self, kind)

    def to_dict(self) -> dict:
        """The result.json of SPEC section 3 (JSON-ready; NaN becomes None)."""
        return _result_dict(self)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    def report(self, out_dir: str | os.PathLike) -> Path:
        """Write every output of SPEC section 3 into ``out_dir`` (atomically)."""
        return write_report(self, out_dir)

    def __repr__(self) -> str:
        if self.stop_reason:
            return f"SearchResult(stopped: {self.stop_reason})"
        return f"SearchResult({self.optimal.formula!r}, {len(self.steps)} steps)"


def cov_re_of(fit: Fit, group: str) -> pd.DataFrame:
    """G of ``fit`` for ``group`` (a Fit's ``cov_re`` is a dict by grouping factor)."""
    cov = fit.cov_re
    if isinstance(cov, dict):
        cov = cov[group] if group in cov else next(iter(cov.values()))
    return cov


def data_hash(frame: pd.DataFrame) -> str:
    """sha256 of the analysis data: column names, dtypes and every value (row order kept)."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def _result_dict(result: SearchResult) -> dict:
    sample = result.sample
    ranking = []
    if result.ranking is not None:
        frame = result.ranking.to_frame()
        name_col = "predictor" if "predictor" in frame.columns else frame.columns[0]
        ranking = [
            {"predictor": str(n), "importance": json_value(v)}
            for n, v in zip(frame[name_col], frame["importance"], strict=True)
        ]
    models = {
        name: _model_dict(getattr(result, name), result.r2.get(name), sample.group)
        for name in ("null", "base", "preliminary", "optimal")
    }
    for name, fit in (result.weighted or {}).items():  # sampling weights: SPEC 6.3
        if models.get(name) is not None:
            weighted = _model_dict(fit, None, sample.group)
            weighted.pop("r2")  # R² is not defined for the pseudo-likelihood fits
            models[name]["weighted"] = {**weighted, "sampling_weights": fit.sampling}
    out = {
        "n_obs": int(sample.n_obs),
        "n_groups": int(sample.n_groups),
        "dropped": sample.report.to_dict(),
        "icc": json_value(result.icc),
        "glmm_needed": bool(result.glmm_needed),
        "stop_reason": result.stop_reason,
        "family": result.family,
        "outcome": sample.outcome,
        "group": sample.group,
        "ranking": ranking,
        "steps": [s.to_dict() for s in result.steps],
        "models": models,
        "optimal_terms": result.optimal_terms,
        "stages": [json_value(s) for s in result.stages],
        "manifest": json_value(result.manifest),
        "warnings": result.warnings,
        "plausible_values": None if result.pooled is None else result.pooled.to_dict(),
    }
    if result.rule:  # a SearchResult built by hand may not know its rule
        out["rule"] = json_value(result.rule)
    return out


def _model_dict(fit: Fit | None, r2: dict | None, group: str) -> dict | None:
    """One model of result.json; fixef statistics are Wald z with a normal reference."""
    if fit is None:
        return None
    table = zip(fit.fixef.index, fit.fixef, fit.se, fit.stat, fit.pvalues, strict=True)
    fixef = {
        str(term): {"estimate": float(est), "se": json_value(float(se)),
                    "stat": json_value(float(z)), "p": json_value(float(p))}
        for term, est, se, z, p in table
    }  # fmt: skip
    cov = cov_re_of(fit, group)
    cov_re = {
        group: {str(r): {str(c): float(cov.loc[r, c]) for c in cov.columns} for r in cov.index}
    }
    sigma2 = getattr(fit, "sigma2", None)
    return {
        "formula": fit.formula,
        "loglik": float(fit.loglik),
        "df": int(fit.df),
        "aic": float(fit.aic),
        "bic": float(fit.bic),
        "fixef": fixef,
        "cov_re": cov_re,
        "sigma2": json_value(sigma2),
        "r2": {k: json_value(v) for k, v in (r2 or {}).items()},
        "converged": bool(fit.converged),
        "singular": bool(fit.singular),
    }
