"""The DenseNet family: dense units of searched depth, units per stage and transition reductions,
laid out by :func:`nas.core.families.densenet_layout` (as the zoo's DenseNets)."""

from __future__ import annotations

import optuna

from nas.core.families import densenet_layout
from nas.core.spec import ArchSpec
from search_spaces._base import Param, SearchSpace, Structure

STAGES = 4
REDUCTIONS = (2.0, 2.2, 2.5, 2.7, 3.0, 3.3, 3.5, 4.0)


class DenseNetSpace(SearchSpace):
    """Binary DenseNets (BinaryDenseNet layout): units per stage, unit depth (dense-connected
    fractal units of C columns, depth 2^(C-1); C = 1 is BinaryDenseNet's layer), the join inside a
    unit, the FP transition reductions and their rounding; the growth rate solved to the budget,
    at least 32 (BinaryDenseNet's smallest; growth rates of 4-8 would win the ranking by being
    cheap steps on every path while carrying a handful of bits per pixel)."""

    name = "densenet"
    width_label = "growth rate"
    width_bounds = (32, 256)

    def parameters(self) -> list[Param]:
        return [
            Param("s<k>_units", low=1, high=24, when="each stage k = 1..4"),
            Param("unit_columns", low=1, high=3, when="all units: depth 2^(C-1)"),
            Param("unit_join", ("mean", "add"), when="units of 2 or more columns"),
            Param("r<t>", REDUCTIONS, when="each transition t = 1..3: width floor(C / r)"),
            Param("round_to_32", (False, True), when="transition widths rounded to 32"),
        ]

    def sample(self, trial: optuna.Trial) -> Structure:
        s: Structure = {}
        for k in range(1, STAGES + 1):
            s[f"s{k}_units"] = self.param("s<k>_units").suggest(trial, f"s{k}_units")
        s["unit_columns"] = self.param("unit_columns").suggest(trial)
        if s["unit_columns"] > 1:
            s["unit_join"] = self.param("unit_join").suggest(trial)
        for t in range(1, STAGES):
            s[f"r{t}"] = self.param("r<t>").suggest(trial, f"r{t}")
        s["round_to_32"] = self.param("round_to_32").suggest(trial)
        return s

    def size(self) -> int:
        n = {p.name: len(p.options()) for p in self.parameters()}
        # the join is asked for units of 2 or more columns only
        units = sum(1 if c == 1 else n["unit_join"] for c in self.param("unit_columns").options())
        return n["s<k>_units"] ** STAGES * units * n["r<t>"] ** (STAGES - 1) * n["round_to_32"]

    def build(self, structure: Structure, width: int, input_size: int, classes: int) -> ArchSpec:
        s = structure
        return densenet_layout(
            f"densenet-k{width}",
            tuple(s[f"s{k}_units"] for k in range(1, STAGES + 1)),
            tuple(s[f"r{t}"] for t in range(1, STAGES)),
            width,
            round_to_32=s["round_to_32"],
            columns=s["unit_columns"],
            join=s.get("unit_join", "mean"),
            input_size=input_size,
            classes=classes,
        )

    def references(self) -> dict[str, tuple[Structure, int]]:
        def layout(units, reductions, rounding, columns=1) -> Structure:
            s: Structure = {f"s{k}_units": n for k, n in enumerate(units, 1)}
            s |= {f"r{t}": r for t, r in enumerate(reductions, 1)}
            s |= {"round_to_32": rounding, "unit_columns": columns}
            if columns > 1:
                s["unit_join"] = "mean"
            return s

        return {
            "binary_densenet28": (layout((6, 6, 6, 5), (2.7, 2.7, 2.2), True), 64),
            "binary_densenet37": (layout((6, 8, 12, 6), (3.3, 3.3, 4.0), True), 64),
            "binary_densenet45": (layout((6, 12, 14, 8), (2.7, 3.3, 4.0), True), 64),
            "binary_densenet51": (layout((12, 12, 12, 10), (2.7, 2.7, 2.2), False), 32),
            "binary_densenet69": (layout((12, 16, 24, 12), (3.3, 3.3, 4.0), False), 32),
            "igp_densenet51": (layout((6, 6, 6, 5), (2.7, 2.7, 2.2), False, 2), 53),
            "igp_densenet69": (layout((6, 8, 12, 6), (3.3, 3.3, 4.0), False, 2), 48),
        }

    def extremes(self) -> tuple[Structure, Structure]:
        small: Structure = {f"s{k}_units": 1 for k in range(1, STAGES + 1)}
        small |= {"unit_columns": 1, "round_to_32": False} | {f"r{t}": 4.0 for t in (1, 2, 3)}
        large: Structure = {f"s{k}_units": 24 for k in range(1, STAGES + 1)}
        large |= {"unit_columns": 3, "unit_join": "add", "round_to_32": False}
        large |= {f"r{t}": 2.0 for t in (1, 2, 3)}
        return small, large
