"""Sharpness-aware minimisation (Foret, Kleiner, Mobahi and Neyshabur, "Sharpness-Aware
Minimization for Efficiently Improving Generalization", ICLR 2021), and its adaptive variant
ASAM (Kwon, Kim, Park and Choi, "ASAM: Adaptive Sharpness-Aware Minimization for
Scale-Invariant Learning of Deep Neural Networks", ICML 2021).

SAM minimises the loss at the worst point of a ``rho``-ball around the weights. Each step
takes two forward/backward passes on the same batch:

1. the gradient ``g`` at the weights ``w``, and from it the ascent step
   ``e = rho * g / ||g||`` (SAM), or ``e = rho * w^2 * g / || |w| * g ||`` (ASAM:
   ``adaptive: true``, the element-wise scaling ``T_w = |w|`` of the reference code; the norm
   is taken over all parameters together, 2-norm);
2. the gradient at ``w + e``, which the optimizer applies at the original weights ``w``.

How it plugs in without touching the engine or the optimizer: ``on_batch`` runs pass 1 (under
the run's autocast, ``state.autocast``) and moves the weights to ``w + e``; the engine's own
forward/backward then *is* pass 2; ``after_backward`` puts the weights back to ``w`` exactly
(a saved copy, not ``w + e - e``) before anything looks at the gradients. So everything
downstream sees an ordinary gradient at ordinary weights:

- ``grad_clip`` clips the gradient that is applied (pass 2's);
- fp16: pass 1 is backpropagated with the GradScaler's current scale (``e`` does not depend
  on a scale factor of ``g``), and pass 2 goes through the engine's scaler as usual; if pass 1
  overflows, ``e`` is NaN, so pass 2's gradients are too and the scaler skips the step and
  backs off, while the weights are restored from the copy;
- ``lookahead`` (or any optimizer) just takes the step; SAM never wraps the optimizer.

The ``train_loss`` column is pass 2's loss (at ``w + e``), the loss SAM minimises. BatchNorm
running statistics are updated by pass 1 only (at ``w``), as the reference implementation
(davda54/sam) recommends; pass 2's update is undone from a copy. Parameters without a
gradient (frozen layers) are not perturbed. The perturbation is computed on the device
(foreach norms): no host sync. Cost: one extra forward and backward per step (about 2x the
step time; see the README for the measured figure).

Runs at order 2: after the methods that change the batch (mixing, selective backprop), so
both passes see the same final batch.

Recipe::

    methods:
      sam: {rho: 0.05, adaptive: false}    # Foret et al.'s CIFAR default
      sam: {rho: 0.5, adaptive: true}      # ASAM (Kwon et al.'s CIFAR setting)

Does not depend on the fraction of training, so it is well defined in cyclic runs.
DDP: pass 1's gradient is the all-reduced one when the engine's backward all-reduces (each
rank then computes the same ``e``); SAM papers also use per-rank ``e`` ("m-sharpness"), which
is what one gets where the first pass is not synchronised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.methods.extra_pass import norm_buffers, restore_buffers, save_buffers
from trainbench.registry import PosFloat

EPS = 1e-12  # as the reference implementation: a zero gradient gives e = 0, not NaN


@torch.no_grad()
def sam_perturbation(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], rho: float,
                     adaptive: bool = False) -> list[torch.Tensor]:
    """The ascent step ``e`` per parameter: ``rho * g / ||g||`` or, adaptive (ASAM),
    ``rho * w^2 * g / || |w| g ||``; the norm is the 2-norm over all parameters together."""
    if not grads:
        return []
    scaled = torch._foreach_mul(list(grads), torch._foreach_abs(list(params))) if adaptive else list(grads)
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled)))
    scale = rho / (norm + EPS)
    if adaptive:  # w^2 * g = |w| * (|w| g)
        e = torch._foreach_mul(scaled, torch._foreach_abs(list(params)))
    else:
        e = [g.clone() for g in grads]
    torch._foreach_mul_(e, scale)
    return e


@METHODS.register("sam")
class SAM(Method):
    """Sharpness-aware minimisation, two passes per step; ASAM with adaptive (Foret et al. 2021)."""

    order: ClassVar[int] = 2

    def __init__(self, *, rho: PosFloat = 0.05, adaptive: bool = False) -> None:
        self.rho = rho
        self.adaptive = adaptive
        self._saved: list[torch.Tensor] = []
        self._params: list[torch.Tensor] = []

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert state.optimizer is not None
        params = [p for g in state.optimizer.param_groups for p in g["params"] if p.requires_grad]
        for p in params:
            p.grad = None
        with state.autocast():
            loss = state.loss_fn(state.model(x), y)
        state.scaler.scale(loss).backward()  # pass 1, at w (BatchNorm statistics updated here)
        params = [p for p in params if p.grad is not None]
        e = sam_perturbation(params, [p.grad for p in params], self.rho, self.adaptive)
        self._params = params
        self._saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            torch._foreach_add_(params, e)  # to w + e, where the engine's pass 2 runs
        for p in params:
            p.grad = None
        self._bn = norm_buffers(state.model)
        self._bn_saved = save_buffers(self._bn)
        return x, y

    def after_backward(self, state: TrainState) -> None:
        # Back to w exactly: the optimizer applies pass 2's gradient at the original weights.
        if self._params:
            with torch.no_grad():
                torch._foreach_copy_(self._params, self._saved)
        restore_buffers(self._bn, self._bn_saved)  # pass 2 does not count in BN statistics
        self._params, self._saved, self._bn, self._bn_saved = [], [], [], []

    def state_dict(self) -> dict[str, Any]:
        return {}  # nothing carries over from one step to the next
