"""Label smoothing (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016).

Trains against ``(1 - smoothing) * one_hot + smoothing / num_classes`` instead of one-hot
targets, which discourages over-confident logits. Implemented with
``torch.nn.CrossEntropyLoss(label_smoothing=...)``, which also smooths soft targets (from
mixup/CutMix) exactly once, so mixing methods must not smooth on their own.

Recipe::

    methods:
      label_smoothing: {smoothing: 0.1}

Data-parallel runs: each rank's loss is the mean over its slice; DDP averages the gradients
over the ranks, so the update is the smoothed loss's gradient over the whole global batch.

Does not depend on the fraction of training, so it is well defined in cyclic runs.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.registry import Range


def smooth_targets(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Smoothed class probabilities for class-index or already-soft ``targets``."""
    if targets.dim() == 1:
        targets = F.one_hot(targets, num_classes).float()
    return targets * (1 - smoothing) + smoothing / num_classes


@METHODS.register("label_smoothing")
class LabelSmoothing(Method):
    """Soft targets (1-e)*onehot + e/K (Szegedy et al. 2016)."""

    def __init__(self, *, smoothing: Annotated[float, Range(ge=0, lt=1)] = 0.1) -> None:
        self.smoothing = smoothing

    def on_init(self, state: TrainState) -> None:
        state.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.smoothing)
