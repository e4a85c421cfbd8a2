"""ArchSpec: one plain, JSON-serialisable description of a binary CNN.

A spec is the single source of three views of a network (DESIGN.md section 2): the PyTorch
module (:func:`nas.build_model`), the networkx layer graph (:func:`nas.spec_graph`) and the exact
cost (:func:`nas.spec_cost`).

Layout of a network::

    input -> stem -> stage 1 -> ... -> stage S -> head

* **Stem** (full precision): ``imagenet`` = conv 7x7/2 -> BN [-> ReLU] -> max-pool 3x3/2, or
  ``small`` = conv 3x3/1 -> BN [-> ReLU], for 28-32 px inputs.
* **Stage**: an optional full-precision **transition** (``avgpool_conv``: AvgPool 2x2/2 -> FP 1x1
  conv -> BN, as IGP-ResNet; ``bn_maxpool_relu_conv``: BN -> MaxPool 2x2/2 -> ReLU -> FP 1x1 conv,
  as BinaryDenseNet), then a sequence of blocks.
* **Block**: a small DAG over nodes ``0..M`` (node 0 is the block input, node M its output). Each
  edge ``(i, j)`` with ``i < j`` is either a **conv** edge (a 3x3 convolution, binary by default)
  or an identity **shortcut**; every node but 0 has at least one conv input. A node with several
  incoming edges joins them (``add`` or ``mean``). The named patterns of the paper are points of
  this space: Bi-Real (a shortcut beside every conv), binary ResNet (one shortcut around a pair),
  EBi-Real, FractalNet expansions (see :mod:`nas.blocks`).

  - ``residual`` blocks: every node 1..M has ``width`` channels. Conv edges leaving node 0 have
    the block's ``stride`` and read the block input; a shortcut leaving node 0 whose shape does not
    match goes through one shared projection (binary blocks: AvgPool 2x2/2 -> FP 1x1 conv -> BN, as
    Bi-Real; full-precision blocks: strided FP 1x1 conv -> BN, as ResNet). A binary conv edge is
    ``BN(BinConv(Sign(x)))``; a full-precision one ``BN(Conv(ReLU(x)))``.
  - ``dense`` units: nodes 1..M have ``width`` = growth-rate channels; a conv edge leaving node i
    reads ``concat(node 0, ..., node i)`` and computes ``BinConv(Sign(BN(.)))``; the unit returns
    ``concat(node 0, node M)``. With M = 1 this is BinaryDenseNet's layer.
* **Head**: [BN -> ReLU] -> global average pool -> FP fully connected layer (with bias).

Every downsampling (stride-2 conv, pooling) maps a side of H pixels to ceil(H / 2).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEM_KINDS = ("imagenet", "small", "small_s2")
TRANSITION_KINDS = ("avgpool_conv", "bn_maxpool_relu_conv")
BLOCK_KINDS = ("residual", "dense")
JOINS = ("add", "mean")
ACTIVATIONS = ("ste", "approxsign")
PADDINGS = ("zero", "one")

Edge = tuple[int, int]


class SpecError(ValueError):
    """A spec that is not a valid network; the message names the field and the problem."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


@dataclass(frozen=True)
class Stem:
    """Full-precision input: ``imagenet`` (7x7/2 conv, 3x3/2 max-pool), ``small`` (3x3/1) or
    ``small_s2`` (3x3/2: small images at half resolution, the fast training proxy's stem)."""

    kind: str = "imagenet"
    channels: int = 64
    relu: bool = False

    @property
    def kernel(self) -> int:
        return 7 if self.kind == "imagenet" else 3

    @property
    def stride(self) -> int:
        return 1 if self.kind == "small" else 2

    def validate(self, where: str) -> None:
        _choice(self.kind, STEM_KINDS, f"{where}.kind")
        _positive(self.channels, f"{where}.channels")


@dataclass(frozen=True)
class Transition:
    """Full-precision downsampling at the start of a stage (halves the resolution)."""

    kind: str
    channels: int

    def validate(self, where: str) -> None:
        _choice(self.kind, TRANSITION_KINDS, f"{where}.kind")
        _positive(self.channels, f"{where}.channels")


