"""A packed inference model: a trained :class:`nas.model.Network` with every binary conv run by
the bit-packed kernel.

``pack_model(model)`` (the model in eval mode) keeps the full-precision layers (stem,
transitions, shortcut projections, head) as they are and replaces each binary conv edge by a
:class:`PackedConv`: its weights packed one bit each, its weight scale and the BatchNorm after it
folded into one scale and shift per output channel, a Bi-Real shortcut added inside the kernel.
Activations stay channels_last (NHWC in memory) between layers, so no layout copies are needed.
Exact where the network pads its binary convs with +1 (``padding: "one"``): the logits then match
the training module's up to float rounding.

``save_packed`` writes the spec and the packed tensors (the latent float weights of the binary
convs are dropped): about the model's storage in Mbit; ``load_packed`` reads it back.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from nas.kernels import Packed, PackedWeights, binary_conv2d, pack_activations, pack_weights
from nas.model import BlockLayer, ConvEdge, Network, build_model
from nas.spec import ArchSpec


def _fused(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A full-precision conv with the BatchNorm after it folded into its weights and bias."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    return fuse_conv_bn_eval(conv, bn).to(memory_format=torch.channels_last)


def _fused_transition(transition: nn.Module | None) -> nn.Module | None:
    """AvgPool -> conv -> BN transitions with the BN folded in; others unchanged."""
    if transition is None or not isinstance(transition.post, nn.BatchNorm2d):
        return transition
    return nn.Sequential(transition.pool, _fused(transition.conv, transition.post))


class PackedConv(nn.Module):
    """One binary conv edge: [BN ->] sign -> packed conv -> scale, shift (weight scale and BN)."""

    def __init__(self, edge: ConvEdge):
        super().__init__()
        conv = edge.conv
        weight = conv.weight.detach()
        alpha = weight.abs().mean(dim=(1, 2, 3))
        if isinstance(edge.post, nn.BatchNorm2d):
            bn = edge.post
            a = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            scale, shift = alpha * a, bn.bias.detach() - bn.running_mean * a
        else:
            scale, shift = alpha, torch.zeros_like(alpha)
        packed = pack_weights(weight)
        self.register_buffer("bits", packed.bits)
        self.register_buffer("scale", scale.float().contiguous())
        self.register_buffer("shift", shift.float().contiguous())
        self.channels = packed.channels
        self.stride = conv.stride[0]
        self.pre = edge.pre  # BN of a dense edge, else Identity

    def pack_input(self, x: torch.Tensor) -> Packed:
        return pack_activations(self.pre(x), pad=self.bits.shape[0] // 2)

    def forward(self, x: Packed, residual: torch.Tensor | None = None) -> torch.Tensor:
        """NCHW (channels_last) float output; ``residual`` NCHW channels_last, added in."""
        res = None if residual is None else residual.permute(0, 2, 3, 1)
        out = binary_conv2d(
            x,
            PackedWeights(self.bits, self.channels),
            self.stride,
            self.scale,
            self.shift,
            None if res is None else res.contiguous(),
        )
        return out.permute(0, 3, 1, 2)


class PackedBlock(nn.Module):
    """A block's DAG (:class:`nas.model.BlockLayer`) with packed convs."""

    def __init__(self, layer: BlockLayer):
        super().__init__()
        self.dense, self.join, self.depth = layer.dense, layer.join, layer.depth
        self.inputs = layer.inputs
        self.convs = nn.ModuleDict({k: PackedConv(e) for k, e in layer.convs.items()})
        projection = layer.projection
        if projection is not None:  # (AvgPool ->) 1x1 conv -> BN, the BN folded in
            fused = _fused(projection.conv, projection.bn)
            projection = fused if projection.pool is None else nn.Sequential(projection.pool, fused)
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        node = [x]
        shortcut_x = self.projection(x) if self.projection is not None else x
        reads: dict[int, torch.Tensor] = {}
        packed: dict[int, Packed] = {}
        for j in range(1, self.depth + 1):
            conv_srcs, short_srcs = self.inputs[j]
            shorts = [shortcut_x if i == 0 else node[i] for i in short_srcs]
            residual = None
            if len(conv_srcs) == 1 and shorts:  # the Bi-Real case: fuse the shortcut sum
                residual = shorts[0]
                for t in shorts[1:]:
                    residual = residual + t
                shorts = []
            terms = []
            for i in conv_srcs:
                conv = self.convs[f"{i}_{j}"]
                if self.dense:
                    if i not in reads:
                        reads[i] = torch.cat(node[: i + 1], dim=1)
                    source = conv.pack_input(reads[i])  # its own BN before the sign
                else:
                    if i not in packed:
                        packed[i] = conv.pack_input(node[i])
                    source = packed[i]
                terms.append(conv(source, residual))
                residual = None
            terms += shorts
            out = terms[0]
            for t in terms[1:]:
                out = out + t
            n_terms = len(conv_srcs) + len(short_srcs)
            if self.join == "mean" and n_terms > 1:
                out = out / n_terms
            node.append(out.contiguous(memory_format=torch.channels_last))
        if self.dense:
            return torch.cat([x, node[-1]], dim=1)
        return node[-1]


class PackedNetwork(nn.Module):
    """A :class:`nas.model.Network` for inference with packed binary convs (``spec`` kept)."""

    def __init__(self, model: Network):
        super().__init__()
        if model.training:
            raise ValueError("pack a model in eval mode (model.eval()): BN uses running stats")
        self.spec = model.spec
        self.stem = nn.Sequential(
            _fused(model.stem.conv, model.stem.bn), model.stem.relu, model.stem.pool
        )
        self.head = model.head
        self.stages = nn.ModuleList()
        for stage in model.stages:
            packed = nn.Module()
            packed.transition = _fused_transition(stage.transition)
            packed.blocks = nn.ModuleList(PackedBlock(b) for b in stage.blocks)
            self.stages.append(packed)
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for stage in self.stages:
            if stage.transition is not None:
                x = stage.transition(x)
            for block in stage.blocks:
                x = block(x)
        return self.head(x)


def pack_model(model: Network) -> PackedNetwork:
    """The packed inference module of a trained ``model`` (in eval mode)."""
    return PackedNetwork(model)


def save_packed(packed: PackedNetwork, path: str | Path) -> None:
    """The spec and the packed module's tensors, in one file, written atomically."""
    from results.run import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({"spec": packed.spec.to_json(), "state": packed.state_dict()}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_packed(path: str | Path) -> PackedNetwork:
    """A packed module saved by :func:`save_packed` (loaded with ``weights_only=True``)."""
    saved = torch.load(path, weights_only=True)
    packed = PackedNetwork(build_model(ArchSpec.from_json(saved["spec"])).eval())
    packed.load_state_dict(saved["state"])
    return packed
