"""What every search space provides, and the width solver that makes candidates equal in FLOPs.

A space samples a *structure* (a dict of choices), then :meth:`SearchSpace.solve` finds the
largest width (base width or growth rate) whose FLOPs fit the budget; FLOPs grow monotonically
with it (docs/design.md section 6). Only structures whose solved FLOPs land in the band
[budget * (1 - tolerance), budget] are candidates.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import optuna

from nas.core.cost import spec_flops
from nas.core.spec import ArchSpec, SpecError

Structure = dict[str, Any]


@dataclass(frozen=True)
class Param:
    """One searched parameter: ``choices`` (categorical) or an integer range ``low..high``;
    ``when`` says when it is used."""

    name: str
    choices: tuple | None = None
    low: int | None = None
    high: int | None = None
    when: str = "always"

    def suggest(self, trial: optuna.Trial, name: str | None = None) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(name or self.name, list(self.choices))
        return trial.suggest_int(name or self.name, self.low, self.high)

    def describe(self) -> str:
        values = ", ".join(map(str, self.choices)) if self.choices else f"{self.low}..{self.high}"
        return f"{self.name:24s} {values}   ({self.when})"

    def options(self) -> list:
        """Every value the parameter can take."""
        if self.choices is not None:
            return list(self.choices)
        return list(range(self.low, self.high + 1))


@dataclass(frozen=True)
class Solved:
    """The outcome of fitting a structure to a budget: a spec in the band, or why not."""

    spec: ArchSpec | None
    width: int
    flops: float
    reason: str = ""


class SearchSpace(ABC):
    """A family of architectures: sampled structures, widths solved to the budget."""

    name: str
    width_label: str
    width_bounds: tuple[int, int]

    @abstractmethod
    def parameters(self) -> list[Param]:
        """The searched parameters (for ``--describe-space`` and sampling)."""

    @abstractmethod
    def sample(self, trial: optuna.Trial) -> Structure:
        """Suggest a structure through ``trial``."""

    @abstractmethod
    def build(self, structure: Structure, width: int, input_size: int, classes: int) -> ArchSpec:
        """The spec of ``structure`` at ``width``."""

    @abstractmethod
    def references(self) -> dict[str, tuple[Structure, int]]:
        """Zoo models that are points of this space: name -> (structure, width)."""

    @abstractmethod
    def extremes(self) -> tuple[Structure, Structure]:
        """The structures of smallest and of largest FLOPs at any one width."""

    @abstractmethod
    def size(self) -> int:
        """How many distinct structures the space holds (widths aside)."""

    def param(self, name: str) -> Param:
        """The parameter ``name`` of :meth:`parameters` (looked up once per space: sampling asks
        for parameters by name many thousand times a second)."""
        table = self.__dict__.get("_params_by_name")
        if table is None:
            table = self.__dict__["_params_by_name"] = {p.name: p for p in self.parameters()}
        return table[name]

    def flops(self, structure: Structure, width: int, input_size: int, classes: int) -> float:
        try:
            spec = self.build(structure, width, input_size, classes)
        except SpecError:
            return float("inf")
        return spec_flops(spec)

    def solve(
        self,
        structure: Structure,
        budget: float,
        tolerance: float,
        input_size: int,
        classes: int,
        min_width: int | None = None,
    ) -> Solved:
        """The largest width whose FLOPs fit ``budget``, at least ``min_width`` (default: the
        space's floor, ``width_bounds[0]``; the benchmark study lowers it to see whether the
        floor is justified).

        FLOPs grow with the width, nearly as a quadratic (binary and FP convs scale with W^2 or
        W, the stem and fc with W or not at all): a quadratic through three widths guesses the
        answer, and exact evaluations step from the guess to the largest fitting width."""
        lo, hi = self.width_bounds
        lo = lo if min_width is None else min_width
        known: dict[int, float] = {}

        def f(w: int) -> float:
            if w not in known:
                known[w] = self.flops(structure, w, input_size, classes)
            return known[w]

        if math.isinf(f(lo)):  # too narrow to be a network (a transition rounded to 0 channels)
            if math.isinf(f(hi)):
                return Solved(None, hi, f(hi), f"not a valid network at any {self.width_label}")
            invalid, valid = lo, hi  # validity grows with the width: find where it starts
            while valid - invalid > 1:
                mid = (invalid + valid) // 2
                invalid, valid = (invalid, mid) if math.isfinite(f(mid)) else (mid, valid)
            lo = valid
        if f(lo) > budget:
            return Solved(None, lo, f(lo), f"over budget even at {self.width_label} {lo}")
        if f(hi) <= budget:
            w = hi
        else:
            w = self._guess(lo, (lo + hi) // 2, hi, f, budget)
            while w > lo and f(w) > budget:
                w -= 1
            while w < hi and f(w + 1) <= budget:
                w += 1
        spec = self.build(structure, w, input_size, classes)
        if f(w) < budget * (1 - tolerance):
            return Solved(None, w, f(w), f"below the band at {self.width_label} {w}")
        return Solved(spec, w, f(w))

    @staticmethod
    def _guess(a: int, b: int, c: int, f, budget: float) -> int:
        """The width where the quadratic through (a, f(a)), (b, f(b)), (c, f(c)) meets the budget,
        clamped to [a, c]; bisection stands in where the quadratic does not help."""
        fa, fb, fc = f(a), f(b), f(c)
        if not all(map(math.isfinite, (fa, fb, fc))):
            lo, hi = a, c  # bisection on a monotone function
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if f(mid) <= budget else (lo, mid)
            return lo
        # Lagrange form -> p w^2 + q w + r
        p = fa / ((a - b) * (a - c)) + fb / ((b - a) * (b - c)) + fc / ((c - a) * (c - b))
        q = -(
            fa * (b + c) / ((a - b) * (a - c))
            + fb * (a + c) / ((b - a) * (b - c))
            + fc * (a + b) / ((c - a) * (c - b))
        )
        r = fa - p * a * a - q * a
        if abs(p) < 1e-12:
            root = (budget - r) / q if q else a
        else:
            disc = q * q - 4 * p * (r - budget)
            root = (-q + math.sqrt(max(disc, 0.0))) / (2 * p)
        return int(min(max(math.floor(root), a), c))

    def flops_range(self, input_size: int, classes: int) -> tuple[float, float]:
        """The smallest and the largest FLOPs any candidate of this space can have."""
        small, large = self.extremes()
        lo, hi = self.width_bounds
        return (
            self.flops(small, lo, input_size, classes),
            self.flops(large, hi, input_size, classes),
        )

    def describe(self) -> str:
        lo, hi = self.width_bounds
        about = " ".join(type(self).__doc__.split())
        lines = [
            f"search space {self.name!r}: {about}",
            f"{self.width_label}: solved to the budget, {lo}..{hi}",
            "parameters:",
        ]
        lines += ["  " + p.describe() for p in self.parameters()]
        lines.append(f"structures: {self.size():,}")
        lines.append("reference models (points of this space): " + ", ".join(self.references()))
        return "\n".join(lines)
