"""ImageNet (ILSVRC-2012) in torchvision's ImageNet folder layout, streamed from disk.

``data.root`` (default ``data/imagenet``) holds ``train/`` and ``val/``, each with one folder
per class (the WordNet ids, e.g. ``n01440764/``) holding the JPEGs: 1,281,167 training and
50,000 validation images of 1,000 classes (the validation images sorted into class folders,
as torchvision's ``ImageNet`` class and the usual ``valprep.sh`` do). Read as an
:mod:`~trainbench.data.imagefolder` with these folder names; normalised with ImageNet's
standard per-channel mean and std. ``data.image_size`` (default 224) is the training crop.
Stream mode is what it is for (``auto`` picks it wherever the 190 GB of uint8 do not fit).
"""

from __future__ import annotations

import os
from typing import Any

from trainbench.data import imagefolder
from trainbench.data.base import DATASETS, ImageData, Shape
from trainbench.data.stream import StreamSplits
from trainbench.errors import DataMissingError

DEFAULT_ROOT = os.path.join("data", "imagenet")
TRAIN_SIZE, VAL_SIZE, CLASSES = 1_281_167, 50_000, 1000
MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's ImageNet weights'


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {"root": params.get("root", DEFAULT_ROOT), "image_size": params.get("image_size", 224),
            "train_dir": "train", "test_dir": "val", "dataset": "imagenet"}


def _shape(params: dict[str, Any]) -> Shape:
    return Shape(3, _params(params)["image_size"], CLASSES, TRAIN_SIZE, VAL_SIZE)


def _check(params: dict[str, Any]) -> None:
    """Fast: the two split folders exist and hold class folders (their files are listed only
    when the run starts: 1.28 M names take a while)."""
    root = os.path.abspath(os.path.expanduser(_params(params)["root"]))
    for split in ("train", "val"):
        folder = os.path.join(root, split)
        try:
            has_classes = any(e.is_dir() for e in os.scandir(folder))
        except OSError:
            has_classes = False
        if not has_classes:
            raise DataMissingError(
                f"imagenet: no class folders in {folder}. Expected torchvision's ImageNet layout: "
                f"{root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG (the validation images "
                "sorted into class folders, e.g. with valprep.sh). Point 'data.root' at the "
                "folder that holds 'train' and 'val' (--set data.root=PATH)."
            )


def stream_splits(params: dict[str, Any]) -> StreamSplits:
    return imagefolder.stream_splits(_params(params), mean_std=MEAN_STD)


@DATASETS.register("imagenet", shape=_shape, check=_check, stream=stream_splits)
def imagenet(*, root: str = DEFAULT_ROOT, image_size: int = 224) -> ImageData:
    """ImageNet-1k (torchvision's train/ val/ class-folder layout); streams from disk."""
    _check({"root": root})
    return imagefolder.imagefolder(root=root, image_size=image_size)
