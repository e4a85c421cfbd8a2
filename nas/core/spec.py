"""ArchSpec: one plain, JSON-serialisable description of a binary CNN.

A spec is the single source of three views of a network (docs/design.md section 2): the PyTorch
module (:func:`nas.build_model`), the networkx layer graph (:func:`nas.spec_graph`) and the exact
cost (:func:`nas.spec_cost`); its stable id is :func:`nas.arch_id`, a hash of the layer graph
(this module knows nothing of the views: it imports none of them).

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
  EBi-Real, FractalNet expansions (see :mod:`nas.core.blocks`).

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

**Limits.** A spec is refused (:class:`SpecError`, naming the field and the limit) beyond the
bounds below. They are far above any network of the zoo or of the search spaces (widths up to
4096, 224 px, 1000 classes, a few hundred blocks, dense units of depth 4), and they keep what the
tools compute from a spec finite and linear in its size: a width of 10^9 is no network, only an
overflow of every count (FLOPs of 10^62), and a spec of millions of blocks, or a JSON file of
gigabytes, would only exhaust the memory of the commands that read it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import reprlib
import types
import typing
from collections.abc import Callable
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

# Limits (see the module docstring): generous bounds, refused with the field's name.
MAX_CHANNELS = 65_536
"""Channels of any tensor: a block's ``width``, the stem's and a transition's ``channels``,
``in_channels``, and what a run of dense units concatenates (the zoo and the search spaces stay
under 4096; a 65536-channel 3x3 conv already holds 38.7 G weights)."""
MAX_INPUT_SIZE = 8_192
"""``input_size`` in pixels: 36x ImageNet's 224 px training side, a 67-megapixel image."""
MAX_CLASSES = 1_000_000
"""``classes``: 46x ImageNet-21k's classes."""
MAX_BLOCKS = 200_000
"""Blocks over all stages: 10,000x Bi-Real ResNet18's 8 blocks (the search spaces have at most
96)."""
MAX_EDGES = 1_000_000
"""Conv and shortcut edges over all blocks: what the layer graph and its dynamic programmes grow
with (time and memory linear in it; the zoo's largest spec has 220)."""
MAX_DENSE_DEPTH = 64
"""A dense unit's depth M: each of its nodes reads the concatenation of all earlier ones, so its
layer graph grows with M^2 (BinaryDenseNet's units have M = 1, the densenet space's up to 4)."""
MAX_NAME_LENGTH = 256
"""``name``: a label (printed in headers, used in file names), not a document."""
MAX_SPEC_BYTES = 64 * 2**20
"""A spec's JSON text or file: 64 MiB (a spec of 200,000 Bi-Real blocks, written by
:meth:`ArchSpec.to_json`, takes 51 MB)."""


class SpecError(ValueError):
    """A spec that is not a valid network; the message names the field and the problem."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


class DuplicateKey(ValueError):
    """A JSON object that names one key twice."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook``: the object, or :class:`DuplicateKey`."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


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
        _count(self.channels, f"{where}.channels", MAX_CHANNELS)


