"""Helpers for methods that run a forward pass of their own besides the engine's (SAM's
ascent pass, selective backprop's scoring pass).

A training-mode forward pass updates BatchNorm running statistics. One extra pass per step
would count each batch twice in them (and, for SAM, mix in statistics of the perturbed
weights), so such a method saves the statistics around the pass it does not want counted
and puts them back (as the reference SAM implementation does by zeroing the momentum on its
second pass; a copy is used here because ``0 * NaN`` would still poison the statistics when
an fp16 pass overflows).
"""

from __future__ import annotations

import torch
from torch import nn


def norm_buffers(model: nn.Module) -> list[torch.Tensor]:
    """The running-statistics buffers of ``model``'s BatchNorm layers (means, variances and
    batch counters), in module order."""
    out: list[torch.Tensor] = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            out += [b for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    return out


def save_buffers(buffers: list[torch.Tensor]) -> list[torch.Tensor]:
    return [b.detach().clone() for b in buffers]


@torch.no_grad()
def restore_buffers(buffers: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    if buffers:
        torch._foreach_copy_(buffers, saved)  # no host sync
