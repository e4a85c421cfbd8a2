"""The GPU path of the binary convolution (docs/design.md section 8): a Triton kernel that
computes the +/-1 conv from packed weights on int8 tensor cores, exact against
:func:`nas.nn.kernels.reference_conv2d`.

Layout, as the CPU kernels take it (:mod:`nas.nn.kernels`): activations ``Packed.bits`` int64
(N, H, W, CW) NHWC with the spatial padding included (+1, zero bits), weights
``PackedWeights.bits`` int64 (K, K, CW, COUT); bit ``i`` of word ``j`` is channel ``64 j + i``,
bit 1 for -1, and the lanes past ``channels`` in the last word are zero bits in both operands.
The activations may also come as int8 +/-1 NHWC (:func:`signs_of`), the form a network on the
GPU would keep between layers (the previous layer's epilogue writes a sign as cheaply as a
float): then only the weights are unpacked, and the kernel is 1.05-1.3x faster (docs/inference.md).

The kernel is an implicit GEMM: M = N * OH * OW output pixels by COUT output channels, reduced
over the K * K taps x 64 CW channels in steps of ``32 * WORDS`` channels. Each step loads
``WORDS`` int32 words of each operand per row and column (or the int8 signs), unpacks the bits
to int8 +/-1 tiles in registers and accumulates their ``tl.dot`` in int32; each padding lane adds
+1 (+1 * +1), which is subtracted. Then the float epilogue ``scale * dot + shift (+ residual)``
per output channel, compiled without FMA contraction so that it rounds as the reference does.

Importing this module needs no Triton (the CPU build and tests never need it); running the
kernel needs ``pip install triton`` and a CUDA GPU, or ``TRITON_INTERPRET=1``, which runs it on
CPU tensors through numpy (the tests do). ``python -m speed.gpu`` checks and times it
against cuDNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nas.nn.kernels import Packed, PackedWeights, pack_weights, reference_conv2d, unpack
from nas.nn.kernels._layout import pack_last

__all__ = ["EXACTNESS_CASES", "mismatches", "random_case", "signs_of", "triton_binary_conv2d"]

NEEDS_TRITON = (
    "the Triton path needs `pip install triton` and a CUDA GPU "
    "(or TRITON_INTERPRET=1 for the CPU interpreter)"
)


def _kernels():
    try:
        from nas.nn.kernels import _triton_kernel  # noqa: PLC0415 - optional: triton
    except ImportError as e:
        raise ImportError(f"{NEEDS_TRITON}: {e}") from e
    return _triton_kernel


def launch_configs() -> list:
    """The launch configurations the GPU autotuner tries (each a ``triton.Config``; needs
    triton)."""
    return _kernels().CONFIGS


def interpreted() -> bool:
    """Whether the kernel runs in Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return bool(_kernels().INTERPRET)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


_WORKSPACES: dict[torch.device, torch.Tensor] = {}


def _workspace(device: torch.device, size: int) -> torch.Tensor:
    """A zero int32 buffer of at least ``size`` elements on ``device``, kept between calls: the
    split launches sum their partial dots in it and leave it zero (the last program of a tile
    resets what its tile added). Launches on one stream at a time, as a network runs, share it.
    Run a shape once before capturing it in a CUDA graph, as a warm-up does: a workspace first
    allocated inside a capture is zeroed only when the graph is replayed."""
    workspace = _WORKSPACES.get(device)
    if workspace is None or workspace.numel() < size:
        workspace = _WORKSPACES[device] = torch.zeros(size, dtype=torch.int32, device=device)
    return workspace


def signs_of(x: Packed) -> torch.Tensor:
    """The int8 +/-1 NHWC tensor (N, H, W, C) of packed activations, padding included, on their
    device: the other form of input :func:`triton_binary_conv2d` takes."""
    return unpack(x).permute(0, 2, 3, 1).to(torch.int8).contiguous()


