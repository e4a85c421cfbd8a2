"""ArchSpec -> ``nn.Module``. The layout and semantics are those of :mod:`nas.core.spec`; the
qualified
names of the conv and fc modules are the node names of :func:`nas.spec_graph` (the attribute names
below are the scheme of :mod:`nas.core.scopes`). ``fused`` picks how the binary convs run
(:class:`nas.nn.binary.BinaryConv2d`: fused, the default, or the reference modules; the same bits
either way). :func:`create_model` builds a registered model."""

from __future__ import annotations

import torch
from torch import nn

from nas.core import scopes as names
from nas.core.registry import model_spec
from nas.core.spec import ArchSpec, Block, Stem, Transition
from nas.nn.binary import BinaryConv2d


class StemLayer(nn.Module):
    def __init__(self, stem: Stem, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, stem.channels, stem.kernel, stem.stride, stem.kernel // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(stem.channels)
        self.relu = nn.ReLU(inplace=True) if stem.relu else nn.Identity()
        self.pool = nn.MaxPool2d(3, 2, 1) if stem.kind == "imagenet" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class TransitionLayer(nn.Module):
    """``avgpool_conv``: AvgPool 2x2/2 -> FP 1x1 conv -> BN (IGP-ResNet, Bi-Real's downsample);
    ``bn_maxpool_relu_conv``: BN -> MaxPool 2x2/2 -> ReLU -> FP 1x1 conv (BinaryDenseNet)."""

    def __init__(self, t: Transition, in_channels: int):
        super().__init__()
        conv = nn.Conv2d(in_channels, t.channels, 1, bias=False)
        if t.kind == "avgpool_conv":
            self.pre = nn.Identity()
            self.pool = nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)
            self.conv, self.post = conv, nn.BatchNorm2d(t.channels)
        else:
            self.pre = nn.BatchNorm2d(in_channels)
            self.pool = nn.Sequential(nn.MaxPool2d(2, 2, ceil_mode=True), nn.ReLU(inplace=True))
            self.conv, self.post = conv, nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(self.pool(self.pre(x))))


class ConvEdge(nn.Module):
    """One conv edge: residual binary BN(BinConv(Sign(x))); residual FP BN(Conv(ReLU(x)));
    dense BinConv(Sign(BN(x)))."""

    def __init__(self, block: Block, cin: int, stride: int, spec: ArchSpec, fused: bool = True):
        super().__init__()
        k, cout = block.kernel, block.width
        if block.binary:
            pad = 1.0 if spec.padding == "one" else 0.0
            self.conv = BinaryConv2d(cin, cout, k, stride, spec.activation, pad, fused=fused)
        else:
            self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        dense = block.kind == "dense"
        self.pre = nn.BatchNorm2d(cin) if dense else nn.Identity()
        self.act = nn.ReLU() if not block.binary else nn.Identity()
        self.post = nn.Identity() if dense else nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(self.act(self.pre(x))))


class Projection(nn.Module):
    """Shortcut projection of a block input whose shape changes: binary blocks use Bi-Real's
    AvgPool 2x2/2 -> FP 1x1 conv -> BN; full-precision blocks ResNet's strided 1x1 conv -> BN."""

    def __init__(self, block: Block, cin: int):
        super().__init__()
        avg = block.binary and block.stride != 1
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) if avg else None
        self.conv = nn.Conv2d(cin, block.width, 1, 1 if avg else block.stride, bias=False)
        self.bn = nn.BatchNorm2d(block.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        return self.bn(self.conv(x))


class BlockLayer(nn.Module):
    """A block's DAG (:class:`nas.Block`): nodes computed in index order, joined by add or mean."""

    def __init__(self, block: Block, cin: int, spec: ArchSpec, fused: bool = True):
        super().__init__()
        self.dense = block.kind == "dense"
        self.join = block.join
        self.depth = block.depth
        self.inputs = {j: block.in_edges(j) for j in range(1, block.depth + 1)}
        convs = {}
        for i, j in block.convs:
            edge_cin = cin + i * block.width if self.dense else (cin if i == 0 else block.width)
            stride = block.stride if i == 0 else 1
            convs[names.conv_key(i, j)] = ConvEdge(block, edge_cin, stride, spec, fused)
        self.convs = nn.ModuleDict(convs)
        needs_projection = block.stride != 1 or cin != block.width
        has_input_shortcut = any(i == 0 for i, _ in block.shortcuts)
        self.projection = (
            Projection(block, cin) if has_input_shortcut and needs_projection else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        node = [x]
        shortcut_x = self.projection(x) if self.projection is not None else x
        reads: dict[int, torch.Tensor] = {0: x}
        for j in range(1, self.depth + 1):
            conv_srcs, short_srcs = self.inputs[j]
            terms = []
            for i in conv_srcs:
                if i not in reads:
                    reads[i] = torch.cat(node[: i + 1], dim=1) if self.dense else node[i]
                terms.append(self.convs[names.conv_key(i, j)](reads[i]))
            terms += [shortcut_x if i == 0 else node[i] for i in short_srcs]
            out = terms[0]
            for t in terms[1:]:
                out = out + t
            if self.join == "mean" and len(terms) > 1:
                out = out / len(terms)
            node.append(out)
        if self.dense:
            return torch.cat([x, node[-1]], dim=1)
        return node[-1]


class StageLayer(nn.Module):
    def __init__(self, transition: nn.Module | None, blocks: list[nn.Module]):
        super().__init__()
        self.transition = transition
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transition is not None:
            x = self.transition(x)
        for block in self.blocks:
            x = block(x)
        return x


class HeadLayer(nn.Module):
    def __init__(self, channels: int, classes: int, bn_relu: bool):
        super().__init__()
        self.pre = (
            nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
            if bn_relu
            else nn.Identity()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.pre(x)), 1))


class Network(nn.Module):
    """The network of an ArchSpec; ``spec`` is kept as an attribute."""

    def __init__(self, spec: ArchSpec, fused: bool = True):
        super().__init__()
        self.spec = spec
        self.stem = StemLayer(spec.stem, spec.in_channels)
        ch = spec.stem.channels
        stages = []
        for stage in spec.stages:
            transition = None
            if stage.transition is not None:
                transition = TransitionLayer(stage.transition, ch)
                ch = stage.transition.channels
            blocks = []
            for block in stage.blocks:
                blocks.append(BlockLayer(block, ch, spec, fused))
                ch = ch + block.width if block.kind == "dense" else block.width
            stages.append(StageLayer(transition, blocks))
        self.stages = nn.ModuleList(stages)
        self.head = HeadLayer(ch, spec.classes, spec.head.bn_relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def build_model(spec: ArchSpec, fused: bool = True) -> Network:
    """The trainable PyTorch network of ``spec``; ``fused=False``: its binary convs as the
    reference modules (same results, slower; :mod:`nas.nn.binary`)."""
    return Network(spec, fused)


def create_model(name: str, **options) -> Network:
    """Build a registered model (:mod:`nas.core.registry`) as an ``nn.Module``; ``options`` go to
    its builder."""
    return build_model(model_spec(name, **options))
