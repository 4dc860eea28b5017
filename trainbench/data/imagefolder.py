"""Your own images, one subfolder per class (torchvision's ``ImageFolder`` layout).

``data.root`` holds a train folder and a test folder (``data.train_dir`` / ``data.test_dir``,
default ``train`` and ``val``) with the same class subfolders::

    root/train/<class>/<image>.png      (any depth below <class>; .jpg .png .bmp .webp .tif ...)
    root/val/<class>/<image>.png

Class indices follow the sorted class folder names. With ``data.loader: device`` every image
is decoded once, converted to RGB, resized so that its shorter side is ``data.image_size``
and center-cropped to a square, and the whole dataset is held in memory as uint8
(N x 3 x size x size bytes); with ``data.loader: stream`` (:mod:`trainbench.data.stream`) the
files are read and decoded batch by batch and the folder may be of any size; ``auto``
chooses by the free memory (:mod:`trainbench.data.choose`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import torch

from trainbench.data.base import DATASETS, ImageData, Shape
from trainbench.data.sources import FileSource
from trainbench.data.stream import StreamSplits
from trainbench.errors import DataMissingError, InputError
from trainbench.registry import REQUIRED, params_of

if TYPE_CHECKING:  # torchvision is imported on use: it takes seconds (see `trainbench show`)
    from torchvision.datasets import ImageFolder


def _params(params: dict[str, Any]) -> dict[str, Any]:
    """Recipe parameters with the loader's defaults filled in (root: None when not given)."""
    specs = params_of(imagefolder).values()
    return {s.name: None if s.default is REQUIRED else s.default for s in specs} | params


def _scan(folder: str) -> ImageFolder | None:
    """The folder's classes and image files (nothing is decoded), or None without class folders."""
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(folder, allow_empty=True)
    except (FileNotFoundError, NotADirectoryError):  # no such folder, or no class folders in it
        return None


def _splits(p: dict[str, Any]) -> tuple[str, str]:
    root = os.path.abspath(os.path.expanduser(p["root"]))
    return os.path.join(root, p["train_dir"]), os.path.join(root, p["test_dir"])


def _shape(params: dict[str, Any]) -> Shape:
    p = _params(params)
    train, test = map(_scan, _splits(p)) if p["root"] is not None else (None, None)
    return Shape(
        channels=3,
        size=p["image_size"],
        num_classes=10 if train is None else len(train.classes),
        train_size=0 if train is None else len(train),
        test_size=0 if test is None else len(test),
    )


def _check(params: dict[str, Any]) -> None:
    p = _params(params)
    if p["root"] is None:
        raise DataMissingError(
            "imagefolder: 'data.root' is not set: give the folder that holds "
            f"'{p['train_dir']}/<class>/<image>.png' and '{p['test_dir']}/<class>/<image>.png' "
            "(--set data.root=PATH)."
        )
    train_dir, test_dir = _splits(p)
    for folder in (train_dir, test_dir):
        ds = _scan(folder)
        if ds is None or len(ds) == 0:
            raise DataMissingError(
                f"imagefolder: no images in {folder} (missing, empty, or without class "
                f"subfolders). Expected layout: {train_dir}/<class>/<image>.png and "
                f"{test_dir}/<class>/<image>.png, one subfolder per class with the same class "
                "names in both. Point 'data.root' at the folder that holds "
                f"'{p['train_dir']}' and '{p['test_dir']}' (--set data.root=PATH), or name the "
                "split folders with 'data.train_dir' / 'data.test_dir'."
            )


def _decode(ds: ImageFolder, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All of the folder's images as uint8 [N, 3, size, size] (threads decode), and labels."""
    from torchvision.transforms.v2 import functional as F

    x = torch.empty(len(ds), 3, size, size, dtype=torch.uint8)

    def one(i: int) -> None:
        path = ds.samples[i][0]
        try:
            img = ds.loader(path)  # PIL, converted to RGB
        except OSError as e:
            raise InputError(
                f"imagefolder: cannot read image {path}: {e}. Remove or replace it."
            ) from e
        x[i] = F.pil_to_tensor(F.center_crop(F.resize(img, [size]), [size]))

    with ThreadPoolExecutor() as pool:
        list(pool.map(one, range(len(ds))))
    return x, torch.tensor(ds.targets, dtype=torch.int64)


def _folders(p: dict[str, Any]) -> tuple[ImageFolder, ImageFolder]:
    """The checked train and test folders (same class subfolders in both)."""
    _check(p)
    train, test = (_scan(folder) for folder in _splits(p))
    assert train is not None and test is not None  # _check passed
    if train.classes != test.classes:
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        raise InputError(
            f"{p.get('dataset', 'imagefolder')}: the class folders of {test.root} differ from "
            f"those of {train.root}: only in '{p['train_dir']}': {', '.join(only_train) or '-'}; "
            f"only in '{p['test_dir']}': {', '.join(only_test) or '-'}. Give both folders the "
            "same class subfolders (an empty one is fine)."
        )
    return train, test


def stream_splits(params: dict[str, Any], mean_std: Any = None) -> StreamSplits:
    """The folders' files for stream mode (listed, never decoded here)."""
    p = _params(params) | params
    train, test = _folders(p)
    return StreamSplits(FileSource(train.samples), FileSource(test.samples),
                        num_classes=len(train.classes), image_size=p["image_size"],
                        mean_std=mean_std)


@DATASETS.register("imagefolder", shape=_shape, check=_check, stream=stream_splits)
def imagefolder(
    *, root: str, image_size: int = 64, train_dir: str = "train", test_dir: str = "val"
) -> ImageData:
    """Your own images, one subfolder per class (ImageFolder layout); streams or in memory."""
    p = {"root": root, "image_size": image_size, "train_dir": train_dir, "test_dir": test_dir}
    train, test = _folders(p)
    train_x, train_y = _decode(train, image_size)
    test_x, test_y = _decode(test, image_size)
    return ImageData(train_x, train_y, test_x, test_y, num_classes=len(train.classes))
