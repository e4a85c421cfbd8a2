"""Gradient-path analysis of a spec, from its own layer graph (no module is built, no torch).

``analyze_spec`` reads a spec's layer graph, the fast path of the search; the analysis of any
``nn.Module``, traced with torch.fx, is :func:`nas.nn.trace.analyze`. Both return a
:class:`nas.core.metrics.PathReport`: N_1st < N_2nd < N_3rd and L_1st < L_2nd < L_3rd with their
path counts at the network, stage, block and per-binary-conv scopes (definitions in
:mod:`nas.core.metrics`). The command line is ``python -m nas.paths``.
"""

from __future__ import annotations

from nas.core.graph import Op, lower, scopes
from nas.core.metrics import PathGraph, PathReport, path_report
from nas.core.spec import ArchSpec


def analyze_spec(spec: ArchSpec) -> PathReport:
    """Gradient-path metrics of a spec, from its layer graph (no module is built)."""
    return analyze_ops(lower(spec))


def analyze_ops(ops: list[Op]) -> PathReport:
    """:func:`analyze_spec` of lowered ops."""
    return path_report(PathGraph.from_ops(ops, scopes(ops)))
