"""The packed layout and its PyTorch side: :class:`Packed` activations and
:class:`PackedWeights`, packing and unpacking bits with PyTorch ops, and
:func:`reference_conv2d`, the plain PyTorch convolution that is the fallback of the compiled
kernels and the oracle of the tests.

Values are +/-1, one bit each (1 for -1); channel ``c`` is bit ``c % 64`` of word ``c // 64``,
and the lanes past the last channel are zero bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BIT = torch.tensor([1 << i for i in range(63)] + [-(1 << 63)], dtype=torch.int64)


@dataclass(frozen=True)
class Packed:
    """Packed activations: ``bits`` int64 (N, H, W, CW) (padding included), ``channels`` C."""

    bits: torch.Tensor
    channels: int
    pad: int = 0

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, C, H, W) of the unpadded values."""
        n, h, w, _ = self.bits.shape
        return n, self.channels, h - 2 * self.pad, w - 2 * self.pad


@dataclass(frozen=True)
class PackedWeights:
    """Packed weights: ``bits`` int64 (K, K, CW, COUT), ``channels`` C (input channels)."""

    bits: torch.Tensor
    channels: int

    @property
    def kernel(self) -> int:
        return self.bits.shape[0]

    @property
    def cout(self) -> int:
        return self.bits.shape[3]


def pack_last(negative: torch.Tensor) -> torch.Tensor:
    """bool (..., C) -> int64 (..., ceil(C / 64)), bit c % 64 of word c // 64 set where True."""
    c = negative.shape[-1]
    words = (c + 63) // 64
    padded = F.pad(negative, (0, words * 64 - c)).reshape(*negative.shape[:-1], words, 64)
    return (padded.to(torch.int64) * BIT).sum(-1)


def pack_weights(weight: torch.Tensor) -> PackedWeights:
    """Signs of conv weights (COUT, C, K, K), packed as (K, K, CW, COUT)."""
    cout, c, k, _ = weight.shape
    bits = pack_last(weight.detach().permute(2, 3, 0, 1) < 0)  # (K, K, COUT, CW)
    return PackedWeights(bits.permute(0, 1, 3, 2).contiguous(), c)


def unpack(packed: Packed) -> torch.Tensor:
    """The +/-1 float NCHW tensor of packed activations (padding included)."""
    words = packed.bits.shape[-1]
    bits = (packed.bits.unsqueeze(-1) & BIT.to(packed.bits.device)) != 0  # (N, H, W, CW, 64)
    values = 1.0 - 2.0 * bits.reshape(*packed.bits.shape[:3], words * 64).float()
    return values[..., : packed.channels].permute(0, 3, 1, 2).contiguous()


def unpack_weights(weights: PackedWeights) -> torch.Tensor:
    """The +/-1 float (COUT, C, K, K) weights of packed weights (on the CPU)."""
    k, _, words, cout = weights.bits.shape
    bits = (weights.bits.permute(3, 2, 0, 1).unsqueeze(-1) & BIT) != 0  # COUT, CW, K, K, 64
    values = 1.0 - 2.0 * bits.permute(0, 1, 4, 2, 3).reshape(cout, words * 64, k, k).float()
    return values[:, : weights.channels]


def reference_conv2d(
    x: Packed,
    weights: PackedWeights,
    stride: int = 1,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """The PyTorch path: unpack to +/-1 floats and ``F.conv2d`` (float64, exact). Float NHWC,
    contiguous as the compiled kernel returns it (the packed model passes it on as the ``out`` of
    later convs, which must be NHWC)."""
    dot = F.conv2d(unpack(x).double(), unpack_weights(weights).double(), stride=stride)
    out = dot.permute(0, 2, 3, 1).float()
    if scale is not None:
        out = out * scale.float()
    if shift is not None:
        out = out + shift.float()
    if residual is not None:
        out = out + residual
    return out.contiguous()
