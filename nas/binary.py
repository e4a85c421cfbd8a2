"""Binary layers: sign activations with straight-through gradients and the binary convolution.

* Activations are binarised with sign (sign(0) = +1) in the forward pass. Backward: the clipped
  identity straight-through estimator, d/dx = 1 for |x| <= 1 (Courbariaux et al. 2016; Hubara et
  al. 2016), or Bi-Real's ApproxSign, d/dx = 2 - 2|x| for |x| <= 1 (Liu et al., ECCV 2018, eq. 6).
* Weights are binarised as sign(W) times the mean |W| of each output channel over latent real
  weights (Bi-Real's magnitude-aware weights), with a straight-through gradient to W.
* Padding: binary convs pad their +/-1 input with zeros (as the papers do) or with +1, which keeps
  every input of the conv in {-1, +1} so bit-packed inference is exact (DESIGN.md section 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _sign(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1: sign(sign(x) + 1/2) maps -1, 0, +1 to -1, +1, +1. Three cheap
    elementwise kernels; ``torch.where(x >= 0, 1, -1)`` costs ten times as much on the CPU."""
    return torch.sign(torch.sign(x) + 0.5)


class SignSTE(torch.autograd.Function):
    """sign forward, clipped identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class ApproxSign(SignSTE):
    """sign forward, Bi-Real's piecewise-polynomial gradient 2 - 2|x| (|x| <= 1) backward."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.clamp(2 - 2 * x.abs(), min=0)


SIGNS = {"ste": SignSTE, "approxsign": ApproxSign}


class BinaryActivation(nn.Module):
    """Binarises its input to {-1, +1}; ``kind`` picks the backward (``ste`` or ``approxsign``)."""

    def __init__(self, kind: str = "ste"):
        super().__init__()
        if kind not in SIGNS:
            raise ValueError(f"unknown binary activation {kind!r}; known: {', '.join(SIGNS)}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SIGNS[self.kind].apply(x)

    def extra_repr(self) -> str:
        return self.kind


def binarize_weight(w: torch.Tensor) -> torch.Tensor:
    """sign(W) * mean|W| per output channel, with an identity (straight-through) gradient to W."""
    alpha = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
    return w + (alpha * _sign(w) - w).detach()


class BinaryConv2d(nn.Conv2d):
    """A convolution whose input and weights are binary: it binarises its input (``activation``)
    and its latent real weights, and pads with zeros or with +1 (``padding_value``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        activation: str = "ste",
        padding_value: float = 0.0,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        )
        self.act = BinaryActivation(activation)
        self.padding_value = padding_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        w = binarize_weight(self.weight)
        if self.padding_value == 0.0:
            return F.conv2d(x, w, None, self.stride, self.padding)
        p = self.padding[0]
        x = F.pad(x, (p, p, p, p), value=self.padding_value)
        return F.conv2d(x, w, None, self.stride, 0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.act.kind}, pad={self.padding_value:g}"
