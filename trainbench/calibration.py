"""Calibration metrics from whole-test-set predictions, for methods that evaluate something
other than the model itself (an ensemble's averaged probabilities, temperature-scaled logits).

The expected calibration error is the engine's (``engine.evaluate``): 15 equal-width
confidence bins, ``sum_b |sum of confidences in b - correct in b| / n``; a test checks that
the two agree on the same model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

ECE_BINS = 15  # = engine.ECE_BINS (not imported: the engine imports the methods)


@torch.inference_mode()
def predict(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[
        torch.Tensor, torch.Tensor]:
    """``(logits, labels)`` of ``model`` (in eval mode, fp32) over ``batches``, concatenated on
    their device. The model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for x, y in batches:
        logits.append(model(x).float())
        labels.append(y)
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor,
                               bins: int = ECE_BINS) -> torch.Tensor:
    """ECE of class probabilities ``probs`` (``[N, K]``) against ``labels``: confidence = the
    top probability, binned in ``bins`` equal-width bins; a device scalar (no host read)."""
    conf, pred = probs.max(1)
    hit = (pred == labels).float()
    b = (conf * bins).nan_to_num_(0).long().clamp_(0, bins - 1)  # NaN (diverged) -> bin 0
    gap = torch.zeros(bins, device=probs.device, dtype=conf.dtype).index_add_(0, b, conf - hit)
    return gap.abs().sum() / len(labels)
