"""Neural architecture search for binary CNNs guided by gradient paths.

Public API (the rest is private to its module):

* :class:`ArchSpec` and its parts, :class:`SpecError` -- one description of a network;
* :func:`build_model` -- the PyTorch module of a spec;
* :func:`spec_graph`, :func:`arch_id`, :func:`same_network`, :func:`depth` -- its layer graph;
* :func:`spec_cost`, :func:`module_cost`, :class:`Cost` -- its cost, as the paper counts it;
* :func:`register_model`, :func:`list_models`, :func:`model_spec`, :func:`create_model` -- the zoo;
* :func:`analyze`, :func:`analyze_spec`, :func:`trace_graph` -- gradient-path metrics of any
  module or spec; :func:`register_scorer`, :func:`get_scorer` -- ranking keys.
"""

from nas.analysis import analyze, analyze_spec
from nas.binary import BinaryActivation, BinaryConv2d
from nas.cost import Cost, CostReport, LayerCost, module_cost, spec_cost
from nas.graph import arch_id, depth, same_network, spec_graph
from nas.metrics import PathReport, PathStats
from nas.model import build_model
from nas.registry import (
    UnknownModelError,
    create_model,
    list_models,
    model_spec,
    register_model,
)
from nas.scorers import get_scorer, list_scorers, register_scorer
from nas.spec import ArchSpec, Block, Head, SpecError, Stage, Stem, Transition
from nas.trace import trace_graph

__all__ = [
    "ArchSpec",
    "BinaryActivation",
    "BinaryConv2d",
    "Block",
    "Cost",
    "CostReport",
    "Head",
    "LayerCost",
    "PathReport",
    "PathStats",
    "SpecError",
    "Stage",
    "Stem",
    "Transition",
    "UnknownModelError",
    "analyze",
    "analyze_spec",
    "arch_id",
    "build_model",
    "create_model",
    "depth",
    "get_scorer",
    "list_models",
    "list_scorers",
    "model_spec",
    "module_cost",
    "register_model",
    "register_scorer",
    "same_network",
    "spec_cost",
    "spec_graph",
    "trace_graph",
]
