"""Check and time the Triton binary conv (:mod:`nas.kernels.triton_conv`) against cuDNN bf16.

A GPU session runs this one command from the repository root (nothing to install: the package is
imported from the tree, and the machine's python3 has torch and triton)::

    PYTHONUNBUFFERED=1 python3 -m nas.kernels.bench_gpu --json > $OUT/bench_gpu.json

The JSON goes to stdout and the table to stderr (without ``--json`` the table goes to stdout).
First the kernel's output is checked, bit for bit with the float epilogue (scale, shift,
residual), against :func:`nas.kernels.reference_conv2d` on CPU copies (float64 ``F.conv2d``, no
cuDNN) by :func:`~nas.kernels.triton_conv.mismatches`, the helper the tests use: on the tests'
``EXACTNESS_CASES`` (channel counts that are not multiples of 64, stride 2, 1x1, partial
tiles), then on each layer timed. The layers are Bi-Real18's four 3x3 convs (56x56x64,
28x28x128, 14x14x256, 7x7x512; stride 1, +1 padding, COUT = C) at batch 1, 16 and 64. Times are
``triton.testing.do_bench`` medians in ms (L2 flushed before each run) of the Triton kernel
(float output, no epilogue) and of cuDNN's bf16 channels_last ``F.conv2d`` of the same +/-1
values, pre-padded with +1 (``torch.backends.cudnn.benchmark`` on). T MAC/s counts binary
multiply-accumulates, N * OH * OW * COUT * C * 9. Exit status 1 where an output differs, 2
without a CUDA GPU or Triton.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from nas.kernels import Packed, PackedWeights, _unpack_weights, unpack
from nas.kernels.triton_conv import (
    EXACTNESS_CASES,
    NEEDS_TRITON,
    mismatches,
    random_case,
    triton_binary_conv2d,
)

LAYERS = [(56, 64), (28, 128), (14, 256), (7, 512)]  # (size, channels) of Bi-Real18's 3x3 convs


def _bf16_cl(t: torch.Tensor) -> torch.Tensor:
    return t.to("cuda", torch.bfloat16).contiguous(memory_format=torch.channels_last)


def _config(c: dict) -> str:
    return f"{c['BLOCK_M']}x{c['BLOCK_N']}, {c['num_warps']} warps, {c['num_stages']} stages"


def check_cases(kernels) -> list[dict]:
    """The tests' exactness cases on the GPU, with each launch config the autotuner tries."""
    results = []
    for seed, case in enumerate(EXACTNESS_CASES):
        args = random_case(*case, seed=seed, device="cuda")
        bad = {_config(c): mismatches(*args, config=c)[0] for c in kernels.CONFIGS}
        results.append({"case": list(case), "mismatches": sum(bad.values())})
        if any(bad.values()):
            print(f"NOT EXACT: {case}: {bad}", file=sys.stderr)
    return results


def bench_layer(batch: int, size: int, channels: int, seed: int, kernels) -> dict:
    """Check one layer, then time it on both paths."""
    from triton.testing import do_bench

    x, w, stride, scale, shift, residual = random_case(
        batch, channels, size, size, channels, 3, 1, seed=seed, device="cuda"
    )
    row = {"layer": f"{size}x{size}x{channels}", "batch": batch}
    row["mismatches"] = mismatches(x, w, stride, scale, shift, residual)[0]
    if row["mismatches"]:  # is the dot wrong, or only the float epilogue's rounding?
        row["mismatches_dot"] = mismatches(x, w, stride)[0]

    def run_triton():
        return triton_binary_conv2d(x, w, stride)

    run_triton()  # autotunes this shape
    best = kernels.tuned_kernel.best_config
    row["triton_config"] = _config(
        {**best.kwargs, "num_warps": best.num_warps, "num_stages": best.num_stages}
    )
    triton_ms = do_bench(run_triton, return_mode="median")
    signs = _bf16_cl(unpack(Packed(x.bits.cpu(), channels, x.pad)))  # padding included
    weight = _bf16_cl(_unpack_weights(PackedWeights(w.bits.cpu(), channels)))
    cudnn_ms = do_bench(lambda: F.conv2d(signs, weight, stride=stride), return_mode="median")
    macs = batch * size * size * channels * channels * 9
    row.update(
        triton_ms=round(triton_ms, 5),
        cudnn_bf16_ms=round(cudnn_ms, 5),
        cudnn_over_triton=round(cudnn_ms / triton_ms, 3),
        triton_tmacs=round(macs / triton_ms / 1e9, 2),
        cudnn_bf16_tmacs=round(macs / cudnn_ms / 1e9, 2),
    )
    return row


def table(layers: list[dict]) -> str:
    lines = [
        "| 3x3 layer | batch | exact | Triton ms | cuDNN bf16 ms | cuDNN / Triton "
        "| Triton T MAC/s | cuDNN T MAC/s | Triton config |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in layers:
        exact = "yes" if r["mismatches"] == 0 else f"NO ({r['mismatches']} differ)"
        lines.append(
            f"| {r['layer']} | {r['batch']} | {exact} | {r['triton_ms']:.4f} "
            f"| {r['cudnn_bf16_ms']:.4f} | {r['cudnn_over_triton']:.2f}x | {r['triton_tmacs']:.1f} "
            f"| {r['cudnn_bf16_tmacs']:.1f} | {r['triton_config']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check and time the Triton binary conv against cuDNN bf16 (CUDA GPU)."
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    try:
        import triton

        from nas.kernels import _triton_kernel as kernels
    except ImportError:
        print(NEEDS_TRITON, file=sys.stderr)
        return 2
    if kernels.INTERPRET:
        print("bench_gpu times the compiled kernel: unset TRITON_INTERPRET", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "exactness_cases": check_cases(kernels),
        "layers": [],
    }
    for batch in args.batches:
        for seed, (size, channels) in enumerate(LAYERS):
            row = bench_layer(batch, size, channels, seed, kernels)
            report["layers"].append(row)
            print(f"{row['layer']} batch {batch}: {row}", file=sys.stderr)
    text = table(report["layers"])
    bad_cases = [c["case"] for c in report["exactness_cases"] if c["mismatches"]]
    text += f"\n\n{report['device']}, torch {report['torch']}, triton {report['triton']}; "
    text += f"exactness cases exact with all {len(kernels.CONFIGS)} launch configs: "
    text += f"{len(EXACTNESS_CASES) - len(bad_cases)}/{len(EXACTNESS_CASES)}"
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(report, indent=1))
    else:
        print(text)
    exact = not bad_cases and all(r["mismatches"] == 0 for r in report["layers"])
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
