"""Network families: the ResNet and DenseNet layouts.

The zoo's models (:mod:`nas.core.zoo`) and the search spaces (:mod:`search_spaces`) are both built
by these functions, so a zoo model is a point of its space by construction: the space's parameters
are arguments of the layout, a zoo builder fixes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nas.core.blocks import dense_unit
from nas.core.spec import ArchSpec, Block, Head, Stage, Stem, Transition

ResNetBlock = Callable[[int, int], Block]
"""A ResNet family's block at a width and a stride (1, or 2 for a stage's first block when the
blocks downsample)."""

DOWNSAMPLES = ("in_block", "transition")


def stem_for(input_size: int, kind: str | None, channels: int, relu: bool = False) -> Stem:
    """The stem: ``kind``, or by default ``imagenet`` for inputs of 64 px or more, else
    ``small``."""
    kind = kind or ("imagenet" if input_size >= 64 else "small")
    return Stem(kind=kind, channels=channels, relu=relu)


def resnet_layout(
    name: str,
    blocks: Sequence[int],
    block: ResNetBlock,
    width: int,
    *,
    downsample: str = "in_block",
    stem_channels: int | None = None,
    stem_relu: bool = False,
    stem: str | None = None,
    input_size: int = 224,
    classes: int = 1000,
    activation: str = "approxsign",
) -> ArchSpec:
    """A ResNet: stage s (from 0) has ``blocks[s]`` blocks of width ``width * 2^s``, made by
    ``block(width, stride)``. Stages after the first downsample ``in_block`` (their first block
    has stride 2: Bi-Real, He et al.) or by a ``transition`` (AvgPool 2x2/2 -> FP 1x1 conv -> BN,
    IGP-ResNet). The stem has ``stem_channels`` (default ``width``)."""
    if downsample not in DOWNSAMPLES:
        raise ValueError(f"downsample must be one of {', '.join(DOWNSAMPLES)}; got {downsample!r}")
    in_block = downsample == "in_block"
    stages = []
    for s, n in enumerate(blocks):
        w = width * 2**s
        # one object per distinct block (blocks are immutable; a spec checks each object once)
        rest = block(w, 1)
        first = block(w, 2) if in_block and s > 0 else rest
        stages.append(
            Stage(
                blocks=(first,) + (rest,) * (n - 1),
                transition=None if in_block or s == 0 else Transition("avgpool_conv", w),
            )
        )
    channels = width if stem_channels is None else stem_channels
    return ArchSpec(
        name=name,
        stages=tuple(stages),
        stem=stem_for(input_size, stem, channels, stem_relu),
        input_size=input_size,
        classes=classes,
        activation=activation,
    )


def densenet_layout(
    name: str,
    units: Sequence[int],
    reductions: Sequence[float],
    growth: int,
    *,
    round_to_32: bool,
    columns: int = 1,
    join: str = "mean",
    input_size: int = 224,
    classes: int = 1000,
    stem: str | None = None,
) -> ArchSpec:
    """BinaryDenseNet layout (Bethge et al. 2019; larq-zoo): FP 7x7/2 stem of 64 channels with
    ReLU, ``units[s]`` dense units (:func:`nas.core.blocks.dense_unit` of ``growth``, ``columns``
    and ``join``) in stage s, transitions BN -> MaxPool 2x2/2 -> ReLU -> FP 1x1 conv whose width is
    floor(C / r) (rounded to a multiple of 32 when ``round_to_32``), BN -> ReLU before the head."""
    ch = 64
    stages = []
    for s, n in enumerate(units):
        transition = None
        if s > 0:
            out = int(ch // reductions[s - 1])
            if round_to_32:
                out = round(out / 32) * 32
            transition = Transition("bn_maxpool_relu_conv", out)
            ch = out
        stages.append(
            Stage(
                blocks=(dense_unit(growth, columns, join),) * n,  # one object, checked once
                transition=transition,
            )
        )
        ch += n * growth
    return ArchSpec(
        name=name,
        stages=tuple(stages),
        stem=stem_for(input_size, stem, 64, relu=True),
        head=Head(bn_relu=True),
        input_size=input_size,
        classes=classes,
    )
