"""Check and time the Triton binary conv (:mod:`nas.nn.kernels.triton_conv`) against cuDNN bf16.

A GPU session runs this one command from the repository root (nothing to install: the package is
imported from the tree, and the machine's python3 has torch and triton)::

    PYTHONUNBUFFERED=1 python3 -m speed.gpu --json > $OUT/bench_gpu.json

The JSON goes to stdout, the table and a line per layer to stderr (without ``--json`` the table
goes to stdout).

First the kernel's output is checked, bit for bit with the float epilogue (scale, shift,
residual), against :func:`nas.nn.kernels.reference_conv2d` on CPU copies (float64 ``F.conv2d``, no
cuDNN), with every launch config the autotuner tries and both forms of input (packed bits and
int8 signs), on the tests' ``EXACTNESS_CASES`` (channel counts that are not multiples of 64,
stride 2, 1x1, partial tiles). Then Bi-Real18's four 3x3 convs (56x56x64, 28x28x128, 14x14x256,
7x7x512; stride 1, +1 padding, COUT = C) at batch 1, 16 and 64: each launch config, with each
form of input, is checked against the reference and timed; a row gives the fastest exact one
(checked once more with the epilogue), and ``sweep`` all of them.

Triton compiles a launch config for each shape it meets, in a second or two, and the bench meets
about 500: worker processes (``--workers``, 8 by default) check the cases and compile the
layers' launches into Triton's disk cache first, which the timing process then reads. Times are
medians in ms of the Triton kernel (float output, no epilogue) and of cuDNN's bf16 channels_last
``F.conv2d`` of the same +/-1 values, pre-padded with +1 (``torch.backends.cudnn.benchmark``
on): ``triton.testing.do_bench_cudagraph``, the launches replayed in a CUDA graph as a captured
network runs them, which measures the GPU's time alone (the launch configs are ranked by it);
and, for the fastest config, ``do_bench`` (``flushed``), each launched from Python after an L2
flush, which at batch 1 can measure the Python launch instead of the kernel when the host is
slow. T MAC/s counts binary multiply-accumulates, N * OH * OW * COUT * C * 9. Last, the
autotuned launch (no config given) is checked on one layer with each input. Exit status 1 where
an output differs, 2 without a CUDA GPU or Triton.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time

import torch
import torch.nn.functional as F

from nas.nn.kernels import Packed, PackedWeights, reference_conv2d, unpack, unpack_weights
from nas.nn.kernels.triton_conv import (
    EXACTNESS_CASES,
    NEEDS_TRITON,
    interpreted,
    launch_configs,
    mismatches,
    random_case,
    signs_of,
    triton_binary_conv2d,
)

LAYERS = [(56, 64), (28, 128), (14, 256), (7, 512)]  # (size, channels) of Bi-Real18's 3x3 convs
INPUTS = {"packed": False, "signs": True}  # the two forms of x: packed bits, int8 +/-1


def _bf16_cl(t: torch.Tensor) -> torch.Tensor:
    return t.to("cuda", torch.bfloat16).contiguous(memory_format=torch.channels_last)


def _config(c: dict) -> str:
    prefetch = ", prefetch" if c["PREFETCH"] else ""
    split = f", split {c['SPLIT_K']}" if c["SPLIT_K"] > 1 else ""
    blocks = f"{c['BLOCK_M']}x{c['BLOCK_N']}x{32 * c['WORDS']}"
    return f"{blocks}, {c['num_warps']} warps{prefetch}{split}"


def _in_workers(fn, tasks: list, workers: int) -> list:
    """``[fn(t) for t in tasks]``, in ``workers`` spawned processes (CUDA cannot be forked)."""
    if workers <= 1:
        return [fn(t) for t in tasks]
    with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
        return pool.map(fn, tasks, chunksize=1)


def check_case(task: tuple[int, tuple, str]) -> dict:
    """One of the tests' exactness cases on the GPU, with one form of input and each launch
    config (a worker's task: ``(seed, case, input)``)."""
    seed, case, name = task
    args = random_case(*case, seed=seed, device="cuda")
    bad = {_config(c): mismatches(*args, config=c, signs=INPUTS[name])[0] for c in launch_configs()}
    return {"case": list(case), "input": name, "mismatches": sum(bad.values()), "configs": bad}


def compile_layer(task: tuple[int, int, int, int, str]) -> None:
    """Run every launch config once on one layer, with and without the epilogue, so that Triton
    compiles them into its disk cache (a worker's task: ``(batch, size, channels, seed, input)``,
    the arguments :func:`bench_layer` uses)."""
    batch, size, channels, seed, name = task
    x, w, stride, scale, shift, residual = random_case(
        batch, channels, size, size, channels, 3, 1, seed=seed, device="cuda"
    )
    x_in = signs_of(x) if INPUTS[name] else x
    for c in launch_configs():
        triton_binary_conv2d(x_in, w, stride, config=c)
        triton_binary_conv2d(x_in, w, stride, scale, shift, residual, config=c)
    torch.cuda.synchronize()


def _graph_ms(fn) -> float:
    """The GPU time of one ``fn()`` (median ms), replayed in a CUDA graph: no launch overhead."""
    from triton.testing import do_bench_cudagraph  # noqa: PLC0415 - optional: triton

    return do_bench_cudagraph(fn, rep=10, return_mode="median")


def _flushed_ms(fn) -> float:
    """One ``fn()`` launched from Python after an L2 flush (median ms)."""
    from triton.testing import do_bench  # noqa: PLC0415 - optional: triton

    return do_bench(fn, return_mode="median")


def bench_layer(batch: int, size: int, channels: int, seed: int, configs: list) -> list[dict]:
    """Check and time one layer with each launch config and input; one row per input."""
    x, w, stride, scale, shift, residual = random_case(
        batch, channels, size, size, channels, 3, 1, seed=seed, device="cuda"
    )
    x_cpu, w_cpu = Packed(x.bits.cpu(), channels, x.pad), PackedWeights(w.bits.cpu(), channels)
    expected_dot = reference_conv2d(x_cpu, w_cpu, stride)
    signs = _bf16_cl(unpack(x_cpu))  # padding included
    weight = _bf16_cl(unpack_weights(w_cpu))

    def cudnn():
        return F.conv2d(signs, weight, stride=stride)

    cudnn_ms, cudnn_flushed_ms = _graph_ms(cudnn), _flushed_ms(cudnn)
    macs = batch * size * size * channels * channels * 9
    rows = []
    for name, as_signs in INPUTS.items():
        x_in = signs_of(x) if as_signs else x
        sweep = {}
        for c in configs:
            out = triton_binary_conv2d(x_in, w, stride, config=c)  # compiles this config
            bad = int((out.cpu() != expected_dot).sum())
            ms = _graph_ms(lambda c=c, x_in=x_in: triton_binary_conv2d(x_in, w, stride, config=c))
            sweep[_config(c)] = {"ms": round(ms, 5), "mismatches": bad}
        exact = [c for c in configs if not sweep[_config(c)]["mismatches"]]
        best = min(exact or configs, key=lambda c: sweep[_config(c)]["ms"])
        triton_ms = sweep[_config(best)]["ms"]
        flushed_ms = _flushed_ms(
            lambda c=best, x_in=x_in: triton_binary_conv2d(x_in, w, stride, config=c)
        )
        rows.append(
            {
                "layer": f"{size}x{size}x{channels}",
                "batch": batch,
                "input": name,
                "mismatches": sum(r["mismatches"] for r in sweep.values()),
                "mismatches_epilogue": mismatches(
                    x, w, stride, scale, shift, residual, config=best, signs=as_signs
                )[0],
                "triton_config": _config(best),
                "triton_ms": triton_ms,
                "cudnn_bf16_ms": round(cudnn_ms, 5),
                "cudnn_over_triton": round(cudnn_ms / triton_ms, 3),
                "triton_tmacs": round(macs / triton_ms / 1e9, 2),
                "cudnn_bf16_tmacs": round(macs / cudnn_ms / 1e9, 2),
                "triton_flushed_ms": round(flushed_ms, 5),
                "cudnn_bf16_flushed_ms": round(cudnn_flushed_ms, 5),
                "sweep": sweep,
            }
        )
    return rows


def check_autotuned() -> list[dict]:
    """The autotuned launch (what a caller without ``config`` gets), on 56x56x64 at batch 16
    with the epilogue (the shape and seed :func:`compile_layer` compiled)."""
    args = random_case(16, 64, 56, 56, 64, 3, 1, seed=0, device="cuda")
    return [
        {"input": name, "mismatches": mismatches(*args, signs=signs)[0]}
        for name, signs in INPUTS.items()
    ]


def table(layers: list[dict]) -> str:
    lines = [
        "| 3x3 layer | batch | input | exact | Triton ms | cuDNN bf16 ms | cuDNN / Triton "
        "| Triton T MAC/s | cuDNN T MAC/s | fastest config | flushed: Triton ms | cuDNN ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in layers:
        bad = r["mismatches"] + r["mismatches_epilogue"]
        exact = "yes" if bad == 0 else f"NO ({bad} differ)"
        lines.append(
            f"| {r['layer']} | {r['batch']} | {r['input']} | {exact} | {r['triton_ms']:.4f} "
            f"| {r['cudnn_bf16_ms']:.4f} | {r['cudnn_over_triton']:.2f}x | {r['triton_tmacs']:.1f} "
            f"| {r['cudnn_bf16_tmacs']:.1f} | {r['triton_config']} "
            f"| {r['triton_flushed_ms']:.4f} | {r['cudnn_bf16_flushed_ms']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check and time the Triton binary conv against cuDNN bf16 (CUDA GPU)."
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="processes that compile the kernels first (1: compile as the bench goes)",
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    try:
        import triton  # noqa: PLC0415 - optional: triton

        configs = launch_configs()
    except ImportError:
        print(NEEDS_TRITON, file=sys.stderr)
        return 2
    if interpreted():
        print("bench_gpu times the compiled kernel: unset TRITON_INTERPRET", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    cases = [(seed, case, name) for seed, case in enumerate(EXACTNESS_CASES) for name in INPUTS]
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "exactness_cases": _in_workers(check_case, cases, args.workers),
        "layers": [],
    }
    for c in report["exactness_cases"]:
        if c["mismatches"]:
            print(f"NOT EXACT: {c}", file=sys.stderr)
    layers = [
        (batch, size, channels, seed)
        for batch in args.batches
        for seed, (size, channels) in enumerate(LAYERS)
    ]
    if args.workers > 1:
        try:
            tasks = [(*layer, name) for layer in layers for name in INPUTS]
            _in_workers(compile_layer, tasks, args.workers)
        except Exception as e:  # only time is lost: the timing process compiles what it needs
            print(
                f"# compiling in workers failed ({e!r}); compiling as the bench goes",
                file=sys.stderr,
            )
    print(
        f"# checked the cases and compiled in {time.perf_counter() - start:.0f} s", file=sys.stderr
    )
    for batch, size, channels, seed in layers:
        for row in bench_layer(batch, size, channels, seed, configs):
            report["layers"].append(row)
            print(json.dumps(row), file=sys.stderr)  # kept if the run is cut short
    report["autotuned"] = check_autotuned()
    text = table(report["layers"])
    checks = report["exactness_cases"] + report["autotuned"]
    bad = [c for c in checks if c["mismatches"]]
    bad += [r for r in report["layers"] if r["mismatches"] or r["mismatches_epilogue"]]
    text += f"\n\n{report['device']}, torch {report['torch']}, triton {report['triton']}; "
    text += f"{len(configs)} launch configs x 2 inputs on {len(EXACTNESS_CASES)} cases "
    text += "and every layer, and the autotuned launch: "
    text += "all exact" if not bad else f"{len(bad)} NOT EXACT"
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(report, indent=1))
    else:
        print(text)
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
