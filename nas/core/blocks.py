"""Named block patterns: the hand-designed blocks of the literature as points of the block space.

A block is a DAG of conv edges and identity shortcuts over nodes ``0..M`` (:class:`nas.Block`).
The shortcut patterns below are sets of identity edges over a chain of M convs; the fractal
pattern is a set of conv edges (FractalNet, Larsson et al. 2016).
"""

from __future__ import annotations

from collections.abc import Callable

from nas.core.spec import Block, Edge


def chain_convs(depth: int) -> tuple[Edge, ...]:
    """Conv edges ``(i, i+1)``: a plain stack of ``depth`` convs."""
    return tuple((i, i + 1) for i in range(depth))


def fractal_convs(columns: int) -> tuple[Edge, ...]:
    """Conv edges of FractalNet's expansion with C = ``columns``.

    f_1(x) = conv(x) and f_{C+1}(x) = join(f_C(f_C(x)), conv(x)) (Larsson et al. 2016, eq. 1):
    over nodes ``0..2^(C-1)`` the level-l column has edges ``(i, i + 2^l)`` for every multiple i of
    2^l, so the block has 2^C - 1 convs and its longest path has 2^(C-1) of them.
    """
    if columns < 1:
        raise ValueError(f"a fractal needs at least one column, got {columns}")
    depth = 2 ** (columns - 1)
    return tuple((i, i + 2**level) for level in range(columns) for i in range(0, depth, 2**level))


SHORTCUT_PATTERNS: dict[str, Callable[[int], tuple[Edge, ...]]] = {
    # no identity edge at all
    "none": lambda m: (),
    # Bi-Real (Liu et al. 2018): an identity beside every conv of the chain
    "bireal": lambda m: tuple((i, i + 1) for i in range(m)),
    # binary ResNet (He et al. 2016 basic block): one identity around each pair of convs
    "resnet": lambda m: tuple((i, i + 2) for i in range(0, m - 1, 2)),
    # EBi-Real: Bi-Real plus the ResNet pair shortcuts
    "ebireal": lambda m: (
        tuple((i, i + 1) for i in range(m)) + tuple((i, i + 2) for i in range(0, m - 1, 2))
    ),
    # one identity around the whole block
    "outer": lambda m: ((0, m),),
}


def shortcuts(pattern: str, depth: int) -> tuple[Edge, ...]:
    """The identity edges of a named pattern over a block of ``depth`` + 1 nodes."""
    try:
        return SHORTCUT_PATTERNS[pattern](depth)
    except KeyError:
        raise ValueError(
            f"unknown shortcut pattern {pattern!r}; known: {', '.join(SHORTCUT_PATTERNS)}"
        ) from None


def chain_block(
    width: int, depth: int, pattern: str, *, stride: int = 1, binary: bool = True
) -> Block:
    """A residual block of ``depth`` chained convs with a named shortcut pattern."""
    return Block(
        kind="residual",
        width=width,
        convs=chain_convs(depth),
        shortcuts=shortcuts(pattern, depth),
        stride=stride,
        binary=binary,
    )


def fractal_block(
    width: int, columns: int, pattern: str = "bireal", join: str = "mean", *, stride: int = 1
) -> Block:
    """A residual fractal block (IGP-ResNet's reconstruction): FractalNet's conv edges, joined by
    their mean as in FractalNet, with the identity edges of ``pattern`` along its deepest column."""
    convs = fractal_convs(columns)
    return Block(
        kind="residual",
        width=width,
        convs=convs,
        shortcuts=shortcuts(pattern, 2 ** (columns - 1)),
        join=join,
        stride=stride,
    )


def dense_unit(growth: int, columns: int = 1, join: str = "mean") -> Block:
    """A dense unit adding ``growth`` channels. ``columns=1`` is BinaryDenseNet's layer
    concat(x, BinConv(BN(x))); more columns give a dense-connected fractal (DRF) of depth
    2^(columns-1) whose convs read every earlier node of the unit."""
    return Block(kind="dense", width=growth, convs=fractal_convs(columns), join=join)
