"""Shared pieces of the benchmarks: data at TIMSS scale, timing, memory and peer detection.

Every benchmark compares tools **in the same run on the same data**, because the machine
is shared and absolute times are noisy; ratios from one run are what we report.

Results are plain dicts ("rows") with at least ``section``, ``case``, ``tool``,
``status`` and ``seconds``; :func:`row` builds one. ``benchmarks/run.py`` turns rows into
the tables of RESULTS.md (ratios to autoglmm, log-likelihood differences).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# simulate_lsa settings that give the paper's TIMSS scale after the default sample rules
# (min_group_size 20, max_missing 0.2): 8,625 rows, 229 schools, 232 candidate predictors.
PAPER = {
    "seed": 0,
    "n_schools": 257,
    "n_items": 225,
    "n_school_items": 6,
    "mean_school_size": 38.0,
}
PAPER_ROWS, PAPER_GROUPS, PAPER_PREDICTORS = 8625, 229, 232

NOT_INSTALLED = "not installed"
PY_PEERS = {"mixedlm": "mixedlm", "statsmodels": "statsmodels", "sklearn": "scikit-learn"}
R_PEERS = ("lme4", "ranger", "jsonlite")


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BenchData:
    """One benchmark data set: the analysis rows and the model that generated them.

    ``frame`` holds only the rows the search would use (the analysis sample), so every
    tool fits exactly the same rows; ``predictors`` are the candidates left after the
    sample rules; ``truth`` is :class:`autoglmm.datasets.Truth`.
    """

    frame: pd.DataFrame
    outcome: str
    group: str
    family: str
    predictors: tuple[str, ...]
    truth: Any
    raw: pd.DataFrame | None = None

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    @property
    def n_groups(self) -> int:
        return int(self.frame[self.group].nunique())

    def formulas(self) -> dict[str, str]:
        """The three model shapes of the fit benchmarks, in lme4 syntax.

        ``null``: ``y ~ 1 + (1 | g)``; ``ri18``: the 18 true predictors with a random
        intercept; ``rs3``: the true (optimal) model, 18 predictors, the interaction and
        three correlated random effects (intercept and two slopes).
        """
        t = self.truth
        fixed = " + ".join(t.fixed)
        inter = ":".join(t.interaction)
        slopes = " + ".join(t.slopes)
        y, g = self.outcome, self.group
        return {
            "null": f"{y} ~ 1 + (1 | {g})",
            "ri18": f"{y} ~ {fixed} + (1 | {g})",
            "rs3": f"{y} ~ {fixed} + {inter} + (1 + {slopes} | {g})",
        }

    def true_ranking(self, n_noise: int = 10) -> list[str]:
        """A plausible given ranking: true predictors by |coefficient|, then noise items.

        The search stops at the first non-significant predictor (patience 1), so a few
        noise items after the true ones give the forward stage its usual ending.
        """
        t = self.truth
        ranked = sorted(t.fixed, key=lambda k: -abs(t.fixed[k]))
        noise = [p for p in self.predictors if p not in t.fixed][:n_noise]
        return ranked + noise

    def to_csv(self, directory: str | os.PathLike | None = None) -> Path:
        """Write ``frame`` to a CSV for the R peers (in a temporary folder by default)."""
        directory = Path(directory or tempfile.mkdtemp(prefix="autoglmm-bench-"))
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.family}_{self.n_rows}x{self.n_groups}.csv"
        if not path.exists():
            self.frame.to_csv(path, index=False)
        return path


@functools.lru_cache(maxsize=8)
def paper_data(family: str = "gaussian", seed: int = PAPER["seed"]) -> BenchData:
    """TIMSS-scale data (8,625 rows, 229 schools, 232 predictors at the default seed)."""
    return simulated_data(family=family, **{**PAPER, "seed": seed})


def simulated_data(
    family: str = "gaussian", *, keep_raw: bool = False, min_group_size: int = 20, **kwargs
) -> BenchData:
    """Draw ``simulate_lsa(**kwargs)`` and apply the search's sample rules (SPEC 2 step 1).

    ``keep_raw`` also keeps the unfiltered file (what a user hands to ``autoglmm search``).
    """
    from autoglmm.datasets import simulate_lsa
    from autoglmm.sample import build_sample

    sim = simulate_lsa(family=family, **kwargs)
    t = sim.truth
    sample = build_sample(
        sim.data, t.outcome, t.group, family=family, min_group_size=min_group_size
    )
    predictors = tuple(sample.predictors)
    frame = sample.data[[t.outcome, t.group, *predictors]].reset_index(drop=True)
    raw = sim.data if keep_raw else None
    return BenchData(frame, t.outcome, t.group, family, predictors, t, raw)


def growth_data(n_rows: int, n_groups: int, family: str = "gaussian", seed: int = 1) -> BenchData:
    """Data with ``n_rows`` rows in about ``n_groups`` schools, for the growth curves.

    The generator's schools hold at least 20 students, so for small schools the file is
    drawn larger and ``n_rows`` rows are then sampled from it (seeded); groups left with
    fewer than 2 rows are dropped (``min_group_size`` 2), so the actual counts are reported
    with every growth row. 130 items (13 blocks) keep the generator cheap at 128k rows
    while the true model, and so the fitted formulas, keeps its 18 predictors.
    """
    import numpy as np

    from autoglmm.datasets import simulate_lsa
    from autoglmm.sample import build_sample

    sim = simulate_lsa(
        seed=seed,
        family=family,
        n_schools=n_groups,
        mean_school_size=max(n_rows / n_groups, 25.0),
        small_school_share=0.0,
        n_items=130,
        n_school_items=6,
    )
    data = sim.data
    if len(data) > n_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(data), n_rows, replace=False))
        data = data.iloc[keep]
    t = sim.truth
    sample = build_sample(data, t.outcome, t.group, family=family, min_group_size=2)
    predictors = tuple(sample.predictors)
    frame = sample.data[[t.outcome, t.group, *predictors]].reset_index(drop=True)
    return BenchData(frame, t.outcome, t.group, family, predictors, t)


# --- timing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Median wall time of ``runs`` calls (after ``warmup`` untimed ones) and the last value."""

    seconds: float
    times: tuple[float, ...]
    value: Any

    @property
    def runs(self) -> int:
        return len(self.times)


