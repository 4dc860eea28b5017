"""The embedded datasets: scikit-learn's digits (fixed split) and generated synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from trainbench.data.base import DATASETS, Shape, dataset_shape
from trainbench.data.digits import digits
from trainbench.data.synthetic import synthetic


@pytest.fixture(scope="module")
def dig():
    return digits()


def test_digits_split_shapes_and_types(dig) -> None:
    assert dig.train_x.shape == (1437, 1, 8, 8) and dig.test_x.shape == (360, 1, 8, 8)
    assert dig.train_x.dtype == torch.uint8 and dig.test_x.dtype == torch.uint8
    assert dig.train_y.shape == (1437,) and dig.test_y.shape == (360,)
    assert dig.train_y.dtype == torch.int64 and dig.test_y.dtype == torch.int64
    assert dig.num_classes == 10
    assert dig.shape == (1, 8, 8)
    assert sorted(set(dig.train_y.tolist())) == list(range(10))
    assert sorted(set(dig.test_y.tolist())) == list(range(10))
    # 0..16 scaled to 0..255: both ends are reached
    assert int(dig.train_x.min()) == 0 and int(dig.train_x.max()) == 255


def test_digits_split_is_fixed(dig) -> None:
    again = digits()
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(dig, name), getattr(again, name)), name
    # recorded once; a change here changes every digits result ever published
    assert dig.train_y[:12].tolist() == [6, 6, 6, 2, 5, 6, 6, 2, 2, 1, 1, 9]
    assert dig.test_y[:12].tolist() == [0, 8, 8, 9, 8, 3, 7, 5, 0, 6, 6, 3]


def test_digits_split_is_the_documented_permutation(dig) -> None:
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(1797)
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    assert np.array_equal(dig.train_x.numpy(), images[order[:1437]])
    assert np.array_equal(dig.test_x.numpy(), images[order[1437:]])
    assert np.array_equal(dig.train_y.numpy(), bunch.target[order[:1437]])
    assert np.array_equal(dig.test_y.numpy(), bunch.target[order[1437:]])
    # train and test together are all of the data, each image exactly once
    assert sorted(order.tolist()) == list(range(1797))


def test_digits_resize(dig) -> None:
    big = digits(size=16)
    assert big.train_x.shape == (1437, 1, 16, 16) and big.test_x.shape == (360, 1, 16, 16)
    assert big.train_x.dtype == torch.uint8
    assert torch.equal(big.train_y, dig.train_y) and torch.equal(big.test_y, dig.test_y)
    # the documented resize: bilinear (align_corners=False) on 0..255 floats, then rounded
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(1797)
    src = torch.from_numpy(bunch.images[order].astype(np.float32) * (255.0 / 16.0))[:, None]
    want = F.interpolate(src, size=(16, 16), mode="bilinear", align_corners=False)
    want = want.round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(big.train_x, want[:1437]) and torch.equal(big.test_x, want[1437:])
    # and it is the same picture: per-image mean brightness is kept to within 3/255
    assert (big.train_x.float().mean((1, 2, 3)) - dig.train_x.float().mean((1, 2, 3))).abs().max() < 3
    assert dataset_shape("digits", {"size": 16}) == Shape(1, 16, 10, 1437, 360)
    assert dataset_shape("digits", {}) == Shape(1, 8, 10, 1437, 360)


def test_registered() -> None:
    assert DATASETS.get("digits") is digits
    assert DATASETS.get("synthetic") is synthetic


SMALL = dict(num_classes=5, channels=2, image_size=12, train_size=300, test_size=120)


def test_synthetic_shapes() -> None:
    d = synthetic(**SMALL, seed=0)
    assert d.train_x.shape == (300, 2, 12, 12) and d.test_x.shape == (120, 2, 12, 12)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert d.num_classes == 5
    assert sorted(set(d.train_y.tolist())) == [0, 1, 2, 3, 4]
    assert sorted(set(d.test_y.tolist())) == [0, 1, 2, 3, 4]
    assert dataset_shape("synthetic", SMALL) == Shape(2, 12, 5, 300, 120)
    assert dataset_shape("synthetic", {}) == Shape(3, 32, 10, 5000, 1000)


def test_synthetic_defaults() -> None:
    d = synthetic()
    assert d.train_x.shape == (5000, 3, 32, 32) and d.test_x.shape == (1000, 3, 32, 32)
    assert d.num_classes == 10


def test_synthetic_deterministic_per_seed() -> None:
    a, b, c = synthetic(**SMALL, seed=7), synthetic(**SMALL, seed=7), synthetic(**SMALL, seed=8)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.train_x, c.train_x)
    assert not torch.equal(a.test_x, c.test_x)
    assert not torch.equal(a.train_y, c.train_y)


def test_synthetic_noise_zero_is_the_prototypes() -> None:
    d = synthetic(**SMALL, noise=0.0, seed=1)
    for k in range(5):
        imgs = torch.cat([d.train_x[d.train_y == k], d.test_x[d.test_y == k]])
        assert (imgs == imgs[0]).all()  # every image of a class is its prototype
    protos = [d.train_x[d.train_y == k][0] for k in range(5)]
    assert len({p.numpy().tobytes() for p in protos}) == 5  # and the prototypes differ


def nearest_mean_accuracy(d) -> float:
    x = d.train_x.float().flatten(1)
    means = torch.stack([x[d.train_y == k].mean(0) for k in range(d.num_classes)])
    pred = torch.cdist(d.test_x.float().flatten(1), means).argmin(1)
    return (pred == d.test_y).float().mean().item()


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_is_learnable(seed: int) -> None:
    d = synthetic(**SMALL, seed=seed)
    assert nearest_mean_accuracy(d) > 0.9  # chance is 0.2
    # more noise is harder, but still far above chance
    hard = synthetic(**SMALL, noise=3.0, seed=seed)
    assert 0.8 < nearest_mean_accuracy(hard) <= nearest_mean_accuracy(d)
