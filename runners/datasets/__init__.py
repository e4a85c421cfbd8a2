"""Datasets, all read offline in their standard formats, one module per format, behind a
registry (:data:`LOADERS`: a name -> the module and function of its loader, imported when the
dataset is first loaded, so the names cost no torch):

* ``fashion_mnist`` (the default) and ``mnist``: IDX files (:mod:`runners.datasets.idx`);
* ``digits``: scikit-learn's 8x8 digits (:mod:`runners.datasets.digits`);
* ``cifar10`` / ``cifar100``: the python pickle batches (:mod:`runners.datasets.cifar`);
* ``imagefolder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` images
  (:mod:`runners.datasets.imagefolder`).

Absent data raises :class:`DataNotFound`, whose message says how to get it. A file that is there
but cannot be used (truncated, corrupt, inconsistent with its companions, a pickle that asks for
code) raises :class:`DataError`, one line that names the file, says what is wrong and what to do.
Augmentation is plain torch on batches (:func:`augment`): random crop with padding, horizontal
flip, normalisation.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runners.datasets._common import Splits

# Each dataset -> the module (a file format) and function of its loader, imported when the
# dataset is first loaded: the names are known without torch (the search's --help lists them)
LOADERS: dict[str, tuple[str, str]] = {
    "fashion_mnist": ("idx", "fashion_mnist"),
    "mnist": ("idx", "mnist"),
    "digits": ("digits", "digits"),
    "cifar10": ("cifar", "cifar10"),
    "cifar100": ("cifar", "cifar100"),
    "imagefolder": ("imagefolder", "imagefolder"),
}
DATASETS = tuple(LOADERS)
SIZED = frozenset({"imagefolder"})  # loaders that resize to the input size


def load_dataset(name: str, data_dir: str | Path | None = None, size: int = 224) -> Splits:
    """The named dataset (one of :data:`DATASETS`)."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    module, function = LOADERS[name]
    loader = getattr(importlib.import_module(f"runners.datasets.{module}"), function)
    path = Path(data_dir) if data_dir else None
    return loader(path, size) if name in SIZED else loader(path)


# The rest of the public names, and where they live (imported on first use, PEP 562: torch)
_EXPORTS = {
    "DataError": "_common",
    "DataNotFound": "_common",
    "RestrictedUnpickler": "_common",
    "Splits": "_common",
    "augment": "_common",
    "read_idx": "idx",
    "ImageFolder": "imagefolder",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'runners.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"runners.datasets.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DATASETS",
    "LOADERS",
    "DataError",
    "DataNotFound",
    "ImageFolder",
    "RestrictedUnpickler",
    "Splits",
    "augment",
    "load_dataset",
    "read_idx",
]
