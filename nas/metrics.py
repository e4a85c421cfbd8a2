"""Gradient-path metrics N_1st < N_2nd < N_3rd and L_1st < L_2nd < L_3rd (DESIGN.md section 5).

A gradient path runs from a scope's output back to its input; it uses the same ops as a forward
path. Its cost N(p) is the sum of the weights of the ops on it, where a binary conv weighs its
BOPs / 64 (the budget's FLOP-equivalents) and every other op 0 (shortcuts, joins, pooling, BN,
activations, and full-precision convs, which the paper ignores); its length L(p) is the number of
binary convs on it. N_kth (L_kth) is the k-th smallest *distinct* value over all paths of the scope
(the paper's Bi-Real pair N = (0, c, 2c) counts the two single-conv paths once), missing (None)
where fewer distinct values exist. ``count`` says how many paths have each value.

They are computed without listing paths: in topological order each op keeps the k smallest
distinct costs of the paths reaching it, with their path counts,
S(v) = k smallest of the union over predecessors u of S(u) + w(v). Adding a constant keeps the
order, so a path whose cost is among the k smallest at v has a prefix among the k smallest at u:
the values and counts are exact, in time linear in edges times k. Costs are summed as integer
BOPs, so ties are exact, and divided by 64 at the end.

Scopes: **network** (input to output; the stem and head hold no binary conv), **stages** and
**blocks** (source = the op feeding the scope, sink = its output op; a cost counts the ops after the
source up to and including the sink), and **layers**: per binary conv, the paths from its output to
the network output, excluding the conv itself (what the gradient pays before it reaches the layer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from nas.graph import Op

K = 3


@dataclass(frozen=True)
class PathGraph:
    """A DAG in topological order: what the dynamic programme reads. ``bops`` holds a binary conv's
    BOPs (0 for every other op)."""

    order: list[str]
    preds: dict[str, list[str]]
    bops: dict[str, int]
    scopes: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    @property
    def binary(self) -> list[str]:
        return [n for n in self.order if self.bops[n] > 0]

    @classmethod
    def from_ops(cls, ops: list[Op], scopes: dict[str, list[tuple[str, str, str]]]) -> PathGraph:
        """From lowered spec ops (already in topological order): the fast path of the scorer."""
        return cls(
            order=[op.name for op in ops],
            preds={op.name: list(op.inputs) for op in ops},
            bops={op.name: op.macs if op.kind == "binconv" else 0 for op in ops},
            scopes=scopes,
        )

    @classmethod
    def from_networkx(cls, g: nx.DiGraph) -> PathGraph:
        """From a layer graph (:func:`nas.spec_graph` or :func:`nas.trace_graph`)."""
        order = list(nx.lexicographical_topological_sort(g))
        return cls(
            order=order,
            preds={n: list(g.predecessors(n)) for n in order},
            bops={n: g.nodes[n]["macs"] if g.nodes[n]["kind"] == "binconv" else 0 for n in order},
            scopes=g.graph.get("scopes", {}),
        )


@dataclass(frozen=True)
class PathStats:
    """The three smallest distinct path costs (N, in FLOP-equivalents = BOPs / 64) and lengths (L,
    binary convs), with the number of paths that have each value; None where missing."""

    N: tuple[float | None, ...]
    L: tuple[int | None, ...]
    count: tuple[int | None, ...]
    L_count: tuple[int | None, ...]

    @classmethod
    def from_tables(cls, cost: dict[int, int], length: dict[int, int]) -> PathStats:
        def pad(values: list) -> tuple:
            return tuple(values) + (None,) * (K - len(values))

        costs, lengths = sorted(cost), sorted(length)
        return cls(
            N=pad([c / 64 for c in costs]),
            L=pad(lengths),
            count=pad([cost[c] for c in costs]),
            L_count=pad([length[n] for n in lengths]),
        )

    def to_dict(self) -> dict[str, list]:
        return {
            "N": list(self.N),
            "L": list(self.L),
            "count": list(self.count),
            "L_count": list(self.L_count),
        }


def _smallest(table: dict[int, int]) -> dict[int, int]:
    if len(table) <= K:
        return table
    return {c: table[c] for c in sorted(table)[:K]}


def forward_tables(
    g: PathGraph, source: str, sink: str | None = None, unit: bool = False
) -> dict[str, dict[int, int]]:
    """For every op reachable from ``source`` (up to ``sink``), the K smallest distinct costs of
    paths source -> op with their counts. The source's own weight is not counted. ``unit``: each
    binary conv weighs 1 (lengths L) instead of its BOPs (costs N)."""
    start = g.order.index(source)
    stop = g.order.index(sink) + 1 if sink is not None else len(g.order)
    tables: dict[str, dict[int, int]] = {source: {0: 1}}
    for v in g.order[start + 1 : stop]:
        w = g.bops[v]
        if unit:
            w = 1 if w else 0
        acc: dict[int, int] = {}
        for u in g.preds[v]:
            t = tables.get(u)
            if t is None:
                continue
            for c, n in t.items():
                acc[c + w] = acc.get(c + w, 0) + n
        if acc:
            tables[v] = _smallest(acc)
    return tables


def backward_tables(g: PathGraph, sink: str, unit: bool = False) -> dict[str, dict[int, int]]:
    """For every op that reaches ``sink``, the K smallest distinct costs of paths op -> sink with
    their counts, the op's own weight excluded and the sink's included."""
    succs: dict[str, list[str]] = {n: [] for n in g.order}
    for v in g.order:
        for u in g.preds[v]:
            succs[u].append(v)
    weight = {n: (1 if b else 0) if unit else b for n, b in g.bops.items()}
    stop = g.order.index(sink)
    tables: dict[str, dict[int, int]] = {sink: {weight[sink]: 1}}
    for u in reversed(g.order[:stop]):
        acc: dict[int, int] = {}
        for v in succs[u]:
            t = tables.get(v)
            if t is None:
                continue
            wv = 0 if v == sink else weight[v]
            for c, n in t.items():
                acc[c + wv] = acc.get(c + wv, 0) + n
        if acc:
            tables[u] = _smallest(acc)
    return tables


def scope_stats(g: PathGraph, source: str, sink: str) -> PathStats:
    """N and L over all source -> sink paths."""
    cost = forward_tables(g, source, sink).get(sink, {})
    length = forward_tables(g, source, sink, unit=True).get(sink, {})
    return PathStats.from_tables(cost, length)


def layer_stats(g: PathGraph) -> dict[str, PathStats]:
    """Per binary conv: N and L over the paths from its output to the network output."""
    sink = g.order[-1]
    cost = backward_tables(g, sink)
    length = backward_tables(g, sink, unit=True)
    return {n: PathStats.from_tables(cost.get(n, {}), length.get(n, {})) for n in g.binary}


@dataclass(frozen=True)
class PathReport:
    """Gradient-path metrics of one network at the four scopes."""

    network: PathStats
    stages: dict[str, PathStats]
    blocks: dict[str, PathStats]
    layers: dict[str, PathStats]

    def to_dict(self) -> dict[str, Any]:
        def scoped(stats: dict[str, PathStats]) -> list[dict[str, Any]]:
            return [{"scope": name, **s.to_dict()} for name, s in stats.items()]

        return {
            "network": self.network.to_dict(),
            "stages": scoped(self.stages),
            "blocks": scoped(self.blocks),
            "layers": scoped(self.layers),
        }

    def unreached(self) -> list[str]:
        """Binary convs from which no path reaches the output: the gradient never gets there."""
        return [name for name, s in self.layers.items() if s.N[0] is None]


def path_report(g: PathGraph) -> PathReport:
    """All four scopes of a path graph."""
    scopes = g.scopes
    return PathReport(
        network=scope_stats(g, g.order[0], g.order[-1]),
        stages={name: scope_stats(g, s, t) for name, s, t in scopes.get("stages", [])},
        blocks={name: scope_stats(g, s, t) for name, s, t in scopes.get("blocks", [])},
        layers=layer_stats(g),
    )


def missing_last(value: float | None) -> float:
    """Sort key of a metric value: a missing value ranks worse than any present one."""
    return math.inf if value is None else value
