"""Smoke mode (``trainbench run --smoke``): any recipe shrunk to seconds on a CPU.

Time is dilated rather than cut: an epoch becomes at most two steps and the whole run at
most ``MAX_STEPS`` steps, with 'ba'/'sp' times scaled by the same factor, so every phase of
the schedule (warmup, each cycle) and every method event still happens, at least one step
each. The data is a small class-stratified subset (:mod:`trainbench.data.subset`: every
class keeps its share, the same images for every seed; for datasets read from files only
those files are decoded) -- or synthetic images of the same shape when the dataset's files
are absent -- with small batches and a small evaluation, held on the device whatever
``data.loader`` says, and images larger than ``MAX_SIDE`` pixels shrunk to it. On a
CPU a smoke run trains in fp32 whatever the recipe's precision (:mod:`trainbench.precision`).
"""

from __future__ import annotations

from typing import Any

from trainbench.data import DATASETS, ImageData, check_dataset, dataset_shape
from trainbench.data.subset import subset_split
from trainbench.errors import DataMissingError
from trainbench.registry import instantiate
from trainbench.timeunits import Clock

MAX_STEPS = 16
MAX_STEPS_PER_EPOCH = 2.0
# Small enough that every shipped recipe smokes in under 3 minutes on a 2-core AVX2 CPU
# (`trainbench run recipes/*/*.yaml --smoke`, the CI use): a ResNet-9 step and evaluation
# cost in proportion to the images they see.
BATCH_SIZE = 4
TRAIN_IMAGES = 64
TEST_IMAGES = 16
# Images larger than this are shrunk to it (files decoded at this size, or synthetic
# stand-ins made at it). 32 px is the coarsest input that an ImageNet network's 32x
# down-sampling still maps to a 1x1 feature map, so the recipe's own model runs every layer;
# a ResNet-50 step at ImageNet's 224 px costs ~49x the multiply-adds of one at 32 px
# (trainbench.flops: 4.1 G vs 85 M per image), which keeps the ImageNet recipes' smoke at
# the cost of the CIFAR ones. Models that need a fixed input size are not in the shipped
# recipes.
MAX_SIDE = 32
# Periodic evaluation (eval.every) at most this many times: dilated time would otherwise
# put an evaluation after every step (a CIFAR recipe's 'every: 2ep' is every 1.3 smoke
# steps), and evaluation would cost more than the training it checks. Curve points and
# the final step are evaluated whatever this says.
MAX_PERIODIC_EVALS = 4


def _streamed_subset(section: dict[str, Any], side: int) -> ImageData:
    """A stream-mode dataset's smoke subset, decoding only those files."""
    from trainbench.data.sources import image_data
    from trainbench.data.subset import stratified_subset

    splits = DATASETS.entry(section["dataset"]).extra["stream"](section)
    train = splits.train.subset(stratified_subset(splits.train.labels, TRAIN_IMAGES))
    test = splits.test.subset(stratified_subset(splits.test.labels, TEST_IMAGES))
    return image_data(train, test, side, splits.num_classes)


def smoke_clock(duration: str, batch_size: int, real_train_size: int) -> Clock:
    real_spe = max(real_train_size // batch_size, 1)
    total_real = Clock(real_spe, batch_size).steps(duration)
    epochs = total_real / real_spe
    spe = min(MAX_STEPS_PER_EPOCH, MAX_STEPS / max(epochs, 1e-9))
    total = max(1, round(epochs * spe))
    return Clock(spe, batch_size, total, batch_scale=spe / real_spe)


def smoke_data(section: dict[str, Any], seed: int) -> tuple[ImageData, bool]:
    """A small class-stratified subset of the dataset, or same-shape synthetic data if its
    files are absent. Returns the data and whether it is synthetic."""
    name = section["dataset"]
    shape = dataset_shape(name, section)
    side = min(shape.size, MAX_SIDE)
    try:
        check_dataset(name, section)
        if "stream" in DATASETS.entry(name).extra:  # decode the subset alone, at most MAX_SIDE
            data = _streamed_subset(section, side)
        else:
            data = instantiate(DATASETS.get(name), section)
        synthetic = False
    except DataMissingError:
        data = DATASETS.get("synthetic")(
            num_classes=shape.num_classes, channels=shape.channels, image_size=side,
            train_size=TRAIN_IMAGES, test_size=TEST_IMAGES, seed=seed)
        synthetic = True
    return ImageData(*subset_split(data.train_x, data.train_y, TRAIN_IMAGES),
                     *subset_split(data.test_x, data.test_y, TEST_IMAGES),
                     data.num_classes), synthetic