def time_median(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed (JIT, caches), then ``repeats`` times timed."""
    value = None
    for _ in range(warmup):
        value = fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), tuple(times), value)


def row(section: str, case: str, tool: str, status: str = "ok", **fields: Any) -> dict:
    """One result row; ``fields`` usually include ``seconds``, ``runs`` and ``loglik``."""
    out = {"section": section, "case": case, "tool": tool, "status": status}
    out.setdefault("seconds", None)
    out.update(fields)
    return out


def not_installed(section: str, case: str, tool: str, **fields: Any) -> dict:
    """The row of a peer that is absent: reported, never silently dropped."""
    return row(section, case, tool, status=NOT_INSTALLED, **fields)


def failed(section: str, case: str, tool: str, err: BaseException | str, **fields) -> dict:
    """The row of a tool that raised or timed out; the message is kept to one line."""
    msg = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return row(section, case, tool, status=f"failed: {msg[:120]}", **fields)


def timed_out(section: str, case: str, tool: str, timeout: float) -> dict:
    """The row of a peer stopped at ``timeout``: its time and ratio are lower bounds."""
    return row(
        section,
        case,
        tool,
        status=f"timeout after {timeout:.0f} s",
        seconds=timeout,
        runs=1,
        note="time and ratio are lower bounds",
    )


# --- memory --------------------------------------------------------------------------------


def run_measured(
    argv: list[str], timeout: float | None = None, env: dict | None = None
) -> tuple[subprocess.CompletedProcess, float | None]:
    """Run a command and return it with its peak resident memory in MB (whole process).

    Uses ``/usr/bin/time -v`` when present (its "Maximum resident set size"), otherwise
    ``resource.getrusage(RUSAGE_CHILDREN)`` around the call (POSIX only).
    """
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    if gnu_time:
        proc = subprocess.run(
            [gnu_time, "-v", *argv], capture_output=True, text=True, timeout=timeout, env=env
        )
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        return proc, (int(match.group(1)) / 1024.0 if match else None)
    import resource

    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children
    return proc, peak_kb / 1024.0


def rss_now_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc; else the peak so far)."""
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024.0
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB since start or the last reset."""
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024.0
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- peers ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def peer_versions() -> dict[str, str | None]:
    """Version of every peer, or None when it is not installed (R packages via Rscript)."""
    out: dict[str, str | None] = {}
    for module, dist in PY_PEERS.items():
        out[dist] = _dist_version(dist) if importlib.util.find_spec(module) else None
    out.update(r_versions())
    return out


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def r_versions() -> dict[str, str | None]:
    """R and the R peers' versions; every value is None without a working Rscript."""
    names = ("R", *R_PEERS)
    rscript = shutil.which("Rscript")
    if not rscript:
        return dict.fromkeys(names)
    code = (
        "cat('R', paste(R.version$major, R.version$minor, sep='.'), '\\n');"
        f"for (p in c({', '.join(repr(p) for p in R_PEERS)})) "
        "cat(p, if (requireNamespace(p, quietly=TRUE)) as.character(packageVersion(p)) "
        "else 'NA', '\\n')"
    )
    try:
        proc = subprocess.run([rscript, "-e", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return dict.fromkeys(names)
    found = dict(line.split()[:2] for line in proc.stdout.splitlines() if len(line.split()) >= 2)
    return {n: (None if found.get(n, "NA") == "NA" else found[n]) for n in names}


def has_peer(name: str) -> bool:
    """True when the peer (a PyPI name, "lme4", "ranger" or "R") can run here."""
    versions = peer_versions()
    if name in R_PEERS:
        return versions.get(name) is not None and versions.get("jsonlite") is not None
    return versions.get(name) is not None


def rscript_json(script: str | os.PathLike, args: list[str], timeout: float = 1800) -> dict:
    """Run an R script whose last stdout line is one JSON object, and parse that line."""
    rscript = shutil.which("Rscript")
    if not rscript:
        raise RuntimeError("Rscript not found")
    proc = subprocess.run(
        [rscript, "--vanilla", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"Rscript exit {proc.returncode}: {' | '.join(tail)}")
    return json.loads(lines[-1])


# --- machine -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """Cores, CPU model, OS and Python: the context every timing needs."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{mem_kb / 1024**2:.1f} GB"
    except (OSError, AttributeError):
        mem = "unknown"
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
    }


def package_versions() -> dict[str, str]:
    """Versions of autoglmm, its numeric stack and every peer ("not installed" if absent)."""
    out = {}
    for dist in ("autoglmm", "numpy", "scipy", "pandas", "numba", "scikit-learn"):
        out[dist] = _dist_version(dist) or NOT_INSTALLED
    for name, version in peer_versions().items():
        out[name if name != "R" else "R (Rscript)"] = version or NOT_INSTALLED
    return out
