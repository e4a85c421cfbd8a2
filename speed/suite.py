"""Benchmarks that print figures and ratios (never pass/fail).

``python -m nas.benchmarks scoring``: candidates scored per second, end to end from a spec (layer
graph + gradient-path metrics at every scope + ranking key), on one core with pinned threads.
Target: 500 or more Bi-Real18-sized candidates per second.

``python -m nas.benchmarks training``: the proxy training of the study: the recipe of
``runners.options.TrainingOptions`` (Fashion-MNIST at 28 px, width x0.5, stride-2 small stem, batch
128, Adam, bf16 autocast + channels_last, no augmentation) on one thread pinned to one core, as a
trial runs, for three networks of different shape (``bireal_resnet18``, ``igp_resnet37`` and
:func:`deep_thin_spec`, a search candidate of 161 binary convs). Per network the reference path
(``runners.train.train(..., reference=True)``: a DataLoader, the reference binary conv modules)
and the fast one (the default) train the same images in interleaved rounds (each path an epoch
of ``--images`` images per round, in alternating order), from the same seed: training images per
second, wall clock and process CPU time (the CPU figure holds on a loaded machine), medians over
the rounds, and whether the two paths' losses agree bit for bit; then evaluation images per
second (the test-split pass after every epoch). Target: the fast path 1.5x the
reference. ``--precision``: bf16 against fp32 instead (below).

``python -m nas.benchmarks training --precision``: training images per second of a
Bi-Real18-structured proxy model at 28 px (small-image stem, full width, batch 64, Adam), bf16
autocast + channels_last against fp32, on all cores with pinned threads. Target: bf16
1.7x fp32 or better. ``--device cuda`` times the full ``bireal_resnet18`` at 224 px (1000
classes) on the GPU instead.

``python -m nas.benchmarks spec-size``: how ``nas.paths`` and ``nas.profile`` scale with the size
of a spec: wall time in-process, end to end from the JSON text to the printed string (parse,
validate, lower, metrics or cost, arch id, format), for generated specs of 1,000, 10,000 and
100,000 Bi-Real blocks (:func:`chain_spec`), and the time per block at each size; linear work
keeps the ratio of the time per block at 100k to that at 1k near 1. ``--sizes`` to choose.

``python -m nas.benchmarks ray``: Ray's overhead: the start of a local Ray (loopback, dashboard
on) and the wall time per trial of a Tuner running trials that do no work (each reports three
epochs and a checkpoint), with an actor per trial as the product runs them (and, beside it,
with reused actors); what every trained candidate pays on top of its training.

``python -m nas.benchmarks search``: the search's wall time for 1k, 10k and 100k candidates
(``--sizes``), run as users run it, and ``python -m nas.benchmarks samplers``: the samplers at
equal wall time (:mod:`speed.search`).

``python -m nas.benchmarks reproducibility``: whether training gives the same bits on other CPUs,
in bf16 and fp32, and what fp32 costs (:mod:`speed.reproducibility`).

``python -m nas.benchmarks evaluator``: the start of the search's evaluator process (spawned, as
the search spawns it): seconds to its first result and its peak memory; the spec side it imports
loads no torch (docs/design.md section 11).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna

from nas import cli, paths, profile
from nas.core.blocks import chain_block, fractal_convs, shortcuts
from nas.core.graph import lower, spec_graph
from nas.core.metrics import PathGraph, path_report
from nas.core.registry import model_spec
from nas.core.scorers import get_scorer, measure
from nas.core.spec import MAX_BLOCKS, ArchSpec, Block, Stage, Stem, Transition
from pipeline.evaluate import EvaluatorPool
from pipeline.settings import Settings
from runners.options import TrainingOptions
from runners.ray_local import ray_session
from search_spaces import get_space

PINNING = {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}
TARGET_PER_S = 500
TARGET_BF16_RATIO = 1.7
TARGET_PROXY_SPEEDUP = 1.5
PROXY_NETWORKS = ("bireal_resnet18", "igp_resnet37", "deep_thin")
SPEC_SIZES = (1_000, 10_000, 100_000)


def _pin(one_core: bool) -> None:
    """Pinned threads (docs/design.md section 9: unpinned timings on this VM jump), on one core or
    on all. Set before torch starts its thread pool."""
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
    key = get_scorer()
    rows = []
    for name in ("bireal_resnet18", "igp_resnet37", "binary_densenet28"):
        spec = model_spec(name)
        paths = {
            "spec -> layer ops -> metrics -> key": lambda s=spec: key(measure(lower(s))),
            "spec -> networkx graph -> metrics -> key": lambda s=spec: key(
                measure(lower(s), path_report(PathGraph.from_networkx(spec_graph(s))))
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
    import torch  # noqa: PLC0415 - torch: after _pin()

    from nas.nn.model import build_model  # noqa: PLC0415 - torch: after _pin()
    from runners.datasets import Splits  # noqa: PLC0415 - torch: after _pin()
    from runners.train import proxy_spec  # noqa: PLC0415 - torch: after _pin()

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


def deep_thin_spec():
    """A deep, thin search candidate (``nas.search --budget 0.16GFLOPs``, resnet space): 23
    blocks of 7 binary convs (FractalNet's expansion with 3 columns, summed, one identity around
    the block) in 4 stages of widths 35, 70, 140 and 280 joined by AvgPool + 1x1 conv
    transitions, ApproxSign; 161 binary convs, ImageNet shapes (proxy it with
    ``runners.train.proxy_spec``)."""

    def block(width: int) -> Block:
        return Block("residual", width, convs=fractal_convs(3), shortcuts=shortcuts("outer", 4))

    stages = tuple(
        Stage(
            blocks=(block(width),) * count,
            transition=None if i == 0 else Transition("avgpool_conv", width),
        )
        for i, (width, count) in enumerate(((35, 6), (70, 6), (140, 6), (280, 5)))
    )
    return ArchSpec(
        name="deep_thin", stages=stages, stem=Stem("imagenet", 35), activation="approxsign"
    )


def _proxy_data():
    """Fashion-MNIST, or where it is not installed random images of its shapes (said in the
    output: the speed is the same, the losses mean nothing)."""
    # torch: after _pin()
    from runners.datasets import DataNotFound, Splits, load_dataset  # noqa: PLC0415

    try:
        return load_dataset("fashion_mnist"), "Fashion-MNIST"
    except DataNotFound:
        import torch  # noqa: PLC0415 - torch: after _pin()

        g = torch.Generator().manual_seed(0)

        def part(n: int):
            x = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
            return torch.utils.data.TensorDataset(x, torch.randint(0, 10, (n,), generator=g))

        splits = Splits("synthetic", part(60000), part(10000), 10, 1, 28, (0.286,), (0.353,), True)
        return splits, "random images (Fashion-MNIST not installed)"


def proxy_training(
    images: int = 1280,
    repeats: int = 5,
    networks: Sequence[str] = PROXY_NETWORKS,
    eval_images: int = 2048,
) -> tuple[list[dict], str]:
    """Rows of the proxy-training benchmark (module docstring) and the data's name. Runs torch
    on one thread; call in a process pinned to one core (``_pin(one_core=True)``, whose
    OMP_NUM_THREADS comes too late for torch, which ``nas`` imports)."""
    import torch  # noqa: PLC0415 - torch: after _pin()

    torch.set_num_threads(1)
    from runners.train import (  # noqa: PLC0415 - torch: after _pin()
        _subset,
        evaluate,
        make_model,
        pick_device,
        proxy_spec,
        train_epoch,
    )

    splits, data_name = _proxy_data()
    data = TrainingOptions().data
    config = dataclasses.replace(
        TrainingOptions().recipe,
        epochs=max(repeats + 1, 3),
        train_subset=images,
        eval_subset=eval_images,
        device="cpu",
    )
    device = pick_device("cpu")
    data = _subset(splits.train, images, config.seed)
    rows = []
    for name in networks:
        base = deep_thin_spec() if name == "deep_thin" else model_spec(name)
        spec = proxy_spec(base, splits, data.width_mult, stem_stride=data.stem_stride)
        paths = {}
        for reference in (True, False):
            model, optimizer = make_model(spec, config, device, reference)
            warm = dataclasses.replace(config, train_subset=2 * config.batch_size)
            train_epoch(model, optimizer, _subset(splits.train, warm.train_subset, 0), splits,
                        warm, device, 0, reference)  # fmt: skip
            paths[reference] = (model, optimizer)
        # the warm-up steps were the same on both paths, so the rounds start from equal states
        wall: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        losses: dict[bool, list[float]] = {True: [], False: []}
        for r in range(repeats):
            for reference in (True, False) if r % 2 == 0 else (False, True):
                model, optimizer = paths[reference]
                start = time.process_time()
                running, seen, seconds = train_epoch(
                    model, optimizer, data, splits, config, device, r + 1, reference
                )
                cpu[reference].append(seen / (time.process_time() - start))
                wall[reference].append(seen / seconds)
                losses[reference].append(running)
        evals: dict[bool, float] = {}
        results = {}
        for reference in (True, False):
            model, _ = paths[reference]
            start = time.perf_counter()
            results[reference] = evaluate(model, splits, config, device, reference)
            evals[reference] = min(eval_images, len(splits.test)) / (time.perf_counter() - start)
        row = {"network": name, "convs": sum(len(b.convs) for s in spec.stages for b in s.blocks)}
        for reference, label in ((True, "reference"), (False, "fast")):
            row[f"{label}_images_per_s"] = round(statistics.median(wall[reference]), 1)
            row[f"{label}_cpu_images_per_s"] = round(statistics.median(cpu[reference]), 1)
            row[f"{label}_eval_images_per_s"] = round(evals[reference], 1)
        row["speedup"] = round(row["fast_images_per_s"] / row["reference_images_per_s"], 3)
        row["speedup_cpu"] = round(
            row["fast_cpu_images_per_s"] / row["reference_cpu_images_per_s"], 3
        )
        row["speedup_eval"] = round(
            row["fast_eval_images_per_s"] / row["reference_eval_images_per_s"], 3
        )
        # an epoch of the main job's proxy (TrainingOptions.train_subset images trained, the test
        # split evaluated), from these rates
        train_n, test_n = (
            TrainingOptions().recipe.train_subset or len(splits.train),
            len(splits.test),
        )
        epoch = {
            label: train_n / row[f"{label}_images_per_s"]
            + test_n / row[f"{label}_eval_images_per_s"]
            for label in ("reference", "fast")
        }
        row["epoch_seconds_reference"] = round(epoch["reference"], 1)
        row["epoch_seconds_fast"] = round(epoch["fast"], 1)
        row["speedup_epoch"] = round(epoch["reference"] / epoch["fast"], 3)
        row["epoch_images"] = [train_n, test_n]
        row["identical"] = losses[True] == losses[False] and results[True] == results[False]
        row["threads"] = torch.get_num_threads()
        rows.append(row)
    return rows, data_name


def _print_proxy_training(rows: list[dict], data_name: str, repeats: int, load: tuple) -> None:
    print(
        f"proxy training (runners.options.TrainingOptions recipe, {data_name}), 1 thread pinned, "
        f"median of {repeats} interleaved rounds; target fast >= {TARGET_PROXY_SPEEDUP}x reference"
    )
    print(
        f"  {'network':16s} {'convs':>5s} {'reference':>10s} {'fast':>8s} {'ratio':>6s}   "
        f"{'CPU-time ratio':>14s}   {'eval ratio':>10s}   {'epoch s':>13s} {'ratio':>6s}   "
        "same bits"
    )
    for r in rows:
        print(
            f"  {r['network']:16s} {r['convs']:5d} {r['reference_images_per_s']:10.1f} "
            f"{r['fast_images_per_s']:8.1f} {r['speedup']:5.2f}x   "
            f"{r['speedup_cpu']:13.2f}x   {r['speedup_eval']:9.2f}x   "
            f"{r['epoch_seconds_reference']:6.0f} {r['epoch_seconds_fast']:6.0f} "
            f"{r['speedup_epoch']:5.2f}x   {'yes' if r['identical'] else 'NO'}"
        )
    trained, evaluated = rows[0]["epoch_images"] if rows else (0, 0)
    print(
        "  (training images/s, wall clock; CPU-time ratio: the same from process CPU time; eval: "
        f"the test-split pass;\n   epoch s: an epoch of the main job's proxy, {trained} images "
        f"trained and {evaluated} test images evaluated, at these rates)"
    )
    print(f"  load average before, after: {load[0]:.2f}, {load[1]:.2f} on {os.cpu_count()} CPUs")


def chain_spec(blocks: int, width: int = 64):
    """A generated spec of ``blocks`` Bi-Real blocks (one binary 3x3 conv and an identity beside
    it) in one stage, 32 px, 10 classes: ``2 * blocks + 7`` ops. Its network N is (0, c, 2c)
    with c = one conv's BOPs / 64, with ``blocks`` and ``blocks * (blocks - 1) / 2`` paths for
    c and 2c; its depth is ``blocks + 2``."""
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
    from ray import tune  # noqa: PLC0415 - Ray: seconds to load, the ray mode alone

    with tempfile.TemporaryDirectory() as folder:
        for epoch in range(1, 4):
            (Path(folder) / "state.pt").write_bytes(b"0" * 1024)
            tune.report(
                {"epoch": epoch, "top1": 0.0}, checkpoint=tune.Checkpoint.from_directory(folder)
            )


def ray_overhead(trials: int = 16, repeats: int = 3) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        with ray_session(Path(work) / "home", dashboard_port=8299):
            started = time.perf_counter() - start
            from ray import tune  # noqa: PLC0415 - Ray: seconds to load, the ray mode alone

            per_trial: dict[bool, list[float]] = {False: [], True: []}
            for r in range(repeats):
                for reuse in (False, True):  # interleaved: the product's way, then reused actors
                    tuner = tune.Tuner(
                        tune.with_resources(_idle_trial, {"cpu": 1}),
                        param_space={"i": tune.grid_search(list(range(trials)))},
                        tune_config=tune.TuneConfig(reuse_actors=reuse),
                        run_config=tune.RunConfig(
                            name=f"idle{r}-{reuse}", storage_path=str(Path(work) / "tune"),
                            verbose=0,
                        ),
                    )  # fmt: skip
                    t = time.perf_counter()
                    grid = tuner.fit()
                    assert not grid.errors
                    per_trial[reuse].append((time.perf_counter() - t) / trials)
        rows.append(
            {"what": "local Ray start (ray.init, dashboard on)", "seconds": round(started, 2)}
        )
        for reuse, how in ((False, "an actor per trial (as the search runs them)"),
                           (True, "reused actors")):  # fmt: skip
            rows.append(
                {
                    "what": f"per trial, {trials} idle trials of 3 reports, {how}, "
                    f"median of {repeats}",
                    "seconds": round(statistics.median(per_trial[reuse]), 3),
                    "cpus": os.cpu_count(),
                }
            )
    return rows


def evaluator_start(repeats: int = 5) -> dict:
    """A search's evaluator process (:class:`pipeline.evaluate.EvaluatorPool` of one worker),
    spawned as the search spawns it: seconds from its start to its first result (one ResNet
    structure solved and scored), and its peak resident memory (VmHWM, Linux)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = Settings(
        budget=0.16e9, budget_text="0.16GFLOPs", space="resnet", trials=1, seed=0,
        tolerance=0.05, top=1, train_top=0, sampler="random", storage="", study_name="bench",
        input_size=224, classes=1000,
    )  # fmt: skip
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    get_space("resnet").sample(trial)
    seconds, peak = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        pool = EvaluatorPool(settings, workers=1)
        pool.result(pool.submit([dict(trial.params)]))
        seconds.append(time.perf_counter() - start)
        for pid in pool.executor._processes:  # the one worker
            status = Path(f"/proc/{pid}/status")
            if status.exists():
                hwm = [ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM")]
                peak.append(int(hwm[0].split()[1]) / 1024)
        pool.close()
    return {
        "seconds": statistics.median(seconds),
        "seconds_range": [min(seconds), max(seconds)],
        "peak_mib": statistics.median(peak) if peak else None,
        "torch_in_parent": "torch" in sys.modules,
        "repeats": repeats,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m nas.benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "which",
        choices=[
            "scoring",
            "training",
            "ray",
            "spec-size",
            "evaluator",
            "search",
            "samplers",
            "reproducibility",
        ],  # fmt: skip
    )
    parser.add_argument(
        "--seconds",
        type=cli.seconds,
        help="length of one timed run (default 1; samplers: each sampler's time, default 60)",
    )
    parser.add_argument(
        "--repeats",
        type=cli.int_range(1, 1000, "number of runs"),
        help="timed runs; the median is kept (spec-size: the best; default 5, spec-size 1)",
    )
    parser.add_argument(
        "--sizes",
        type=cli.int_range(1, MAX_BLOCKS, "number of blocks"),
        nargs="+",
        default=SPEC_SIZES,
        help="spec-size: the numbers of blocks; search: the numbers of candidates (default "
        "for both: 1000 10000 100000)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="training --precision only: cuda times the full bireal_resnet18 at 224 px on the GPU",
    )
    parser.add_argument(
        "--precision",
        action="store_true",
        help="training: bf16 autocast against fp32 on all cores instead of the proxy",
    )
    parser.add_argument(
        "--images",
        type=cli.int_range(128, 60000, "number of images"),
        help="training: images per path and round (default 1280: 10 batches); "
        "reproducibility: images of the epoch (default 2000)",
    )
    args = parser.parse_args(argv)
    proxy = args.which == "training" and not args.precision and args.device == "cpu"
    _pin(one_core=args.which in ("scoring", "spec-size") or proxy)
    if args.which in ("search", "samplers"):
        from speed import search as bench_search  # noqa: PLC0415 - one mode's module

        if args.which == "search":
            rows = bench_search.scaling(args.sizes)
            print(json.dumps(rows, indent=1) if args.json else bench_search.scaling_text(rows))
        else:
            rows = bench_search.samplers(args.seconds or 60.0)
            print(json.dumps(rows, indent=1) if args.json else bench_search.samplers_text(rows))
        return 0
    if args.which == "reproducibility":
        from speed import reproducibility as bench  # noqa: PLC0415 - one mode's module

        images = args.images or 2000
        rows = bench.reproducibility(images, args.repeats or 1)
        print(
            json.dumps(rows, indent=1)
            if args.json
            else bench.reproducibility_text(rows, images, bench.cpu_name())
        )
        return 0
    if args.which == "spec-size":
        rows = spec_size(args.sizes, args.repeats or 1)
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            _print_spec_size(rows)
        return 0
    args.repeats = args.repeats or 5
    if args.which == "evaluator":
        row = evaluator_start(args.repeats)
        if args.json:
            print(json.dumps(row, indent=1))
            return 0
        low, high = row["seconds_range"]
        print(
            f"search evaluator process: first result after {row['seconds']:.2f} s (median of "
            f"{row['repeats']}; {low:.2f}-{high:.2f}), peak memory {row['peak_mib']:.0f} MiB"
        )
        return 0
    if args.which == "ray":
        rows = ray_overhead(repeats=args.repeats)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        print("Ray overhead (local Ray on loopback)")
        for r in rows:
            print(f"  {r['what']:64s} {r['seconds']:8.3f} s")
        return 0
    if proxy:
        load = os.getloadavg()
        rows, data_name = proxy_training(args.images or 1280, args.repeats)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        _print_proxy_training(rows, data_name, args.repeats, (load[0], os.getloadavg()[0]))
        return 0
    if args.which == "training":
        import torch  # noqa: PLC0415 - torch: after _pin()

        if args.device == "cuda" and not torch.cuda.is_available():
            raise cli.UsageError(
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
    args.seconds = args.seconds or 1.0
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
