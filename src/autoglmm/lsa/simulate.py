"""A TIMSS-shaped student file (BSG) and school file (BCG) with a known true model.

:func:`simulate_timss` draws the students and the true model with
:func:`autoglmm.datasets.simulate_lsa`, then ships them the way TIMSS does, so the whole
path of SPEC 6.2 (merge, conventions, missing codes, plausible values, imputation) can be
run and scored against the truth:

- two SPSS files with variable labels and value labels: the student file holds the student
  items and the school file the school (principal) items, one row per school;
- IDs (IDCNTRY, IDSCHOOL numbered within country, IDCLASS, IDSTUD, IDBOOK, IDPOP),
  weights (WGTFAC1-3, WGTADJ1-3, TOTWGT, SENWGT, HOUWGT; SCHWGT in the school file),
  jackknife variables (JKZONE, JKREP);
- five mathematics plausible values BSMMAT01-05: the true score plus independent
  measurement error (``pv_sd``), so they differ as real PVs do; five science PVs
  BSSSCI01-05 and the benchmark levels BSMIBM01-05 (1-5, cuts 400/475/550/625);
- a share ``missing`` of every item missing: Likert items carry the user-missing code 9
  ("Omitted or invalid"), continuous variables 999999, both declared missing in SPSS.

The true coefficients are those of ``simulate_lsa``; the residual variance of each PV is
σ² + ``pv_sd``².

Examples
--------
>>> sim = simulate_timss("timss_demo", seed=1, n_schools=40, n_items=40)  # doctest: +SKIP
>>> sim.student_path.name, sim.school_path.name                           # doctest: +SKIP
('BSG.sav', 'BCG.sav')
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from autoglmm.datasets import Truth, simulate_lsa
from autoglmm.errors import UsageError

__all__ = ["SimulatedTIMSS", "simulate_timss"]

PV_NAMES = tuple(f"BSMMAT0{k}" for k in range(1, 6))
_LIKERT_LABELS = {1.0: "Agree a lot", 2.0: "Agree a little", 3.0: "Disagree a little",
                  4.0: "Disagree a lot", 9.0: "Omitted or invalid"}  # fmt: skip
_ITEM_CODE, _CONT_CODE = 9.0, 999999.0
_BENCHMARKS = np.array([400.0, 475.0, 550.0, 625.0])


@dataclass(frozen=True, eq=False)
class SimulatedTIMSS:
    """The two files (frames with NaN for missing, and SPSS paths) and the truth."""

    student: pd.DataFrame
    school: pd.DataFrame
    truth: Truth
    student_path: Path | None
    school_path: Path | None


def simulate_timss(
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    n_schools: int = 150,
    n_items: int = 100,
    n_countries: int = 1,
    missing: float = 0.02,
    pv_sd: float = 20.0,
) -> SimulatedTIMSS:
    """Draw TIMSS-shaped files with a known model; write BSG.sav and BCG.sav to ``out_dir``.

    Parameters
    ----------
    out_dir : folder for the SPSS files (created); None writes nothing.
    seed : seed of every draw.
    n_schools, n_items : schools (about 33 students each) and student Likert items.
    n_countries : countries; IDSCHOOL restarts at 1 in each, as in TIMSS.
    missing : share of every item (student and school) that is missing.
    pv_sd : measurement error of each plausible value around the true score.
    """
    if not 0 <= missing < 0.5 or n_countries < 1 or pv_sd < 0:
        raise UsageError("simulate_timss needs 0 <= missing < 0.5, n_countries >= 1, pv_sd >= 0")
    sim = simulate_lsa(seed=seed, n_schools=n_schools, n_items=n_items, n_missing_items=0)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    data = sim.data
    school = data["school"].to_numpy() - 1001
    school_items = [c for c in data.columns if c.startswith("sch_")]
    student_items = [c for c in data.columns if c not in ("math", "school", *school_items)]
    ids = _ids(rng, school, n_schools, n_countries)
    weights = _weights(rng, school, n_schools)
    pvs = _plausible_values(rng, data["math"].to_numpy(), pv_sd)
    items = {col: _blank(rng, data[col].to_numpy(dtype=float), missing) for col in student_items}
    student = pd.DataFrame({**ids, **pvs, **weights, **items})
    first = np.unique(school, return_index=True)[1]
    sch = pd.DataFrame({
        "IDCNTRY": ids["IDCNTRY"][first], "IDSCHOOL": ids["IDSCHOOL"][first],
        "SCHWGT": weights["WGTFAC1"][first] * weights["WGTADJ1"][first],
        "WGTFAC1": weights["WGTFAC1"][first], "WGTADJ1": weights["WGTADJ1"][first],
        "JKZONE": weights["JKZONE"][first], "JKREP": weights["JKREP"][first],
    })  # fmt: skip
    for col in school_items:
        sch[col] = _blank(rng, data[col].to_numpy(dtype=float)[first], missing)
    truth = replace(
        sim.truth, outcome="BSMMAT0[1-5]", group="IDSCHOOL",
        sigma2=None if sim.truth.sigma2 is None else sim.truth.sigma2 + pv_sd**2,
    )  # fmt: skip
    labels = {**sim.labels, **_ID_LABELS}
    student.attrs["variable_labels"] = {c: labels[c] for c in student.columns if c in labels}
    sch.attrs["variable_labels"] = {c: labels[c] for c in sch.columns if c in labels}
    paths = (None, None)
    if out_dir is not None:
        paths = _write(Path(out_dir), student, sch, student_items, school_items)
    return SimulatedTIMSS(student, sch, truth, *paths)


_ID_LABELS = {
    "IDCNTRY": "*COUNTRY ID*", "IDSCHOOL": "*SCHOOL ID*", "IDCLASS": "*CLASS ID*",
    "IDSTUD": "*STUDENT ID*", "IDBOOK": "*BOOKLET ID*", "IDPOP": "*POPULATION ID*",
    "TOTWGT": "*TOTAL STUDENT WEIGHT*", "SENWGT": "*SENATE WEIGHT*",
    "HOUWGT": "*HOUSE WEIGHT*", "SCHWGT": "*SCHOOL WEIGHT*", "JKZONE": "*JACKKNIFE ZONE*",
    "JKREP": "*JACKKNIFE REPLICATE CODE*",
    **{f"BSMMAT0{k}": f"*1ST-5TH PLAUSIBLE VALUE MATHEMATICS* ({k})" for k in range(1, 6)},
    **{f"BSSSCI0{k}": f"*PLAUSIBLE VALUE SCIENCE* ({k})" for k in range(1, 6)},
    **{f"BSMIBM0{k}": f"*INTERNATIONAL MATH BENCHMARK REACHED* ({k})" for k in range(1, 6)},
}  # fmt: skip


def _ids(rng, school: np.ndarray, n_schools: int, n_countries: int) -> dict:
    country_of = np.sort(rng.integers(0, n_countries, n_schools))
    within = np.zeros(n_schools, dtype=int)
    for c in range(n_countries):
        members = np.flatnonzero(country_of == c)
        within[members] = np.arange(1, len(members) + 1)
    idschool = within[school]
    idclass = idschool * 100 + 1
    order = np.arange(len(school)) - np.searchsorted(school, school)
    return {
        "IDCNTRY": (36 + 4 * country_of)[school].astype(float),
        "IDSCHOOL": idschool.astype(float),
        "IDCLASS": idclass.astype(float),
        "IDSTUD": (idclass * 100 + order + 1).astype(float),
        "IDBOOK": rng.integers(1, 15, len(school)).astype(float),
        "IDPOP": np.full(len(school), 2.0),
    }


def _weights(rng, school: np.ndarray, n_schools: int) -> dict:
    fac1 = rng.uniform(5, 60, n_schools)[school]
    adj1 = rng.uniform(1.0, 1.2, n_schools)[school]
    fac2 = rng.uniform(1, 3, n_schools)[school]
    adj2 = np.ones(len(school))
    fac3 = np.ones(len(school))
    adj3 = rng.uniform(1.0, 1.15, n_schools)[school]
    tot = fac1 * adj1 * fac2 * adj2 * fac3 * adj3
    zone = (np.arange(n_schools) // 2 + 1)[school]
    return {
        "WGTFAC1": fac1, "WGTADJ1": adj1, "WGTFAC2": fac2, "WGTADJ2": adj2,
        "WGTFAC3": fac3, "WGTADJ3": adj3, "TOTWGT": tot,
        "SENWGT": tot * 500 / tot.sum(), "HOUWGT": tot * len(tot) / tot.sum(),
        "JKZONE": zone.astype(float), "JKREP": (np.arange(n_schools) % 2)[school].astype(float),
    }  # fmt: skip


def _plausible_values(rng, score: np.ndarray, pv_sd: float) -> dict:
    n = len(score)
    science = 0.8 * (score - score.mean()) + score.mean() + rng.normal(0, 30, n)
    out = {}
    for k in range(1, 6):
        pv = np.round(score + rng.normal(0, pv_sd, n), 2)
        out[f"BSMMAT0{k}"] = pv
        out[f"BSSSCI0{k}"] = np.round(science + rng.normal(0, pv_sd, n), 2)
        out[f"BSMIBM0{k}"] = 1.0 + np.searchsorted(_BENCHMARKS, pv)
    return out


def _blank(rng, values: np.ndarray, share: float) -> np.ndarray:
    out = values.copy()
    out[rng.random(len(out)) < share] = np.nan
    return out


def _write(out: Path, student, school, student_items, school_items) -> tuple[Path, Path]:
    """SPSS files: user-missing codes for blanks, value labels on Likert items."""
    import pyreadstat

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for frame, items, name in ((student, student_items, "BSG"), (school, school_items, "BCG")):
        coded = frame.copy()
        missing_ranges, value_labels = {}, {}
        for col in items:
            likert = set(np.unique(frame[col].dropna())) <= set(_LIKERT_LABELS)
            code = _ITEM_CODE if likert else _CONT_CODE
            coded[col] = frame[col].fillna(code)
            missing_ranges[col] = [code]
            if likert:
                value_labels[col] = dict(_LIKERT_LABELS)
        path = out / f"{name}.sav"
        pyreadstat.write_sav(
            coded, path, column_labels=dict(frame.attrs.get("variable_labels", {})),
            variable_value_labels=value_labels, missing_ranges=missing_ranges,
        )  # fmt: skip
        paths.append(path)
    return paths[0], paths[1]
