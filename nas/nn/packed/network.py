"""A packed inference model: a trained :class:`nas.nn.model.Network` with every binary conv run by
the bit-packed kernel.

``pack_model(model)`` (the model in eval mode) keeps the full-precision layers (stem,
transitions, shortcut projections, head) as they are and replaces each binary conv edge by a
:class:`PackedConv`: its weights packed one bit each, its weight scale and the BatchNorm after it
folded into one scale and shift per output channel, a dense edge's BatchNorm before it folded into
the packing of its input, the shortcuts and the other convs of its node added inside the kernel
(into the shortcut's own memory where nothing reads that node again: :meth:`PackedBlock._in_place`).
Activations stay NHWC between layers (the kernels' layout; PyTorch's modules see channels_last
views), so no layout copies are needed; a run of dense blocks shares one features tensor
(:meth:`PackedNetwork._dense_run`).
Exact where the network pads its binary convs with +1 (``padding: "one"``): the logits then match
the training module's up to float rounding.

``save_packed`` writes the spec and the packed tensors (the latent float weights of the binary
convs are dropped): about the model's storage in Mbit; ``load_packed`` reads it back.
"""

from __future__ import annotations

import copy
import io
import itertools
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from nas.core.atomic import atomic_write_bytes
from nas.core.scopes import parse_conv_key
from nas.core.spec import ArchSpec
from nas.nn.binary import weight_scale
from nas.nn.kernels import (
    Packed,
    PackedWeights,
    binary_conv2d,
    fp_stem,
    keep_freed_memory,
    max_pool2d,
    pack_activations,
    pack_weights,
)
from nas.nn.model import BlockLayer, ConvEdge, Network, build_model


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """A float NCHW tensor as a contiguous NHWC one (a view where it is channels_last)."""
    return x.permute(0, 2, 3, 1).contiguous()


def _nchw(x: torch.Tensor) -> torch.Tensor:
    """An NHWC tensor as the NCHW (channels_last) view that PyTorch's modules take."""
    return x.permute(0, 3, 1, 2)


