"""Stage events of a running search: what a log or a pipe shows instead of progress bars.

The search calls :func:`notify` when a stage ends (the sample, the null model, the ranking,
each of the three forward stages, R²). Nobody listens by default. ``autoglmm search`` run with
its output piped listens with :class:`StageLines`, which prints one line per stage and the
comparison table of each forward stage as soon as that stage ends.

Example
-------
>>> with listening(StageLines(print)):          # doctest: +SKIP
...     autoglmm.search(df, "math", "school")
[sample] 8,705 rows in 270 groups, 230 candidate predictors (0.4 s)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

__all__ = ["StageLines", "listening", "notify"]

Listener = Callable[[str, float, dict[str, Any]], None]
_LISTENER: ContextVar[Listener | None] = ContextVar("autoglmm_stage_listener", default=None)


def notify(stage: str, seconds: float, **data: Any) -> None:
    """Tell the listener (if any) that ``stage`` ended after ``seconds``."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(stage, seconds, data)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the stage events of searches run inside the block to ``listener``."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


_NAMES = {"fixed": "fixed effects", "interaction": "interactions", "slope": "random slopes"}
_START = {"fixed": "null", "interaction": "base", "slope": "preliminary"}


class StageLines:
    """A listener that prints one line per stage and the table of each forward stage."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.sample: Any = None
        self.ranking: Any = None

    def __call__(self, stage: str, seconds: float, data: dict[str, Any]) -> None:
        took = f"({seconds:.1f} s)"
        if stage == "sample":
            self.sample = sample = data["sample"]
            self.echo(
                f"[sample] {sample.n_obs:,} rows in {sample.n_groups:,} groups, "
                f"{len(sample.predictors)} candidate predictors {took}"
            )
        elif stage == "null_model":
            self.echo(
                f"[null model] ICC = {data['icc']:.3f} {took[:-1]}, including one-time compilation)"
            )
        elif stage == "ranking":
            self.ranking = data.get("ranking")
            n = len(getattr(self.ranking, "names", ()) or ())
            user = (getattr(self.ranking, "settings", None) or {}).get("source") == "user"
            how = "in the order given by the user" if user else "by MERF importance"
            self.echo(f"[ranking] {_count(n, 'predictor')} ranked {how} {took}")
        elif stage in _NAMES:
            self._stage(stage, took, data)
        elif stage == "r2":
            self.echo(f"[R²] explained variance of every model {took}")

    def _stage(self, stage: str, took: str, data: dict[str, Any]) -> None:
        from autoglmm.report import tables

        steps = tuple(data.get("steps", ()))
        counts: dict[str, int] = {}
        for step in steps:
            counts[step.status] = counts.get(step.status, 0) + 1
        summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
        self.echo(
            f"[{_NAMES[stage]}] {_count(len(steps), 'candidate')} tried"
            + (f": {summary}" if summary else "")
            + f" {took}"
        )
        partial = SimpleNamespace(
            sample=self.sample, ranking=self.ranking, steps=steps, stop_reason=None,
            **{_START[stage]: data.get("start")},
        )  # fmt: skip
        if data.get("start") is not None:
            self.echo("\n" + tables.comparison(partial, stage).to_text() + "\n")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
