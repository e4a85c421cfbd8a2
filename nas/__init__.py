"""Neural architecture search for binary CNNs guided by gradient paths.

Public API (the rest is private to its module):

* :class:`ArchSpec` and its parts, :class:`SpecError` -- one description of a network;
* :func:`build_model` -- the PyTorch module of a spec;
* :func:`spec_graph`, :func:`arch_id`, :func:`same_network`, :func:`depth` -- its layer graph;
* :func:`spec_cost`, :func:`module_cost`, :class:`Cost` -- its cost, as the paper counts it;
* :func:`register_model`, :func:`list_models`, :func:`model_spec`, :func:`create_model` -- the zoo;
* :func:`analyze`, :func:`analyze_spec`, :func:`trace_graph` -- gradient-path metrics of any
  module or spec; :func:`register_scorer`, :func:`get_scorer` -- ranking keys.

The names are imported on first use (PEP 562), so that ``from nas import ArchSpec`` does not
import torch. The library is two packages: :mod:`nas.core`, the spec side (spec, graph, cost,
metrics, scorers, zoo, registry, budget), torch-free; and :mod:`nas.nn`, the torch side (binary
layers, model, trace, module cost, proxies, kernels, packed inference). Beside them sit the
command lines: ``python -m nas.search``, ``nas.final``, ``nas.benchmarks``, ``nas.profile``,
``nas.paths`` (and their shared helpers, :mod:`nas.cli`).
"""

from __future__ import annotations

import importlib
from typing import Any

# Each public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "ArchSpec": "nas.core.spec",
    "Block": "nas.core.spec",
    "Head": "nas.core.spec",
    "SpecError": "nas.core.spec",
    "Stage": "nas.core.spec",
    "Stem": "nas.core.spec",
    "Transition": "nas.core.spec",
    "arch_id": "nas.core.graph",
    "depth": "nas.core.graph",
    "same_network": "nas.core.graph",
    "spec_graph": "nas.core.graph",
    "Cost": "nas.core.cost",
    "CostReport": "nas.core.cost",
    "LayerCost": "nas.core.cost",
    "spec_cost": "nas.core.cost",
    "PathReport": "nas.core.metrics",
    "PathStats": "nas.core.metrics",
    "analyze_spec": "nas.core.analysis",
    "get_scorer": "nas.core.scorers",
    "list_scorers": "nas.core.scorers",
    "register_scorer": "nas.core.scorers",
    "UnknownModelError": "nas.core.registry",
    "list_models": "nas.core.registry",
    "model_spec": "nas.core.registry",
    "register_model": "nas.core.registry",
    # the torch side
    "BinaryActivation": "nas.nn.binary",
    "BinaryConv2d": "nas.nn.binary",
    "build_model": "nas.nn.model",
    "create_model": "nas.nn.model",
    "module_cost": "nas.nn.module_cost",
    "analyze": "nas.nn.trace",
    "trace_graph": "nas.nn.trace",
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
