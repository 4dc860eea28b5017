"""Label smoothing: the pure target function, its agreement with torch's loss, and the method."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import build_state
from torch import nn

from trainbench.methods import METHODS, TrainState
from trainbench.methods.label_smoothing import LabelSmoothing, smooth_targets


def soft_ce(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against class probabilities, written out (no smoothing of its own)."""
    return -(probs * F.log_softmax(logits, dim=1)).sum(1).mean()


def test_smooth_index_targets_by_hand() -> None:
    # K = 4, e = 0.2: the true class gets 1 - 0.2 + 0.2/4 = 0.85, the others 0.2/4 = 0.05
    out = smooth_targets(torch.tensor([0, 3, 1]), 4, 0.2)
    expected = torch.tensor([[0.85, 0.05, 0.05, 0.05],
                             [0.05, 0.05, 0.05, 0.85],
                             [0.05, 0.85, 0.05, 0.05]])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(out.sum(1), torch.ones(3), rtol=0, atol=1e-6)


def test_smooth_soft_targets_by_hand() -> None:
    # a mixup target 0.7 / 0.3 over K = 5, e = 0.1: p * 0.9 + 0.02
    soft = torch.tensor([[0.7, 0.0, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    out = smooth_targets(soft, 5, 0.1)
    expected = torch.tensor([[0.65, 0.02, 0.29, 0.02, 0.02], [0.02, 0.02, 0.02, 0.02, 0.92]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)


def test_smoothing_zero_is_one_hot() -> None:
    y = torch.tensor([2, 0])
    assert torch.equal(smooth_targets(y, 3, 0.0), torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("e", [0.0, 0.1, 0.35])
def test_matches_torch_label_smoothing_for_index_targets(e: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=g) * 3
    y = torch.randint(0, 7, (16,), generator=g)
    ours = soft_ce(logits, smooth_targets(y, 7, e))
    torch.testing.assert_close(ours, nn.CrossEntropyLoss(label_smoothing=e)(logits, y), rtol=0, atol=1e-6)
    # also: plain (unsmoothed) CE against our smoothed probabilities
    plain = nn.CrossEntropyLoss()(logits, smooth_targets(y, 7, e))
    torch.testing.assert_close(plain, ours, rtol=0, atol=1e-6)


@pytest.mark.parametrize("e", [0.1, 0.35])
def test_matches_torch_label_smoothing_for_mixup_targets(e: float) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 7, generator=g) * 3
    y1, y2 = torch.randint(0, 7, (16,), generator=g), torch.randint(0, 7, (16,), generator=g)
    lam = 0.7
    mixed = lam * F.one_hot(y1, 7).float() + (1 - lam) * F.one_hot(y2, 7).float()
    torch_loss = nn.CrossEntropyLoss(label_smoothing=e)(logits, mixed)
    torch.testing.assert_close(soft_ce(logits, smooth_targets(mixed, 7, e)), torch_loss, rtol=0, atol=1e-6)
    # smoothing happens once: smoothing twice is a different (larger-entropy) target
    twice = soft_ce(logits, smooth_targets(smooth_targets(mixed, 7, e), 7, e))
    assert abs(float(twice - torch_loss)) > 1e-3
    # and the mixed loss is the lam-weighted mix of the two smoothed index losses
    ls = nn.CrossEntropyLoss(label_smoothing=e)
    weighted = lam * ls(logits, y1) + (1 - lam) * ls(logits, y2)
    torch.testing.assert_close(torch_loss, weighted, rtol=0, atol=1e-6)


def state() -> TrainState:
    return build_state(model=nn.Linear(4, 3))


def test_method_sets_a_smoothing_loss() -> None:
    s = state()
    assert isinstance(s.loss_fn, nn.CrossEntropyLoss) and s.loss_fn.label_smoothing == 0.0
    method = LabelSmoothing(smoothing=0.2)
    method.on_init(s)
    assert isinstance(s.loss_fn, nn.CrossEntropyLoss)
    assert s.loss_fn.label_smoothing == 0.2
    assert s.loss_fn.reduction == "mean"

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
    y = torch.tensor([0, 1])
    torch.testing.assert_close(s.loss_fn(logits, y), soft_ce(logits, smooth_targets(y, 3, 0.2)),
                               rtol=0, atol=1e-6)
    # hand value for row 0 alone: targets [0.8667, 0.0667, 0.0667] against log_softmax
    logp = torch.log_softmax(logits[:1], 1)[0]
    hand = -(logp[0] * (0.8 + 0.2 / 3) + (logp[1] + logp[2]) * (0.2 / 3))
    torch.testing.assert_close(s.loss_fn(logits[:1], y[:1]), hand, rtol=0, atol=1e-6)


def test_method_defaults_and_registry() -> None:
    assert METHODS.get("label_smoothing") is LabelSmoothing
    assert LabelSmoothing().smoothing == 0.1
    s = state()
    LabelSmoothing().on_init(s)
    assert s.loss_fn.label_smoothing == 0.1
    # the other events leave the batch and state alone
    x, y = torch.randn(2, 4), torch.tensor([0, 2])
    x2, y2 = LabelSmoothing().on_batch(s, x, y)
    assert x2 is x and y2 is y
