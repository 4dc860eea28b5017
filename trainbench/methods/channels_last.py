"""Channels-last memory format (NHWC), a speed method that leaves the mathematics unchanged.

Stores every 4-d parameter and buffer of the model (convolution weights) and every training
batch in ``torch.channels_last`` order, which lets cuDNN pick its NHWC kernels (Tensor Core
friendly, especially under bf16/fp16 autocast). The values are identical, so accuracy is
unchanged up to floating-point reassociation. Portes et al. (2022) found its cyclic-run gap
within about 0.1 pp and a low gain correlation (0.35): it changes speed, not accuracy.

Evaluation batches are not converted (the engine does not pass them through ``on_batch``):
the model also works with NCHW input. A convolution whose weight is channels-last returns a
channels-last output even for NCHW input, so only the first layer reads NCHW data.

Recipe::

    methods:
      channels_last: {}

Runs at order -20, before other model surgery; modules such a method adds later keep their
own format. Does not depend on the fraction of training, so it is well defined in cyclic runs.
"""

from __future__ import annotations

import torch
from torch import nn

from trainbench.methods.base import METHODS, Method, TrainState


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert ``model``'s 4-d parameters and buffers to channels-last, in place; returns it."""
    return model.to(memory_format=torch.channels_last)


@METHODS.register("channels_last")
class ChannelsLast(Method):
    """Channels-last (NHWC) memory format for the model and training batches: speed only."""

    order = -20

    def on_init(self, state: TrainState) -> None:
        state.model = to_channels_last(state.model)

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y