@dataclass(frozen=True)
class Transition:
    """Full-precision downsampling at the start of a stage (halves the resolution)."""

    kind: str
    channels: int

    def validate(self, where: str) -> None:
        _choice(self.kind, TRANSITION_KINDS, f"{where}.kind")
        _count(self.channels, f"{where}.channels", MAX_CHANNELS)


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

    def incoming(self) -> dict[int, tuple[list[int], list[int]]]:
        """:meth:`in_edges` of every node that has an incoming edge, in one pass over the edges
        (a block may have many nodes: calling ``in_edges`` per node would be quadratic)."""
        found: dict[int, tuple[list[int], list[int]]] = {}
        for k, edges in enumerate((self.convs, self.shortcuts)):
            for i, j in edges:
                if j not in found:
                    found[j] = ([], [])
                found[j][k].append(i)
        return found

    def validate(self, where: str) -> None:
        _choice(self.kind, BLOCK_KINDS, f"{where}.kind")
        _choice(self.join, JOINS, f"{where}.join")
        _count(self.width, f"{where}.width", MAX_CHANNELS)
        if self.stride not in (1, 2):
            raise SpecError(f"{where}.stride", f"must be 1 or 2, got {_show(self.stride)}")
        if self.kernel not in (1, 3, 5, 7):
            raise SpecError(f"{where}.kernel", f"must be 1, 3, 5 or 7, got {_show(self.kernel)}")
        if not self.convs:
            raise SpecError(f"{where}.convs", "a block needs at least one conv edge")
        for name in ("convs", "shortcuts"):
            edges = getattr(self, name)
            for n, (i, j) in enumerate(edges):
                if not 0 <= i < j:
                    raise SpecError(
                        f"{where}.{name}[{n}]",
                        f"edge ({_show(i)}, {_show(j)}) must go forward from a node >= 0 to a "
                        "higher node",
                    )
            if len(set(edges)) != len(edges):
                raise SpecError(f"{where}.{name}", "lists the same edge twice")
        # Every node 1..M has an incoming conv edge, so M <= the number of convs: the checks
        # below look at no more nodes than there are edges (an edge to node 10^9 is one edge).
        m = self.depth
        conv_targets = {j for _, j in self.convs}
        if len(conv_targets) < m:
            node = next(n for n in range(1, m + 1) if n not in conv_targets)
            raise SpecError(
                f"{where}",
                f"node {node} has no incoming conv edge (a node fed only by shortcuts is a copy)",
            )
        sources = {i for i, _ in self.convs + self.shortcuts}
        for node in range(1, m):
            if node not in sources:
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
            if m > MAX_DENSE_DEPTH:
                raise SpecError(
                    f"{where}",
                    f"a dense unit of depth {m} is over the limit of {MAX_DENSE_DEPTH} nodes",
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
        checked: set[int] = set()  # a block object repeated in the stage is checked once
        for n, block in enumerate(self.blocks):
            if id(block) not in checked:
                block.validate(f"{where}.blocks[{n}]")
                checked.add(id(block))


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
        _label(self.name, "name")
        _count(self.input_size, "input_size", MAX_INPUT_SIZE)
        _count(self.in_channels, "in_channels", MAX_CHANNELS)
        _count(self.classes, "classes", MAX_CLASSES)
        _choice(self.activation, ACTIVATIONS, "activation")
        _choice(self.padding, PADDINGS, "padding")
        self.stem.validate("stem")
        if not self.stages:
            raise SpecError("stages", "a network needs at least one stage")
        blocks = sum(len(stage.blocks) for stage in self.stages)
        if blocks > MAX_BLOCKS:
            raise SpecError("stages", f"{blocks:,} blocks, over the limit of {MAX_BLOCKS:,}")
        edges = sum(len(b.convs) + len(b.shortcuts) for stage in self.stages for b in stage.blocks)
        if edges > MAX_EDGES:
            raise SpecError(
                "stages", f"{edges:,} conv and shortcut edges, over the limit of {MAX_EDGES:,}"
            )
        channels = self.stem.channels
        for n, stage in enumerate(self.stages):
            stage.validate(f"stages[{n}]")
            if stage.transition is not None:
                channels = stage.transition.channels
            for b, block in enumerate(stage.blocks):
                channels = channels + block.width if block.kind == "dense" else block.width
                if channels > MAX_CHANNELS:
                    raise SpecError(
                        f"stages[{n}].blocks[{b}]",
                        f"its output has {channels:,} channels (a dense unit adds its width to "
                        f"its input's), over the limit of {MAX_CHANNELS:,}",
                    )

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        return _from_plain(cls, data, "")

    @classmethod
    def from_json(cls, text: str | bytes) -> ArchSpec:
        """A spec from its JSON text; a key given twice in one object is an error (JSON allows
        it and Python keeps the last, which would hide a mistake)."""
        if len(text) > MAX_SPEC_BYTES:
            raise SpecError(
                "", f"{_size(len(text))} of JSON, over the limit of {_size(MAX_SPEC_BYTES)}"
            )
        try:
            data = json.loads(text, object_pairs_hook=unique_keys)
        except json.JSONDecodeError as e:
            raise SpecError(
                "", f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
            ) from None
        except DuplicateKey as e:
            raise SpecError("", f"the key {e.args[0]!r} appears twice in one object") from None
        except RecursionError:  # json's parser recurses: ~1000 levels exhaust the stack
            raise SpecError("", "nested too deeply (a spec's JSON nests 6 levels)") from None
        except ValueError as e:  # an integer of more than 4300 digits, invalid UTF-8 bytes
            raise SpecError("", f"not valid JSON ({str(e).split(':')[0]})") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ArchSpec:
        """Read a spec file (at most :data:`MAX_SPEC_BYTES`); errors name the file."""
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_SPEC_BYTES + 1)
        except OSError as e:
            raise SpecError(str(path), f"cannot read the spec file ({e.strerror})") from None
        try:
            if len(data) > MAX_SPEC_BYTES:
                raise SpecError(
                    "", f"the file is over the limit of {_size(MAX_SPEC_BYTES)} for a spec"
                )
            return cls.from_json(data)
        except SpecError as e:
            raise SpecError(f"{path}: {e.where}" if e.where else str(path), e.problem) from None

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes)


