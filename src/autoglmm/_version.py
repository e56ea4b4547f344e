"""The package version, in one place (pyproject.toml reads it as ``dynamic``).

A plain constant, so that ``autoglmm --version`` and ``import autoglmm`` do not import
:mod:`importlib.metadata` (about 100 ms of the CLI's start).
"""

__version__ = "0.1.0"
