"""Stopping rules of the forward stages: when to stop, and at what level to test.

A rule has two parts:

- ``patience``: a stage stops after this many consecutive non-significant candidates;
  ``None`` scans every candidate of the stage.
- ``threshold``: the level each candidate's likelihood-ratio p-value is compared with.
  ``"alpha"`` is the stage's alpha (the paper). ``"bonferroni"`` is alpha divided by the
  number of candidates the stage can test. The ranking and the tests use the same data, so
  the top-ranked null predictor is the one that happens to correlate with the outcome and
  its p-value is far from uniform; dividing by the number of candidates bounds the chance
  of any false addition per stage by alpha whatever the ranking did.

``patience=1, threshold="alpha"`` is the paper's rule and is reproduced exactly. The
default (``patience=None, threshold="auto"``) scans every candidate at the Bonferroni
level; ``"auto"`` means Bonferroni when scanning every candidate and alpha when a patience
is given, so ``patience=1`` alone is always the paper's rule. The choice of the default is
the evidence of ``benchmarks/selection.py`` (see benchmarks/RESULTS.md): on 20 simulated
designs it found 17.2 (gaussian) and 17.3 (binomial) of 18 true predictors with 0.1 and 0.4
false additions per search (never more than 1), where the paper's rule found 17.0 and 16.1
with 0.5 and 1.0 (up to 3); on null designs it added 0.25 per search (never more than 1),
the paper's rule 0.5 (up to 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

from autoglmm.errors import UsageError

__all__ = ["THRESHOLDS", "StoppingRule", "resolve_rule"]

THRESHOLDS = ("auto", "alpha", "bonferroni")


@dataclass(frozen=True)
class StoppingRule:
    """When a forward stage stops and the level each of its candidates is tested at."""

    patience: int | None
    threshold: str  # "alpha" or "bonferroni" (resolved)

    def level(self, alpha: float, n_candidates: int) -> float:
        """Per-candidate test level of a stage with ``n_candidates`` testable candidates."""
        if self.threshold == "bonferroni":
            return alpha / max(int(n_candidates), 1)
        return alpha

    def stops(self, misses: int) -> bool:
        """Whether ``misses`` consecutive non-significant candidates end the stage."""
        return self.patience is not None and misses >= self.patience

    @property
    def name(self) -> str:
        """Short name: ``paper``, ``patience-K``, ``scan`` (+ ``-bonferroni``)."""
        if self.patience == 1 and self.threshold == "alpha":
            return "paper"
        base = "scan" if self.patience is None else f"patience-{self.patience}"
        return base if self.threshold == "alpha" else f"{base}-bonferroni"

    def describe(self) -> str:
        """One sentence for the report."""
        if self.patience is None:
            stop = "every ranked candidate of each stage is tested"
        elif self.patience == 1:
            stop = "each stage stops at the first non-significant candidate"
        else:
            stop = f"each stage stops after {self.patience} consecutive non-significant candidates"
        if self.threshold == "bonferroni":
            level = "at alpha / m, m = the number of candidates the stage can test (Bonferroni)"
        else:
            level = "at alpha"
        paper = " (the paper's rule)" if self.name == "paper" else ""
        return f"{stop}, each tested {level}{paper}"

    def to_dict(self) -> dict:
        return {"name": self.name, "patience": self.patience, "threshold": self.threshold,
                "description": self.describe()}  # fmt: skip


def resolve_rule(patience: int | str | None, threshold: str | None) -> StoppingRule:
    """The rule of ``search(patience=..., threshold=...)``, validated.

    ``patience`` is a whole number >= 1, or None / "all" to scan every candidate.
    ``threshold`` "auto" (or None) is Bonferroni when scanning and alpha otherwise.
    """
    if isinstance(patience, str) and patience.strip().lower() in ("all", "none", "scan"):
        patience = None
    if patience is not None:
        if isinstance(patience, str) and patience.strip().isdigit():
            patience = int(patience)
        if isinstance(patience, bool) or not isinstance(patience, Integral) or patience < 1:
            raise UsageError(
                f"patience must be a whole number >= 1 or 'all', got {patience!r}; "
                "e.g. 1 for the paper's rule"
            )
    threshold = "auto" if threshold is None else str(threshold).lower()
    if threshold not in THRESHOLDS:
        raise UsageError(f"threshold must be one of {', '.join(THRESHOLDS)}, got {threshold!r}")
    if threshold == "auto":
        threshold = "bonferroni" if patience is None else "alpha"
    return StoppingRule(patience=None if patience is None else int(patience), threshold=threshold)
