"""``python -m speed.packed [--json] [--threads 1|2] [--batch 1|16]``: the packed binary conv
against PyTorch on the Bi-Real18 3x3 layers, then whole networks.

Per layer (56x56x64, 28x28x128, 14x14x256, 7x7x512; 3x3, stride 1, +1 padding): milliseconds of the
packed kernel with packed input and float output (``packed_ms``), packed output (``packed_bits_ms``:
BN and sign folded into count thresholds, the conv-to-conv case) and the Bi-Real case
(``packed_bireal_ms``: shortcut added in place, float and packed output, as the packed model runs
it), of PyTorch's fp32 and bf16 convolutions in channels_last on the same +/-1 values, of PyTorch's
quantized int8 conv (``torch_int8_ms``: its x86 backend, VNNI where the CPU has it), and of
OpenVINO's BinaryConvolution when ``openvino`` is installed. The core's clock and its XOR + POPCNT +
ADD ceiling are probed before and after (they drift with the host's boost). Then whole networks at
224 px per image, ``bireal_resnet18``, ``igp_resnet37`` (the paper's, its widths no multiples of 32)
and ``binary_densenet28``: the packed model against the PyTorch module in fp32, in bf16 autocast
and with its binary convs in int8 (:mod:`nas.nn.packed.int8`; eval mode). Medians over interleaved
rounds, threads pinned (``OMP_PROC_BIND=close OMP_PLACES=cores``; the command restarts itself
with them). docs/design.md section 8 has the anchors
measured on another machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from nas import cli
from nas.nn.packed.timing import median_ms, medians_ms, network_ms_per_image

LAYERS = ((56, 64), (28, 128), (14, 256), (7, 512))
MODELS = ("bireal_resnet18", "igp_resnet37", "binary_densenet28")
PIN = {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}
TIMED = (  # per layer, in JSON order
    "packed_ms",
    "packed_bits_ms",
    "packed_bireal_ms",
    "torch_fp32_ms",
    "torch_bf16_ms",
    "torch_int8_ms",
    "openvino_ms",
)


def _openvino_layer(batch: int, size: int, channels: int, threads: int):
    """A compiled OpenVINO BinaryConvolution (xnor-popcount, pad value +1) on +/-1 data, as a
    callable; None where ``openvino`` is not installed (``pip install .[openvino]``)."""
    try:
        import openvino as ov  # noqa: PLC0415 - optional: the OpenVINO anchor
        import openvino.opset8 as ops  # noqa: PLC0415 - optional: the OpenVINO anchor
    except ImportError:
        return None
    x = ops.parameter([batch, channels, size, size], ov.Type.f32)
    bits = np.random.default_rng(0).integers(0, 2, size=(channels, channels, 3, 3), dtype=np.uint8)
    weights = ov.op.Constant(ov.Type.u1, ov.Shape(list(bits.shape)), bits.flatten().tolist())
    conv = ops.binary_convolution(x, weights, [1, 1], [1, 1], [1, 1], [1, 1], "xnor-popcount", 1.0)
    compiled = ov.Core().compile_model(
        ov.Model([conv], [x]), "CPU", {"INFERENCE_NUM_THREADS": threads}
    )
    request = compiled.create_infer_request()
    data = np.where(np.random.default_rng(1).random((batch, channels, size, size)) < 0.5, -1, 1)
    data = data.astype(np.float32)
    return lambda: request.infer({0: data})


def _int8_layer(padded, signs):
    """PyTorch's quantized int8 conv of the same +/-1 values (uint8 activations, int8 weights), as
    a callable; None where this PyTorch has no quantized engine for the CPU."""
    import torch  # noqa: PLC0415 - torch: after the threads are pinned
    import torch.ao.nn.quantized as nnq  # noqa: PLC0415 - torch: after the threads are pinned

    channels = signs.shape[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a deprecation notice from set_weight_bias
            conv = nnq.Conv2d(channels, channels, 3)
            conv.set_weight_bias(torch.quantize_per_tensor(signs, 1.0, 0, torch.qint8), None)
        conv.scale, conv.zero_point = 9 * channels / 127, 128  # the dot's range
        x = torch.quantize_per_tensor(padded, 1.0, 128, torch.quint8)
        conv(x)
    except RuntimeError:
        return None
    return lambda: conv(x)


def _layer(batch: int, size: int, channels: int, threads: int) -> tuple[dict, dict]:
    """A layer's row (shape, batch, threads) and the functions to time for it."""
    import torch  # noqa: PLC0415 - torch: after the threads are pinned
    import torch.nn.functional as F  # noqa: PLC0415 - torch: after the threads are pinned

    # torch: after the threads are pinned
    from nas.nn.kernels import binary_conv2d, pack_activations, pack_weights  # noqa: PLC0415

    x = torch.randn(batch, channels, size, size)
    w = torch.randn(channels, channels, 3, 3)
    packed_x, packed_w = pack_activations(x, pad=1), pack_weights(w)
    signs = torch.where(x >= 0, 1.0, -1.0)
    padded = F.pad(signs, (1, 1, 1, 1), value=1.0).contiguous(memory_format=torch.channels_last)
    ws = torch.where(w >= 0, 1.0, -1.0).contiguous(memory_format=torch.channels_last)
    padded16, ws16 = padded.bfloat16(), ws.bfloat16()
    openvino = _openvino_layer(batch, size, channels, threads)
    int8 = _int8_layer(padded, torch.where(w >= 0, 1.0, -1.0))
    scale, shift = torch.rand(channels) + 0.5, torch.randn(channels)
    residual = torch.randn(batch, size, size, channels)

    def bireal():  # what a Bi-Real block runs: shortcut added in place, float and signs out
        return binary_conv2d(packed_x, packed_w, 1, scale, shift, residual, "both", 1, out=residual)

    fns = {
        "packed_ms": lambda: binary_conv2d(packed_x, packed_w),
        "packed_bits_ms": lambda: binary_conv2d(
            packed_x, packed_w, 1, scale, shift, output="packed"
        ),
        "packed_bireal_ms": bireal,
        "torch_fp32_ms": lambda: F.conv2d(padded, ws),
        "torch_bf16_ms": lambda: F.conv2d(padded16, ws16),
    }
    if int8 is not None:
        fns["torch_int8_ms"] = int8
    if openvino is not None:
        fns["openvino_ms"] = openvino
    return {"shape": f"{size}x{size}x{channels}", "batch": batch, "threads": threads}, fns


