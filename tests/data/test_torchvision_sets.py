"""The torchvision-backed loaders, on tiny files written in the real on-disk formats."""

from __future__ import annotations

import os
import pickle
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from trainbench.data.base import DATASETS, Shape, check_dataset, dataset_shape
from trainbench.data.torchvision_sets import cifar10, cifar100, fashion_mnist, mnist, svhn
from trainbench.errors import DataMissingError
from trainbench.registry import params_of

NAMES = ["cifar10", "cifar100", "mnist", "fashion_mnist", "svhn"]
FOLDERS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "mnist": "MNIST/raw",
    "fashion_mnist": "FashionMNIST/raw",
    "svhn": "",
}


def pickle_to(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def cifar_images(n: int, first: int) -> np.ndarray:
    """[n, 3072] rows (R plane, G plane, B plane, each 32x32 row-major); image i is all i+first."""
    return np.repeat(np.arange(first, first + n, dtype=np.uint8)[:, None], 3072, axis=1)


def write_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    for b in range(1, 6):
        data = cifar_images(2, first=10 * b)
        if b == 1:
            data[0] = 0
            data[0, :1024] = 255  # red plane of the first training image
            data[0, 1024 + 3 * 32 + 5] = 77  # green, row 3, column 5
        pickle_to(folder / f"data_batch_{b}", {"data": data, "labels": [b, b + 1]})
    pickle_to(folder / "test_batch", {"data": cifar_images(3, first=100), "labels": [7, 8, 9]})
    pickle_to(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    train = cifar_images(4, first=1)
    train[1, 2048:] = 200  # blue plane of the second image
    pickle_to(
        folder / "train", {"data": train, "fine_labels": [0, 99, 5, 42], "coarse_labels": [0] * 4}
    )
    pickle_to(
        folder / "test",
        {"data": cifar_images(2, first=50), "fine_labels": [98, 1], "coarse_labels": [1, 1]},
    )
    pickle_to(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    header = struct.pack(">IIII", 2051, n, 28, 28)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.astype(np.uint8).tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + bytes(labels)
    )


def write_mnist(root: Path, name: str) -> None:
    folder = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
    train = np.zeros((3, 28, 28), np.uint8)
    train[0, 3, 5] = 255
    train[2, 27, 0] = 9
    write_idx(folder, "train", train, [5, 0, 9])
    write_idx(folder, "t10k", np.full((2, 28, 28), 4), [1, 2])


def write_svhn(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    x = np.zeros((32, 32, 3, 3), np.uint8)  # MATLAB layout: row, column, channel, image
    x[3, 5, 0, 0] = 200
    x[31, 0, 2, 1] = 17
    scipy.io.savemat(root / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [9]], np.uint8)})
    test = np.zeros((32, 32, 3, 2), np.uint8)
    scipy.io.savemat(root / "test_32x32.mat", {"X": test, "y": np.array([[3], [10]], np.uint8)})


WRITERS = {
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "mnist": lambda root: write_mnist(root, "mnist"),
    "fashion_mnist": lambda root: write_mnist(root, "fashion_mnist"),
    "svhn": write_svhn,
}


