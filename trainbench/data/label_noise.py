"""Noisy training labels (recipe ``data.label_noise: {rate, kind, seed}``), for any dataset.

A fixed, seeded corruption of the *training* labels; the test set stays clean, so test
accuracy measures how well a method resists the noise. With ``n`` training images (after
``data.train_subset``) and ``K`` classes:

- exactly ``k = floor(rate * n + 1/2)`` labels are changed (``rate`` rounded half up to
  a whole number of images), each to a class *different* from its true one;
- which images: a uniform sample of ``k`` of the ``n`` images, without replacement;
- ``symmetric``: each chosen label becomes one of the ``K - 1`` other classes, uniformly;
- ``pairflip`` (Han et al. 2018, "Co-teaching"): each chosen label ``c`` becomes
  ``(c + 1) mod K``, the next class: a structured noise that is harder than symmetric.

So ``rate`` is the exact share of wrong training labels (to within rounding), not a
flip probability. The draw uses ``numpy.random.default_rng(seed)``; like
``train_subset`` the noise belongs to the task, not to the run: ``seed`` (default 0) is
independent of the recipe's seed, so every seed and every recipe on the same noise trains
on the same corrupted labels. The same labels, rate, kind and seed always give the same
corruption, on every device. What was done is recorded in meta.json (``label_noise``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from trainbench.registry import Fraction, NonNegInt

KINDS = ("symmetric", "pairflip")


@dataclass(kw_only=True)
class LabelNoise:
    """The ``data.label_noise`` mapping (checked like every recipe section)."""

    rate: Fraction  # required: the share of training labels made wrong
    kind: Literal["symmetric", "pairflip"] = "symmetric"
    seed: NonNegInt = 0


def changed_count(rate: float, n: int) -> int:
    """How many of ``n`` labels a ``rate`` changes: rate * n rounded half up."""
    return min(n, math.floor(rate * n + 0.5))


def corrupt(labels: torch.Tensor, num_classes: int, *, rate: float, kind: str = "symmetric",
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The noisy labels (a new int64 tensor) and the indices of the changed ones (sorted)."""
    if kind not in KINDS:
        raise ValueError(f"label noise kind {kind!r}: choose one of {', '.join(KINDS)}")
    if num_classes < 2:
        raise ValueError("label noise needs at least 2 classes")
    y = labels.cpu().numpy().astype(np.int64)
    k = changed_count(rate, len(y))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(y), size=k, replace=False))
    # symmetric: an offset of 1..K-1 classes, uniform over the other classes, never the true one
    offset = rng.integers(1, num_classes, size=k) if kind == "symmetric" else np.ones(k, dtype=np.int64)
    noisy = y.copy()
    noisy[idx] = (y[idx] + offset) % num_classes
    return torch.from_numpy(noisy), torch.from_numpy(idx)


def apply_label_noise(data: Any, spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """Corrupt ``data.train_y`` (an ImageData) in place as ``spec`` (the recipe's
    ``data.label_noise``) says; returns what meta.json records, or None without noise."""
    if not spec:
        return None
    noisy, idx = corrupt(data.train_y, data.num_classes, rate=spec["rate"], kind=spec["kind"],
                         seed=spec["seed"])
    data.train_y = noisy.to(data.train_y.device)
    return {**spec, "train_images": len(noisy), "changed": len(idx)}
