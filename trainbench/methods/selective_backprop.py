"""Selective backprop (Jiang, Wong, Zhou, Andersen, Dean, Ganger, Joshi, Kaminsky, Kozuch,
Lipton and Pillai, "Accelerating Deep Learning by Focusing on the Biggest Losers", 2019;
scheduled as Composer's ``SelectiveBackprop``).

Each selected step first scores the batch with a forward pass without gradients (train mode,
under the run's autocast), then the engine's forward and backward run on the ``keep``
fraction of the batch with the highest per-sample loss (``max(1, int(keep * B))`` samples,
found with ``torch.topk`` on the device: no host sync). Jiang et al. and Composer draw the
kept samples at random with probabilities growing with the loss's percentile; here the
top-loss ones are kept deterministically, the limit of that rule, so what is trained on is
reproducible and checkable. The per-sample loss is cross-entropy against the batch's targets
(soft targets after mixing), with the run's label smoothing if any. The scoring pass does not
count in the BatchNorm running statistics (they are restored from a copy, see
:mod:`.extra_pass`).

As in Composer, it is active only from ``start`` to ``end`` (fractions of training), and
every ``interrupt``-th step in that window trains on the whole batch (0: never).
``points.csv``'s ``samples`` column keeps counting the nominal batch size. Cost per selected
step: one extra forward pass, against a forward and backward on ``1 - keep`` fewer samples.

Runs at order 1: after the methods that change the batch (mixing), before SAM (whose two
passes then use the selected samples).

Recipe::

    methods:
      selective_backprop: {keep: 0.5, start: 0.5, end: 0.9, interrupt: 2}   # Composer's defaults

Cyclic runs: ``start`` and ``end`` are fractions of each cycle (:mod:`.cycles`).
DDP: each rank selects within its own slice of the global batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.methods.cycles import cycle_ends, cycle_fraction
from trainbench.methods.extra_pass import norm_buffers, restore_buffers, save_buffers
from trainbench.registry import Fraction, NonNegInt, Range

FIELD = ("methods", "selective_backprop")


def kept_count(batch: int, keep: float) -> int:
    return max(1, int(keep * batch))


def select_highest_loss(losses: torch.Tensor, keep: float) -> torch.Tensor:
    """Indices of the ``kept_count`` samples with the highest loss (highest first)."""
    return torch.topk(losses, kept_count(losses.shape[0], keep), sorted=True).indices


def is_active(fraction: float, done: int, start: float, end: float, interrupt: int) -> bool:
    """Composer's rule: inside ``[start, end)``, except every ``interrupt``-th step."""
    return start <= fraction < end and (interrupt == 0 or (done + 1) % interrupt != 0)


@METHODS.register("selective_backprop")
class SelectiveBackprop(Method):
    """Forward/backward only on the highest-loss fraction of each batch (Jiang et al. 2019)."""

    order: ClassVar[int] = 1

    def __init__(self, *, keep: Annotated[float, Range(gt=0, le=1)] = 0.5, start: Fraction = 0.5,
                 end: Fraction = 0.9, interrupt: NonNegInt = 2) -> None:
        self.keep, self.start, self.end, self.interrupt = keep, start, end, interrupt

    def on_fit_start(self, state: TrainState) -> None:
        self.ends = cycle_ends(state)

    @torch.no_grad()
    def per_sample_loss(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        buffers = norm_buffers(state.model)
        saved = save_buffers(buffers)
        with state.autocast():
            logits = state.model(x)
        restore_buffers(buffers, saved)
        smoothing = getattr(state.loss_fn, "label_smoothing", 0.0)
        return F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=smoothing)

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        done = state.step
        if not is_active(cycle_fraction(self.ends, done), done, self.start, self.end, self.interrupt):
            return x, y
        idx = select_highest_loss(self.per_sample_loss(state, x, y), self.keep)
        return x[idx], y[idx]

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        p = recipe["methods"]["selective_backprop"]
        if p["start"] >= p["end"]:
            yield (*FIELD, "end"), (f"end ({p['end']}) must be after start ({p['start']}): both are "
                                    "fractions of training (of each cycle in a cyclic run); with "
                                    "end <= start the method never acts. E.g. start: 0.5, end: 0.9.")
        if p["interrupt"] == 1:
            yield (*FIELD, "interrupt"), ("interrupt: 1 makes every step a full-batch step, so the "
                                          "method never acts; use 0 (never interrupt) or 2 or more.")
