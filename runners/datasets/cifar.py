"""``cifar10`` / ``cifar100``: the python pickle batches, read by an unpickler that admits only
plain data and numpy arrays (a pickle that asks for anything else is refused, never run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runners.datasets._common import DataNotFound, Splits, bad, read_file, tensors, unpickle, why

CIFAR_FIX = (
    "re-download the 'python version' archive from https://www.cs.toronto.edu/~kriz/cifar.html "
    "and pass --data-dir with intact files"
)


def _load_pickle(path: Path) -> dict:
    return unpickle(path, read_file(path), "bytes", CIFAR_FIX)


def _cifar_batch(path: Path, label_key: bytes, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file: (images (n, 3, 32, 32) uint8, labels (n,) int64), checked."""
    batch = _load_pickle(path)
    if not isinstance(batch, dict):
        raise bad(path, f"holds a {type(batch).__name__}, not a CIFAR batch (a dict)", CIFAR_FIX)
    missing = [k.decode() for k in (b"data", label_key) if k not in batch]
    if missing:
        raise bad(path, f"is not a CIFAR batch: no {' or '.join(missing)} key", CIFAR_FIX)
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[label_key])
    except (TypeError, ValueError) as e:
        raise bad(path, f"its data or labels are not arrays ({why(e)})", CIFAR_FIX) from e
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise bad(path, f"its data has shape {data.shape}, not (n, 3072)", CIFAR_FIX)
    integers = np.issubdtype(data.dtype, np.integer)
    if not integers or (data.size and (data.min() < 0 or data.max() > 255)):
        raise bad(path, f"its data is {data.dtype}, not bytes 0..255", CIFAR_FIX)
    if labels.shape != (len(data),):
        raise bad(
            path,
            f"holds {len(data)} images but {label_key.decode()} of shape {labels.shape}",
            CIFAR_FIX,
        )
    if len(labels) and (
        not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= classes
    ):
        raise bad(path, f"its {label_key.decode()} are not integers in 0..{classes - 1}", CIFAR_FIX)
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


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

    if not test_file.is_file():
        raise DataNotFound(f"{test_file} not found next to the training batches: {CIFAR_FIX}")

    def read(files):
        batches = [_cifar_batch(f, label_key, classes) for f in files if f.is_file()]
        if not batches:
            raise DataNotFound(f"{files[0]} not found: {CIFAR_FIX}")
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        if len(x) == 0:
            raise bad(files[0] if len(files) == 1 else root, "holds no images", CIFAR_FIX)
        return x, y

    (tx, ty), (vx, vy) = read(train_files), read([test_file])
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    return Splits(name, tensors(tx, ty), tensors(vx, vy), classes, 3, 32, mean, std, flip=True)


def cifar10(data_dir: Path | None = None) -> Splits:
    return _cifar("cifar10", data_dir, 10)


def cifar100(data_dir: Path | None = None) -> Splits:
    return _cifar("cifar100", data_dir, 100)
