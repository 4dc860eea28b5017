"""Class-stratified subsets (data.train_subset / test_subset, smoke mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainbench.data.subset import class_quotas, stratified_subset, subset_split
from trainbench.engine import load_data
from trainbench.recipe import load_recipe
from trainbench.smoke import TEST_IMAGES, TRAIN_IMAGES, smoke_data

QUICKSTART = Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml"


def sorted_labels(counts: list[int]) -> torch.Tensor:
    """Labels stored grouped by class, as imagefolder stores them."""
    return torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])


def test_quotas_are_proportional_with_largest_remainders() -> None:
    rng = np.random.default_rng(0)
    # 10 of 100 with shares 50/30/20 -> exactly 5/3/2; 7 of 100 -> 3.5/2.1/1.4 -> 4/2/1
    assert class_quotas(np.array([50, 30, 20]), 10, rng).tolist() == [5, 3, 2]
    assert class_quotas(np.array([50, 30, 20]), 7, rng).tolist() == [4, 2, 1]
    assert class_quotas(np.array([5, 5]), 100, rng).tolist() == [5, 5]


def test_quota_ties_do_not_favour_the_first_classes() -> None:
    # 100 equal classes, 64 images: 64 classes get one; which ones is a seeded draw.
    counts = np.full(100, 10)
    picked = [np.flatnonzero(class_quotas(counts, 64, np.random.default_rng(s))) for s in range(5)]
    assert all(len(p) == 64 for p in picked)
    assert any(p.max() == 99 for p in picked) and not all(p.tolist() == list(range(64)) for p in picked)


def test_subset_of_class_sorted_labels_is_balanced() -> None:
    labels = sorted_labels([100, 100, 100, 100])
    idx = stratified_subset(labels, 40)
    assert len(idx) == 40 and len(set(idx.tolist())) == 40
    assert torch.bincount(labels[idx]).tolist() == [10, 10, 10, 10]
    assert idx.tolist() == sorted(idx.tolist())  # stored order
    # within a class the images are drawn, not its first ones
    assert idx[:10].tolist() != list(range(10))


def test_subset_is_deterministic_and_the_seed_matters() -> None:
    labels = sorted_labels([30, 50, 20])
    assert torch.equal(stratified_subset(labels, 17), stratified_subset(labels, 17))
    assert torch.equal(stratified_subset(labels, 17, seed=3), stratified_subset(labels, 17, seed=3))
    assert not torch.equal(stratified_subset(labels, 17, seed=0), stratified_subset(labels, 17, seed=1))


def test_subset_larger_than_the_data_is_all_of_it() -> None:
    labels = sorted_labels([3, 4])
    assert stratified_subset(labels, 7).tolist() == list(range(7))
    assert stratified_subset(labels, 1000).tolist() == list(range(7))
    x = torch.arange(7)
    assert subset_split(x, labels, None)[0] is x and subset_split(x, labels, 50)[0] is x


def test_load_data_subsets_are_stratified_and_seed_independent() -> None:
    sets = ["data.train_subset=100", "data.test_subset=50"]
    data0, n0, _ = load_data(load_recipe(QUICKSTART, [*sets, "seed=0"]), smoke=False)
    data1, _, _ = load_data(load_recipe(QUICKSTART, [*sets, "seed=7"]), smoke=False)
    full, _, _ = load_data(load_recipe(QUICKSTART, ["seed=0"]), smoke=False)
    assert n0 == 100 and len(data0.test_y) == 50
    assert torch.equal(data0.train_x, data1.train_x) and torch.equal(data0.test_y, data1.test_y)
    share = torch.bincount(full.train_y, minlength=full.num_classes).double() / len(full.train_y)
    got = torch.bincount(data0.train_y, minlength=full.num_classes).double()
    assert ((got - 100 * share).abs() < 1).all()  # each class within one image of its share


def test_smoke_subset_of_a_class_sorted_imagefolder_covers_every_class(tmp_path: Path) -> None:
    classes, per_class = 8, 20  # 160 images stored class by class: the first 64 are 4 classes
    for split in ("train", "val"):
        for c in range(classes):
            for i in range(per_class):
                path = tmp_path / split / f"class{c}" / f"{i:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("L", (4, 4), c * 30).save(path)
    section = {"dataset": "imagefolder", "root": str(tmp_path), "image_size": 4,
               "train_dir": "train", "test_dir": "val"}
    data, synthetic = smoke_data(section, seed=0)
    assert not synthetic and len(data.train_y) == TRAIN_IMAGES
    assert torch.bincount(data.train_y).tolist() == [8] * classes
    assert torch.bincount(data.test_y).tolist() == [TEST_IMAGES // classes] * classes
