"""The layer graph of an ArchSpec (networkx), its stable id and its depth.

The graph is the view the scorer reads (docs/design.md section 5). Nodes are layers: convolutions
(full-precision ``conv`` or ``binconv``), the classifier ``fc``, pooling, the joins ``add`` /
``mean`` / ``concat``, and ``input`` / ``output``. Element-wise ops (BN, sign, ReLU) are folded into
the layer they belong to: a ``binconv`` node stands for Sign -> BinConv (and its BN). Node names
are the qualified names of the matching ``nn.Module`` in :func:`nas.build_model`'s network (the
scheme of :mod:`nas.core.scopes`), so a layer of the graph and a layer of the module can be paired
by name.

Each node carries ``kind``, ``cin``, ``cout``, ``kernel``, ``stride``, ``size`` (output side in
pixels), ``stage`` ("stem", "stage1", ..., "head"), ``macs``, ``params`` and ``bn`` (channels of
the BN folded into it), and ``weight``: BOPs / 64 for a binary conv, 0 for every other op, the
gradient-path weight of docs/design.md section 5.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from typing import NamedTuple

import networkx as nx

from nas.core import scopes as names
from nas.core.spec import ArchSpec, Block

WEIGHTED_KINDS = ("conv", "binconv", "fc")


class Op(NamedTuple):
    """One layer of the graph; see the module docstring for the fields. (A named tuple: the
    search lowers thousands of specs, and tuples are built fastest.)"""

    name: str
    kind: str
    inputs: tuple[str, ...]
    cin: int
    cout: int
    size: int
    stage: str
    kernel: int = 0
    stride: int = 1
    bn: int = 0
    groups: int = 1

    @property
    def params(self) -> int:
        if self.kind == "fc":
            return self.cin * self.cout
        if self.kind in ("conv", "binconv"):
            return self.cin * self.cout * self.kernel * self.kernel // self.groups
        return 0

    @property
    def macs(self) -> int:
        """Multiply-accumulates: C_in * C_out * k_h * k_w * H_out * W_out (fc: C_in * C_out)."""
        if self.kind == "fc":
            return self.params
        return self.params * self.size * self.size

    @property
    def weight(self) -> float:
        """Gradient-path weight: BOPs / 64 for a binary conv, 0 otherwise (docs/design.md
        section 5)."""
        return self.macs / 64 if self.kind == "binconv" else 0.0


def down(size: int, stride: int) -> int:
    """Output side of a stride-``stride`` downsampling: ceil(size / stride)."""
    return -(-size // stride)


class _Lowering:
    """Walks a spec in forward order and emits its ops."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def emit(self, **kw) -> str:
        self.ops.append(Op(**kw))
        return kw["name"]

    def stem(self, spec: ArchSpec, x: str) -> tuple[str, int, int]:
        stem = spec.stem
        size = down(spec.input_size, stem.stride)
        x = self.emit(
            name=names.stem_layer("conv"),
            kind="conv",
            inputs=(x,),
            cin=spec.in_channels,
            cout=stem.channels,
            kernel=stem.kernel,
            stride=stem.stride,
            size=size,
            stage=names.STEM,
            bn=stem.channels,
        )
        if stem.kind == "imagenet":
            size = down(size, 2)
            x = self.emit(
                name=names.stem_layer("pool"),
                kind="maxpool",
                inputs=(x,),
                cin=stem.channels,
                cout=stem.channels,
                kernel=3,
                stride=2,
                size=size,
                stage=names.STEM,
            )
        return x, stem.channels, size

    def transition(self, s: int, spec_t, stage: str, x: str, ch: int, size: int):
        size = down(size, 2)
        pool = "maxpool" if spec_t.kind == "bn_maxpool_relu_conv" else "avgpool"
        x = self.emit(
            name=names.transition_layer(s, "pool"),
            kind=pool,
            inputs=(x,),
            cin=ch,
            cout=ch,
            kernel=2,
            stride=2,
            size=size,
            stage=stage,
        )
        x = self.emit(
            name=names.transition_layer(s, "conv"),
            kind="conv",
            inputs=(x,),
            cin=ch,
            cout=spec_t.channels,
            kernel=1,
            size=size,
            stage=stage,
            bn=ch if pool == "maxpool" else spec_t.channels,
        )
        return x, spec_t.channels, size

    def block(self, prefix: str, block: Block, stage: str, x: str, ch: int, size: int):
        dense = block.kind == "dense"
        out_size = down(size, block.stride)
        conv_kind = "binconv" if block.binary else "conv"
        node = {0: x}
        node_ch = {0: ch}
        source = {0: x}  # what a shortcut leaving node i reads (node 0 may be projected)
        if any(i == 0 for i, _ in block.shortcuts) and (block.stride != 1 or ch != block.width):
            p = x
            if block.binary and block.stride != 1:
                p = self.emit(
                    name=names.projection_layer(prefix, "pool"),
                    kind="avgpool",
                    inputs=(x,),
                    cin=ch,
                    cout=ch,
                    kernel=2,
                    stride=2,
                    size=out_size,
                    stage=stage,
                )
            source[0] = self.emit(
                name=names.projection_layer(prefix, "conv"),
                kind="conv",
                inputs=(p,),
                cin=ch,
                cout=block.width,
                kernel=1,
                stride=1 if block.binary else block.stride,
                size=out_size,
                stage=stage,
                bn=block.width,
            )
        reads: dict[int, tuple[str, int]] = {0: (x, ch)}  # conv input of edges leaving node i
        incoming = block.incoming()
        depth = max(incoming)
        for j in range(1, depth + 1):
            conv_srcs, short_srcs = incoming[j]
            inputs = []
            for i in conv_srcs:
                if i not in reads:  # dense: node i's convs read concat(node 0..i)
                    if dense:
                        reads[i] = (
                            self.emit(
                                name=names.read_op(prefix, i),
                                kind="concat",
                                inputs=tuple(node[n] for n in range(i + 1)),
                                cin=sum(node_ch[n] for n in range(i + 1)),
                                cout=sum(node_ch[n] for n in range(i + 1)),
                                size=out_size,
                                stage=stage,
                            ),
                            sum(node_ch[n] for n in range(i + 1)),
                        )
                    else:
                        reads[i] = (node[i], node_ch[i])
                src, cin = reads[i]
                inputs.append(
                    self.emit(
                        name=names.conv_layer(prefix, i, j),
                        kind=conv_kind,
                        inputs=(src,),
                        cin=cin,
                        cout=block.width,
                        kernel=block.kernel,
                        stride=block.stride if i == 0 else 1,
                        size=out_size,
                        stage=stage,
                        bn=cin if dense else block.width,
                    )
                )
            inputs += [source.get(i, node.get(i)) for i in short_srcs]
            node_ch[j] = block.width
            if len(inputs) == 1:
                node[j] = source[j] = inputs[0]
            else:
                node[j] = source[j] = self.emit(
                    name=names.join_op(prefix, j),
                    kind=block.join,
                    inputs=tuple(inputs),
                    cin=block.width,
                    cout=block.width,
                    size=out_size,
                    stage=stage,
                )
        out, out_ch = node[depth], block.width
        if dense:
            out_ch = ch + block.width
            out = self.emit(
                name=names.output_op(prefix),
                kind="concat",
                inputs=(x, out),
                cin=out_ch,
                cout=out_ch,
                size=out_size,
                stage=stage,
            )
        return out, out_ch, out_size


