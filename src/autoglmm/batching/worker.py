"""Set-up of each local Dask worker process (a distributed *preload* module).

Ctrl-C in a terminal sends SIGINT to every process of the foreground group, the local
workers included. The client alone should handle it: it cancels the tasks and closes the
cluster in order. A worker that also reacts would die mid-task and print a traceback, so
workers of the batch's own LocalCluster ignore SIGINT (a cluster's ``close`` still stops
them). Workers of an external cluster (``--scheduler``) are left as their owner started them.
"""

from __future__ import annotations

import signal
from typing import Any


def dask_setup(worker: Any) -> None:
    """Called by distributed in the worker process when the worker starts."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # pragma: no cover - not the main thread: nothing to set
        pass