def triton_binary_conv2d(
    x: Packed | torch.Tensor,
    weights: PackedWeights,
    stride: int = 1,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    *,
    config: dict | None = None,
) -> torch.Tensor:
    """``reference_conv2d`` on the GPU (or the Triton interpreter): the +/-1 conv of ``x``
    (already padded) with packed ``weights``, then ``scale * dot + shift (+ residual)`` per output
    channel; float32 NHWC on the device of ``x``. ``x`` is packed (:class:`Packed`) or int8 +/-1
    NHWC (N, H, W, C), as :func:`signs_of` makes it. ``config`` (``BLOCK_M``, ``BLOCK_N``,
    ``WORDS``, ``PREFETCH``, ``SPLIT_K``, ``num_warps``, ``num_stages``) fixes the launch instead
    of autotuning it."""
    tk = _kernels()
    signs = isinstance(x, torch.Tensor)
    if signs:
        if x.dtype != torch.int8 or x.dim() != 4:
            raise ValueError(f"x must be Packed or int8 NHWC signs, got {x.dtype} {x.dim()}-D")
        n, hp, wp, channels = x.shape
        x_words = x.contiguous()
    else:
        n, hp, wp, _ = x.bits.shape
        channels = x.channels
        x_words = x.bits.contiguous().view(torch.int32)  # little-endian: two int32 halves a word
    if channels != weights.channels:
        raise ValueError(f"input has {channels} channels, weights expect {weights.channels}")
    kernel, cout, cw = weights.kernel, weights.cout, weights.bits.shape[2]
    if not signs and x.bits.shape[3] != cw:
        raise ValueError(f"weights have {cw} channel words, input has {x.bits.shape[3]}")
    oh, ow = (hp - kernel) // stride + 1, (wp - kernel) // stride + 1
    device = x_words.device
    out = torch.empty(n, oh, ow, cout, dtype=torch.float32, device=device)
    m = n * oh * ow
    if m == 0 or cout == 0:
        return out

    def f32(t: torch.Tensor | None) -> torch.Tensor:
        return out if t is None else t.detach().to(device, torch.float32).contiguous()

    if residual is not None and residual.shape != out.shape:
        raise ValueError(f"residual must be NHWC {tuple(out.shape)}, got {tuple(residual.shape)}")
    if config is None and tk.INTERPRET:
        config = tk.INTERPRET_BLOCKS
    split = [c for c in ([config] if config else tk.CONFIGS) if c["SPLIT_K"] > 1]
    sums_size = _cdiv(m * cout, 16) * 16  # the tile counters start 64-byte aligned
    tiles = max((_cdiv(m, c["BLOCK_M"]) * _cdiv(cout, c["BLOCK_N"]) for c in split), default=0)
    workspace = _workspace(device, sums_size + tiles if split else 1)
    args = (
        x_words,
        weights.bits.to(device).contiguous().view(torch.int32),
        f32(scale),
        f32(shift),
        f32(residual),
        out,
        workspace,  # the split launches' partial dots
        workspace[sums_size:] if split else workspace,  # and their per-tile counters
        m,
        oh * ow,
        ow,
        hp,
        wp,
        channels,
        cout,
        kernel * kernel * (64 * cw - channels),
    )
    flags = {
        "CW": cw,
        "K": kernel,
        "STRIDE": stride,
        "SIGNS": signs,
        "HAS_SCALE": scale is not None,
        "HAS_SHIFT": shift is not None,
        "HAS_RESIDUAL": residual is not None,
        "enable_fp_fusion": False,  # mul and add rounded apart, as in reference_conv2d
    }

    def grid(meta: dict) -> tuple[int, int]:  # SPLIT_K programs per (BLOCK_M, BLOCK_N) tile
        return (_cdiv(m, meta["BLOCK_M"]) * _cdiv(cout, meta["BLOCK_N"]), meta["SPLIT_K"])

    if config is None:
        tk.tuned_kernel[grid](*args, **flags)
    else:
        tk.binary_conv_kernel[grid](*args, **flags, **config)
    return out


# (batch, channels, height, width, cout, kernel, stride, epilogue): channel counts that are and
# are not multiples of 64, pixel and channel counts that do not fill the blocks, strides 1 and 2
EXACTNESS_CASES = [
    (1, 3, 5, 6, 20, 3, 1, True),
    (2, 64, 6, 5, 40, 3, 2, True),
    (1, 70, 7, 7, 33, 3, 1, True),
    (1, 128, 4, 5, 17, 1, 1, True),
    (2, 70, 6, 7, 50, 1, 2, False),
    (1, 130, 5, 5, 16, 3, 2, True),
    (2, 200, 4, 3, 70, 3, 1, False),
    (1, 1, 3, 3, 1, 3, 1, True),
]


MaybeTensor = torch.Tensor | None
ConvArgs = tuple[Packed, PackedWeights, int, MaybeTensor, MaybeTensor, MaybeTensor]


def random_case(
    batch: int,
    channels: int,
    height: int,
    width: int,
    cout: int,
    kernel: int = 3,
    stride: int = 1,
    epilogue: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ConvArgs:
    """Random arguments of one conv, ``(x, weights, stride, scale, shift, residual)``, packed with
    ``kernel // 2`` pixels of +1 padding (the epilogue's tensors None unless ``epilogue``)."""
    g = torch.Generator().manual_seed(seed)
    pad = kernel // 2
    negative = torch.rand(batch, height, width, channels, generator=g) < 0.5
    bits = F.pad(pack_last(negative), (0, 0, pad, pad, pad, pad))  # zero bits: +1 padding
    weights = pack_weights(torch.randn(cout, channels, kernel, kernel, generator=g))
    x = Packed(bits.to(device), channels, pad)
    weights = PackedWeights(weights.bits.to(device), channels)
    if not epilogue:
        return x, weights, stride, None, None, None
    oh, ow = (height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1
    scale, shift = torch.randn(cout, generator=g), torch.randn(cout, generator=g)
    residual = torch.randn(batch, oh, ow, cout, generator=g)
    return x, weights, stride, scale.to(device), shift.to(device), residual.to(device)


def mismatches(
    x: Packed,
    weights: PackedWeights,
    stride: int = 1,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    *,
    config: dict | None = None,
    signs: bool = False,
) -> tuple[int, torch.Tensor]:
    """How many outputs of :func:`triton_binary_conv2d` differ from :func:`reference_conv2d`
    (computed on CPU copies: float64 ``F.conv2d``, no cuDNN), and the reference output; with
    ``signs``, the kernel reads ``x`` as int8 signs (:func:`signs_of`)."""
    x_in = signs_of(x) if signs else x
    out = triton_binary_conv2d(x_in, weights, stride, scale, shift, residual, config=config).cpu()
    cpu = [None if t is None else t.cpu() for t in (scale, shift, residual)]
    x_cpu = Packed(x.bits.cpu(), x.channels, x.pad)
    w_cpu = PackedWeights(weights.bits.cpu(), weights.channels)
    expected = reference_conv2d(x_cpu, w_cpu, stride, *cpu)
    if out.shape != expected.shape:
        raise AssertionError(f"shape {tuple(out.shape)}, expected {tuple(expected.shape)}")
    return int((out != expected).sum()), expected
