"""Fixtures of the forest tests: the simulator lives in merf_sim.py."""

from __future__ import annotations

import pytest
from merf_sim import Sim, simulate


@pytest.fixture(scope="session")
def sim() -> Sim:
    return simulate(seed=11)
