"""The layer graph of any ``nn.Module``, traced with ``torch.fx``.

The traced graph has the schema of :func:`nas.spec_graph` (same node kinds and attributes), so a
model that no spec describes, such as a user's own Bi-Real code, is analysed the same way; and the
graph traced from :func:`nas.build_model`'s module equals the spec's graph (a test checks it for
the whole zoo).

How ops are read:

* The gradient graph is followed: an op belongs to it when it depends on the input through ops
  that pass a gradient. ``detach``, comparisons and ``*_like`` constructors cut it, so the
  straight-through trick ``x + (sign(x) - x).detach()`` reads as one path. Sign-like ops
  (``torch.sign``, the body of a custom autograd Function that binarises, which fx inlines, and
  any module whose class name says sign or binary activation) are read as straight-through, as
  every binary network trains with such an estimator.
* A convolution is **binary** when its input comes from a sign-like op and its weight is binarised
  (the weight is computed from its parameter through a sign-like op), or when it is the project's
  :class:`~nas.nn.binary.BinaryConv2d`. The caller can decide instead with ``binary``: a list of
  conv names or a predicate on the name.
* Element-wise ops, BN, activations, reshapes and scaling fold into their neighbours; chains of
  additions become one ``add`` node, divided by their count a ``mean`` node; ``torch.cat`` is
  ``concat``; a global average pool (module, function or ``mean`` over H, W) is ``gap``.
* Scopes: for the project's networks, stages and blocks are read from module names
  (``stages.i`` / ``stages.i.blocks.j``, :mod:`nas.core.scopes`). For any other model, blocks are
  the segments between consecutive cut ops (ops that every input-output path passes) that hold a
  binary conv, and stages group consecutive blocks of one output resolution.

:func:`analyze` gives the gradient-path metrics of a traced module (:mod:`nas.core.metrics`), as
:func:`nas.core.analysis.analyze_spec` does for a spec.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable

import networkx as nx
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from nas.core import scopes as names
from nas.core.graph import Op, ops_graph, scopes
from nas.core.metrics import PathGraph, PathReport, path_report
from nas.nn.binary import BinaryActivation, BinaryConv2d

BinarySelector = Iterable[str] | Callable[[str], bool] | None

_CUT_FUNCTIONS = {
    torch.ones_like,
    torch.zeros_like,
    torch.full_like,
    torch.empty_like,
    torch.rand_like,
    torch.randn_like,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
    operator.eq,
    operator.ne,
    torch.lt,
    torch.le,
    torch.gt,
    torch.ge,
    torch.eq,
    torch.ne,
    torch.argmax,
}
_CUT_METHODS = {
    "detach",
    "lt",
    "le",
    "gt",
    "ge",
    "eq",
    "ne",
    "argmax",
    "sign_",
    "new_ones",
    "new_zeros",
    "new_full",
    "new_empty",
}
_SIGN = {torch.sign, torch.Tensor.sign}
_ADD = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub}
_ADD_METHODS = {"add", "add_", "sub", "sub_"}
_SCALE = {operator.truediv, operator.itruediv, operator.mul, operator.imul, torch.div, torch.mul}
_SCALE_METHODS = {"div", "div_", "mul", "mul_"}
_CONV = {F.conv2d, torch.conv2d}
_STOP = {F.batch_norm, F.layer_norm, F.linear, F.max_pool2d, F.avg_pool2d}


def _is_sign_module(m: nn.Module) -> bool:
    name = type(m).__name__.lower()
    return isinstance(m, BinaryActivation) or "sign" in name or ("binar" in name and "act" in name)


class _Tracer(fx.Tracer):
    """Keeps the project's binary layers and sign-like activation modules as single nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (
            isinstance(m, BinaryConv2d) or _is_sign_module(m) or super().is_leaf_module(m, qualname)
        )


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()


