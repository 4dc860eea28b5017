"""The imagefolder loader, on tiny PNG folders written with PIL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from trainbench.data.base import Shape, check_dataset, dataset_shape
from trainbench.data.imagefolder import imagefolder
from trainbench.errors import DataMissingError, InputError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(path: Path, size: tuple[int, int], color: tuple[int, ...], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def stripes(path: Path) -> None:
    """60 wide, 20 high: red, green and blue thirds; the center 20x20 crop is all green."""
    img = Image.new("RGB", (60, 20), RED)
    img.paste(GREEN, (20, 0, 40, 20))
    img.paste(BLUE, (40, 0, 60, 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def tall(path: Path) -> None:
    """40 wide, 80 high, red top 10 rows: at size 20 it becomes 20x40, cropped to rows 10..30."""
    img = Image.new("RGB", (40, 80), BLUE)
    img.paste(RED, (0, 0, 40, 10))
    img.save(path)


def make_tree(root: Path) -> None:
    stripes(root / "train" / "cat" / "a.png")
    tall(root / "train" / "cat" / "b.png")
    solid(root / "train" / "dog" / "sub" / "c.png", (7, 9), 128, mode="L")  # grey, nested
    solid(root / "train" / "dog" / "d.png", (33, 50), (10, 20, 30, 255), mode="RGBA")
    solid(root / "val" / "cat" / "e.png", (20, 20), (1, 2, 3))
    solid(root / "val" / "dog" / "f.png", (100, 64), (4, 5, 6))
    (root / "train" / "dog" / "notes.txt").write_text("not an image")


def test_loads_resizes_and_crops(tmp_path: Path) -> None:
    make_tree(tmp_path)
    check_dataset("imagefolder", {"root": str(tmp_path), "image_size": 20})
    data = imagefolder(root=str(tmp_path), image_size=20)
    assert data.train_x.shape == (4, 3, 20, 20) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (2, 3, 20, 20) and data.test_y.dtype == torch.int64
    assert data.num_classes == 2
    assert data.train_y.tolist() == [0, 0, 1, 1] and data.test_y.tolist() == [0, 1]
    color = torch.tensor(GREEN, dtype=torch.uint8)[:, None, None]
    assert (data.train_x[0] == color).all()  # center crop of the stripes
    assert (data.train_x[1] == torch.tensor(BLUE, dtype=torch.uint8)[:, None, None]).all()
    assert data.train_x[2, :, 10, 10].tolist() == [10, 20, 30]  # RGBA -> RGB
    assert (data.train_x[3] == 128).all()  # greyscale -> 3 equal channels (sub/ sorts last)
    assert data.test_x[1, :, 0, 0].tolist() == [4, 5, 6]


def test_custom_split_folders(tmp_path: Path) -> None:
    solid(tmp_path / "tr" / "b" / "x.png", (8, 8), RED)
    solid(tmp_path / "tr" / "a" / "x.png", (8, 8), GREEN)
    solid(tmp_path / "te" / "a" / "x.png", (8, 8), BLUE)
    (tmp_path / "te" / "b").mkdir()  # an empty class folder in the test split is fine
    data = imagefolder(root=str(tmp_path), image_size=4, train_dir="tr", test_dir="te")
    assert data.train_y.tolist() == [0, 1] and data.test_y.tolist() == [0]
    assert data.train_x[0, :, 0, 0].tolist() == list(GREEN)  # class 'a' sorts first


def test_class_mismatch(tmp_path: Path) -> None:
    make_tree(tmp_path)
    solid(tmp_path / "val" / "bird" / "g.png", (8, 8), RED)
    with pytest.raises(InputError) as err:
        imagefolder(root=str(tmp_path))
    assert not isinstance(err.value, DataMissingError)
    message = str(err.value)
    assert f"{tmp_path / 'val'} differ from those of {tmp_path / 'train'}" in message
    assert "only in 'train': -; only in 'val': bird." in message


@pytest.mark.parametrize("state", ["absent", "no class folders", "no images"])
def test_missing_test_folder(tmp_path: Path, state: str) -> None:
    make_tree(tmp_path)
    for f in (tmp_path / "val").rglob("*.png"):
        f.unlink()
    if state != "no images":
        for d in (tmp_path / "val" / "cat", tmp_path / "val" / "dog"):
            d.rmdir()
    if state == "absent":
        (tmp_path / "val").rmdir()
    with pytest.raises(DataMissingError) as err:
        imagefolder(root=str(tmp_path))
    message = str(err.value)
    assert message.startswith(f"imagefolder: no images in {tmp_path / 'val'} (")
    assert f"{tmp_path / 'train'}/<class>/<image>.png" in message
    assert f"{tmp_path / 'val'}/<class>/<image>.png" in message
    assert "'data.root'" in message and "'data.test_dir'" in message
    with pytest.raises(DataMissingError) as checked:
        check_dataset("imagefolder", {"root": str(tmp_path)})
    assert str(checked.value) == message


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(
        DataMissingError, match=re.escape(f"no images in {tmp_path / 'nope' / 'train'} ")
    ):
        check_dataset("imagefolder", {"root": str(tmp_path / "nope")})
    with pytest.raises(DataMissingError, match=r"'data\.root' is not set"):
        check_dataset("imagefolder", {})


def test_unreadable_image(tmp_path: Path) -> None:
    make_tree(tmp_path)
    bad = tmp_path / "train" / "dog" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError, match=re.escape(f"cannot read image {bad}")):
        imagefolder(root=str(tmp_path))


def test_shape(tmp_path: Path) -> None:
    make_tree(tmp_path)
    assert dataset_shape("imagefolder", {"root": str(tmp_path), "image_size": 32}) == Shape(
        3, 32, 2, 4, 2
    )
    assert dataset_shape("imagefolder", {"root": str(tmp_path / "nope")}) == Shape(3, 64, 10, 0, 0)
    assert dataset_shape("imagefolder", {}) == Shape(3, 64, 10, 0, 0)
