"""``digits``: scikit-learn's 8x8 digits (needs ``scikit-learn``)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from runners.datasets._common import DataNotFound, Splits, bad, tensors, why


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
        raise bad(
            where,
            f"scikit-learn's digits cannot be read ({why(e)})",
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
        tensors(x[tr], y[tr]),
        tensors(x[te], y[te]),
        10,
        1,
        8,
        (0.3,),
        (0.4,),
        flip=False,
    )
