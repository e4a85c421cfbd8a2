"""The distinct-values dynamic programme against brute-force path enumeration."""

import random

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.core.metrics import K, PathGraph, backward_tables, forward_tables, scope_stats


@st.composite
def weighted_dags(draw):
    n = draw(st.integers(2, 9))
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    for i in range(n):
        for j in range(i + 1, n):
            if draw(st.booleans()):
                g.add_edge(i, j)
    weights = {v: draw(st.sampled_from([0, 0, 1, 2, 3, 5, 8])) for v in range(n)}
    return g, weights


def _path_graph(g: nx.DiGraph, weights: dict, names: dict | None = None) -> PathGraph:
    names = names or {v: str(v) for v in g}
    h = nx.relabel_nodes(g, names)
    for v in g:
        h.nodes[names[v]].update(kind="binconv" if weights[v] else "add", macs=weights[v])
    return PathGraph.from_networkx(h)


def _brute(g: nx.DiGraph, weights: dict, s, t, unit: bool) -> dict[int, int]:
    """Every s -> t path, its cost = weights of the ops after s up to t."""
    table: dict[int, int] = {}
    for p in nx.all_simple_paths(g, s, t) if s != t else [[s]]:
        c = sum((1 if weights[v] else 0) if unit else weights[v] for v in p[1:])
        table[c] = table.get(c, 0) + 1
    return {c: table[c] for c in sorted(table)[:K]}


@settings(max_examples=300, deadline=None)
@given(weighted_dags())
def test_forward_programme_equals_enumeration(dag):
    g, weights = dag
    pg = _path_graph(g, weights)
    sink = max(g)
    for unit in (False, True):
        got = forward_tables(pg, "0", str(sink), unit=unit).get(str(sink), {})
        assert got == _brute(g, weights, 0, sink, unit)


@settings(max_examples=200, deadline=None)
@given(weighted_dags())
def test_backward_programme_equals_enumeration(dag):
    """From every op to the sink, the op's own weight excluded and the sink's included."""
    g, weights = dag
    pg = _path_graph(g, weights)
    sink = max(g)
    tables = backward_tables(pg, str(sink))
    for v in range(sink):
        expected = _brute(g, weights, v, sink, unit=False)
        assert tables.get(str(v), {}) == expected


@settings(max_examples=100, deadline=None)
@given(weighted_dags(), st.randoms(use_true_random=False))
def test_relabelling_changes_nothing(dag, rnd: random.Random):
    g, weights = dag
    sink = max(g)
    names = list(range(len(g)))
    rnd.shuffle(names)
    relabelled = {v: f"op{names[v]}" for v in g}
    a = scope_stats(_path_graph(g, weights), "0", str(sink))
    b = scope_stats(_path_graph(g, weights, relabelled), relabelled[0], relabelled[sink])
    assert a == b


def test_missing_values_are_none_never_zero():
    g = nx.DiGraph([(0, 1), (1, 2)])
    stats = scope_stats(_path_graph(g, {0: 0, 1: 64, 2: 0}), "0", "2")
    assert stats.N == (1.0, None, None) and stats.L == (1, None, None)
    assert stats.count == (1, None, None)
    g.add_node(3)
    stats = scope_stats(_path_graph(g, {0: 0, 1: 64, 2: 0, 3: 0}), "0", "3")
    assert stats.N == (None, None, None) and stats.count == (None, None, None)
