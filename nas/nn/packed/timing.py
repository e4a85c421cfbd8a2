"""Timing a network as the final training and the speed bench report it: milliseconds per call
of several functions in interleaved rounds (:func:`medians_ms`), and per image of a packed model
against its PyTorch module in fp32, bf16 and int8 (:func:`network_ms_per_image`). Call it in a
process whose threads are pinned (``OMP_PROC_BIND=close OMP_PLACES=cores``) before torch loads."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(fn: Callable[[], object], seconds: float, repeats: int = 7) -> float:
    return medians_ms({"fn": fn}, seconds, repeats)["fn"]


def medians_ms(
    fns: dict[str, Callable[[], object]], seconds: float, rounds: int = 7
) -> dict[str, float]:
    """Median milliseconds per call of each function, each timed for ``seconds`` in all, in
    interleaved rounds (seconds / rounds per function per round), so that the host's drift over
    minutes falls on all of them alike rather than on whichever ran during a slow spell. Each
    round starts with one untimed call: the first call after another function's round refills
    the caches that round emptied."""
    for fn in fns.values():
        fn()
        fn()
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            n, start = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / rounds:
                    break
            runs[name].append(elapsed / n * 1e3)
    return {name: statistics.median(times) for name, times in runs.items()}


def network_ms_per_image(model, packed, x, seconds: float) -> dict[str, float | None]:
    """Milliseconds per image of the packed model and of the PyTorch module in fp32, in bf16
    autocast and with its binary convs in int8 (:mod:`nas.nn.packed.int8`, calibrated on ``x``;
    None where PyTorch has no int8 engine here) on the batch ``x``, timed in the same
    interleaved rounds."""
    import torch  # noqa: PLC0415 - torch: after the threads are pinned

    try:  # torch: after the threads are pinned; a PyTorch without quantized modules: no anchor
        from nas.nn.packed.int8 import int8_model  # noqa: PLC0415
    except ImportError:
        int8_model = lambda model, x: None  # noqa: E731

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    fns = {"packed_ms": lambda: packed(x), "torch_fp32_ms": lambda: model(x), "torch_bf16_ms": bf16}
    int8 = int8_model(model, x)
    if int8 is not None:
        fns["torch_int8_ms"] = lambda: int8(x)
    with torch.no_grad():
        times = medians_ms(fns, seconds)
    return {"torch_int8_ms": None} | {key: ms / len(x) for key, ms in times.items()}
