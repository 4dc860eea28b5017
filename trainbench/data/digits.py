"""scikit-learn's bundled 8x8 handwritten digits: real data, no download.

1,797 greyscale images, 10 classes, pixel values 0..16 (scaled here to 0..255).
The split is fixed and documented: a permutation of all images drawn with
``numpy.random.default_rng(0)``; the first 1,437 are the training set, the last 360
(20 %) the test set. ``size`` resizes (bilinear) once at load time, e.g. to 32 for
models that down-sample five times.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from trainbench.data.base import DATASETS, ImageData, Shape
from trainbench.registry import PosInt

TEST_SIZE = 360
TOTAL = 1797


def _digits_shape(params: dict) -> Shape:
    return Shape(1, params.get("size", 8), 10, TOTAL - TEST_SIZE, TEST_SIZE)


@DATASETS.register("digits", shape=_digits_shape)
def digits(*, size: PosInt = 8) -> ImageData:
    """scikit-learn's 8x8 handwritten digits (1,437 train / 360 test), bundled."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    x = images.round().clamp_(0, 255).to(torch.uint8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    x, y = x[order], y[order]
    n_train = len(y) - TEST_SIZE
    return ImageData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=10)
