"""Cost accounting as the paper's Table 1 counts it (docs/design.md section 3).

* Binary conv (input and weights binarised):
  BOPs = C_in * C_out * k_h * k_w * H_out * W_out / groups.
* Full-precision layers (stem conv, 1x1 downsample / transition convs, fc): FP MACs, counted the
  same way (fc: C_in * C_out).
* FLOPs = FP MACs + BOPs / 64; one multiply-accumulate is one FLOP. Pooling, BN, adds,
  activations and sign are not counted.
* Storage (Mbit) = (binary weights * 1 bit + FP weights * 32 bits) / 10^6. BN parameters, scaling
  factors and biases are not counted unless ``count_bn`` (BN's gamma and beta as FP weights).

The cost is computed from the spec (:func:`spec_cost`; this module imports no torch) and,
independently, counted on a built module with forward hooks
(:func:`nas.nn.module_cost.module_cost`); the two must agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from nas.core.graph import Op, lower, spec_macs
from nas.core.spec import ArchSpec


@dataclass(frozen=True)
class Cost:
    """Counts of one part of a network (or all of it)."""

    bops: int = 0
    fp_macs: int = 0
    binary_params: int = 0
    fp_params: int = 0

    @property
    def flops(self) -> float:
        return self.fp_macs + self.bops / 64

    @property
    def storage_mbit(self) -> float:
        return (self.binary_params + 32 * self.fp_params) / 1e6

    @property
    def params(self) -> int:
        return self.binary_params + self.fp_params

    @property
    def binary_mac_ratio(self) -> float:
        """Share of all MACs that are binary (larq's "binarization ratio" of MACs)."""
        total = self.bops + self.fp_macs
        return self.bops / total if total else 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.bops + other.bops,
            self.fp_macs + other.fp_macs,
            self.binary_params + other.binary_params,
            self.fp_params + other.fp_params,
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "flops": self.flops,
            "bops": self.bops,
            "fp_macs": self.fp_macs,
            "storage_mbit": self.storage_mbit,
            "binary_params": self.binary_params,
            "fp_params": self.fp_params,
        }


@dataclass(frozen=True)
class LayerCost:
    """One weighted layer (conv or fc)."""

    name: str
    stage: str
    binary: bool
    cin: int
    cout: int
    kernel: int
    stride: int
    size: int
    params: int
    macs: int

    @property
    def capability_bits(self) -> float | None:
        """Representational capability of a binary layer's output, in bits (the paper, section 2):
        each output value is a sum of k*k*C_in products of +/-1 and takes k*k*C_in + 1 values, so
        an H x W x C_out output has (k*k*C_in + 1)^(H*W*C_out) states; this is its log2. A
        shortcut adds no new state to it. None for full-precision layers."""
        if not self.binary:
            return None
        return self.size * self.size * self.cout * math.log2(self.kernel**2 * self.cin + 1)

    def cost(self) -> Cost:
        if self.binary:
            return Cost(bops=self.macs, binary_params=self.params)
        return Cost(fp_macs=self.macs, fp_params=self.params)


@dataclass(frozen=True)
class CostReport:
    """A network's cost: ``total``, per stage (``stem``, ``stage1``..., ``head``), per layer."""

    total: Cost
    stages: dict[str, Cost]
    layers: list[LayerCost] = field(default_factory=list)


def cost_report(layers: list[LayerCost], bn: dict[str, int]) -> CostReport:
    """The report of ``layers`` and of ``bn``, BN parameters per stage (counted as FP weights)."""
    stages: dict[str, Cost] = {}
    for layer in layers:
        stages[layer.stage] = stages.get(layer.stage, Cost()) + layer.cost()
    for stage, n in bn.items():
        stages[stage] = stages.get(stage, Cost()) + Cost(fp_params=n)
    total = sum(stages.values(), Cost())
    return CostReport(total, stages, layers)


def spec_cost(spec: ArchSpec, count_bn: bool = False) -> CostReport:
    """The cost of ``spec``, computed from its layer graph (no module is built)."""
    return ops_cost(lower(spec), count_bn)


def spec_flops(spec: ArchSpec) -> float:
    """:func:`ops_flops` of ``spec``'s ops, the same number, from per-block MACs cached across
    specs (:func:`nas.core.graph.spec_macs`): the width solver's inner loop."""
    fp, binary = spec_macs(spec)
    return fp + binary / 64


def ops_flops(ops: list[Op]) -> float:
    """Total FLOPs (FP MACs + BOPs / 64) of lowered ops: the width solver's inner loop."""
    fp = sum(op.macs for op in ops if op.kind in ("conv", "fc"))
    return fp + sum(op.macs for op in ops if op.kind == "binconv") / 64


def ops_total(ops: list[Op]) -> Cost:
    """``ops_cost(ops).total``, without the per-layer report (the search scores a hundred
    thousand candidates)."""
    bops = fp_macs = binary_params = fp_params = 0
    for op in ops:
        if op.kind == "binconv":
            bops += op.macs
            binary_params += op.params
        elif op.kind in ("conv", "fc"):
            fp_macs += op.macs
            fp_params += op.params
    return Cost(bops, fp_macs, binary_params, fp_params)


def ops_cost(ops: list[Op], count_bn: bool = False) -> CostReport:
    """:func:`spec_cost` of lowered ops."""
    layers = []
    bn: dict[str, int] = {}
    for op in ops:
        if op.kind in ("conv", "binconv", "fc"):
            layers.append(
                LayerCost(
                    op.name,
                    op.stage,
                    op.kind == "binconv",
                    op.cin,
                    op.cout,
                    op.kernel,
                    op.stride,
                    op.size,
                    op.params,
                    op.macs,
                )
            )
        if count_bn and op.bn:
            bn[op.stage] = bn.get(op.stage, 0) + 2 * op.bn
    return cost_report(layers, bn)


def cost_dict(report: CostReport) -> dict:
    """Plain-data form of a report, for JSON and snapshots."""
    return {
        **report.total.to_dict(),
        "stages": [{"stage": s, **c.to_dict()} for s, c in report.stages.items()],
        "layers": [asdict(layer) for layer in report.layers],
    }