def _walk(spec: ArchSpec, low: _Lowering) -> None:
    """Emit the ops of ``spec`` through ``low``, in forward (topological) order."""
    x = low.emit(
        name="input",
        kind="input",
        inputs=(),
        cin=spec.in_channels,
        cout=spec.in_channels,
        size=spec.input_size,
        stage=names.STEM,
    )
    x, ch, size = low.stem(spec, x)
    for s, stage in enumerate(spec.stages):
        label = names.stage_label(s)
        if stage.transition is not None:
            x, ch, size = low.transition(s, stage.transition, label, x, ch, size)
        for b, block in enumerate(stage.blocks):
            x, ch, size = low.block(names.block_path(s, b), block, label, x, ch, size)
    x = low.emit(
        name=names.head_layer("pool"),
        kind="gap",
        inputs=(x,),
        cin=ch,
        cout=ch,
        size=1,
        stage=names.HEAD,
        bn=ch if spec.head.bn_relu else 0,
    )
    x = low.emit(
        name=names.head_layer("fc"),
        kind="fc",
        inputs=(x,),
        cin=ch,
        cout=spec.classes,
        size=1,
        stage=names.HEAD,
    )
    low.emit(
        name="output",
        kind="output",
        inputs=(x,),
        cin=spec.classes,
        cout=spec.classes,
        size=1,
        stage=names.HEAD,
    )


