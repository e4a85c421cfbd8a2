"""Search spaces, a registry: ``get_space("resnet")``, ``list_spaces()``.

Each space samples a structure with Optuna and solves its width to the budget, so every candidate
has (nearly) the budget's FLOPs; the paper's zoo models are points of these spaces
(:meth:`SearchSpace.references`).
"""

from __future__ import annotations

from nas.core.names import Registry
from search_spaces._base import Param, SearchSpace, Solved, Structure
from search_spaces.densenet import DenseNetSpace
from search_spaces.resnet import ResNetSpace

_SPACES: Registry[SearchSpace] = Registry(
    "search space", lambda: f"known: {', '.join(list_spaces())}, all"
)


def register_space(space: SearchSpace) -> SearchSpace:
    return _SPACES.register(space, space.name)


def list_spaces() -> list[str]:
    return _SPACES.names()


def get_space(name: str) -> SearchSpace:
    """The space ``name``; an unknown name is a KeyError naming the closest ones."""
    return _SPACES.get(name)


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