def _choice(value: Any, options: tuple[str, ...], where: str) -> None:
    if value not in options:
        raise SpecError(where, f"must be one of {', '.join(options)}; got {_show(value)}")


def _positive(value: int, where: str) -> None:
    if value < 1:
        raise SpecError(where, f"must be a positive integer, got {_show(value)}")


def _count(value: int, where: str, limit: int) -> None:
    """A positive integer up to ``limit`` (one of the module's limits)."""
    _positive(value, where)
    if value > limit:
        raise SpecError(where, f"must be at most {limit:,}, got {_show(value)}")


def _label(value: str, where: str) -> None:
    """A name: a label, printed and used in file names, so no control characters."""
    if len(value) > MAX_NAME_LENGTH:
        raise SpecError(
            where, f"{len(value):,} characters, over the limit of {MAX_NAME_LENGTH} for a name"
        )
    if not value.isprintable():
        raise SpecError(where, f"control characters are not allowed (got {_show(value)})")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlong = 24


def _show(value: Any) -> str:
    """``repr(value)`` cut short: what a one-line message can quote of a value (a field may hold
    a megabyte of JSON, or an integer of thousands of digits)."""
    try:
        return _SHORT.repr(value)
    except ValueError:  # an int too long to convert to text
        return f"an integer of about {int(value.bit_length() * 0.30103):,} digits"


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(x) for x in obj]
    return obj


def _from_plain(tp: Any, data: Any, where: str) -> Any:
    """Build ``tp`` from JSON data, checking every type; errors name the field's path."""
    return _converter(tp)(data, where)


Converter = Callable[[Any, str], Any]


@functools.cache
def _converter(tp: Any) -> Converter:
    """The function that builds ``tp`` from JSON data, made once per type: the type hints of a
    dataclass are read once, not once per block."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        option = _converter(next(t for t in typing.get_args(tp) if t is not type(None)))
        return lambda data, where: None if data is None else option(data, where)
    if dataclasses.is_dataclass(tp):
        return _dataclass_converter(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0])

            def many(data: Any, where: str) -> tuple:
                if not isinstance(data, list):
                    raise SpecError(where, f"must be a JSON list, got {type(data).__name__}")
                return tuple([item(x, f"{where}[{n}]") for n, x in enumerate(data)])

            return many
        items = [_converter(a) for a in args]
        ints = all(c is _int for c in items)

        def fixed(data: Any, where: str) -> tuple:
            if not isinstance(data, list):
                raise SpecError(where, f"must be a JSON list, got {type(data).__name__}")
            if len(data) != len(items):
                raise SpecError(where, f"must be a list of {len(items)} items, got {len(data)}")
            if ints and all(type(x) is int for x in data):  # an edge: no call per item
                return tuple(data)
            return tuple(
                [c(x, f"{where}[{n}]") for n, (c, x) in enumerate(zip(items, data, strict=True))]
            )

        return fixed
    if tp is bool:
        return _bool
    if tp is int:
        return _int
    if tp is str:
        return _str
    raise TypeError(f"unsupported annotation {tp!r}")  # pragma: no cover - a bug in this module


def _dataclass_converter(tp: Any) -> Converter:
    hints = typing.get_type_hints(tp)
    fields = dataclasses.fields(tp)
    names = {f.name for f in fields}
    known = ", ".join(sorted(names))
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    converters: dict[str, Converter] = {}

    def build(data: Any, where: str) -> Any:
        if not isinstance(data, dict):
            raise SpecError(where or "spec", f"must be a JSON object, got {type(data).__name__}")
        if not converters:  # filled on first use: a field's type may name a later class
            converters.update({name: _converter(hints[name]) for name in names})
        if not names.issuperset(data):
            unknown = sorted(set(data) - names, key=str)
            raise SpecError(
                _join(where, _SHORT.repr(str(unknown[0]))[1:-1]), f"unknown field; known: {known}"
            )
        for name in required:
            if name not in data:
                raise SpecError(_join(where, name), "missing required field")
        return tp(**{k: converters[k](v, _join(where, k)) for k, v in data.items()})

    return build


def _bool(data: Any, where: str) -> bool:
    if not isinstance(data, bool):
        raise SpecError(where, f"must be true or false, got {_show(data)}")
    return data


def _int(data: Any, where: str) -> int:
    if isinstance(data, bool) or not isinstance(data, int):
        raise SpecError(where, f"must be an integer, got {_show(data)}")
    return data


def _str(data: Any, where: str) -> str:
    if not isinstance(data, str):
        raise SpecError(where, f"must be a string, got {_show(data)}")
    return data


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
