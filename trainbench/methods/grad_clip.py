"""Gradient-norm clipping (Pascanu, Mikolov and Bengio, "On the difficulty of training
recurrent neural networks", ICML 2013).

After the backward pass, rescales all gradients of the optimizer's parameters together so
that their total ``norm_type``-norm is at most ``max_norm``
(``torch.nn.utils.clip_grad_norm_``, foreach kernels). Under fp16 the gradients are still
multiplied by the loss scale at that point, so the method first calls
``state.scaler.unscale_(state.optimizer)``; the GradScaler records this and does not unscale
again in its ``step``, and it still skips the step when the unscaled gradients hold inf/NaN.
The total norm is never read on the host, so clipping adds no device sync.

Recipe::

    methods:
      grad_clip: {max_norm: 1.0, norm_type: 2.0}

Data-parallel runs: this runs in ``after_backward``, once ``loss.backward()`` has returned, and
DDP's ``backward`` returns only when its bucketed all-reduce has finished: the norm is that of
the averaged gradients, identical on every rank, and every rank clips alike.

Does not depend on the fraction of training, so it is well defined in cyclic runs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.registry import PosFloat


def clip_gradients(params: Iterable[torch.Tensor], max_norm: float, norm_type: float = 2.0) -> None:
    """Scale the gradients of ``params`` in place so their total norm is at most ``max_norm``."""
    torch.nn.utils.clip_grad_norm_(list(params), max_norm, norm_type, foreach=True)  # skips grad-less ones


@METHODS.register("grad_clip")
class GradClip(Method):
    """Clip the total gradient norm to max_norm (after fp16 unscaling)."""

    def __init__(self, *, max_norm: PosFloat = 1.0, norm_type: PosFloat = 2.0) -> None:
        self.max_norm = max_norm
        self.norm_type = norm_type

    def after_backward(self, state: TrainState) -> None:
        optimizer = state.optimizer
        assert optimizer is not None, "grad_clip runs after the optimizer is built"
        if state.scaler.is_enabled():
            state.scaler.unscale_(optimizer)
        clip_gradients((p for g in optimizer.param_groups for p in g["params"]),
                       self.max_norm, self.norm_type)