def _fused(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A full-precision conv with the BatchNorm after it folded into its weights and bias."""
    return fuse_conv_bn_eval(conv, bn).to(memory_format=torch.channels_last)


class Pointwise(nn.Module):
    """A 1x1 stride-1 conv (a BatchNorm folded in) as one matrix product on the NHWC view: in the
    packed model PyTorch runs these convs through its slower reference path."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.register_buffer("weight", conv.weight.detach()[:, :, 0, 0].t().contiguous())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        out = rows @ self.weight if self.bias is None else torch.addmm(self.bias, rows, self.weight)
        return out.view(n, h, w, -1).permute(0, 3, 1, 2)


def _fused_1x1(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> nn.Module:
    """A full-precision conv (the BatchNorm after it folded in, if any): a 1x1 stride-1 one as a
    :class:`Pointwise` product."""
    if bn is not None:
        fused = _fused(conv, bn)
    else:  # a copy: the training module's conv stays as it is
        fused = copy.deepcopy(conv).to(memory_format=torch.channels_last)
    if fused.kernel_size == (1, 1) and fused.stride == (1, 1) and fused.groups == 1:
        return Pointwise(fused)
    return fused


class PooledTransition(nn.Module):
    """BinaryDenseNet's transition, BN -> MaxPool 2x2/2 (ceil) -> ReLU -> FP 1x1 conv: the BN,
    pool and ReLU in one compiled pass (:func:`nas.nn.kernels.max_pool2d`; three passes over the
    stage's features in PyTorch), then the conv as one matrix product."""

    def __init__(self, transition: nn.Module):
        super().__init__()
        bn, (pool, _relu) = transition.pre, transition.pool
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("scale", scale.float().contiguous())
        self.register_buffer("shift", (bn.bias.detach() - bn.running_mean * scale).float())
        self.pool = (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode)
        self.conv = _fused_1x1(transition.conv, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(max_pool2d(x, *self.pool, self.scale, self.shift, relu=True))


def _fused_transition(transition: nn.Module | None) -> nn.Module | None:
    """A stage's transition for the packed model: AvgPool -> conv -> BN with the BN folded into
    the conv; BN -> MaxPool -> ReLU -> conv as a :class:`PooledTransition`."""
    if transition is None:
        return None
    if isinstance(transition.post, nn.BatchNorm2d):
        return nn.Sequential(transition.pool, _fused_1x1(transition.conv, transition.post))
    return PooledTransition(transition)


class PackedConv(nn.Module):
    """One binary conv edge: [BN ->] sign -> packed conv -> scale, shift (weight scale and BN)."""

    def __init__(self, edge: ConvEdge):
        super().__init__()
        conv = edge.conv
        weight = conv.weight.detach()
        alpha = weight_scale(weight).flatten()
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
        self.pad = self.bits.shape[0] // 2  # the +1 padding of its input
        # a dense edge's BN before the sign, folded into the packing: x * pre_scale + pre_shift
        pre_scale = pre_shift = None
        if isinstance(edge.pre, nn.BatchNorm2d):
            bn = edge.pre
            pre_scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            pre_shift = bn.bias.detach() - bn.running_mean * pre_scale
        self.register_buffer("pre_scale", pre_scale)
        self.register_buffer("pre_shift", pre_shift)

    def pack_input(self, x: torch.Tensor) -> Packed:
        """The signs of ``x`` (NHWC, possibly the first channels of a wider tensor), through the
        edge's BN if any, packed with its padding."""
        return pack_activations(x.permute(0, 3, 1, 2), self.pad, self.pre_scale, self.pre_shift)

    def forward(
        self,
        x: Packed,
        residual: torch.Tensor | None = None,
        out_pad: int | None = None,
        out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Packed | None]:
        """The float output (NHWC), ``residual`` (NHWC) added in, written into ``out`` if given
        (``residual`` itself where the caller no longer needs it, or the channels of a wider
        tensor: see :func:`nas.nn.kernels.binary_conv2d`); with ``out_pad`` also the output's signs,
        packed with that padding for the next conv, else None."""
        out = binary_conv2d(
            x,
            PackedWeights(self.bits, self.channels),
            self.stride,
            self.scale,
            self.shift,
            residual,
            output="float" if out_pad is None else "both",
            out_pad=out_pad or 0,
            out=out,
        )
        return (out, None) if out_pad is None else out


class PackedBlock(nn.Module):
    """A block's DAG (:class:`nas.nn.model.BlockLayer`) with packed convs. A node's convs add its
    shortcuts and each other inside the kernels (one conv in the Bi-Real case, several joined by
    their mean in IGP's), the last one packing the node's signs in the same pass where binary
    convs read the node; ``out_pad`` (set by :class:`PackedNetwork`) asks for the block output
    packed too, for the next block."""

    def __init__(self, layer: BlockLayer):
        super().__init__()
        self.dense, self.join, self.depth = layer.dense, layer.join, layer.depth
        self.inputs = layer.inputs
        self.convs = nn.ModuleDict({k: PackedConv(e) for k, e in layer.convs.items()})
        projection = layer.projection
        if projection is not None:  # (AvgPool ->) 1x1 conv -> BN, the BN folded in
            fused = _fused_1x1(projection.conv, projection.bn)
            projection = fused if projection.pool is None else nn.Sequential(projection.pool, fused)
        self.projection = projection
        pads = {conv.pad for conv in self.convs.values()}
        # the padding its convs want on packed nodes (None: dense blocks pack per edge)
        self.pad = None if self.dense or len(pads) != 1 else pads.pop()
        self.read_by_convs = {int(key.split("_")[0]) for key in self.convs}
        # per node j: its convs (source i, module), its shortcut sources, its number of terms
        self.nodes = []
        for j in range(1, self.depth + 1):
            conv_srcs, short_srcs = self.inputs[j]
            convs = [(i, self.convs[f"{i}_{j}"]) for i in conv_srcs]
            self.nodes.append((j, convs, tuple(short_srcs), len(conv_srcs) + len(short_srcs)))
        self.out_pad: int | None = None
        self.in_place = self._in_place()
        # a dense block's output is its input and its last node: that node's channels
        into_last = [c for key, c in self.convs.items() if parse_conv_key(key)[1] == self.depth]
        self.growth = into_last[0].bits.shape[3] if self.dense else 0

    def _in_place(self) -> dict[int, bool]:
        """The nodes j (convs and shortcuts: the Bi-Real case, IGP's) whose first conv may add
        into its shortcut tensor in place, which saves moving a buffer through the caches (4-7%
        of a whole bireal_resnet18 on one core): where the shortcuts are several (their sum is a
        new tensor) or nothing reads the shortcut's node after j (the convs of j read their
        sources before any of them runs). Mapped to True where that shortcut is the block's input
        itself, which only a caller that gives it up lets the block overwrite."""
        if self.dense:  # later convs read every node through the concatenation
            return {}
        readers: dict[int, list[int]] = {}  # node -> the nodes that read its floats
        for j, (conv_srcs, short_srcs) in self.inputs.items():
            for i in short_srcs:
                readers.setdefault(i, []).append(j)
            for i in conv_srcs:  # convs pack it first (at j, before any conv adds in place)
                if i > 0 or self.projection is None:  # node 0's shortcut is the projection's
                    readers.setdefault(i, []).append(j)
        in_place = {}
        for j, (conv_srcs, short_srcs) in self.inputs.items():
            if not conv_srcs or not short_srcs:
                continue
            if len(short_srcs) > 1:
                in_place[j] = False
            elif max(readers[short_srcs[0]]) == j:
                in_place[j] = short_srcs[0] == 0 and self.projection is None
        return in_place

    def forward(
        self, x: torch.Tensor, x_packed: Packed | None = None, give_up_input: bool = False
    ) -> tuple[torch.Tensor, Packed | None]:
        """The block output (NHWC, as ``x``, the kernels' layout) and, where ``out_pad`` is set
        and the kernel could pack it, its packed signs. ``x_packed``: the input already packed
        with ``self.pad``, or None. ``give_up_input``: the caller no longer needs ``x``, which
        may then be overwritten."""
        if self.dense:
            features = x.new_empty(*x.shape[:3], x.shape[3] + self.growth)
            features[..., : x.shape[3]] = x
            self.grow(x, features[..., x.shape[3] :])
            return features, None
        node, packed = self._nodes(x.contiguous(), x_packed, give_up_input)
        return node[-1], packed.get(self.depth) if self.out_pad is not None else None

    def grow(self, x: torch.Tensor, into: torch.Tensor) -> None:
        """A dense block's new features (its last node, ``growth`` channels) from ``x``, written
        into ``into`` (both NHWC, possibly channels of a wider tensor: the features of a run of
        dense blocks, see :meth:`PackedNetwork._dense_run`), by the last node's convs themselves."""
        last = self._nodes(x, None, False, into)[0][-1]
        if last.data_ptr() != into.data_ptr():  # a last node without convs
            into.copy_(last)

    def _nodes(
        self,
        x: torch.Tensor,
        x_packed: Packed | None,
        give_up_input: bool,
        into: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], dict[int, Packed]]:
        """Every node's float values (NHWC) and the packed signs made on the way; the last node
        written into ``into`` where given."""
        node = [x]
        shortcut_x = x if self.projection is None else _nhwc(self.projection(_nchw(x)))
        reads: dict[int, torch.Tensor] = {0: x}  # dense: the concatenation a conv reads
        packed: dict[int, Packed] = {} if x_packed is None else {0: x_packed}
        for j, convs, short_srcs, n_terms in self.nodes:
            sources = []  # every conv's packed input, before any conv of j writes in place
            for i, conv in convs:
                if self.dense:
                    if i not in reads:
                        reads[i] = torch.cat(node[: i + 1], dim=3)
                    sources.append(conv.pack_input(reads[i]))  # its own BN before the sign
                else:
                    if i not in packed:
                        packed[i] = conv.pack_input(node[i])
                    sources.append(packed[i])
            out = None  # the sum of the shortcuts, then each conv added in by the kernel
            for i in short_srcs:
                t = shortcut_x if i == 0 else node[i]
                out = t if out is None else out + t
            mean = self.join == "mean" and n_terms > 1
            if not convs:
                node.append(out / n_terms if mean else out)
                continue
            # the first conv may add into the shortcut's memory (see _in_place), the others add
            # into the node's own; the last packs the node's signs if convs read it (the sign of
            # the sum is the sign of the mean)
            overwrite = j in self.in_place and (give_up_input or not self.in_place[j])
            pad = self.pad if j in self.read_by_convs else self.out_pad if j == self.depth else None
            dest = out if overwrite else None  # where the first conv writes (None: a new tensor)
            if j == self.depth and into is not None:  # the shortcuts' sum moved there first
                dest = into if out is None else into.copy_(out)
                out = None if out is None else dest
            for k, ((_, conv), source) in enumerate(zip(convs, sources, strict=True)):
                last = k == len(convs) - 1
                out, signs = conv(source, out, pad if last else None, dest)
                dest = out  # the other convs add into the node's own memory
            if signs is not None:
                packed[j] = signs
            node.append(out.div_(n_terms) if mean else out)
        return node, packed


class PackedNetwork(nn.Module):
    """A :class:`nas.nn.model.Network` for inference with packed binary convs (``spec`` kept)."""

    def __init__(self, model: Network):
        super().__init__()
        if model.training:
            raise ValueError("pack a model in eval mode (model.eval()): BN uses running stats")
        keep_freed_memory()  # activations allocated per image: no page zeroed again and again
        self.spec = model.spec
        self.stem = nn.Sequential(_fused(model.stem.conv, model.stem.bn), model.stem.relu)
        self.pool = model.stem.pool
        self.head = model.head
        self.stages = nn.ModuleList()
        previous = None  # the block before, if it feeds the next block directly
        for stage in model.stages:
            packed = nn.Module()
            packed.transition = _fused_transition(stage.transition)
            packed.blocks = nn.ModuleList(PackedBlock(b) for b in stage.blocks)
            if packed.transition is not None:
                previous = None
            for block in packed.blocks:  # a block packs its output as the next one reads it
                if previous is not None:
                    previous.out_pad = block.pad
                previous = None if block.dense else block  # dense: the whole features are read
            self.stages.append(packed)
        first = self.stages[0]
        # the +1 padding the first block wants on its packed input, which the stem kernel makes
        self.stem_pad = first.blocks[0].pad if first.transition is None else None
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits. The convolutional trunk runs one image at a time, so that its activations stay
        in the caches (a batch of 16 at 224 px does not fit: 1.3x slower per image measured);
        the head runs on the whole batch, reading its weights once."""
        features = [self._trunk(image) for image in x.split(1)]
        return self.head(torch.cat(features) if len(features) > 1 else features[0])

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, Packed | None]:
        """The stem's output and, where the compiled stem ran, its signs packed for the first
        block: conv, ReLU and max-pool in one pass (:func:`nas.nn.kernels.fp_stem`; the stem's
        max-pool is always 3x3/2 with padding 1), else PyTorch's conv and the compiled pool."""
        conv, relu = self.stem
        pool = isinstance(self.pool, nn.MaxPool2d)
        relu = isinstance(relu, nn.ReLU)
        done = fp_stem(x, conv.weight, conv.bias, conv.stride[0], relu, pool, self.stem_pad)
        if done is not None:
            return done
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        return (max_pool2d(x, 3, 2, 1) if pool else x), None

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x, x_packed = self._stem(x)
        x = _nhwc(x)  # the kernels' layout, kept between the blocks
        for stage in self.stages:
            if stage.transition is not None:
                x, x_packed = _nhwc(stage.transition(_nchw(x))), None
            blocks = list(stage.blocks)
            while blocks:
                if blocks[0].dense:
                    run = list(itertools.takewhile(lambda b: b.dense, blocks))
                    x, x_packed, blocks = self._dense_run(x, run), None, blocks[len(run) :]
                else:  # each block's input is the trunk's own tensor
                    x, x_packed = blocks.pop(0)(x, x_packed, give_up_input=True)
        return _nchw(x)

    @staticmethod
    def _dense_run(x: torch.Tensor, blocks: list[PackedBlock]) -> torch.Tensor:
        """Consecutive dense blocks, each reading the features so far and adding its own: one
        tensor of the run's final width, each block's features written into their channels once
        (concatenating them block by block would copy every feature again at every block)."""
        c = x.shape[3]
        features = x.new_empty(*x.shape[:3], c + sum(block.growth for block in blocks))
        features[..., :c] = x
        for block in blocks:
            block.grow(features[..., :c], features[..., c : c + block.growth])
            c += block.growth
        return features


def pack_model(model: Network) -> PackedNetwork:
    """The packed inference module of a trained ``model`` (in eval mode)."""
    return PackedNetwork(model)


FORMAT = 2
"""The layout of the tensors :func:`save_packed` writes. 1: files without a ``"format"`` entry
(before 2026-11-26), which stored each dense edge's BatchNorm; 2: dense edges' BatchNorms folded
into ``pre_scale`` / ``pre_shift``, and BinaryDenseNet transitions stored as
:class:`PooledTransition`. Raise it whenever a packed module's state dict changes."""


def save_packed(packed: PackedNetwork, path: str | Path) -> None:
    """The spec, the format and the packed module's tensors, in one file, written atomically."""
    buffer = io.BytesIO()
    torch.save(
        {"format": FORMAT, "spec": packed.spec.to_json(), "state": packed.state_dict()}, buffer
    )
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_packed(path: str | Path) -> PackedNetwork:
    """A packed module saved by :func:`save_packed` (loaded with ``weights_only=True``). A file
    that is no packed network, one written by a newer version, or one of an older format whose
    tensors this version lays out otherwise (a dense network packed before :data:`FORMAT` 2) is
    refused with a one-line ValueError that says what to do."""
    saved = torch.load(path, weights_only=True)
    if not isinstance(saved, dict) or not {"spec", "state"} <= saved.keys():
        raise ValueError(f"{path} is not a packed network: write one with nas.pack")
    found = saved.get("format", 1)
    if not isinstance(found, int) or found > FORMAT:
        raise ValueError(
            f"{path} is a packed network of format {found!r}, newer than this version reads "
            f"({FORMAT}): update the product, or pack the network again with this version"
        )
    packed = PackedNetwork(build_model(ArchSpec.from_json(saved["spec"])).eval())
    try:
        packed.load_state_dict(saved["state"])
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        first = first if len(first) <= 160 else first[:157] + "..."
        raise ValueError(
            f"{path} is a packed network of format {found}, with other tensors than this version "
            f"packs ({first}): pack the network again from its checkpoint (python -m "
            "nas.pack)"
        ) from None
    return packed
