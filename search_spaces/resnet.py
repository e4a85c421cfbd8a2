"""The ResNet family: per stage, blocks of binary 3x3 convs whose shortcut placement is searched,
laid out by :func:`nas.core.families.resnet_layout` (as the zoo's ResNets)."""

from __future__ import annotations

import optuna

from nas.core.blocks import chain_convs, fractal_convs, shortcuts
from nas.core.families import DOWNSAMPLES, resnet_layout
from nas.core.spec import ArchSpec, Block
from search_spaces._base import Param, SearchSpace, Structure

STAGES = 4
MAX_DEPTH = 4


def _pairs(depth: int) -> list[tuple[int, int]]:
    return [(i, j) for j in range(1, depth + 1) for i in range(j)]


class ResNetSpace(SearchSpace):
    """Binary ResNets: per stage the number of blocks; one block design for all stages, as in the
    paper's networks (a chain of M binary convs with any set of identity edges i -> j over its
    M + 1 nodes, or a FractalNet block of C columns), and how its nodes join their inputs;
    downsampling inside the first block of a stage (Bi-Real) or by an FP transition (IGP-ResNet);
    stage widths W, 2W, 4W, 8W with the base width W solved to the budget.

    W is at least 32, as in the paper's networks (31 to 64): the ranking key prefers the
    thinnest, deepest nets at equal FLOPs (a thin conv is a cheap step on a gradient path), and
    below 32 channels a binary layer carries too few bits per pixel to be a useful candidate
    (Bethge et al. 2019 widen binary layers for this reason)."""

    name = "resnet"
    width_label = "base width"
    width_bounds = (32, 512)

    def parameters(self) -> list[Param]:
        return [
            Param(
                "downsample",
                DOWNSAMPLES,
                when="stages 2-4: stride-2 first block (Bi-Real) or AvgPool + FP 1x1 (IGP)",
            ),
            Param("stem_width", ("base", "64"), when="stem channels: W, or 64"),
            Param("s<k>_blocks", low=1, high=6, when="each stage k = 1..4"),
            Param("block", ("chain", "fractal"), when="the block of every stage"),
            Param("depth", low=1, high=MAX_DEPTH, when="chain: M convs in a row"),
            Param("sc_<i>_<j>", (False, True), when="chain: identity edge i -> j, 0 <= i < j <= M"),
            Param("columns", low=2, high=5, when="fractal: C columns, 2^C - 1 convs"),
            Param(
                "fractal_shortcuts",
                ("none", "bireal", "outer"),
                when="fractal: identity edges along the deepest column",
            ),
            Param("join", ("add", "mean"), when="how a node joins its inputs"),
        ]

    def sample(self, trial: optuna.Trial) -> Structure:
        s: Structure = {
            name: self.param(name).suggest(trial) for name in ("downsample", "stem_width", "block")
        }
        if s["block"] == "chain":
            s["depth"] = self.param("depth").suggest(trial)
            for i, j in _pairs(s["depth"]):
                s[f"sc_{i}_{j}"] = self.param("sc_<i>_<j>").suggest(trial, f"sc_{i}_{j}")
        else:
            s["columns"] = self.param("columns").suggest(trial)
            s["fractal_shortcuts"] = self.param("fractal_shortcuts").suggest(trial)
        s["join"] = self.param("join").suggest(trial)
        for k in range(1, STAGES + 1):
            s[f"s{k}_blocks"] = self.param("s<k>_blocks").suggest(trial, f"s{k}_blocks")
        return s

    def size(self) -> int:
        n = {p.name: len(p.options()) for p in self.parameters()}
        # a chain of depth M has one identity edge choice per pair of its M + 1 nodes
        chains = sum(2 ** len(_pairs(m)) for m in self.param("depth").options())
        fractals = n["columns"] * n["fractal_shortcuts"]
        shared = n["downsample"] * n["stem_width"] * n["join"] * n["s<k>_blocks"] ** STAGES
        return shared * (chains + fractals)

    def _block(self, s: Structure, width: int, stride: int) -> Block:
        if s["block"] == "chain":
            convs = chain_convs(s["depth"])
            identity = tuple(e for e in _pairs(s["depth"]) if s.get(f"sc_{e[0]}_{e[1]}"))
        else:
            convs = fractal_convs(s["columns"])
            identity = shortcuts(s["fractal_shortcuts"], 2 ** (s["columns"] - 1))
        return Block(
            kind="residual",
            width=width,
            convs=convs,
            shortcuts=identity,
            join=s["join"],
            stride=stride,
        )

    def build(self, structure: Structure, width: int, input_size: int, classes: int) -> ArchSpec:
        s = structure
        return resnet_layout(
            f"resnet-w{width}",
            tuple(s[f"s{k}_blocks"] for k in range(1, STAGES + 1)),
            lambda w, stride: self._block(s, w, stride),
            width,
            downsample=s["downsample"],
            stem_channels=width if s["stem_width"] == "base" else 64,
            input_size=input_size,
            classes=classes,
            activation="approxsign",
        )

    def references(self) -> dict[str, tuple[Structure, int]]:
        def chain(blocks: tuple[int, ...], edges: set[tuple[int, int]]) -> Structure:
            s: Structure = {
                "downsample": "in_block",
                "stem_width": "64",
                "block": "chain",
                "depth": 2,
                "join": "add",
            }
            s |= {f"sc_{i}_{j}": (i, j) in edges for i, j in _pairs(2)}
            return s | {f"s{k}_blocks": n for k, n in enumerate(blocks, 1)}

        def fractal(columns: int) -> Structure:
            s: Structure = {
                "downsample": "transition",
                "stem_width": "base",
                "block": "fractal",
                "columns": columns,
                "fractal_shortcuts": "bireal",
                "join": "mean",
            }
            return s | {f"s{k}_blocks": 1 for k in range(1, STAGES + 1)}

        bireal, resnet = {(0, 1), (1, 2)}, {(0, 2)}
        return {
            "bireal_resnet18": (chain((2, 2, 2, 2), bireal), 64),
            "bireal_resnet34": (chain((3, 4, 6, 3), bireal), 64),
            "binary_resnet18": (chain((2, 2, 2, 2), resnet), 64),
            "ebireal_resnet18": (chain((2, 2, 2, 2), bireal | resnet), 64),
            "igp_resnet21": (fractal(3), 53),
            "igp_resnet37": (fractal(4), 41),
            "igp_resnet41": (fractal(4), 48),
            "igp_resnet69": (fractal(5), 31),
        }

    def extremes(self) -> tuple[Structure, Structure]:
        small: Structure = {
            "downsample": "in_block",
            "stem_width": "base",
            "block": "chain",
            "depth": 1,
            "sc_0_1": False,
            "join": "add",
        }
        large: Structure = {
            "downsample": "transition",
            "stem_width": "base",
            "block": "fractal",
            "columns": 5,
            "fractal_shortcuts": "bireal",
            "join": "add",
        }
        for k in range(1, STAGES + 1):
            small[f"s{k}_blocks"] = 1
            large[f"s{k}_blocks"] = 6
        return small, large
