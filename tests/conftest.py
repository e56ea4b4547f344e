"""Shared fixtures: the lme4 reference cases copied from ../shared/reference."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

REFERENCE_DIR = Path(__file__).parent / "reference"


@pytest.fixture(scope="session")
def lme4_reference() -> dict:
    """All lme4 reference cases, keyed by case id (see tests/reference/README.md)."""
    with open(REFERENCE_DIR / "lme4_reference.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def reference_data():
    """Loader of a reference CSV by file name, cached per session."""
    cache: dict[str, pd.DataFrame] = {}

    def load(name: str) -> pd.DataFrame:
        if name not in cache:
            cache[name] = pd.read_csv(REFERENCE_DIR / name)
        return cache[name].copy()

    return load
