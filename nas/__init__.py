"""Neural architecture search for binary CNNs guided by gradient paths.

Public API (the rest is private to its module):

* :class:`ArchSpec` and its parts, :class:`SpecError` -- one description of a network;
* :func:`build_model` -- the PyTorch module of a spec;
* :func:`spec_graph`, :func:`arch_id`, :func:`same_network`, :func:`depth` -- its layer graph;
* :func:`spec_cost`, :func:`module_cost`, :class:`Cost` -- its cost, as the paper counts it;
* :func:`register_model`, :func:`list_models`, :func:`model_spec`, :func:`create_model` -- the zoo;
* :func:`analyze`, :func:`analyze_spec`, :func:`trace_graph` -- gradient-path metrics of any
  module or spec; :func:`register_scorer`, :func:`get_scorer` -- ranking keys.

The names are imported on first use (PEP 562), so that ``import nas.spec`` or ``from nas import
ArchSpec`` does not import torch: the spec side (spec, graph, cost, metrics, scorers, zoo,
registry) is torch-free; the torch side is :mod:`nas.binary`, :mod:`nas.model`,
:mod:`nas.module_cost`, :mod:`nas.trace` and :mod:`nas.proxies`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Each public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "ArchSpec": "nas.spec",
    "Block": "nas.spec",
    "Head": "nas.spec",
    "SpecError": "nas.spec",
    "Stage": "nas.spec",
    "Stem": "nas.spec",
    "Transition": "nas.spec",
    "arch_id": "nas.graph",
    "depth": "nas.graph",
    "same_network": "nas.graph",
    "spec_graph": "nas.graph",
    "Cost": "nas.cost",
    "CostReport": "nas.cost",
    "LayerCost": "nas.cost",
    "spec_cost": "nas.cost",
    "PathReport": "nas.metrics",
    "PathStats": "nas.metrics",
    "analyze_spec": "nas.analysis",
    "get_scorer": "nas.scorers",
    "list_scorers": "nas.scorers",
    "register_scorer": "nas.scorers",
    "UnknownModelError": "nas.registry",
    "list_models": "nas.registry",
    "model_spec": "nas.registry",
    "register_model": "nas.registry",
    # the torch side
    "BinaryActivation": "nas.binary",
    "BinaryConv2d": "nas.binary",
    "build_model": "nas.model",
    "create_model": "nas.model",
    "module_cost": "nas.module_cost",
    "analyze": "nas.trace",
    "trace_graph": "nas.trace",
}

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
]  # the keys of _EXPORTS (a literal, for tools)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (later uses find it in the module's globals)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
