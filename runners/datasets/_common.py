"""What the dataset formats share: the splits a loader returns, the errors, reading a file
(gunzipped where named .gz), tensors from arrays, an unpickler that runs no code, and the
augmentation that training applies to batches."""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset


class DataNotFound(FileNotFoundError):
    """The data is not there; the message says how to get it."""


class DataError(ValueError):
    """A dataset file that exists but cannot be used. The message is one line:
    ``<path>: <what is wrong>; <what to do>``."""


REDOWNLOAD = "re-download it or pass --data-dir with intact files"


def bad(path: Path | str, problem: str, fix: str = REDOWNLOAD) -> DataError:
    """The DataError for ``path``, its message on one line (a decoder's text may hold newlines)."""
    text = f"{path}: {problem}; {fix}"
    return DataError(" ".join(text.split()))


def why(error: BaseException) -> str:
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


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise bad(path, f"cannot be read ({why(e)})", "check that it is a readable file") from e


def open_file(path: Path, fix: str = REDOWNLOAD) -> bytes:
    """The file's bytes, gunzipped if it is named .gz; a DataError if it is not intact gzip."""
    data = read_file(path)
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise bad(path, f"is not an intact gzip file ({why(e)})", fix) from e


def tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    images = torch.from_numpy(np.ascontiguousarray(x))
    if images.dim() == 3:
        images = images[:, None]
    return TensorDataset(images, torch.from_numpy(np.asarray(y, dtype=np.int64)))


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


def unpickle(path: Path, data: bytes, encoding: str, fix: str):
    """``data`` (the bytes of ``path``) through :class:`RestrictedUnpickler`; a refused global or
    a broken stream raises DataError naming the file (the refused code is never run)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except MemoryError:
        raise
    except pickle.UnpicklingError as e:
        if str(e).startswith("refused to load"):
            raise bad(path, f"{e} (nothing was run)", fix) from None
        raise bad(path, f"is not an intact pickle ({why(e)})", fix) from e
    except EOFError:
        raise bad(path, "is truncated: the pickle ends early", fix) from None
    except Exception as e:  # a malformed stream can raise nearly anything while it is decoded
        raise bad(path, f"is not an intact pickle ({type(e).__name__}: {why(e)})", fix) from e


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