def _path(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    return next(reversed(stack)) if stack else ""


def _pair(v) -> int:
    return v[0] if isinstance(v, tuple | list) else int(v)


class _Reader:
    def __init__(self, gm: fx.GraphModule, binary: BinarySelector):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        if binary is None or callable(binary):
            self.selector = binary
        else:
            self.selector = set(binary).__contains__
        self.layers: dict[str, Op] = {}
        self.mean_of: dict[str, int] = {}  # an add divided by this constant
        self.conv_nodes: dict[str, fx.Node] = {}
        self.rep: dict[fx.Node, list[str]] = {}
        self.data: set[fx.Node] = set()

    # -- classification ------------------------------------------------------------------------
    def cuts(self, node: fx.Node) -> bool:
        if node.op == "call_function":
            return node.target in _CUT_FUNCTIONS
        if node.op == "call_method":
            return node.target in _CUT_METHODS
        return False

    def sign_like(self, node: fx.Node) -> bool:
        if node.op == "call_function":
            return node.target in _SIGN
        if node.op == "call_method":
            return node.target == "sign"
        if node.op == "call_module":
            return _is_sign_module(self.modules[node.target])
        return False

    def stops(self, node: fx.Node) -> bool:
        """Ops a search for a sign does not cross: layers with weights, pools, normalisation."""
        if node.op == "call_module":
            return not _is_sign_module(self.modules[node.target]) and not isinstance(
                self.modules[node.target], nn.Identity
            )
        if node.op == "call_function":
            return node.target in _CONV or node.target in _STOP
        return node.op == "placeholder"

    def reaches_sign(self, start: fx.Node, hops: int = 12) -> bool:
        frontier, seen = [start], set()
        for _ in range(hops):
            nxt = []
            for n in frontier:
                if n in seen:
                    continue
                seen.add(n)
                if self.sign_like(n):
                    return True
                if n is not start and self.stops(n):
                    continue
                nxt.extend(n.all_input_nodes)
            frontier = nxt
        return False

    def binary_conv(self, node: fx.Node, name: str, x: fx.Node, weight: fx.Node | None) -> bool:
        if node.op == "call_module" and isinstance(self.modules[node.target], BinaryConv2d):
            return True
        if self.selector is not None:
            return self.selector(name)
        return weight is not None and self.reaches_sign(x) and self.reaches_sign(weight)

    # -- building ------------------------------------------------------------------------------
    def name_of(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return str(node.target)
        path = _path(node)
        return f"{path}.{node.name}" if path else node.name

    def add_layer(self, node: fx.Node, kind: str, inputs: list[fx.Node], **kw) -> None:
        name = self.name_of(node)
        shape = _shape(node)
        channels = shape[1] if len(shape) > 1 else (shape[-1] if shape else 0)
        size = shape[2] if len(shape) > 3 else 1
        srcs = list(dict.fromkeys(r for i in inputs for r in self.rep.get(i, [])))
        self.layers[name] = Op(
            name,
            kind,
            tuple(srcs),
            cin=kw.pop("cin", channels),
            cout=kw.pop("cout", channels),
            size=kw.pop("size", size),
            stage=names.stage_of(_path(node)),
            **kw,
        )
        self.rep[node] = [name]

    def conv(
        self,
        node: fx.Node,
        x: fx.Node,
        weight_shape,
        weight: fx.Node | None,
        stride,
        groups: int,
        module_binary_name: str,
    ) -> None:
        cout, cin_g, kh, _ = weight_shape
        kind = "binconv" if self.binary_conv(node, module_binary_name, x, weight) else "conv"
        self.conv_nodes[self.name_of(node)] = node
        self.add_layer(
            node,
            kind,
            [x],
            cin=cin_g * groups,
            cout=cout,
            kernel=kh,
            stride=_pair(stride),
            groups=groups,
        )

    def read(self, node: fx.Node) -> None:
        inputs = [i for i in node.all_input_nodes if i in self.data]
        if node.op == "placeholder":
            if self.data:
                return  # only the first input is followed
            self.data.add(node)
            self.add_layer(node, "input", [])
            return
        if node.op == "output":
            self.add_layer(node, "output", inputs)
            return
        if not inputs or self.cuts(node):
            return
        self.data.add(node)
        target = node.target
        if node.op == "call_module":
            m = self.modules[target]
            if isinstance(m, nn.Conv2d):
                self.conv(
                    node,
                    inputs[0],
                    tuple(m.weight.shape),
                    None if not isinstance(m, BinaryConv2d) else node,
                    m.stride,
                    m.groups,
                    str(target),
                )
            elif isinstance(m, nn.Linear):
                self.add_layer(node, "fc", inputs, cin=m.in_features, cout=m.out_features)
            elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
                kind = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
                self.add_layer(
                    node,
                    kind,
                    inputs,
                    kernel=_pair(m.kernel_size),
                    stride=_pair(m.stride or m.kernel_size),
                )
            elif isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)):
                self.add_layer(node, "gap", inputs)
            else:
                self.pass_through(node, inputs)
            return
        if node.op == "call_function" and target in _CONV:
            weight = node.args[1] if len(node.args) > 1 else node.kwargs["weight"]
            stride = node.args[3] if len(node.args) > 3 else node.kwargs.get("stride", 1)
            groups = node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1)
            self.conv(
                node, node.args[0], _shape(weight), weight, stride, groups, self.name_of(node)
            )
            return
        if node.op == "call_function" and target is F.linear:
            w = _shape(node.args[1])
            self.add_layer(node, "fc", inputs, cin=w[1], cout=w[0])
            return
        if (node.op == "call_function" and target is F.adaptive_avg_pool2d) or self.is_gap(node):
            self.add_layer(node, "gap", inputs)
            return
        is_add = (node.op == "call_function" and target in _ADD) or (
            node.op == "call_method" and target in _ADD_METHODS
        )
        is_cat = node.op == "call_function" and target in (torch.cat, torch.concat)
        if len(inputs) >= 2:
            kind = (
                "add"
                if is_add
                else "concat"
                if is_cat
                else str(getattr(target, "__name__", target))
            )
            self.add_layer(node, kind, inputs)
            return
        is_scale = (node.op == "call_function" and target in _SCALE) or (
            node.op == "call_method" and target in _SCALE_METHODS
        )
        if is_scale and target in (operator.truediv, operator.itruediv, torch.div, "div", "div_"):
            divisor = node.args[1] if len(node.args) > 1 else None
            src = self.rep.get(inputs[0], [])
            if isinstance(divisor, int | float) and len(src) == 1:
                if self.layers[src[0]].kind == "add":
                    self.mean_of[src[0]] = int(divisor) if float(divisor).is_integer() else 0
        self.pass_through(node, inputs)

    def is_gap(self, node: fx.Node) -> bool:
        if not (node.op == "call_method" and node.target == "mean") and not (
            node.op == "call_function" and node.target is torch.mean
        ):
            return False
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = tuple(dims) if isinstance(dims, list | tuple) else (dims,)
        rank = len(_shape(node.args[0]))
        return rank == 4 and {d % 4 for d in dims if isinstance(d, int)} == {2, 3}

    def pass_through(self, node: fx.Node, inputs: list[fx.Node]) -> None:
        self.rep[node] = list(dict.fromkeys(r for i in inputs for r in self.rep.get(i, [])))

    # -- finishing -----------------------------------------------------------------------------
    def ops(self) -> list[Op]:
        layers = self.layers
        consumers: dict[str, list[str]] = {n: [] for n in layers}
        for layer in layers.values():
            for i in layer.inputs:
                consumers[i].append(layer.name)
        # merge chains of additions into one n-ary add
        for name in list(layers):
            layer = layers[name]
            outs = consumers[name]
            mergeable = layer.kind == "add" and not self.mean_of.get(name) and len(outs) == 1
            if mergeable and layers[outs[0]].kind == "add":
                parent = layers[outs[0]]
                at = parent.inputs.index(name)
                inputs = parent.inputs[:at] + layer.inputs + parent.inputs[at + 1 :]
                layers[outs[0]] = parent._replace(inputs=inputs)
                for i in layer.inputs:
                    consumers[i] = [outs[0] if c == name else c for c in consumers[i]]
                del layers[name]
        ops = []
        for name, op in layers.items():
            if op.kind == "add" and self.mean_of.get(name) == len(op.inputs):
                op = op._replace(kind="mean")
            ops.append(op)
        return ops


