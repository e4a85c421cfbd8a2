"""The model registry, in the style of timm: ``@register_model`` builders that return an ArchSpec,
``list_models("bireal*")``, ``model_spec(name)`` and ``create_model(name)``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

from nas._names import unknown_name
from nas.spec import ArchSpec

ModelBuilder = Callable[..., ArchSpec]
_MODELS: dict[str, ModelBuilder] = {}


class UnknownModelError(KeyError):
    """A model name that is not registered; the message lists the closest names."""

    def __init__(self, name: str):
        hint = "python -m nas.profile --list lists them"
        self.message = unknown_name("model", name, _MODELS, hint)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def register_model(fn: ModelBuilder) -> ModelBuilder:
    """Register a builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    import nas.zoo  # noqa: F401  (registers the zoo)

    return sorted(fnmatch.filter(_MODELS, pattern))


def model_spec(name: str, **options) -> ArchSpec:
    """The ArchSpec of a registered model; options (``input_size``, ``classes``, ``stem``) go to
    its builder."""
    import nas.zoo  # noqa: F401

    if name not in _MODELS:
        raise UnknownModelError(name)
    return _MODELS[name](**options)


def model_doc(name: str) -> str:
    """The docstring of a registered model's builder."""
    import nas.zoo  # noqa: F401

    if name not in _MODELS:
        raise UnknownModelError(name)
    return _MODELS[name].__doc__ or ""


def create_model(name: str, **options) -> nn.Module:
    """Build a registered model as an ``nn.Module``."""
    from nas.model import build_model

    return build_model(model_spec(name, **options))
