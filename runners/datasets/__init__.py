"""Datasets, all read offline in their standard formats, one module per format, behind a
registry (:data:`LOADERS`: a name -> its loader, ``loader(data_dir, size)``):

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

from collections.abc import Callable
from pathlib import Path

from runners.datasets import cifar, digits, idx, imagefolder
from runners.datasets._common import (
    DataError,
    DataNotFound,
    RestrictedUnpickler,
    Splits,
    augment,
)
from runners.datasets.idx import read_idx
from runners.datasets.imagefolder import ImageFolder

# Each dataset's loader: (data_dir or None, input size: used by an image folder) -> its splits
LOADERS: dict[str, Callable[[Path | None, int], Splits]] = {
    "fashion_mnist": lambda path, size: idx.fashion_mnist(path),
    "mnist": lambda path, size: idx.mnist(path),
    "digits": lambda path, size: digits.digits(path),
    "cifar10": lambda path, size: cifar.cifar10(path),
    "cifar100": lambda path, size: cifar.cifar100(path),
    "imagefolder": imagefolder.imagefolder,
}
DATASETS = tuple(LOADERS)


def load_dataset(name: str, data_dir: str | Path | None = None, size: int = 224) -> Splits:
    """The named dataset (one of :data:`DATASETS`)."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return LOADERS[name](Path(data_dir) if data_dir else None, size)


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
