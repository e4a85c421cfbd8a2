"""The PyTorch int8 anchor of the packed model's latency: the same trained network with every
binary conv run by PyTorch's quantized int8 convolution (``torch.ao.nn.quantized.Conv2d``, the
``x86`` engine: oneDNN or FBGEMM, VNNI where the CPU has it), the rest as it is (fp32).

A binary conv's input and weights are +-1, which int8 holds exactly: the input is quantized
with scale 1 (zero point 128, quint8), the weights' signs with scale 1 (qint8), and the output
scaled back by the weights' per-channel mean magnitude. The int8 kernel requantizes its int32
sums to 8 bits, with a scale calibrated on a batch as post-training quantization does (the
largest sum seen / 127), so unlike the packed model this one is an approximation: it is a speed
anchor (what PyTorch's own int8 path gives this network), not an inference path. The quantize
and dequantize around each conv are part of what it costs. PyTorch deprecates these quantized
tensors (their notices are silenced here); the benchmarks leave the anchor out once they are
gone.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.nn import quantized as nnq

from nas.nn.binary import BinaryConv2d, _sign, weight_scale

# the anchor quantizes every conv's input: PyTorch's deprecation notice, once, says nothing more
warnings.filterwarnings("ignore", r"torch\.quantize_per_tensor.*deprecated", UserWarning)


class Int8BinaryConv(nn.Module):
    """A trained :class:`~nas.nn.binary.BinaryConv2d` as PyTorch's int8 convolution
    (``torch.ao.nn.quantized.Conv2d``, as ``speed.packed`` times a layer), its output
    requantized with the scale ``largest_sum`` / 127."""

    def __init__(self, conv: BinaryConv2d, largest_sum: float):
        super().__init__()
        w = conv.weight.detach().float()
        self.act = conv.act
        self.pad = conv.padding[0]
        self.pad_value = conv.padding_value
        self.register_buffer("alpha", weight_scale(w).view(1, -1, 1, 1))
        # +1 padding is applied before quantizing (the kernel pads with the zero point: 0)
        own_pad = 0 if self.pad_value else self.pad
        self.conv = nnq.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, own_pad
        )
        self.conv.set_weight_bias(torch.quantize_per_tensor(_sign(w), 1.0, 0, torch.qint8), None)
        self.conv.scale, self.conv.zero_point = max(largest_sum, 1.0) / 127.0, 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        if self.pad_value:
            x = F.pad(x, (self.pad,) * 4, value=self.pad_value)
        q = torch.quantize_per_tensor(x, 1.0, 128, torch.quint8)
        return self.conv(q).dequantize() * self.alpha


def int8_model(model: nn.Module, calibration: torch.Tensor) -> nn.Module | None:
    """A copy of a trained ``model`` (eval mode) with each binary conv as :class:`Int8BinaryConv`
    on the ``x86`` quantized engine, its output scale calibrated on the images ``calibration``;
    None where this PyTorch has no quantized convolution."""
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    copied = copy.deepcopy(model).eval()
    convs = [m for m in copied.modules() if isinstance(m, BinaryConv2d)]
    largest: dict[BinaryConv2d, float] = {}

    def record(conv, _, out):  # the conv's integer sums are its output / alpha
        alpha = weight_scale(conv.weight.detach()).view(1, -1, 1, 1)
        largest[conv] = max(largest.get(conv, 0.0), float((out / alpha).abs().max()))

    hooks = [c.register_forward_hook(record) for c in convs]
    with torch.no_grad():
        copied(calibration)
    for hook in hooks:
        hook.remove()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # set_weight_bias's deprecation notice
            for parent in list(copied.modules()):
                for name, child in parent.named_children():
                    if isinstance(child, BinaryConv2d):
                        setattr(parent, name, Int8BinaryConv(child, largest[child]))
            with torch.no_grad():
                copied(calibration)
    except (RuntimeError, AttributeError):  # no quantized engine for this CPU, or no API
        return None
    return copied
