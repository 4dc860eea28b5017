"""Synthetic images: learnable, any shape and size, generated in memory from a fixed seed.

Each class has a random smooth prototype image; a sample is its class prototype plus
per-pixel noise, so accuracy rises with training like on real data and the difficulty is
set by ``noise``. Meant for speed tests at CIFAR/ImageNet shapes and for smoke runs of
recipes whose dataset files are absent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainbench.data.base import DATASETS, ImageData, Shape
from trainbench.registry import NonNegFloat, PosInt


def _synthetic_shape(p: dict) -> Shape:
    return Shape(p.get("channels", 3), p.get("image_size", 32), p.get("num_classes", 10),
                 p.get("train_size", 5000), p.get("test_size", 1000))


def make_images(n: int, prototypes: torch.Tensor, noise: float,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k = prototypes.shape[0]
    y = torch.randint(0, k, (n,), generator=gen)
    x = prototypes[y] + noise * torch.randn((n, *prototypes.shape[1:]), generator=gen)
    return (x * 64 + 128).round().clamp_(0, 255).to(torch.uint8), y


@DATASETS.register("synthetic", shape=_synthetic_shape)
def synthetic(*, num_classes: PosInt = 10, channels: PosInt = 3, image_size: PosInt = 32,
              train_size: PosInt = 5000, test_size: PosInt = 1000, noise: NonNegFloat = 1.0,
              seed: int = 0) -> ImageData:
    """Generated class-prototype images of any shape (for speed tests and smoke runs)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn((num_classes, channels, 4, 4), generator=gen)
    prototypes = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear",
                               align_corners=False)
    train_x, train_y = make_images(train_size, prototypes, noise, gen)
    test_x, test_y = make_images(test_size, prototypes, noise, gen)
    return ImageData(train_x, train_y, test_x, test_y, num_classes=num_classes)
