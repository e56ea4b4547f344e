"""One term builder (issue 12): which path from formula to columns is fast enough for the search?

The search builds one model frame per candidate, all on one sample, so the builder's cost
is paid for every fit. This times, on the paper's TIMSS-scale data and the formulas the
search itself writes (true ranking, gaussian):

1. **frames**: ``build_model_frame`` over every formula of one search, per formula;
2. **formulaic**: ``formulaic.model_matrix`` of the same fixed and random parts, on a frame
   already cut to the used columns (the best case of "formulaic with a per-sample cache of
   evaluated columns": only formulaic's parse and encode are left);
3. **steps**: ``autoglmm.search`` with the true ranking (SPEC 2 steps 4-6 plus null model
   and R²), end to end.

``--baseline SRC`` runs (1) and (3) a second time in a subprocess on another source tree
(e.g. ``git archive <commit> src | tar -x -C /tmp/base``), alternating, so the two builders
are compared in the same run on the same machine load. Times are CPU seconds of the
process (``time.process_time``): on a shared, overloaded machine wall time mostly measures
the other jobs.

Run: ``python benchmarks/formula_builder.py [--baseline /tmp/base/src] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _search_formulas(data, ranking: list[str]) -> tuple[list[str], float]:
    import autoglmm

    t0 = time.process_time()
    res = autoglmm.search(data.frame, data.outcome, data.group, ranking=ranking,
                          progress=False, seed=1)  # fmt: skip
    seconds = time.process_time() - t0
    formulas = [s.formula for s in res.steps if s.formula]
    return formulas, seconds


def measure(repeats: int, with_formulaic: bool) -> dict:
    """Times of this interpreter's ``autoglmm`` (whatever source tree it imports)."""
    import common

    from autoglmm.formula import parse_formula
    from autoglmm.model_frame import build_model_frame

    data = common.paper_data("gaussian")
    ranking = data.true_ranking()
    formulas, _ = _search_formulas(data, ranking)  # warm-up: numba compiles, caches fill
    steps = sorted(_search_formulas(data, ranking)[1] for _ in range(repeats))
    frames = []
    for _ in range(repeats):
        t0 = time.process_time()
        for f in formulas:
            build_model_frame(parse_formula(f), data.frame)
        frames.append((time.process_time() - t0) / len(formulas))
    out = {
        "autoglmm": str(Path(sys.modules["autoglmm"].__file__).parent),
        "n_formulas": len(formulas),
        "frame_ms": 1e3 * sorted(frames)[len(frames) // 2],
        "steps_s": steps[len(steps) // 2],
        "steps_all_s": steps,
    }
    if with_formulaic:
        out["formulaic_ms"] = _formulaic_ms(formulas, data.frame, repeats)
    return out


def _formulaic_ms(formulas: list[str], frame, repeats: int) -> float:
    from formulaic import model_matrix

    from autoglmm.formula import parse_formula

    parts = []
    for f in formulas:
        parsed = parse_formula(f)
        texts = [parsed.fixed_text] + [t.expr_text for t in parsed.random]
        used = [c for c in frame.columns if any(c in t for t in texts)]
        parts.append((texts, frame[used]))
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for texts, sub in parts:
            for text in texts:
                model_matrix(text, sub, na_action="ignore")
        times.append((time.process_time() - t0) / len(parts))
    return 1e3 * sorted(times)[len(times) // 2]


def _subprocess(src: str | None, repeats: int, with_formulaic: bool) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--child", "--repeats", str(repeats)]
    cmd += ["--formulaic"] if with_formulaic else []
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="src directory of the builder to compare with")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per builder")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--formulaic", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.repeats, args.formulaic)))
        return
    results: dict[str, list[dict]] = {"current": [], "baseline": []}
    for i in range(args.rounds):
        results["current"].append(_subprocess(None, args.repeats, with_formulaic=i == 0))
        if args.baseline:
            results["baseline"].append(_subprocess(args.baseline, args.repeats, False))
    load = os.getloadavg()
    print(json.dumps({"load": load, "nproc": os.cpu_count(), **results}, indent=1))


if __name__ == "__main__":
    main()