def _read(module: nn.Module, example: torch.Tensor, binary: BinarySelector) -> _Reader:
    graph = _Tracer().trace(module)
    gm = fx.GraphModule(module, graph)
    was_training = module.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    module.train(was_training)
    reader = _Reader(gm, binary)
    for node in gm.graph.nodes:
        reader.read(node)
    return reader


def trace_ops(module: nn.Module, example: torch.Tensor, binary: BinarySelector = None) -> list[Op]:
    """The layers of ``module`` in topological order, read from a torch.fx trace and the shapes of
    one forward pass of ``example``."""
    return _read(module, example, binary).ops()


def autograd_reached(
    module: nn.Module, example: torch.Tensor, binary: BinarySelector = None
) -> tuple[set[str], set[str]]:
    """The binary convs that get a non-zero gradient at their output in one real backward pass of
    a random loss, and all binary convs, by their graph names. The graph must say the same:
    :meth:`nas.core.metrics.PathReport.unreached` lists the convs it says no gradient reaches."""
    reader = _read(module, example, binary)
    convs = {
        name: node
        for name, node in reader.conv_nodes.items()
        if reader.layers.get(name) is not None and reader.layers[name].kind == "binconv"
    }
    by_node = {node: name for name, node in convs.items()}
    outputs: dict[str, torch.Tensor] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node):
            result = super().run_node(n)
            if n in by_node and isinstance(result, torch.Tensor) and result.requires_grad:
                result.retain_grad()
                outputs[by_node[n]] = result
            return result

    generator = torch.Generator().manual_seed(0)
    out = Recorder(reader.gm).run(example)
    weights = torch.randn(out.shape, generator=generator)
    (out * weights).sum().backward()
    reached = {name for name, t in outputs.items() if t.grad is not None and t.grad.abs().sum() > 0}
    return reached, set(convs)


