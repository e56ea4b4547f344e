"""Assessment design columns (IDs, weights, jackknife, plausible values) are never candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autoglmm.errors import UsageError
from autoglmm.lsa.conventions import classify, detect
from autoglmm.sample import build_sample

TIMSS_DESIGN = [
    "IDCNTRY", "IDBOOK", "IDSCHOOL", "IDCLASS", "IDSTUD", "IDPOP", "TOTWGT", "SENWGT",
    "HOUWGT", "WGTFAC1", "WGTFAC2", "WGTADJ1", "WGTADJ3", "SCHWGT", "JKZONE", "JKREP",
    "BSMMAT01", "BSMMAT05", "BSSSCI03", "BSMALG02", "BSSBIO04", "BSMIBM01", "BSSIBM05",
    "ASRREA01",
]  # fmt: skip
TIMSS_ITEMS = ["BSBG01", "BSBM20A", "BSBGHER", "BSDAGE", "ITSEX", "BCBG03A", "BSBS22B"]
PISA_DESIGN = [
    "CNT", "CNTRYID", "CNTSCHID", "CNTSTUID", "W_FSTUWT", "W_FSCHWT", "W_FSTURWT1",
    "W_FSTURWT80", "PV1MATH", "PV10READ", "PV3SCIE", "SENWT", "STRATUM",
]  # fmt: skip
PISA_ITEMS = ["ST004D01T", "ESCS", "HISEI", "MATHEFF", "ST001D01T"]


def test_timss_design_columns_are_classified_and_items_are_not():
    out = classify(TIMSS_DESIGN + TIMSS_ITEMS, "timss")
    assert set(out) == set(TIMSS_DESIGN)
    assert out["BSMMAT05"].startswith("plausible value")
    assert out["BSMIBM01"].startswith("proficiency benchmark")
    assert out["JKZONE"].startswith("jackknife")
    assert out["WGTADJ3"].startswith("sampling weight")
    assert out["IDSTUD"].startswith("identifier")


def test_pisa_design_columns_are_classified_and_items_are_not():
    out = classify(PISA_DESIGN + PISA_ITEMS, "pisa")
    assert set(out) == set(PISA_DESIGN)
    assert out["W_FSTURWT80"].startswith("replicate weight")
    assert out["PV10READ"].startswith("plausible value")


def test_auto_detects_and_none_disables():
    assert detect(TIMSS_DESIGN) == "timss"
    assert detect(PISA_DESIGN) == "pisa"
    assert detect(["math", "school", "ses"]) == "none"
    assert classify(["ses", "IDSTUD_like", "weight"], "auto") == {}
    assert classify(TIMSS_DESIGN, "none") == {}
    with pytest.raises(UsageError, match="unknown lsa"):
        classify(TIMSS_DESIGN, "pirls")


def test_outcome_and_group_are_kept_and_siblings_listed_with_reasons():
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({"IDSCHOOL": np.repeat(np.arange(10), 20), "BSBG01": rng.normal(size=n)})
    for k in range(1, 6):
        df[f"BSMMAT0{k}"] = rng.normal(500, 80, n)
    df["TOTWGT"] = 1.0 + rng.random(n)
    out = classify(df.columns, "auto", keep=["BSMMAT01", "IDSCHOOL"])
    assert "BSMMAT01" not in out and "IDSCHOOL" not in out and "BSMMAT02" in out
    sample = build_sample(df, "BSMMAT01", "IDSCHOOL", conventional=out)
    assert sample.predictors == ("BSBG01",)
    reasons = {e.column: e for e in sample.report.exclusions}
    assert reasons["TOTWGT"].reason == "convention"
    assert reasons["BSMMAT04"].detail.startswith("plausible value")
    assert "BSMMAT03: plausible value" in sample.report.to_text()
    # a column the user names as a predictor stays a candidate
    named = build_sample(df, "BSMMAT01", "IDSCHOOL", predictors=["TOTWGT"], conventional=out)
    assert named.predictors == ("TOTWGT",)
