"""``python -m nas.benchmarks reproducibility``: which arithmetic makes training differ across CPUs,
and what the deterministic choice costs.

oneDNN, which runs PyTorch's float convolutions and matrix products on x86 CPUs, picks its kernels
by the instruction set it finds (AVX2, AVX-512, AVX-512 with bf16, AMX), and kernels of different
sets round differently. ``ONEDNN_MAX_CPU_ISA`` caps the set it may use, so one CPU can show what
several would do. Each row trains ``bireal_resnet18`` at the proxy geometry (Fashion-MNIST, width
x0.5, stem stride 2) for one epoch of ``--images`` images on one thread, in a fresh process with
oneDNN capped (or not), in bf16 autocast and in fp32, and prints a hash of the trained weights,
the top-1 on 1000 test images and the epoch's seconds. Equal hashes: the same bits. The binary
convolutions run the project's own C kernel, built without CPU-specific code generation and
without fused multiply-adds, so they are the same on any x86-64 CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
from typing import Any

# oneDNN's names; "" leaves the CPU's own set
ISA_CAPS = ("", "AVX512_CORE_BF16", "AVX512_CORE", "AVX2")

_PROBE = """
import json, sys
from speed.reproducibility import probe
print(json.dumps(probe(sys.argv[1], int(sys.argv[2]))))
"""


def probe(precision: str, images: int) -> dict[str, Any]:
    """Train one epoch in this process (its oneDNN as the environment caps it)."""
    import torch  # noqa: PLC0415 - in the probe's own process

    from nas.core.zoo import bireal_resnet18  # noqa: PLC0415
    from runners.datasets import load_dataset  # noqa: PLC0415
    from runners.options import TrainConfig  # noqa: PLC0415
    from runners.train import proxy_spec, train  # noqa: PLC0415

    torch.set_num_threads(1)
    splits = load_dataset("fashion_mnist")
    spec = proxy_spec(bireal_resnet18(), splits, width_mult=0.5, stem_stride=2)
    config = TrainConfig(
        epochs=1, train_subset=images, eval_subset=1000, precision=precision, augment=False
    )
    result: dict[str, Any] = {}

    def keep(stats, model, optimizer) -> None:
        weights = b"".join(
            t.detach().float().numpy().tobytes() for t in model.state_dict().values()
        )
        result.update(
            weights=hashlib.sha256(weights).hexdigest()[:12],
            top1=stats.top1,
            seconds=stats.seconds,
        )

    train(spec, splits, config, on_epoch=keep)
    return result


def cpu_name() -> str:
    """The CPU's model name and the instruction sets that decide oneDNN's kernels."""
    from runners.train import cpu_info  # noqa: PLC0415 - torch, in the benchmark's mode only

    name, flags = cpu_info()
    sets = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(sets) or 'no AVX2'})"


def reproducibility(images: int, repeats: int) -> list[dict[str, Any]]:
    """A row per oneDNN cap and precision: the weights' hash (the same in every repeat, or
    "differs"), top-1 and the median seconds of the epoch over ``repeats`` fresh processes."""
    rows = []
    for cap in ISA_CAPS:
        for precision in ("bf16", "fp32"):
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            env.pop("ONEDNN_MAX_CPU_ISA", None)
            if cap:
                env["ONEDNN_MAX_CPU_ISA"] = cap
            runs = []
            for _ in range(repeats):
                out = subprocess.run(
                    [sys.executable, "-c", _PROBE, precision, str(images)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            hashes = {r["weights"] for r in runs}
            rows.append(
                {
                    "isa_cap": cap or "none (the CPU's own)",
                    "precision": precision,
                    "weights": hashes.pop() if len(hashes) == 1 else "differs",
                    "top1": runs[0]["top1"],
                    "seconds": statistics.median(r["seconds"] for r in runs),
                }
            )
    return rows


def reproducibility_text(rows: list[dict[str, Any]], images: int, cpu: str) -> str:
    fp32 = {r["isa_cap"]: r["seconds"] for r in rows if r["precision"] == "fp32"}
    lines = [
        f"one epoch of {images} images, bireal_resnet18 at the proxy geometry, one thread, {cpu}",
        f"  {'oneDNN cap':22s} {'precision':9s} {'weights':12s} {'top-1':>6s} "
        f"{'seconds':>8s} {'vs fp32':>8s}",
    ]
    for r in rows:
        ratio = r["seconds"] / fp32[r["isa_cap"]]
        lines.append(
            f"  {r['isa_cap']:22s} {r['precision']:9s} {r['weights']:12s} "
            f"{100 * r['top1']:5.1f}% {r['seconds']:8.2f} {ratio:7.2f}x"
        )
    return "\n".join(lines)
