"""A drawing of one stage or block with its cheapest gradient paths (``nas.paths --plot``).

An edge is coloured by the cheapest of the scope's three smallest distinct path costs
(N_1st, N_2nd, N_3rd) that some path through it has: the forward table from the scope's input and
the backward table to its output (:mod:`nas.core.metrics`) give, exactly, the costs of the best
paths through every edge.
"""

from __future__ import annotations

import io
from pathlib import Path

import networkx as nx

from nas.core import scopes as names
from nas.core.atomic import atomic_write_bytes
from nas.core.graph import lower
from nas.core.metrics import PathGraph, backward_tables, forward_tables, scope_stats
from nas.core.names import printable
from nas.core.spec import ArchSpec

COLOURS = ("#1a9850", "#fc8d59", "#d73027")  # N_1st, N_2nd, N_3rd
MAX_DRAWN_OPS = 1000
"""The largest scope drawn: beyond it the labels overlap into a grey band (a stage of the densenet
space has about 400 ops; a block of any space fewer than 40)."""
MAX_WIDTH_INCHES = 400  # 44,000 px at 110 dpi: matplotlib refuses images over 2^16 px a side
KIND_COLOURS = {
    "binconv": "#4575b4",
    "conv": "#abd9e9",
    "add": "#ffffbf",
    "mean": "#ffffbf",
    "concat": "#fee090",
}


JOIN_LABELS = {"add": "+", "mean": "mean", "concat": "cat"}


def _short(name: str, kind: str, scope: str) -> str:
    if kind in JOIN_LABELS:
        return JOIN_LABELS[kind]
    label = names.short_label(name, scope, conv_edge=kind == "binconv")
    return "bin " + label if kind == "binconv" else label


def plot_scope(spec: ArchSpec, graph: PathGraph, scope: str, path: str) -> None:
    """Write a PNG (or SVG, PDF: by the suffix) of ``scope`` (a stage or block name of ``graph``)
    to ``path``, atomically: a failed write leaves what was there. A scope of more than
    :data:`MAX_DRAWN_OPS` ops is a ValueError; an unwritable ``path`` an OSError naming it."""
    import matplotlib  # noqa: PLC0415 - heavy, and it picks a backend: only a drawing needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - as above, after the backend is chosen

    source, sink = next(
        (s, t) for n, s, t in graph.scopes["stages"] + graph.scopes["blocks"] if n == scope
    )
    fwd = forward_tables(graph, source, sink)
    bwd = backward_tables(graph, sink)
    on_path = [n for n in graph.order if n in fwd and n in bwd]
    if len(on_path) > MAX_DRAWN_OPS:
        raise ValueError(
            f"{scope} has {len(on_path):,} ops, too many to draw (at most {MAX_DRAWN_OPS:,}): "
            f"draw one of its blocks (--scope {names.block_path('S', 'B')})"
        )
    best = sorted(fwd.get(sink, {}))[:3]

    def through(u: str, v: str) -> int | None:
        tail = bwd[v] if v == sink else {b + graph.bops[v]: 1 for b in bwd[v]}
        totals = {a + b for a in fwd[u] for b in tail}
        return next((k for k, x in enumerate(best) if x in totals), None)

    g = nx.DiGraph()
    for v in on_path:
        g.add_node(v)
        for u in graph.preds[v]:
            if u in g:
                g.add_edge(u, v, rank=through(u, v))
    layer = {source: 0}
    for v in nx.topological_sort(g):
        for u in g.predecessors(v):
            layer[v] = max(layer.get(v, 0), layer[u] + 1)
    nx.set_node_attributes(g, layer, "layer")
    pos = nx.multipartite_layout(g, subset_key="layer")
    kind_of = _kinds(spec)
    width = min(max(6, 1.3 * (max(layer.values()) + 1)), MAX_WIDTH_INCHES)
    fig, ax = plt.subplots(figsize=(width, 5))
    for rank in (None, 2, 1, 0):  # cheapest drawn last, on top
        for skip in (False, True):  # edges that skip a layer bend around the nodes between
            edges = [
                (u, v)
                for u, v, r in g.edges(data="rank")
                if r == rank and (layer[v] - layer[u] > 1) == skip
            ]
            nx.draw_networkx_edges(
                g,
                pos,
                edgelist=edges,
                ax=ax,
                arrows=True,
                arrowsize=10,
                node_size=900,
                edge_color="#cccccc" if rank is None else COLOURS[rank],
                width=1.0 if rank is None else 3.0 - 0.6 * rank,
                connectionstyle="arc3,rad=0.35" if skip else "arc3,rad=0.0",
            )
    nx.draw_networkx_nodes(
        g,
        pos,
        ax=ax,
        node_size=900,
        node_color=[KIND_COLOURS.get(kind_of.get(n, ""), "#eeeeee") for n in g],
    )
    nx.draw_networkx_labels(  # on a white ground: an edge passing under stays readable
        g, pos, ax=ax, font_size=7, labels={n: _short(n, kind_of.get(n, ""), scope) for n in g},
        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
    )  # fmt: skip
    stats = scope_stats(graph, source, sink)
    for k, value in enumerate(stats.N):
        if value is not None:
            ax.plot(
                [],
                [],
                color=COLOURS[k],
                lw=3,
                label=f"N_{k + 1}: {value / 1e6:.3g} M ({stats.count[k]} "
                f"path{'s' * (stats.count[k] != 1)})",
            )
    # below the drawing, where it covers no node
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    n_text = _fmt([None if v is None else v / 1e6 for v in stats.N])
    name = printable(spec.name).replace("$", r"\$")  # a label, not mathtext
    ax.set_title(f"{name}\n{scope}: N = {n_text} MFLOP-eq, L = {_fmt(stats.L)}", fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    try:
        _save(fig, path)
    finally:
        plt.close(fig)


def _save(fig, path: str) -> None:
    """``fig.savefig(path)`` in the format of its suffix, written atomically; an OSError names
    ``path`` (not the temporary file beside it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format=(Path(path).suffix or ".png")[1:].lower())
    try:
        atomic_write_bytes(Path(path), buffer.getvalue())
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None


def _fmt(values) -> str:
    return "(" + ", ".join("-" if v is None else f"{v:.4g}" for v in values) + ")"


def _kinds(spec: ArchSpec) -> dict[str, str]:
    return {op.name: op.kind for op in lower(spec)}
