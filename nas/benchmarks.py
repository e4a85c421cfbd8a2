"""Benchmarks that print figures and ratios (never pass/fail).

``python -m nas.benchmarks scoring``: candidates scored per second, end to end from a spec (layer
graph + gradient-path metrics at every scope + ranking key), on one core with pinned threads.
Target (issue 3): 500 or more Bi-Real18-sized candidates per second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

PINNING = {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores", "OMP_NUM_THREADS": "1"}
TARGET_PER_S = 500


def _pin() -> None:
    """One core, pinned threads (DESIGN.md section 9: unpinned timings on this VM jump)."""
    for k, v in PINNING.items():
        os.environ.setdefault(k, v)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _rate(fn: Callable[[], object], seconds: float, repeats: int) -> float:
    """Median calls per second over ``repeats`` runs of about ``seconds`` each."""
    fn()
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def scoring(seconds: float = 1.0, repeats: int = 5) -> list[dict]:
    from nas.analysis import analyze_spec
    from nas.graph import spec_graph
    from nas.metrics import PathGraph, path_report
    from nas.registry import model_spec
    from nas.scorers import get_scorer

    key = get_scorer()
    rows = []
    for name in ("bireal_resnet18", "igp_resnet37", "binary_densenet28"):
        spec = model_spec(name)
        paths = {
            "spec -> layer ops -> metrics -> key": lambda s=spec: key(analyze_spec(s)),
            "spec -> networkx graph -> metrics -> key": lambda s=spec: key(
                path_report(PathGraph.from_networkx(spec_graph(s)))
            ),
        }
        for route, fn in paths.items():
            rate = _rate(fn, seconds, repeats)
            rows.append(
                {
                    "model": name,
                    "route": route,
                    "per_s": round(rate, 1),
                    "vs_target": round(rate / TARGET_PER_S, 2),
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.benchmarks", description=__doc__)
    parser.add_argument("which", choices=["scoring"])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    _pin()
    rows = scoring(args.seconds, args.repeats)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(
        f"scoring, 1 core pinned, median of {args.repeats} x {args.seconds:g} s "
        f"(target {TARGET_PER_S}/s for Bi-Real18-sized specs)"
    )
    for r in rows:
        print(
            f"  {r['model']:18s} {r['route']:42s} {r['per_s']:8.1f}/s  {r['vs_target']:.2f}x target"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
