"""Layer freezing (Composer's ``LayerFreezing``, after Brock, Lim, Ritchie and Weston,
"FreezeOut: Accelerate Training by Progressively Freezing Layers", 2017).

Freezes the early layers progressively, so the backward pass gets shorter. With the model's
leaf modules in order (parameterless ones such as ReLU count; the last one, the classifier,
is never frozen), after a fraction ``f`` of training the first

    depth = int(pct * (leaves - 1)),   pct = (f - freeze_start) / (1 - freeze_start) * freeze_level

leaves are frozen (none while ``pct <= 0``): their parameters get ``requires_grad = False``,
so they receive no gradient and the optimizer skips them (no update, no weight decay; Composer
removes them from the optimizer instead, which would change the optimizer's ``state_dict``
layout under a resumed run). BatchNorm running statistics of frozen layers keep updating, as
in Composer. Composer applies the rule at epoch ends; here it is applied before every step
(host arithmetic only, no device sync), which is the same rule at a finer grain and stays
defined when cycles do not end on epoch boundaries.

Recipe::

    methods:
      layer_freezing: {freeze_start: 0.5, freeze_level: 1.0}   # Composer's defaults

Cyclic runs: ``f`` is the fraction of the current cycle (:mod:`.cycles`), so each cycle
trains all layers at first and freezes progressively towards its end; layers unfreeze at the
next cycle's start (their optimizer state, e.g. momentum, is what it was when they froze).
DDP: the frozen set depends on the step only, so every rank freezes the same layers (frozen
parameters get no gradient to all-reduce).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.methods.cycles import cycle_ends, cycle_fraction
from trainbench.methods.ema import unwrap
from trainbench.registry import Fraction


def leaf_modules(model: nn.Module) -> list[nn.Module]:
    """The modules without children, in order (Composer's ``_get_layers``)."""
    return [m for m in unwrap(model).modules() if not list(m.children())]


def freeze_depth(fraction: float, num_leaves: int, freeze_start: float, freeze_level: float) -> int:
    """How many leading leaves are frozen after ``fraction`` of training (the last leaf never)."""
    if freeze_start >= 1:
        return 0
    pct = (fraction - freeze_start) / (1 - freeze_start) * freeze_level
    return max(0, int(pct * (num_leaves - 1)))


def freeze_layers(leaves: list[nn.Module], depth: int) -> None:
    """Freeze the first ``depth`` leaves' parameters and unfreeze the others (in place)."""
    for i, leaf in enumerate(leaves):
        for p in leaf.parameters(recurse=False):
            p.requires_grad_(i >= depth)


@METHODS.register("layer_freezing")
class LayerFreezing(Method):
    """Freeze the early layers progressively towards the end of training (Composer's)."""

    def __init__(self, *, freeze_start: Fraction = 0.5, freeze_level: Fraction = 1.0) -> None:
        self.freeze_start, self.freeze_level = freeze_start, freeze_level
        self.depth = 0

    def on_fit_start(self, state: TrainState) -> None:
        self.ends = cycle_ends(state)
        self.leaves = leaf_modules(state.model)

    def depth_at(self, done: int) -> int:
        """The frozen depth for the step after ``done`` completed steps."""
        return freeze_depth(cycle_fraction(self.ends, done), len(self.leaves), self.freeze_start,
                            self.freeze_level)

    def _set(self, depth: int) -> None:
        if depth != self.depth:
            freeze_layers(self.leaves, depth)
            self.depth = depth

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._set(self.depth_at(state.step))
        return x, y

    def state_dict(self) -> dict[str, Any]:
        return {"depth": self.depth}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        freeze_layers(self.leaves, state["depth"])
        self.depth = state["depth"]
