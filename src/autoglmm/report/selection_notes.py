"""What the reader must know about how the model was selected, in plain sentences.

The report names the stopping rule, says for each stage how many ranked candidates were
tested and how many were never tried (a stage that stops early leaves the rest of the
ranking untested: "0 skipped" alone would hide them), and warns that p-values of a model
chosen by the same tests are optimistic.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PVALUE_CAVEAT", "rule_sentence", "stage_sentences"]

PVALUE_CAVEAT = (
    "The p-values and standard errors of the selected model are computed on the same data "
    "that chose it (ranking and tests), so they are optimistic: they do not account for the "
    "selection. Treat them as descriptive; confirm important findings on independent data."
)

_STAGE_NAMES = {"fixed": "Fixed effects", "interaction": "Interactions", "slope": "Random slopes"}
_STOPS = {
    "patience": "stopped by the rule",
    "exhausted": "every candidate reached",
    "max_slopes": "stopped at max_slopes",
}


def rule_sentence(result: Any) -> str:
    """The stopping rule of the search as one sentence (empty when it is unknown)."""
    rule = getattr(result, "rule", None) or {}
    if not rule:
        return ""
    return f"Stopping rule '{rule['name']}': {rule['description']}."


def stage_sentences(result: Any) -> list[str]:
    """One sentence per stage: candidates, tested, never tried, the level, why it ended."""
    out = []
    for info in getattr(result, "stages", ()) or ():
        tested = info["tried"] - info["skipped"]
        n = info["candidates"]
        text = (
            f"{_STAGE_NAMES.get(info['stage'], info['stage'])}: {n} "
            f"candidate{'' if n == 1 else 's'}, {tested} tested at level {info['level']:.3g}, "
            f"{info['skipped']} skipped, {info['not_tried']} never tried "
            f"({_STOPS.get(info['stopped_by'], '')})."
        )
        out.append(text)
    return out