def test_cifar10(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    check_dataset("cifar10", {"root": str(tmp_path)})
    data = cifar10(root=str(tmp_path))
    assert data.train_x.shape == (10, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (3, 3, 32, 32) and data.test_y.dtype == torch.int64
    assert data.num_classes == 10
    assert data.train_y.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert data.test_y.tolist() == [7, 8, 9]
    first = data.train_x[0]
    assert (first[0] == 255).all()  # red plane -> channel 0
    assert first[1, 3, 5] == 77 and first[1].sum() == 77  # green pixel stays at row 3, column 5
    assert (first[2] == 0).all()
    assert (data.train_x[1] == 11).all() and (data.train_x[9] == 51).all()  # batch order kept
    assert (data.test_x[2] == 102).all()


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    data = cifar100(root=str(tmp_path))
    assert data.train_x.shape == (4, 3, 32, 32) and data.test_x.shape == (2, 3, 32, 32)
    assert data.num_classes == 100
    assert data.train_y.tolist() == [0, 99, 5, 42] and data.test_y.tolist() == [98, 1]
    assert (data.train_x[1, 2] == 200).all() and (data.train_x[1, :2] == 2).all()


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_idx(tmp_path: Path, name: str) -> None:
    write_mnist(tmp_path, name)
    check_dataset(name, {"root": str(tmp_path)})
    data = {"mnist": mnist, "fashion_mnist": fashion_mnist}[name](root=str(tmp_path))
    assert data.train_x.shape == (3, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (2, 1, 28, 28)
    assert data.train_y.dtype == torch.int64 and data.train_y.tolist() == [5, 0, 9]
    assert data.test_y.tolist() == [1, 2] and (data.test_x == 4).all()
    assert data.train_x[0, 0, 3, 5] == 255 and data.train_x[0].sum() == 255
    assert data.train_x[2, 0, 27, 0] == 9 and data.train_x[2].sum() == 9
    assert data.num_classes == 10


def test_svhn_mat(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    check_dataset("svhn", {"root": str(tmp_path)})
    data = svhn(root=str(tmp_path))
    assert data.train_x.shape == (3, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (2, 3, 32, 32)
    assert data.train_y.tolist() == [0, 1, 9] and data.test_y.tolist() == [3, 0]  # 10 -> 0
    assert data.train_y.dtype == torch.int64
    assert data.train_x[0, 0, 3, 5] == 200 and data.train_x[0].sum() == 200
    assert data.train_x[1, 2, 31, 0] == 17 and data.train_x[1].sum() == 17


@pytest.mark.parametrize("name", NAMES)
def test_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)  # the default root 'data' resolves against the working directory
    where = os.path.normpath(tmp_path / "data" / FOLDERS[name])
    with pytest.raises(DataMissingError) as err:
        DATASETS.get(name)()
    message = str(err.value)
    assert message.startswith(f"{name}: files not found under {tmp_path / 'data'} (")
    assert f"in {where}; missing: all)" in message
    assert "'data.root'" in message and "'data.download: true'" in message and "\n" not in message
    with pytest.raises(DataMissingError) as checked:
        check_dataset(name, {})
    assert str(checked.value) == message


def test_missing_lists_the_missing_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataMissingError, match=r"missing: test_batch\)"):
        check_dataset("cifar10", {"root": str(tmp_path), "download": False})
    write_mnist(tmp_path, "mnist")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataMissingError, match=r"missing: t10k-labels-idx1-ubyte\)"):
        mnist(root=str(tmp_path))


@pytest.mark.parametrize("name", NAMES)
def test_download_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataMissingError, match=r"Downloading failed: .*no network in tests") as err:
        DATASETS.get(name)(root=str(tmp_path), download=True)
    assert f"files not found under {tmp_path}" in str(err.value)


def test_download_fetches_only_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = []

    def offline(request: urllib.request.Request, *args: object, **kwargs: object) -> None:
        urls.append(request.full_url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataMissingError, match=r"missing: test_32x32\.mat\)"):
        svhn(root=str(tmp_path), download=True)
    assert urls and all(url.endswith("/test_32x32.mat") for url in urls)


def test_download_skipped_when_files_are_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing should be downloaded")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    write_svhn(tmp_path)
    assert svhn(root=str(tmp_path), download=True).train_x.shape == (3, 3, 32, 32)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("cifar10", Shape(3, 32, 10, 50_000, 10_000)),
        ("cifar100", Shape(3, 32, 100, 50_000, 10_000)),
        ("mnist", Shape(1, 28, 10, 60_000, 10_000)),
        ("fashion_mnist", Shape(1, 28, 10, 60_000, 10_000)),
        ("svhn", Shape(3, 32, 10, 73_257, 26_032)),
    ],
)
def test_registered_shape_and_params(name: str, shape: Shape) -> None:
    assert dataset_shape(name, {}) == shape
    specs = params_of(DATASETS.get(name))
    assert [(s.name, s.default) for s in specs.values()] == [("root", "data"), ("download", False)]