def lower(spec: ArchSpec) -> list[Op]:
    """The ops of ``spec`` in forward (topological) order."""
    low = _Lowering()
    _walk(spec, low)
    return low.ops


def _macs(ops: list[Op]) -> tuple[int, int]:
    """(FP MACs, binary MACs) of ``ops``."""
    fp = sum(op.macs for op in ops if op.kind in ("conv", "fc"))
    return fp, sum(op.macs for op in ops if op.kind == "binconv")


@functools.lru_cache(maxsize=1 << 16)
def _block_macs(block: Block, ch: int, size: int) -> tuple[int, int, int, int]:
    """(FP MACs, binary MACs, output channels, output side) of ``block`` fed ``ch`` channels at
    side ``size``: a block's cost depends on nothing else, and a network repeats its blocks."""
    low = _Lowering()
    _, out_ch, out_size = low.block("b", block, "s", "x", ch, size)
    return *_macs(low.ops), out_ch, out_size


class _MacsOnly(_Lowering):
    """A lowering that emits the ops outside blocks and adds up the blocks' MACs from a cache."""

    def __init__(self) -> None:
        super().__init__()
        self.fp_macs = self.binary_macs = 0

    def block(self, prefix: str, block: Block, stage: str, x: str, ch: int, size: int):
        fp, binary, out_ch, out_size = _block_macs(block, ch, size)
        self.fp_macs += fp
        self.binary_macs += binary
        return x, out_ch, out_size


def spec_macs(spec: ArchSpec) -> tuple[int, int]:
    """(FP MACs, binary MACs) of ``spec``, as its lowered ops count them, without lowering its
    blocks again when they were seen before (the width solver's inner loop)."""
    low = _MacsOnly()
    _walk(spec, low)
    fp, binary = _macs(low.ops)
    return low.fp_macs + fp, low.binary_macs + binary


def scopes(ops: list[Op]) -> dict[str, list[tuple[str, str, str]]]:
    """The stage and block scopes of lowered ops, as ``(name, source, sink)``: the source is the
    op that feeds the scope (its input), the sink the op that gives its output. A stage starts with
    its downsampling transition (docs/design.md section 5); blocks are named by their module path
    (:func:`nas.core.scopes.block_of`)."""
    found: dict[str, dict[str, list[Op]]] = {"stages": {}, "blocks": {}}
    stages, blocks = found["stages"], found["blocks"]
    for op in ops:  # each scope keeps [first op, last op]
        if names.is_stage_label(op.stage):
            ends = stages.get(op.stage)
            if ends is None:
                stages[op.stage] = [op, op]
            else:
                ends[1] = op
        name = names.block_of(op.name)
        if name is not None:
            ends = blocks.get(name)
            if ends is None:
                blocks[name] = [op, op]
            else:
                ends[1] = op
    return {
        kind: [(name, first.inputs[0], last.name) for name, (first, last) in groups.items()]
        for kind, groups in found.items()
    }


def spec_graph(spec: ArchSpec) -> nx.DiGraph:
    """The layer graph of ``spec``: one node per op (attributes as the module docstring says).
    ``graph.graph["scopes"]`` holds its stage and block scopes (:func:`scopes`)."""
    ops = lower(spec)
    return ops_graph(ops, spec.name, scopes(ops))


