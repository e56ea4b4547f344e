"""A 3-RE binomial GLMM at 128k rows: time, evaluations and lme4's convergence statistic.

The data are ``benchmarks/growth.py``'s groups sweep at its largest size (128,000 rows in
3,664 schools of about 35 students, the true model ``rs3``: 18 predictors, the
interaction and three correlated random effects). One warm-up fit on 2,000 rows compiles
or loads numba's cache first, so the timed fit is the engine alone.

Run: ``python benchmarks/glmm_convergence.py [--rows 128000 --groups 3664]``. To compare
two versions in one run, call it twice with ``PYTHONPATH=OLD_SRC`` for the older one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128000)
    parser.add_argument("--groups", type=int, default=3664)
    args = parser.parse_args()
    import autoglmm

    warm = common.growth_data(2000, 60, "binomial")
    autoglmm.fit(warm.formulas()["rs3"], warm.frame, family="binomial")
    data = common.growth_data(args.rows, args.groups, "binomial")
    t0 = time.perf_counter()
    res = autoglmm.fit(data.formulas()["rs3"], data.frame, family="binomial")
    seconds = time.perf_counter() - t0
    c = res.convergence
    print(f"source: {Path(autoglmm.__file__).parent}")
    print(f"rows {data.n_rows}, groups {data.n_groups}: {seconds:.2f} s, converged {c.converged}")
    print(f"evaluations {c.n_evaluations}, restarted {c.restarted}")
    print(f"scaled gradient {c.scaled_gradient:.3g} (lme4's tolerance {c.grad_tol:g})")
    print(f"logLik {res.loglik:.6f}; optimizer: {c.optimizer_status}")


if __name__ == "__main__":
    main()
