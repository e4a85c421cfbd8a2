"""The search's speed (``python -m nas.benchmarks search``) and its samplers at equal wall time
(``python -m nas.benchmarks samplers``).

``search`` runs ``python -m nas.search --budget 0.16GFLOPs --train-top 0 --trials N`` as a user
does (seed 5, every core), for N = 1k, 10k and 100k by default, and reports the command's wall
time, the search loop's own time, the distinct candidates, the structures drawn to get them and
the time per candidate; linear cost keeps the time per candidate at 100k near that at 1k.

``samplers`` gives each sampler the same wall time (60 s by default) on the same budget and
key, and reports the candidates it found, the best key it reached and how many of the 100 best
candidates of all samplers together it holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from nas import cli
from nas.core.scorers import DEFAULT_SCORER
from pipeline.loop import Search
from pipeline.ranking import sort_key
from pipeline.settings import SAMPLERS, Settings
from pipeline.storage import open_study
from results.run import DRAWS
from search_spaces import get_space, list_spaces

ROOT = Path(__file__).resolve().parents[1]
BUDGET = "0.16GFLOPs"
SEED = 5


def scaling(sizes: Sequence[int]) -> list[dict]:
    """One search per size, as a user runs it; see the module's docstring."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            out = Path(tmp) / f"n{n}"
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "nas.search", "--budget", BUDGET, "--train-top", "0",
                 "--trials", str(n), "--seed", str(SEED), "--no-progress", "--out", str(out)],
                cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            wall = time.perf_counter() - start
            counts = json.loads((out / DRAWS).read_text())
            rows.append(
                {
                    "trials": n,
                    "wall_s": round(wall, 2),
                    "search_s": counts["seconds"],
                    "candidates": counts["candidates"],
                    "drawn": counts["drawn"],
                    "ms_per_candidate": round(1e3 * wall / counts["candidates"], 3),
                    "study_mib": round((out / "study.db").stat().st_size / 2**20, 1),
                    "workers": cli.usable_cores(),
                }
            )
    first = rows[0]["ms_per_candidate"]
    for r in rows:
        r["vs_first"] = round(r["ms_per_candidate"] / first, 2)
    return rows


def scaling_text(rows: list[dict]) -> str:
    lines = [
        f"python -m nas.search --budget {BUDGET} --train-top 0 --seed {SEED} --trials N "
        f"({rows[0]['workers']} workers)",
        f"{'N':>8} {'wall s':>8} {'search s':>9} {'candidates':>11} {'drawn':>9} "
        f"{'ms/cand':>8} {'vs first':>9} {'study MiB':>10}",
    ]
    for r in rows:
        lines.append(
            f"{r['trials']:>8} {r['wall_s']:>8.1f} {r['search_s']:>9.1f} {r['candidates']:>11} "
            f"{r['drawn']:>9} {r['ms_per_candidate']:>8.2f} {r['vs_first']:>8.2f}x "
            f"{r['study_mib']:>10.1f}"
        )
    return "\n".join(lines)


def samplers(seconds: float) -> list[dict]:
    """Each sampler for ``seconds`` of wall time; see the module's docstring."""
    rows, found = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in SAMPLERS:
            run_dir = Path(tmp) / sampler
            run_dir.mkdir()
            settings = Settings(
                budget=0.16e9, budget_text=BUDGET, space="all", trials=10**9, seed=SEED,
                tolerance=0.05, top=10, train_top=0, sampler=sampler, storage="",
                study_name=sampler, input_size=224, classes=1000, scorer=DEFAULT_SCORER,
            )  # fmt: skip
            open_study(settings.study_url(run_dir), sampler, settings.directions)
            search = Search(settings, run_dir, workers=cli.usable_cores())
            search.run(progress=False, seconds=seconds)
            found[sampler] = {r["arch_id"]: r for r in search.candidates}
            best = min(search.candidates, key=sort_key)
            rows.append(
                {
                    "sampler": sampler,
                    "seconds": round(search.seconds, 1),
                    "candidates": len(search.candidates),
                    "drawn": search.counts.drawn,
                    "best_key": best["key"],
                }
            )
    union: dict = {}
    for cands in found.values():
        union.update(cands)
    top = sorted(union.values(), key=lambda r: (sort_key(r), r["arch_id"]))[:100]
    top_ids = {r["arch_id"] for r in top}
    for row in rows:
        row["in_top_100"] = len(top_ids & found[row["sampler"]].keys())
    return rows


def samplers_text(rows: list[dict]) -> str:
    sizes = ", ".join(f"{n} {get_space(n).size():,}" for n in list_spaces())
    lines = [
        f"samplers at equal wall time, budget {BUDGET}, key {DEFAULT_SCORER}, seed {SEED}, "
        f"{cli.usable_cores()} workers (structures: {sizes})",
        f"{'sampler':>11} {'s':>6} {'candidates':>11} {'drawn':>9} {'in top 100':>11}  best key",
    ]
    for r in rows:
        key = ", ".join("-" if v is None else f"{v:.4g}" for v in r["best_key"])
        lines.append(
            f"{r['sampler']:>11} {r['seconds']:>6.1f} {r['candidates']:>11} {r['drawn']:>9} "
            f"{r['in_top_100']:>11}  ({key})"
        )
    return "\n".join(lines)