def ops_graph(
    ops: list[Op], name: str, scope_map: dict[str, list[tuple[str, str, str]]]
) -> nx.DiGraph:
    """A networkx layer graph of ops (shared by specs and traced modules)."""
    g = nx.DiGraph(name=name, scopes=scope_map)
    for op in ops:
        g.add_node(
            op.name,
            kind=op.kind,
            cin=op.cin,
            cout=op.cout,
            kernel=op.kernel,
            stride=op.stride,
            size=op.size,
            stage=op.stage,
            macs=op.macs,
            params=op.params,
            bn=op.bn,
            weight=op.weight,
        )
        g.add_edges_from((i, op.name) for i in op.inputs)
    return g


def _labels(g: nx.DiGraph) -> dict[str, str]:
    return {
        n: "{kind}|{cin}|{cout}|{kernel}|{stride}|{size}".format(**a) for n, a in g.nodes(data=True)
    }


def arch_id(spec: ArchSpec) -> str:
    """A canonical hash of the spec's layer graph: the architecture, not its training options
    (``activation`` and ``padding`` are how it is trained and run, not what it is).

    Two encodings of one network (blocks with their edges listed in another order, other spec
    names) give the same id. Weisfeiler-Lehman hashing can in principle give two different graphs
    one hash; :func:`same_network` confirms with an isomorphism test.
    """
    return ops_arch_id(lower(spec))


def ops_arch_id(ops: list[Op], iterations: int = 4) -> str:
    """Weisfeiler-Lehman hash of the layer graph of ``ops`` (Shervashidze et al. 2011): each op
    starts from its label (kind and shape); every round relabels it with the sorted labels of its
    inputs and of its consumers; the id hashes the multiset of all labels seen."""
    label = {
        op.name: f"{op.kind}|{op.cin}|{op.cout}|{op.kernel}|{op.stride}|{op.size}" for op in ops
    }
    consumers: dict[str, list[str]] = {op.name: [] for op in ops}
    for op in ops:
        for i in op.inputs:
            consumers[i].append(op.name)
    inputs = {op.name: op.inputs for op in ops}
    seen = Counter(label.values())
    # a network repeats its blocks: most neighbourhoods recur, and are hashed once
    hashed: dict[tuple, str] = {}
    for _ in range(iterations):
        relabelled = {}
        for n in label:
            ins = sorted([label[i] for i in inputs[n]])
            outs = sorted([label[c] for c in consumers[n]])
            seen_as = (label[n], *ins, "", *outs)  # "" is no label: it separates the two lists
            h = hashed.get(seen_as)
            if h is None:
                text = f"{label[n]}<{','.join(ins)}>{','.join(outs)}"
                h = hashed[seen_as] = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
            relabelled[n] = h
        label = relabelled
        seen.update(label.values())
    text = ",".join(f"{k}:{v}" for k, v in sorted(seen.items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def same_network(a: ArchSpec, b: ArchSpec) -> bool:
    """True when the two specs describe one network (isomorphic labelled graphs)."""
    ga, gb = spec_graph(a), spec_graph(b)
    nx.set_node_attributes(ga, _labels(ga), "label")
    nx.set_node_attributes(gb, _labels(gb), "label")
    return nx.is_isomorphic(ga, gb, node_match=lambda x, y: x["label"] == y["label"])


def depth(spec: ArchSpec) -> int:
    """The paper's layer count: weighted layers (convs, binary or not, and the fc) on the longest
    input -> output path. Bi-Real ResNet18 = stem + 16 binary convs + fc; a 1x1 downsample on a
    shortcut is parallel to a conv and not counted; transitions on the main path are
    (BinaryDenseNet28 = 23 + 5, IGP-ResNet37 = 4 * 8 + 5)."""
    return ops_depth(lower(spec))


def ops_depth(ops: list[Op]) -> int:
    """:func:`depth` of lowered ops."""
    longest: dict[str, int] = {}
    for op in ops:
        here = int(op.kind in WEIGHTED_KINDS)
        longest[op.name] = here + max((longest[i] for i in op.inputs), default=0)
    return longest["output"]
