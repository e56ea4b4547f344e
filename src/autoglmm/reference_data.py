"""Real multilevel data sets shipped with the package, for examples and first steps.

They are the data of the engine's lme4 reference fits (``tests/reference/``, made by
``make_reference.R``), so an example run on them can be compared with lme4's numbers. Each is a
small CSV inside the package; :func:`load` returns a fresh DataFrame.

Example
-------
>>> sleep = load("sleepstudy")
>>> sleep.shape, list(sleep.columns)
((180, 3), ['Reaction', 'Days', 'Subject'])
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from autoglmm.errors import UsageError

__all__ = ["DATASETS", "load"]

#: name -> (where it comes from, what it holds).
DATASETS: dict[str, tuple[str, str]] = {
    "sleepstudy": ("lme4", "180 reaction times of 18 subjects over 10 days of sleep deprivation"),
    "exam": ("mlmRev", "4,059 exam scores of students in 65 inner-London schools"),
    "hsb82": ("mlmRev", "7,185 maths achievement scores in 160 High School and Beyond schools"),
    "contraception": ("mlmRev", "contraceptive use (Y/N) of 1,934 women in 60 districts"),
    "cbpp": ("lme4", "contagious bovine pleuropneumonia: incidence in 15 herds (proportions)"),
    "grouseticks": ("lme4", "tick counts on 403 red grouse chicks in 118 broods (Poisson)"),
}


def load(name: str) -> pd.DataFrame:
    """One shipped data set as a DataFrame (see :data:`DATASETS` for the names).

    Raises
    ------
    UsageError
        ``name`` is not a shipped data set; the message lists the names.
    """
    if name not in DATASETS:
        raise UsageError(
            f"no shipped data set named {name!r}; use one of {', '.join(sorted(DATASETS))}"
        )
    path = resources.files("autoglmm").joinpath("data_sets", f"{name}.csv")
    with resources.as_file(path) as file:
        return pd.read_csv(file)
