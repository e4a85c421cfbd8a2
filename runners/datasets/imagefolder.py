"""``imagefolder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` images (ImageNet style),
decoded with Pillow, resized and centre-cropped to the input size; an image is decoded when used,
so its DataError comes from ``__getitem__``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from nas.core.spec import MAX_CLASSES
from runners.datasets._common import DataNotFound, Splits, bad, why

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
                raise bad(
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
            raise bad(
                root,
                "holds no images (<class>/*" + ", *".join(sorted(self.EXTENSIONS)) + ")",
                "put the images in one folder per class",
            )
        if class_names is None:  # the train split defines the task
            labelled = len({k for _, k in self.items})
            if labelled < 2:
                raise bad(
                    root,
                    f"has images in {labelled} class folder: a classifier needs at least 2",
                    "put the images in one folder per class",
                )
            if len(self.classes) > MAX_CLASSES:
                raise bad(
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
                else f"cannot be decoded as an image ({why(e)})"
            )
            raise bad(path, problem, IMAGE_FIX) from None
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
