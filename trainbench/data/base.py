"""What every dataset loader returns, and the dataset registry.

A loader is a function with keyword-only recipe parameters (``data.<param>`` in a recipe)
that returns :class:`ImageData`: uint8 images in NCHW layout and int64 labels, on the CPU.
The engine moves them to the run's device once and augments/normalises there in batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from trainbench.registry import Registry


@dataclass
class ImageData:
    train_x: torch.Tensor  # uint8 [N, C, H, W]
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor  # uint8 [M, C, H, W]
    test_y: torch.Tensor  # int64 [M]
    num_classes: int

    def __post_init__(self) -> None:
        for name in ("train_x", "test_x"):
            t = getattr(self, name)
            if t.dtype != torch.uint8 or t.dim() != 4:
                raise ValueError(f"{name} must be uint8 [N, C, H, W], got {t.dtype} {tuple(t.shape)}")
        for name in ("train_y", "test_y"):
            setattr(self, name, getattr(self, name).to(torch.int64))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True)
class Shape:
    """A dataset's image shape and size, known without its files (smoke runs use it)."""

    channels: int
    size: int
    num_classes: int
    train_size: int
    test_size: int


# Entry extras: ``shape`` -- a Shape, or a callable(params) -> Shape;
# ``check`` -- optional callable(params) -> None raising DataMissingError when files are absent.
DATASETS: Registry[Callable[..., ImageData]] = Registry("dataset")


def dataset_shape(name: str, params: dict[str, Any]) -> Shape:
    shape = DATASETS.entry(name).extra["shape"]
    return shape(params) if callable(shape) else shape


def check_dataset(name: str, params: dict[str, Any]) -> None:
    """Raise DataMissingError if the dataset's files are not there (cheap: no decoding)."""
    check = DATASETS.entry(name).extra.get("check")
    if check is not None:
        check(params)
