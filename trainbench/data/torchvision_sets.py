"""The classic small datasets, read from torchvision's on-disk layouts.

``data.root`` (default ``data``, relative to the working directory) holds:

- cifar10: ``cifar-10-batches-py/`` with the pickles ``data_batch_1`` .. ``data_batch_5``,
  ``test_batch`` and ``batches.meta`` (the extracted ``cifar-10-python.tar.gz``).
- cifar100: ``cifar-100-python/`` with the pickles ``train``, ``test`` and ``meta``
  (the extracted ``cifar-100-python.tar.gz``); labels are the 100 fine labels.
- mnist / fashion_mnist: ``MNIST/raw/`` / ``FashionMNIST/raw/`` with the uncompressed idx files
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
  ``t10k-labels-idx1-ubyte``.
- svhn: ``train_32x32.mat`` and ``test_32x32.mat`` (MATLAB files, X [32, 32, 3, N] and y [N, 1],
  read with scipy); torchvision maps SVHN's label 10 (the digit 0) to 0.

torchvision's dataset classes parse the files, and their ``.data`` / ``.targets`` / ``.labels``
arrays become tensors directly (no per-item PIL images). Their per-file md5 checks are replaced
by existence checks, so that subsets and rebuilt files load; a download (``data.download: true``)
still verifies the md5 of what it fetches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace
from typing import Any, ClassVar

import torch

from trainbench.data.base import DATASETS, ImageData, Shape
from trainbench.errors import DataMissingError

DEFAULT_ROOT = "data"

Reader = Callable[[str, bool, bool], tuple[torch.Tensor, torch.Tensor]]  # root, train, download


@cache
def _patched() -> SimpleNamespace:
    """torchvision's dataset classes, patched so the files need only exist (their md5s are
    those of the full originals). Built on first use: importing torchvision takes seconds,
    and `trainbench show`/`validate` should not pay for it."""
    from torchvision import datasets

    class CIFAR10(datasets.CIFAR10):
        meta: ClassVar[dict[str, Any]] = {**datasets.CIFAR10.meta, "md5": None}

        def _check_integrity(self) -> bool:
            files = [name for name, _ in self.train_list + self.test_list]
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f in files)

    class CIFAR100(datasets.CIFAR100):
        meta: ClassVar[dict[str, Any]] = {**datasets.CIFAR100.meta, "md5": None}
        _check_integrity = CIFAR10._check_integrity

    class SVHN(datasets.SVHN):
        def _check_integrity(self) -> bool:
            return os.path.isfile(os.path.join(self.root, self.filename))

        def download(self) -> None:  # torchvision's would re-fetch a file whose md5 differs
            if not self._check_integrity():
                super().download()

    return SimpleNamespace(CIFAR10=CIFAR10, CIFAR100=CIFAR100, SVHN=SVHN,
                           MNIST=datasets.MNIST, FashionMNIST=datasets.FashionMNIST)


def _cifar(cls: str) -> Reader:
    def read(root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ds = getattr(_patched(), cls)(root, train=train, download=download)  # .data: uint8 [N, 32, 32, 3]
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

    return read


def _mnist(cls: str) -> Reader:
    def read(root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ds = getattr(_patched(), cls)(root, train=train, download=download)  # .data: uint8 [N, 28, 28]
        return ds.data.unsqueeze(1), ds.targets

    return read


def _svhn(root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    ds = _patched().SVHN(root, split="train" if train else "test", download=download)  # uint8 [N, 3, 32, 32]
    return torch.from_numpy(ds.data).contiguous(), torch.from_numpy(ds.labels).reshape(-1)


@dataclass(frozen=True)
class _Spec:
    name: str
    shape: Shape
    folder: str  # where the files lie, relative to data.root
    files: tuple[str, ...]
    source: str  # what to put in the folder
    read: Reader

    def missing(self, root: str) -> list[str]:
        return [f for f in self.files if not os.path.isfile(os.path.join(root, self.folder, f))]

    def missing_message(self, root: str, missing: list[str]) -> str:
        where = os.path.normpath(os.path.join(root, self.folder))
        holder = f"'{self.folder.split(os.sep)[0]}'" if self.folder else "them"
        which = "all" if len(missing) == len(self.files) else ", ".join(missing)
        return (
            f"{self.name}: files not found under {root} (expected {', '.join(self.files)} "
            f"in {where}; missing: {which}). Put {self.source} in {where}, "
            f"point 'data.root' at the folder that holds {holder} (--set data.root=PATH), "
            "or set 'data.download: true' (--set data.download=true) on a machine with "
            "internet access."
        )

    def check(self, params: dict[str, Any]) -> None:
        root = _resolve(params.get("root", DEFAULT_ROOT))
        if missing := self.missing(root):
            raise DataMissingError(self.missing_message(root, missing))

    def load(self, root: str, download: bool) -> ImageData:
        root = _resolve(root)
        missing = self.missing(root)
        if missing and not download:
            raise DataMissingError(self.missing_message(root, missing))
        try:  # download only when files are missing
            train_x, train_y = self.read(root, True, bool(missing))
            test_x, test_y = self.read(root, False, bool(missing))
        except (OSError, RuntimeError) as e:  # no internet, or a fetch that came back broken
            if not missing:
                raise
            reason = " ".join(str(e).split())
            raise DataMissingError(
                f"{self.missing_message(root, missing)} "
                f"Downloading failed: {type(e).__name__}: {reason}"
            ) from e
        return ImageData(train_x, train_y, test_x, test_y, self.shape.num_classes)


def _resolve(root: str) -> str:
    return os.path.abspath(os.path.expanduser(root))


_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_SOURCE = "the four idx files, uncompressed (gunzip the downloaded .gz files)"

_SPECS = {
    s.name: s
    for s in (
        _Spec(
            "cifar10",
            Shape(3, 32, 10, 50_000, 10_000),
            "cifar-10-batches-py",
            (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
            "the contents of the extracted 'cifar-10-python.tar.gz'",
            _cifar("CIFAR10"),
        ),
        _Spec(
            "cifar100",
            Shape(3, 32, 100, 50_000, 10_000),
            "cifar-100-python",
            ("train", "test", "meta"),
            "the contents of the extracted 'cifar-100-python.tar.gz'",
            _cifar("CIFAR100"),
        ),
        _Spec(
            "mnist",
            Shape(1, 28, 10, 60_000, 10_000),
            os.path.join("MNIST", "raw"),
            _IDX_FILES,
            _IDX_SOURCE,
            _mnist("MNIST"),
        ),
        _Spec(
            "fashion_mnist",
            Shape(1, 28, 10, 60_000, 10_000),
            os.path.join("FashionMNIST", "raw"),
            _IDX_FILES,
            _IDX_SOURCE,
            _mnist("FashionMNIST"),
        ),
        _Spec(
            "svhn",
            Shape(3, 32, 10, 73_257, 26_032),
            "",
            ("train_32x32.mat", "test_32x32.mat"),
            "'train_32x32.mat' and 'test_32x32.mat' (http://ufldl.stanford.edu/housenumbers/)",
            _svhn,
        ),
    )
}


def _extras(name: str) -> dict[str, Any]:
    return {"shape": _SPECS[name].shape, "check": _SPECS[name].check}


@DATASETS.register("cifar10", **_extras("cifar10"))
def cifar10(*, root: str = DEFAULT_ROOT, download: bool = False) -> ImageData:
    """CIFAR-10: 50k/10k 32x32 colour images, 10 classes."""
    return _SPECS["cifar10"].load(root, download)


@DATASETS.register("cifar100", **_extras("cifar100"))
def cifar100(*, root: str = DEFAULT_ROOT, download: bool = False) -> ImageData:
    """CIFAR-100: 50k/10k 32x32 colour images, 100 fine classes."""
    return _SPECS["cifar100"].load(root, download)


@DATASETS.register("mnist", **_extras("mnist"))
def mnist(*, root: str = DEFAULT_ROOT, download: bool = False) -> ImageData:
    """MNIST: 60k/10k 28x28 greyscale handwritten digits, 10 classes."""
    return _SPECS["mnist"].load(root, download)


@DATASETS.register("fashion_mnist", **_extras("fashion_mnist"))
def fashion_mnist(*, root: str = DEFAULT_ROOT, download: bool = False) -> ImageData:
    """Fashion-MNIST: 60k/10k 28x28 greyscale clothing images, 10 classes."""
    return _SPECS["fashion_mnist"].load(root, download)


@DATASETS.register("svhn", **_extras("svhn"))
def svhn(*, root: str = DEFAULT_ROOT, download: bool = False) -> ImageData:
    """SVHN: 73k/26k 32x32 colour house-number digits, 10 classes (extra split not used)."""
    return _SPECS["svhn"].load(root, download)
