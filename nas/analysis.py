"""Gradient-path analysis of a spec or of any module.

``analyze(module, example_input)`` traces any ``nn.Module`` (:mod:`nas.trace`); ``analyze_spec``
reads a spec's own layer graph, the fast path of the search. Both return a
:class:`nas.metrics.PathReport`: N_1st < N_2nd < N_3rd and L_1st < L_2nd < L_3rd with their path
counts at the network, stage, block and per-binary-conv scopes (definitions in
:mod:`nas.metrics`). The command line is ``python -m nas.paths``.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.graph import Op, lower, scopes
from nas.metrics import PathGraph, PathReport, path_report
from nas.spec import ArchSpec
from nas.trace import BinarySelector, module_scopes, trace_ops


def analyze_spec(spec: ArchSpec) -> PathReport:
    """Gradient-path metrics of a spec, from its layer graph (no module is built)."""
    return analyze_ops(lower(spec))


def analyze_ops(ops: list[Op]) -> PathReport:
    """:func:`analyze_spec` of lowered ops."""
    return path_report(PathGraph.from_ops(ops, scopes(ops)))


def analyze(
    module: nn.Module, example_input: torch.Tensor, binary: BinarySelector = None
) -> PathReport:
    """Gradient-path metrics of any module, traced with torch.fx on ``example_input``.

    ``binary`` decides which convolutions are binary: a list of conv names (module paths) or a
    predicate on the name; by default a conv is binary when its input comes from a sign-like op and
    its weight is binarised (see :mod:`nas.trace`)."""
    ops = trace_ops(module, example_input, binary)
    return path_report(PathGraph.from_ops(ops, module_scopes(ops)))
