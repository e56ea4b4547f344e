"""``autoglmm.batch``: many searches, one per value of a column, on a Dask cluster.

- :mod:`~autoglmm.batching.run`: :func:`batch`, the orchestration (scatter, submit,
  collect with ``as_completed``, resume, failures, Ctrl-C);
- :mod:`~autoglmm.batching.tasks`: task keys, folders and seeds, and what a worker runs;
- :mod:`~autoglmm.batching.cluster`: the LocalCluster (one thread per worker, BLAS pinned)
  or the connection to an existing scheduler;
- :mod:`~autoglmm.batching.store`: the output folder (atomic task folders, summary.csv);
- :mod:`~autoglmm.batching.overview`: summary.html with the term-by-task heat map.

The package is named ``batching`` so that importing it never shadows the function
``autoglmm.batch``.
"""

from autoglmm.batching.run import batch
from autoglmm.batching.tasks import folder_name, task_frame, task_seed

__all__ = ["batch", "folder_name", "task_frame", "task_seed"]
