"""The Dask cluster a batch runs on: a LocalCluster of its own, or an existing scheduler.

The local cluster has N worker *processes* with one thread each, and every math library
inside a worker is pinned to one thread (BLAS through the environment and threadpoolctl,
numba through ``NUMBA_NUM_THREADS``). A search is single-threaded work, so N processes
keep N cores busy; letting each of them also start a BLAS or numba thread pool per core
would oversubscribe the machine N-fold (MixedModels.jl issue #675 measures the cost).

With ``scheduler=ADDRESS`` the batch connects to a cluster someone else started; its
workers must have the same autoglmm version installed, which is checked before any task
is sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from autoglmm.errors import DataError, UsageError

__all__ = ["WORKER_ENV", "open_client"]

#: Environment of each local worker process: one thread for every math library.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


@contextmanager
def open_client(workers: int | None, scheduler: str | None, n_tasks: int) -> Iterator[Any]:
    """A connected ``distributed.Client``; its local cluster (if any) is closed on exit.

    ``workers`` defaults to one per core, at most one per task.
    """
    from distributed import Client, LocalCluster

    if workers is not None and scheduler is not None:
        raise UsageError("give either --workers (a local cluster) or --scheduler, not both")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise UsageError(f"--workers must be a whole number >= 1, got {workers!r}")
    cluster = None
    if scheduler is None:
        n = int(workers) if workers is not None else max(1, min(os.cpu_count() or 1, n_tasks))
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, env=dict(WORKER_ENV), silence_logs=logging.ERROR,
            preload=["autoglmm.batching.worker"],
            # no dashboard; the scheduler's small HTTP server on a free loopback port
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )  # fmt: skip
        client = Client(cluster)
    else:
        client = _connect(scheduler)
    try:
        if cluster is None:
            _check_workers(client, scheduler)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _connect(address: str) -> Any:
    from distributed import Client

    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as err:
        raise DataError(
            f"cannot reach the Dask scheduler at '{address}' ({' '.join(str(err).split())}); "
            "start one with 'dask scheduler' and 'dask worker ADDRESS', or use --workers"
        ) from None


def _check_workers(client: Any, address: str, timeout: float = 30.0) -> None:
    """Wait for a worker, and check every worker runs this autoglmm version."""
    from autoglmm import __version__

    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise DataError(
            f"the Dask scheduler at '{address}' has no workers after {timeout:.0f} s; "
            f"start some with 'dask worker {address}'"
        ) from None
    try:
        versions = client.run(_worker_version)
    except ImportError as err:
        raise DataError(
            f"autoglmm is not importable on the workers of '{address}' ({err}); install "
            "autoglmm in the workers' environment"
        ) from None
    other = {w: v for w, v in versions.items() if v != __version__}
    if other:
        worker, version = next(iter(other.items()))
        raise DataError(
            f"{len(other)} worker(s) of '{address}' run autoglmm {version} (e.g. {worker}), "
            f"this client runs {__version__}; install the same version everywhere"
        )


def _worker_version() -> str:
    from autoglmm import __version__

    return __version__
