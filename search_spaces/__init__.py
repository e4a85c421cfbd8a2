"""Search spaces, a registry: ``get_space("resnet")``, ``list_spaces()``.

Each space samples a structure with Optuna and solves its width to the budget, so every candidate
has (nearly) the budget's FLOPs; the paper's zoo models are points of these spaces
(:meth:`SearchSpace.references`).
"""

from __future__ import annotations

from nas._names import unknown_name
from search_spaces._base import Param, SearchSpace, Solved, Structure
from search_spaces.densenet import DenseNetSpace
from search_spaces.resnet import ResNetSpace

_SPACES: dict[str, SearchSpace] = {}


def register_space(space: SearchSpace) -> SearchSpace:
    if space.name in _SPACES:
        raise ValueError(f"search space {space.name!r} is registered twice")
    _SPACES[space.name] = space
    return space


def list_spaces() -> list[str]:
    return sorted(_SPACES)


def get_space(name: str) -> SearchSpace:
    if name not in _SPACES:
        known = f"known: {', '.join(list_spaces())}, all"
        raise KeyError(unknown_name("search space", name, _SPACES, known))
    return _SPACES[name]


register_space(ResNetSpace())
register_space(DenseNetSpace())

__all__ = [
    "Param",
    "SearchSpace",
    "Solved",
    "Structure",
    "get_space",
    "list_spaces",
    "register_space",
]