def auto_scopes(ops: list[Op]) -> dict[str, list[tuple[str, str, str]]]:
    """Blocks and stages of a model without the project's module names: blocks are the segments
    between consecutive cut ops (every input-output path passes them) that hold a binary conv;
    stages group consecutive blocks whose output has one resolution."""
    pos = {op.name: k for k, op in enumerate(ops)}
    live = _reaching_output(ops)
    reach = [-1] * len(ops)
    for op in ops:
        if op.name in live:
            for i in op.inputs:
                if i in live:
                    reach[pos[i]] = max(reach[pos[i]], pos[op.name])
    cuts, furthest = [], -1
    for k, op in enumerate(ops):
        if op.name in live and furthest <= k:
            cuts.append(k)
        if op.name in live:
            furthest = max(furthest, reach[k])
    blocks = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        if any(op.kind == "binconv" and op.name in live for op in ops[a + 1 : b + 1]):
            blocks.append((names.found_block(len(blocks) + 1), ops[a].name, ops[b].name))
    stages: list[tuple[str, str, str]] = []
    size = {op.name: op.size for op in ops}
    for _, s, t in blocks:
        if stages and size[stages[-1][2]] == size[t]:
            stages[-1] = (stages[-1][0], stages[-1][1], t)
        else:
            start = stages[-1][2] if stages else s
            stages.append((names.stage_label(len(stages)), start, t))
    return {"stages": stages, "blocks": blocks}


def _reaching_output(ops: list[Op]) -> set[str]:
    live = {ops[-1].name}
    for op in reversed(ops):
        if op.name in live:
            live.update(op.inputs)
    return live


def module_scopes(ops: list[Op]) -> dict[str, list[tuple[str, str, str]]]:
    """Scopes from the project's module names where the model has them, else :func:`auto_scopes`."""
    found = scopes(ops)
    return found if found["blocks"] else auto_scopes(ops)


def trace_graph(
    module: nn.Module, example: torch.Tensor, binary: BinarySelector = None
) -> nx.DiGraph:
    """The layer graph of any module (schema of :func:`nas.spec_graph`)."""
    ops = trace_ops(module, example, binary)
    return ops_graph(ops, type(module).__name__, module_scopes(ops))


def analyze(
    module: nn.Module, example_input: torch.Tensor, binary: BinarySelector = None
) -> PathReport:
    """Gradient-path metrics of any module, traced with torch.fx on ``example_input``.

    ``binary`` decides which convolutions are binary: a list of conv names (module paths) or a
    predicate on the name; by default a conv is binary when its input comes from a sign-like op and
    its weight is binarised (see the module docstring)."""
    ops = trace_ops(module, example_input, binary)
    return path_report(PathGraph.from_ops(ops, module_scopes(ops)))
