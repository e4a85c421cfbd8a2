"""Benchmarks that print figures and ratios (never pass/fail).

``python -m nas.benchmarks scoring``: candidates scored per second, end to end from a spec (layer
graph + gradient-path metrics at every scope + ranking key), on one core with pinned threads.
Target (issue 3): 500 or more Bi-Real18-sized candidates per second.

``python -m nas.benchmarks training``: training images per second of a Bi-Real18-structured proxy
model at 28 px (small-image stem, full width, batch 64, Adam), bf16 autocast + channels_last
against fp32, on all cores with pinned threads. Target (issue 5): bf16 1.7x fp32 or better.
``--device cuda`` times the full ``bireal_resnet18`` at 224 px (1000 classes) on the GPU instead.

``python -m nas.benchmarks spec-size``: how ``nas.paths`` and ``nas.profile`` scale with the size
of a spec: wall time in-process, end to end from the JSON text to the printed string (parse,
validate, lower, metrics or cost, arch id, format), for generated specs of 1,000, 10,000 and
100,000 Bi-Real blocks (:func:`chain_spec`), and the time per block at each size; linear work
keeps the ratio of the time per block at 100k to that at 1k near 1. ``--sizes`` to choose.

``python -m nas.benchmarks ray``: Ray's overhead: the start of a local Ray (loopback, dashboard
on) and the wall time per trial of a Tuner running trials that do no work (each reports three
epochs and a checkpoint), with ``reuse_actors`` as the product runs them; what every trained
candidate pays on top of its training.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nas import _cli
from nas.spec import MAX_BLOCKS

PINNING = {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}
TARGET_PER_S = 500
TARGET_BF16_RATIO = 1.7
SPEC_SIZES = (1_000, 10_000, 100_000)


def _pin(one_core: bool) -> None:
    """Pinned threads (DESIGN.md section 9: unpinned timings on this VM jump), on one core or on
    all. Set before torch starts its thread pool."""
    for k, v in PINNING.items():
        os.environ.setdefault(k, v)
    if one_core:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
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


def training(steps: int = 8, repeats: int = 3, batch: int = 64, device: str = "cpu") -> list[dict]:
    """On ``cpu`` the 28 px proxy; on ``cuda`` the full ``bireal_resnet18`` at 224 px, 1000
    classes (ImageNet's shapes, random data)."""
    import torch

    from nas.model import build_model
    from nas.registry import model_spec
    from runners.datasets import Splits
    from runners.train import proxy_spec

    if device == "cuda":
        spec, name, shape, classes = model_spec("bireal_resnet18"), "@224px", (3, 224), 1000
    else:
        splits = Splits("synthetic", None, None, 10, 1, 28, (0.5,), (0.5,), flip=False)
        spec = proxy_spec(model_spec("bireal_resnet18"), splits)
        name, shape, classes = "@28px", (1, 28), 10
    x = torch.randn(batch, shape[0], shape[1], shape[1], device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    rows = []
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model(spec).to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer, precision=precision) -> None:
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(2):
            step()
        rates = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            rates.append(steps * batch / (time.perf_counter() - start))
        rows.append(
            {
                "model": f"bireal_resnet18 {name}",
                "precision": precision,
                "images_per_s": round(statistics.median(rates), 1),
                "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                "threads": torch.get_num_threads(),
            }
        )
    rows[1]["vs_fp32"] = round(rows[1]["images_per_s"] / rows[0]["images_per_s"], 2)
    return rows


def chain_spec(blocks: int, width: int = 64):
    """A generated spec of ``blocks`` Bi-Real blocks (one binary 3x3 conv and an identity beside
    it) in one stage, 32 px, 10 classes: ``2 * blocks + 7`` ops. Its network N is (0, c, 2c)
    with c = one conv's BOPs / 64, with ``blocks`` and ``blocks * (blocks - 1) / 2`` paths for
    c and 2c; its depth is ``blocks + 2``."""
    from nas.blocks import chain_block
    from nas.spec import ArchSpec, Stage, Stem

    block = chain_block(width, 1, "bireal")
    return ArchSpec(
        name=f"bireal_chain{blocks}",
        stages=(Stage(blocks=(block,) * blocks),),
        stem=Stem("small", width),
        input_size=32,
        classes=10,
    )


def spec_size(sizes: Sequence[int] = SPEC_SIZES, repeats: int = 1) -> list[dict]:
    """Seconds from JSON text to output string of ``nas.paths`` and ``nas.profile`` (text and
    ``--json``) on :func:`chain_spec` of each size; the best of ``repeats`` runs."""
    from nas import paths, profile
    from nas.spec import ArchSpec

    commands = {
        "paths": lambda spec: paths.render(spec),
        "paths --json": lambda spec: paths.render(spec, as_json=True),
        "profile": lambda spec: profile.render(spec),
        "profile --json": lambda spec: profile.render(spec, as_json=True),
    }
    rows = []
    for blocks in sizes:
        text = chain_spec(blocks).to_json()
        row: dict = {"blocks": blocks, "json_mb": round(len(text) / 1e6, 2)}
        for command, render in commands.items():
            best = math.inf
            for _ in range(repeats):
                gc.collect()
                start = time.perf_counter()
                out = render(ArchSpec.from_json(text))
                best = min(best, time.perf_counter() - start)
                del out
            row[command] = round(best, 3)
            row[f"{command} us/block"] = round(best / blocks * 1e6, 2)
        rows.append(row)
    for command in commands:
        first, last = rows[0][f"{command} us/block"], rows[-1][f"{command} us/block"]
        rows[-1][f"{command} per-block ratio"] = round(last / first, 2)
    return rows


def _print_spec_size(rows: list[dict]) -> None:
    commands = ("paths", "paths --json", "profile", "profile --json")
    print(
        "nas.paths and nas.profile against spec size (one stage of Bi-Real blocks; JSON text to "
        "output string, in-process, 1 core pinned): seconds (microseconds per block)"
    )
    print(f"  {'blocks':>8s} {'JSON MB':>8s}" + "".join(f" {c:>22s}" for c in commands))
    for r in rows:
        cells = "".join(f" {r[c]:>10.3f} s ({r[f'{c} us/block']:6.1f})" for c in commands)
        print(f"  {r['blocks']:>8,d} {r['json_mb']:>8.2f}{cells}")
    last = rows[-1]
    ratios = ", ".join(f"{c} {last[f'{c} per-block ratio']:.2f}" for c in commands)
    print(
        f"  time per block at {rows[-1]['blocks']:,} over that at {rows[0]['blocks']:,} "
        f"blocks: {ratios} (1 = linear)"
    )


def _idle_trial(config: dict) -> None:
    """A trial that only reports: three epochs, each with a checkpoint, like a training trial."""
    import tempfile

    from ray import tune

    with tempfile.TemporaryDirectory() as folder:
        for epoch in range(1, 4):
            (Path(folder) / "state.pt").write_bytes(b"0" * 1024)
            tune.report(
                {"epoch": epoch, "top1": 0.0}, checkpoint=tune.Checkpoint.from_directory(folder)
            )


def ray_overhead(trials: int = 16, repeats: int = 3) -> list[dict]:
    import tempfile

    from runners.ray_local import ray_session

    rows = []
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        with ray_session(Path(work) / "home", dashboard_port=8299):
            started = time.perf_counter() - start
            from ray import tune

            per_trial = []
            for r in range(repeats):
                tuner = tune.Tuner(
                    tune.with_resources(_idle_trial, {"cpu": 1}),
                    param_space={"i": tune.grid_search(list(range(trials)))},
                    tune_config=tune.TuneConfig(reuse_actors=True),
                    run_config=tune.RunConfig(
                        name=f"idle{r}", storage_path=str(Path(work) / "tune"), verbose=0
                    ),
                )
                t = time.perf_counter()
                grid = tuner.fit()
                assert not grid.errors
                per_trial.append((time.perf_counter() - t) / trials)
        rows.append(
            {"what": "local Ray start (ray.init, dashboard on)", "seconds": round(started, 2)}
        )
        rows.append(
            {
                "what": f"per trial, {trials} idle trials of 3 reports, reuse_actors, "
                f"median of {repeats}",
                "seconds": round(statistics.median(per_trial), 3),
                "cpus": os.cpu_count(),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = _cli.Parser(
        prog="python -m nas.benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("which", choices=["scoring", "training", "ray", "spec-size"])
    parser.add_argument("--seconds", type=_cli.seconds, default=1.0, help="length of one timed run")
    parser.add_argument(
        "--repeats",
        type=_cli.int_range(1, 1000, "number of runs"),
        help="timed runs; the median is kept (spec-size: the best; default 5, spec-size 1)",
    )
    parser.add_argument(
        "--sizes",
        type=_cli.int_range(1, MAX_BLOCKS, "number of blocks"),
        nargs="+",
        default=SPEC_SIZES,
        help="spec-size only: the numbers of blocks (default: 1000 10000 100000)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="training only: cuda times the full bireal_resnet18 at 224 px on the GPU",
    )
    args = parser.parse_args(argv)
    _pin(one_core=args.which in ("scoring", "spec-size"))
    if args.which == "spec-size":
        rows = spec_size(args.sizes, args.repeats or 1)
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            _print_spec_size(rows)
        return 0
    args.repeats = args.repeats or 5
    if args.which == "ray":
        rows = ray_overhead(repeats=args.repeats)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        print("Ray overhead (local Ray on loopback)")
        for r in rows:
            print(f"  {r['what']:64s} {r['seconds']:8.3f} s")
        return 0
    if args.which == "training":
        import torch

        if args.device == "cuda" and not torch.cuda.is_available():
            raise _cli.UsageError(
                "--device cuda needs a CUDA GPU (torch.cuda.is_available() is False)"
            )
        rows = training(repeats=args.repeats, device=args.device)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        print(
            f"training, bf16 autocast vs fp32, median of {args.repeats} runs "
            f"(target bf16 >= {TARGET_BF16_RATIO}x fp32)"
        )
        for r in rows:
            extra = f"  {r['vs_fp32']:.2f}x fp32" if "vs_fp32" in r else ""
            print(
                f"  {r['model']}  {r['precision']:5s} {r['images_per_s']:8.1f} images/s "
                f"({r['device']}, {r['threads']} threads){extra}"
            )
        return 0
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
    sys.exit(_cli.run("nas.benchmarks", main))