def machine() -> dict:
    """The core's clock and XNOR-popcount ceiling now (both drift with the host's boost): GHz from
    a chain of dependent adds, the ceiling from independent 512-bit XOR + POPCNT + ADD (null
    without AVX-512 VPOPCNTDQ or the compiled kernels)."""
    from nas.nn.kernels import library  # noqa: PLC0415 - torch: after the threads are pinned

    lib = library()
    if lib is None:
        return {"clock_ghz": None, "popcount_ceiling_macs_per_s": None}
    iters = 50_000_000
    clock = median_ms(lambda: lib.bconv_clock_probe(iters), 0.5, repeats=3)
    ceiling = None
    if lib.bconv_popcount_peak(1) >= 0:
        peak = median_ms(lambda: lib.bconv_popcount_peak(iters // 10), 0.5, repeats=3)
        ceiling = iters // 10 * 4096 / (peak / 1e3)
    return {"clock_ghz": 4 * iters / (clock / 1e3) / 1e9, "popcount_ceiling_macs_per_s": ceiling}


def layers(batch: int, threads: int, seconds: float) -> list[dict]:
    """Every layer's functions timed in the same interleaved rounds."""
    import torch  # noqa: PLC0415 - torch: after the threads are pinned

    rows, fns = [], {}
    for size, channels in LAYERS:
        row, layer_fns = _layer(batch, size, channels, threads)
        rows.append(row)
        fns.update({(row["shape"], key): fn for key, fn in layer_fns.items()})
    with torch.no_grad():
        times = medians_ms(fns, seconds)
    for row, (size, channels) in zip(rows, LAYERS, strict=True):
        row.update({key: times.get((row["shape"], key)) for key in TIMED})  # absent: None
        macs = batch * size * size * channels * channels * 9
        row["binary_macs_per_s"] = macs / (row["packed_ms"] / 1e3)
        row["binary_macs_per_s_bits"] = macs / (row["packed_bits_ms"] / 1e3)
    return rows


def models(batch: int, threads: int, seconds: float) -> list[dict]:
    """Each network's packed model and PyTorch module, timed in the same interleaved rounds."""
    import torch  # noqa: PLC0415 - torch: after the threads are pinned

    from nas import build_model, model_spec  # noqa: PLC0415 - torch: after the threads are pinned
    from nas.nn.packed.network import pack_model  # noqa: PLC0415 - torch: after the threads are pinned

    rows = []
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    for name in MODELS:
        spec = model_spec(name).replace(padding="one")
        model = build_model(spec).eval().to(memory_format=torch.channels_last)
        packed = pack_model(model)
        row = {"model": name, "batch": batch, "threads": threads}
        rows.append(row | network_ms_per_image(model, packed, x, seconds))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m speed.packed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--threads", type=int, choices=(1, 2), default=1)
    parser.add_argument("--batch", type=int, choices=(1, 16), default=1)
    parser.add_argument(
        "--seconds", type=cli.seconds, default=1.5, help="time per measurement (0 < s <= 3600)"
    )
    args = parser.parse_args(argv)
    if any(os.environ.get(k) != v for k, v in PIN.items()):  # pin before OpenMP starts
        env = {**os.environ, **PIN, "OMP_NUM_THREADS": str(args.threads)}
        command = [sys.executable, "-m", "speed.packed", *(argv or sys.argv[1:])]
        os.execve(sys.executable, command, env)
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(cores[: args.threads]))
    import torch  # noqa: PLC0415 - torch: after the threads are pinned

    # torch: after the threads are pinned
    from nas.nn.kernels import available_paths, set_threads  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    set_threads(args.threads)
    before = machine()
    result = {
        "layers": layers(args.batch, args.threads, args.seconds),
        "models": models(args.batch, args.threads, args.seconds),
        "kernel_paths": available_paths(),
        "machine": {"before": before, "after": machine()},
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"binary 3x3 conv, Bi-Real18 shapes, batch {args.batch}, {args.threads} thread(s), "
        f"ms per layer (median); kernel path {(available_paths() or ['reference'])[-1]}"
    )
    print(
        "  packed: packed input, float output | bits: packed output (BN and sign as count\n"
        "  thresholds) | bireal: + shortcut in place, float and packed output (a Bi-Real conv)"
    )
    print(
        f"  {'shape':11s} {'packed':>7s} {'bits':>7s} {'bireal':>7s} {'fp32':>7s} {'bf16':>7s} "
        f"{'int8':>7s} {'openvino':>8s} {'vs fp32':>8s} {'vs ov':>6s}  binary MAC/s packed, bits"
    )
    ceilings = [m["popcount_ceiling_macs_per_s"] for m in result["machine"].values()]
    # what the cores used could reach, from the probes before and after (they drift)
    reach = None if None in ceilings else statistics.mean(ceilings) * args.threads
    for r in result["layers"]:
        ov = "-" if r["openvino_ms"] is None else f"{r['openvino_ms']:.3f}"
        int8 = "-" if r["torch_int8_ms"] is None else f"{r['torch_int8_ms']:.3f}"
        vs_ov = "-" if r["openvino_ms"] is None else f"{r['openvino_ms'] / r['packed_ms']:.1f}x"
        share = ""
        if reach is not None:
            packed, bits = r["binary_macs_per_s"] / reach, r["binary_macs_per_s_bits"] / reach
            share = f" ({packed:.0%}, {bits:.0%} of the ceiling)"
        print(
            f"  {r['shape']:11s} {r['packed_ms']:7.3f} {r['packed_bits_ms']:7.3f} "
            f"{r['packed_bireal_ms']:7.3f} {r['torch_fp32_ms']:7.3f} {r['torch_bf16_ms']:7.3f} "
            f"{int8:>7s} {ov:>8s} {r['torch_fp32_ms'] / r['packed_ms']:7.1f}x {vs_ov:>6s}  "
            f"{r['binary_macs_per_s'] / 1e12:.2f} T, {r['binary_macs_per_s_bits'] / 1e12:.2f} T"
            f"{share}"
        )
    for when, m in result["machine"].items():
        if m["clock_ghz"] is not None:
            ceiling = m["popcount_ceiling_macs_per_s"]
            ceiling = "-" if ceiling is None else f"{ceiling / 1e12:.2f} T binary MAC/s"
            print(f"core {when}: {m['clock_ghz']:.2f} GHz, XOR+POPCNT+ADD ceiling {ceiling}")
    print("whole networks at 224 px, ms per image:")
    for r in result["models"]:
        anchors = ""
        if r["model"] == "bireal_resnet18":
            anchors = " (anchors: Larq Compute Engine 22.4, PyTorch bf16 ResNet18 17.5)"
        int8 = "-" if r["torch_int8_ms"] is None else f"{r['torch_int8_ms']:.2f}"
        print(
            f"  {r['model']:18s} packed {r['packed_ms']:6.2f}, PyTorch fp32 "
            f"{r['torch_fp32_ms']:7.2f}, bf16 {r['torch_bf16_ms']:7.2f}, int8 {int8:>6s}{anchors}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("speed.packed", main))