@dataclass(frozen=True)
class Block:
    """A DAG of conv edges and identity shortcuts over nodes ``0..depth`` (see module docstring)."""

    kind: str
    width: int
    convs: tuple[Edge, ...]
    shortcuts: tuple[Edge, ...] = ()
    join: str = "add"
    stride: int = 1
    binary: bool = True
    kernel: int = 3

    @property
    def depth(self) -> int:
        """M, the index of the output node (the number of convs on a chain block)."""
        return max(j for _, j in self.convs + self.shortcuts)

    def in_edges(self, node: int) -> tuple[list[int], list[int]]:
        """Sources of the conv edges and of the shortcuts that enter ``node``."""
        return (
            [i for i, j in self.convs if j == node],
            [i for i, j in self.shortcuts if j == node],
        )

    def validate(self, where: str) -> None:
        _choice(self.kind, BLOCK_KINDS, f"{where}.kind")
        _choice(self.join, JOINS, f"{where}.join")
        _positive(self.width, f"{where}.width")
        if self.stride not in (1, 2):
            raise SpecError(f"{where}.stride", f"must be 1 or 2, got {self.stride}")
        if self.kernel not in (1, 3, 5, 7):
            raise SpecError(f"{where}.kernel", f"must be 1, 3, 5 or 7, got {self.kernel}")
        if not self.convs:
            raise SpecError(f"{where}.convs", "a block needs at least one conv edge")
        for name in ("convs", "shortcuts"):
            edges = getattr(self, name)
            for n, (i, j) in enumerate(edges):
                if not 0 <= i < j:
                    raise SpecError(
                        f"{where}.{name}[{n}]",
                        f"edge ({i}, {j}) must go forward from a node >= 0 to a higher node",
                    )
            if len(set(edges)) != len(edges):
                raise SpecError(f"{where}.{name}", "lists the same edge twice")
        m = self.depth
        for node in range(1, m + 1):
            convs, shortcuts = self.in_edges(node)
            if not convs:
                raise SpecError(
                    f"{where}",
                    f"node {node} has no incoming conv edge "
                    "(a node fed only by shortcuts is a copy)",
                )
            if node < m and not any(i == node for i, _ in self.convs + self.shortcuts):
                raise SpecError(
                    f"{where}", f"node {node} has no outgoing edge (its result is unused)"
                )
        if self.kind == "dense":
            if self.stride != 1:
                raise SpecError(f"{where}.stride", "dense units keep the resolution (stride 1)")
            if any(i == 0 for i, _ in self.shortcuts):
                raise SpecError(
                    f"{where}.shortcuts",
                    "a dense unit's shortcut cannot leave node 0 "
                    "(input and growth channels differ)",
                )


@dataclass(frozen=True)
class Stage:
    """An optional FP transition followed by blocks that share one resolution."""

    blocks: tuple[Block, ...]
    transition: Transition | None = None

    def validate(self, where: str) -> None:
        if not self.blocks:
            raise SpecError(f"{where}.blocks", "a stage needs at least one block")
        if self.transition is not None:
            self.transition.validate(f"{where}.transition")
        for n, block in enumerate(self.blocks):
            block.validate(f"{where}.blocks[{n}]")


@dataclass(frozen=True)
class Head:
    """Global average pool and FP classifier, with BN -> ReLU before it if ``bn_relu``."""

    bn_relu: bool = False


@dataclass(frozen=True)
class ArchSpec:
    """One network. ``activation``: the sign's backward (``ste`` = clipped identity, ``approxsign``
    = Bi-Real's piecewise polynomial); ``padding``: what binary convs pad with (``one`` makes
    bit-packed inference exact)."""

    name: str
    stages: tuple[Stage, ...]
    stem: Stem = Stem()
    head: Head = Head()
    input_size: int = 224
    in_channels: int = 3
    classes: int = 1000
    activation: str = "ste"
    padding: str = "zero"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _positive(self.input_size, "input_size")
        _positive(self.in_channels, "in_channels")
        _positive(self.classes, "classes")
        _choice(self.activation, ACTIVATIONS, "activation")
        _choice(self.padding, PADDINGS, "padding")
        self.stem.validate("stem")
        if not self.stages:
            raise SpecError("stages", "a network needs at least one stage")
        for n, stage in enumerate(self.stages):
            stage.validate(f"stages[{n}]")

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        return _from_plain(cls, data, "")

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(
                "", f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
            ) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ArchSpec:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise SpecError(str(path), f"cannot read the spec file ({e.strerror})") from None
        try:
            return cls.from_json(text)
        except SpecError as e:
            raise SpecError(f"{path}: {e.where}" if e.where else str(path), e.problem) from None

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes)

    @property
    def arch_id(self) -> str:
        """Stable id: a canonical hash of the layer graph (see :func:`nas.graph.arch_id`)."""
        from nas.graph import arch_id

        return arch_id(self)


def _choice(value: Any, options: tuple[str, ...], where: str) -> None:
    if value not in options:
        raise SpecError(where, f"must be one of {', '.join(options)}; got {value!r}")


def _positive(value: int, where: str) -> None:
    if value < 1:
        raise SpecError(where, f"must be a positive integer, got {value}")


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(x) for x in obj]
    return obj


def _from_plain(tp: Any, data: Any, where: str) -> Any:
    """Build ``tp`` from JSON data, checking every type; errors name the field's path."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(tp) if t is not type(None)]
        return None if data is None else _from_plain(options[0], data, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise SpecError(where or "spec", f"must be a JSON object, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(
                _join(where, unknown[0]), f"unknown field; known: {', '.join(sorted(names))}"
            )
        required = [
            f.name
            for f in dataclasses.fields(tp)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        for name in required:
            if name not in data:
                raise SpecError(_join(where, name), "missing required field")
        return tp(**{k: _from_plain(hints[k], v, _join(where, k)) for k, v in data.items()})
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, list):
            raise SpecError(where, f"must be a JSON list, got {type(data).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], x, f"{where}[{n}]") for n, x in enumerate(data))
        if len(data) != len(args):
            raise SpecError(where, f"must be a list of {len(args)} items, got {len(data)}")
        pairs = enumerate(zip(args, data, strict=True))
        return tuple(_from_plain(a, x, f"{where}[{n}]") for n, (a, x) in pairs)
    if tp is bool:
        if not isinstance(data, bool):
            raise SpecError(where, f"must be true or false, got {data!r}")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise SpecError(where, f"must be an integer, got {data!r}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise SpecError(where, f"must be a string, got {data!r}")
        return data
    raise TypeError(f"unsupported annotation {tp!r}")  # pragma: no cover - a bug in this module


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
