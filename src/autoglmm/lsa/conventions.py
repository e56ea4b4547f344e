"""Naming conventions of large-scale assessment files: what is never a candidate predictor.

TIMSS, PIRLS and PISA files hold, besides the questionnaire items, columns that describe
the *design*, not the student: identifiers, sampling weights, jackknife or replicate
variables, the plausible values of every domain and the proficiency (benchmark) levels
derived from them. A plausible value is a near-copy of the outcome and a weight or an ID
has no substantive meaning, so a search must never rank them (the user guides list them:
TIMSS 2019 User Guide, ch. 3 and 4; PISA 2018 Technical Report, ch. 9 and 17). This module
names them by pattern and gives the reason, so each exclusion is listed in the sample
report.

Examples
--------
>>> classify(["IDSCHOOL", "TOTWGT", "BSMMAT01", "BSBM20A"], "timss")["TOTWGT"]
'sampling weight (TIMSS: *WGT*)'
>>> detect(["CNTSCHID", "PV1MATH", "ST004D01T"])
'pisa'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from autoglmm.errors import UsageError

__all__ = ["CONVENTIONS", "classify", "detect"]

#: Values of ``lsa=`` / ``--lsa``.
CONVENTIONS = ("auto", "timss", "pisa", "none")

# (pattern, reason) in order; the first match names the reason. Matched case-insensitively.
_TIMSS = (
    (r"[AB]S[MSR](IBM|BEN)0[1-9]", "proficiency benchmark of a plausible value (TIMSS/PIRLS)"),
    (r"[AB]S[MSR][A-Z]{3}0[1-9]", "plausible value (TIMSS/PIRLS: e.g. BSMMAT01-05)"),
    (r"ID[A-Z]*", "identifier (TIMSS: ID*)"),
    (r"(VERSION|SCOPE|ITADMINI|ILRELIAB|IDPOP)", "administration variable (TIMSS)"),
    (r".*WGT.*", "sampling weight (TIMSS: *WGT*)"),
    (r"JK.*", "jackknife zone or replicate (TIMSS: JK*)"),
)
_PISA = (
    (r"PV\d+[A-Z_]+\d*", "plausible value (PISA: PV1MATH...)"),
    (r"W_FSTURWT\d+|W_FSTR\d+|W_.*REP.*", "replicate weight (PISA: W_FSTURWT1-80)"),
    (r"W_.*|SENWT", "sampling weight (PISA: W_FSTUWT, W_FSCHWT, SENWT)"),
    (r"(CNT|CNTRYID|CNTSCHID|CNTSTUID|CNTTCHID|SUBNATIO|STRATUM|NATCEN|REGION|CYC|BOOKID)",
     "identifier (PISA)"),
    (r"(VER_DAT|ADMINMODE|OECD|LANGTEST_.*|OPTION_.*)", "administration variable (PISA)"),
    (r"UNIT|WVARSTRR|VAR_UNIT|SENWGT", "variance stratum or unit (PISA replicates)"),
)  # fmt: skip
_RULES = {
    "timss": [(re.compile(p, re.IGNORECASE), r) for p, r in _TIMSS],
    "pisa": [(re.compile(p, re.IGNORECASE), r) for p, r in _PISA],
}
# Columns whose presence marks a file as TIMSS/PIRLS or PISA.
_MARKERS = {
    "timss": re.compile(r"IDCNTRY|IDSCHOOL|IDSTUD|TOTWGT|[AB]S[MSR][A-Z]{3}0[1-9]", re.I),
    "pisa": re.compile(r"CNTSCHID|CNTSTUID|W_FSTUWT|PV\d+[A-Z]+", re.I),
}


def detect(columns: Iterable[object]) -> str:
    """Which conventions the names follow: ``"timss"``, ``"pisa"``, ``"timss+pisa"``, ``"none"``."""
    names = [str(c) for c in columns]
    found = [k for k, pat in _MARKERS.items() if any(pat.fullmatch(n) for n in names)]
    return "+".join(found) if found else "none"


def classify(
    columns: Iterable[object], lsa: str = "auto", keep: Iterable[object] = ()
) -> dict[str, str]:
    """Columns that a convention rules out as predictors, mapped to the reason.

    Parameters
    ----------
    columns : the data's column names.
    lsa : ``"auto"`` (detect from the names), ``"timss"``, ``"pisa"`` or ``"none"``.
    keep : names never classified (the outcome and the group).
    """
    if lsa not in CONVENTIONS:
        raise UsageError(f"unknown lsa convention {lsa!r}; use one of {', '.join(CONVENTIONS)}")
    names = [c for c in columns if c not in set(keep)]
    chosen = detect(names) if lsa == "auto" else lsa
    if chosen == "none":
        return {}
    rules = [rule for kind in chosen.split("+") for rule in _RULES[kind]]
    out = {}
    for name in names:
        for pattern, reason in rules:
            if pattern.fullmatch(str(name)):
                out[name] = reason
                break
    return out
