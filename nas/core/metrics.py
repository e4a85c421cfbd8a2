"""Gradient-path metrics N_1st < N_2nd < N_3rd and L_1st < L_2nd < L_3rd (docs/design.md section 5).

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

import functools
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from nas.core.graph import Op

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

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Each op's index in ``order`` (``order.index`` per scope made the scopes quadratic)."""
        return {n: k for k, n in enumerate(self.order)}

    @functools.cached_property
    def lengths(self) -> dict[str, int]:
        """The weights of the lengths L: 1 for a binary conv, 0 for every other op."""
        return {n: 1 if b else 0 for n, b in self.bops.items()}

    @functools.cached_property
    def succs(self) -> dict[str, list[str]]:
        """The consumers of each op."""
        succs: dict[str, list[str]] = {n: [] for n in self.order}
        for v in self.order:
            for u in self.preds[v]:
                succs[u].append(v)
        return succs

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
    binary conv weighs 1 (lengths L) instead of its BOPs (costs N). Tables are shared between ops
    where they are equal (an op of weight 0 with one input has its input's): read, never change
    them."""
    start = g.position[source]
    stop = g.position[sink] + 1 if sink is not None else len(g.order)
    return _tables(g.order[start + 1 : stop], g.preds, g.lengths if unit else g.bops, source, 0)


def backward_tables(g: PathGraph, sink: str, unit: bool = False) -> dict[str, dict[int, int]]:
    """For every op that reaches ``sink``, the K smallest distinct costs of paths op -> sink with
    their counts, the op's own weight excluded and the sink's included (tables shared as in
    :func:`forward_tables`)."""
    weight = g.lengths if unit else g.bops
    stop = g.position[sink]
    order = g.order[stop - 1 :: -1] if stop else []
    return _tables(order, g.succs, weight, sink, weight[sink], backward=True)


def _tables(
    order: list[str],
    preds: dict[str, list[str]],
    weight: dict[str, int],
    source: str,
    start: int,
    backward: bool = False,
) -> dict[str, dict[int, int]]:
    """The dynamic programme over ``order`` from ``source`` (whose table is ``{start: 1}``): an
    op's table holds the K smallest distinct values of the union of its predecessors' tables,
    each shifted by the op's weight, or in the ``backward`` pass (``preds`` are then consumers) by
    the predecessor's weight, the source's excluded."""
    tables: dict[str, dict[int, int]] = {source: {start: 1}}
    get = tables.get
    for v in order:
        inputs = preds[v]
        if len(inputs) == 1:  # most ops: the input's table, shifted (shared where w = 0)
            u = inputs[0]
            t = get(u)
            if t is not None:
                w = (0 if u == source else weight[u]) if backward else weight[v]
                tables[v] = {c + w: n for c, n in t.items()} if w else t
            continue
        acc: dict[int, int] = {}
        w = 0 if backward else weight[v]
        for u in inputs:
            t = get(u)
            if t is None:
                continue
            if backward:
                w = 0 if u == source else weight[u]
            for c, n in t.items():
                c += w
                acc[c] = acc.get(c, 0) + n
        if acc:
            tables[v] = acc if len(acc) <= K else _smallest(acc)
    return tables


def scope_stats(g: PathGraph, source: str, sink: str) -> PathStats:
    """N and L over all source -> sink paths: :func:`forward_tables` of costs and of lengths, in
    one pass (the scorer's inner loop; every block of a network is a scope)."""
    start, stop = g.position[source], g.position[sink] + 1
    bops, preds = g.bops, g.preds
    tables: dict[str, tuple[dict[int, int], dict[int, int]]] = {source: ({0: 1}, {0: 1})}
    get = tables.get
    for v in g.order[start + 1 : stop]:
        inputs, w = preds[v], bops[v]
        if len(inputs) == 1:
            t = get(inputs[0])
            if t is not None:
                tables[v] = (
                    ({c + w: n for c, n in t[0].items()}, {c + 1: n for c, n in t[1].items()})
                    if w
                    else t
                )
            continue
        cost: dict[int, int] = {}
        length: dict[int, int] = {}
        one = 1 if w else 0
        for u in inputs:
            t = get(u)
            if t is None:
                continue
            for c, n in t[0].items():
                c += w
                cost[c] = cost.get(c, 0) + n
            for c, n in t[1].items():
                c += one
                length[c] = length.get(c, 0) + n
        if cost:
            tables[v] = (_smallest(cost), _smallest(length))
    found = tables.get(sink, ({}, {}))
    return PathStats.from_tables(found[0], found[1])


def layer_stats(g: PathGraph) -> dict[str, PathStats]:
    """Per binary conv: N and L over the paths from its output to the network output."""
    sink = g.order[-1]
    cost = backward_tables(g, sink)
    length = backward_tables(g, sink, unit=True)
    return {n: PathStats.from_tables(cost.get(n, {}), length.get(n, {})) for n in g.binary}


class PathReport:
    """Gradient-path metrics of one network at the four scopes: ``network``, ``stages``,
    ``blocks`` and ``layers`` (per binary conv). Each scope is computed when first read: the
    search's scorers read one or two of them, a hundred thousand times a run."""

    def __init__(self, g: PathGraph):
        self._g = g

    @functools.cached_property
    def network(self) -> PathStats:
        return scope_stats(self._g, self._g.order[0], self._g.order[-1])

    def _scoped(self, kind: str) -> dict[str, PathStats]:
        return {name: scope_stats(self._g, s, t) for name, s, t in self._g.scopes.get(kind, [])}

    @functools.cached_property
    def stages(self) -> dict[str, PathStats]:
        return self._scoped("stages")

    @functools.cached_property
    def blocks(self) -> dict[str, PathStats]:
        return self._scoped("blocks")

    @functools.cached_property
    def layers(self) -> dict[str, PathStats]:
        return layer_stats(self._g)

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
    """All four scopes of a path graph (each computed when first read)."""
    return PathReport(g)
