"""autoglmm: find an optimal generalized linear mixed model for hierarchical data.

Public names are imported lazily, so ``autoglmm --help`` starts fast and numba kernels
compile only when they are used. Module names never equal public function names
(``fit`` lives in ``fitting``, ``search`` in ``selection``), so importing a submodule
cannot shadow a function on the package.
"""

from __future__ import annotations

import importlib

from autoglmm._version import __version__

_LAZY = {
    "read_data": "autoglmm.data",
    "build_sample": "autoglmm.sample",
    "AnalysisSample": "autoglmm.sample",
    "fit": "autoglmm.fitting",
    "Fit": "autoglmm.result",
    "lrt": "autoglmm.likelihood_ratio",
    "LRTResult": "autoglmm.likelihood_ratio",
    "MixedEffectsRandomForest": "autoglmm.forest.merf",
    "rank_predictors": "autoglmm.ranking",
    "Ranking": "autoglmm.ranking",
    "search": "autoglmm.selection",
    "SearchResult": "autoglmm.selection",
    "batch": "autoglmm.batching",
    "datasets": "autoglmm.datasets",
    "AutoGLMMError": "autoglmm.errors",
    "UsageError": "autoglmm.errors",
    "DataError": "autoglmm.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'autoglmm' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
