"""The model registry, in the style of timm: ``@register_model`` builders that return an ArchSpec,
``list_models("bireal*")``, ``model_spec(name)``; the zoo (:mod:`nas.core.zoo`) is registered on
import. Building the module of a registered model is :func:`nas.nn.model.create_model` (torch)."""

from __future__ import annotations

from nas.core import zoo
from nas.core.names import Registry, UnknownNameError
from nas.core.spec import ArchSpec
from nas.core.zoo import ModelBuilder


class UnknownModelError(UnknownNameError):
    """A model name that is not registered; the message lists the closest names."""


_MODELS: Registry[ModelBuilder] = Registry(
    "model", "python -m nas.profile --list lists them", UnknownModelError
)


def register_model(fn: ModelBuilder) -> ModelBuilder:
    """Register a builder under its function name."""
    return _MODELS.register(fn)


for _builder in zoo.MODELS:
    register_model(_builder)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return _MODELS.names(pattern)


def model_spec(name: str, **options) -> ArchSpec:
    """The ArchSpec of a registered model; options (``input_size``, ``classes``, ``stem``) go to
    its builder."""
    return _MODELS.get(name)(**options)


def model_doc(name: str) -> str:
    """The docstring of a registered model's builder."""
    return _MODELS.get(name).__doc__ or ""
