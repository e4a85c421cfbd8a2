"""Scope names: the one scheme that names a network's layers and the scopes that group them.

A layer of the layer graph (:func:`nas.core.graph.lower`) is named by the qualified name of its
module
in :func:`nas.build_model`'s network (:mod:`nas.nn.model`'s attribute names), so a spec's graph, a
traced module's graph, a cost counted with hooks and a drawing pair their layers by name::

    stem.conv, stem.pool                         the stem
    stages.S.transition.pool, ...conv            the transition of stage S (S counts from 0)
    stages.S.blocks.B                            block B of stage S, in it:
        .convs.I_J.conv                          its conv edge I -> J (ModuleDict key I_J)
        .projection.pool, .projection.conv       the projection of its input's shortcuts
        .readI, .nodeJ, .out                     concatenations and joins (graph ops, no module)
    head.pool, head.fc                           the head

Each layer also has a stage label (:attr:`nas.core.graph.Op.stage`): ``stem``, ``stage1`` ... (the
label of ``stages.S`` is ``stage{S+1}``), ``head``. Stage and block scopes are named by the label
and by the block's path; a model without these names gets blocks ``block1``... and stages by
resolution (:func:`nas.nn.trace.auto_scopes`).

Nothing else builds or takes apart these names: the builders and parsers are below.
"""

from __future__ import annotations

STEM = "stem"
HEAD = "head"
_STAGES = "stages."
_STAGE = "stage"


# -- builders ------------------------------------------------------------------------------------
def stem_layer(part: str) -> str:
    """A layer of the stem: ``conv`` or ``pool``."""
    return f"{STEM}.{part}"


def head_layer(part: str) -> str:
    """A layer of the head: ``pool`` or ``fc``."""
    return f"{HEAD}.{part}"


def stage_path(s: int | str) -> str:
    """The module path of stage ``s`` (from 0)."""
    return f"{_STAGES}{s}"


def transition_layer(s: int, part: str) -> str:
    """A layer of stage ``s``'s transition: ``pool`` or ``conv``."""
    return f"{_STAGES}{s}.transition.{part}"


def block_path(s: int | str, b: int | str) -> str:
    """The path (and scope name) of block ``b`` of stage ``s``, both from 0."""
    return f"{_STAGES}{s}.blocks.{b}"


def conv_key(i: int, j: int) -> str:
    """The key of conv edge ``i -> j`` among its block's convs."""
    return f"{i}_{j}"


def conv_layer(block: str, i: int, j: int) -> str:
    """Conv edge ``i -> j`` of the block at path ``block``."""
    return f"{block}.convs.{i}_{j}.conv"


def projection_layer(block: str, part: str) -> str:
    """A layer of the block's shortcut projection: ``pool`` or ``conv``."""
    return f"{block}.projection.{part}"


def read_op(block: str, i: int) -> str:
    """A dense unit's concatenation of its nodes ``0..i``, what the convs leaving node i read."""
    return f"{block}.read{i}"


def join_op(block: str, j: int) -> str:
    """The join (``add``, ``mean``) of what enters node ``j``."""
    return f"{block}.node{j}"


def output_op(block: str) -> str:
    """A dense unit's output, ``concat(node 0, node M)``."""
    return f"{block}.out"


def stage_label(s: int) -> str:
    """The label of stage ``s`` (from 0): ``stage{s+1}``."""
    return f"{_STAGE}{s + 1}"


def found_block(n: int) -> str:
    """The ``n``-th block (from 1) found in a model without the scheme's names."""
    return f"block{n}"


# -- parsers -------------------------------------------------------------------------------------
def parse_conv_key(key: str) -> tuple[int, int]:
    """``(i, j)`` of a conv edge's key :func:`conv_key`."""
    i, j = key.split("_")
    return int(i), int(j)


def is_stage_label(label: str) -> bool:
    """Whether a stage label names one of the stages (not ``stem``, ``head`` or none)."""
    return label.startswith(_STAGE)


def stage_index(label: str) -> int | None:
    """``s`` of the label ``stage{s+1}``, else None."""
    rest = label[len(_STAGE) :]
    return int(rest) - 1 if label.startswith(_STAGE) and rest.isdigit() else None


def stage_of(name: str, other: str | None = "") -> str:
    """The stage label of a layer or module name: ``stage{S+1}`` under ``stages.S``, ``stem`` and
    ``head`` under those; for any other name ``other``, or its first component where ``other``
    is None."""
    parts = name.split(".", 2)
    if parts[0] == "stages" and len(parts) > 1 and parts[1].isdigit():
        return stage_label(int(parts[1]))
    if parts[0] in (STEM, HEAD) or other is None:
        return parts[0]
    return other


def block_of(name: str) -> str | None:
    """The block path of a layer inside a block (``stages.S.blocks.B.<layer>``), else None."""
    if not name.startswith(_STAGES):
        return None
    parts = name.split(".", 4)
    if len(parts) > 4 and parts[2] == "blocks":
        return block_path(parts[1], parts[3])
    return None


def scope_path(scope: str) -> str:
    """The module path under which a scope's layers are named: ``stages.S`` for the stage label
    ``stage{S+1}``, a block's own path for a block."""
    s = stage_index(scope)
    return scope if s is None else stage_path(s)


def short_label(name: str, scope: str, conv_edge: bool) -> str:
    """A short label of a layer inside ``scope`` (a stage label or a block path), for drawings:
    its name relative to the scope; a conv edge as ``I_J`` (``blocks.B.I_J`` in a stage), other
    layers with ``.conv`` read `` FP`` (a full-precision conv) and ``.pool`` as `` pool``."""
    prefix = scope_path(scope) + "."
    rest = name[len(prefix) :] if name.startswith(prefix) else name
    if conv_edge:
        return rest.replace("convs.", "").replace(".conv", "")
    return rest.replace(".conv", " FP").replace(".pool", " pool")
