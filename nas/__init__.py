"""Neural architecture search for binary CNNs guided by gradient paths.

Public API (the rest is private to its module):

* :class:`ArchSpec` and its parts, :class:`SpecError` -- one description of a network;
* :func:`build_model` -- the PyTorch module of a spec;
* :func:`spec_graph`, :func:`arch_id`, :func:`same_network`, :func:`depth` -- its layer graph;
* :func:`spec_cost`, :func:`module_cost`, :class:`Cost` -- its cost, as the paper counts it;
* :func:`register_model`, :func:`list_models`, :func:`model_spec`, :func:`create_model` -- the zoo.
"""

from nas.binary import BinaryActivation, BinaryConv2d
from nas.cost import Cost, CostReport, LayerCost, module_cost, spec_cost
from nas.graph import arch_id, depth, same_network, spec_graph
from nas.model import build_model
from nas.registry import (
    UnknownModelError,
    create_model,
    list_models,
    model_spec,
    register_model,
)
from nas.spec import ArchSpec, Block, Head, SpecError, Stage, Stem, Transition

__all__ = [
    "ArchSpec",
    "Block",
    "BinaryActivation",
    "BinaryConv2d",
    "Cost",
    "CostReport",
    "Head",
    "LayerCost",
    "SpecError",
    "Stage",
    "Stem",
    "Transition",
    "UnknownModelError",
    "arch_id",
    "build_model",
    "create_model",
    "depth",
    "list_models",
    "model_spec",
    "module_cost",
    "register_model",
    "same_network",
    "spec_cost",
    "spec_graph",
]
