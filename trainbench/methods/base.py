"""The small event interface through which training methods plug into the loop.

In the spirit of Composer's Event/Algorithm split: a method module holds a pure function
that does the work (testable alone) and a thin :class:`Method` subclass that calls it from
the events below. The engine fires the events; adding a method never changes the engine.

Event order in one run::

    on_init        model built and on the device, optimizer not yet built (may swap modules)
    on_fit_start   optimizer and schedule built
    per step:  on_batch(x, y) -> (x, y)   then forward, loss_fn, backward
               after_backward              gradients ready (fp16: still scaled; see state.scaler)
               optimizer step, LR schedule step
               after_step                  (fired in reverse method order, so methods unwind)
    before_eval    at each evaluation point, still on the training clock: work a method's
                   model needs before it can be evaluated (SWA's BatchNorm statistics)
    on_eval        at each evaluation point; returns extra points.csv columns
    on_end         after the last step

A method may also add curve points (``curve_points``: e.g. a pruning phase's end) and must
hand over whatever state it keeps across steps (``state_dict`` / ``load_state_dict``:
averages, masks, counters) so a checkpointed run resumes bit for bit. Tensors, numbers,
strings, lists and dicts only: checkpoints are loaded with ``torch.load(weights_only=True)``.

Cyclic runs: a method whose behaviour depends on the fraction of training done (SWA's start,
an EMA warm-up, a pruning schedule) is ill-defined when one run holds a whole curve. Such a
method either anchors itself per cycle (``state.schedule.curve_points()`` lists the cycle
ends) or refuses self-timed schedules in ``check_recipe``; its docstring says which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trainbench.registry import Registry
from trainbench.timeunits import Clock

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Evaluate = Callable[[nn.Module], dict[str, float]]  # model -> {"test_acc": ..., ...}


@dataclass
class TrainState:
    """What methods may read and change. ``loss_fn`` takes logits and targets, where
    targets are class indices or (after mixing) per-class probabilities."""

    recipe: dict[str, Any]
    model: nn.Module
    device: torch.device
    clock: Clock
    num_classes: int
    generator: torch.Generator  # method randomness, seeded from the recipe's seed
    data: Any  # trainbench.data.loader.DeviceData
    scaler: torch.amp.GradScaler
    host_rng: np.random.Generator  # host-side draws (mixing lambdas): no device sync
    loss_fn: LossFn = field(default_factory=nn.CrossEntropyLoss)
    optimizer: torch.optim.Optimizer | None = None
    schedule: Any = None  # trainbench.schedules.Schedule
    step: int = 0  # optimizer steps completed
    # The run's autocast context (its precision), set by the engine before the first step:
    # methods that run forward passes of their own (SAM's ascent pass, selective backprop's
    # scoring pass) use it so those passes run in the same precision as the engine's.
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    # A smoke run (``--smoke``): a method may stand in for an absent input, as the data does
    # (distill's teacher run directory), and must say so.
    smoke: bool = False


class Method:
    """A training method. Subclasses take their recipe parameters as keyword-only
    ``__init__`` arguments with type hints and defaults, and override the events they need."""

    columns: ClassVar[tuple[str, ...]] = ()  # extra points.csv columns this method fills
    order: ClassVar[int] = 0  # event order: model surgery < 0 < averaging; compile last

    def on_init(self, state: TrainState) -> None:
        pass

    def on_fit_start(self, state: TrainState) -> None:
        pass

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def after_backward(self, state: TrainState) -> None:
        pass

    def after_step(self, state: TrainState) -> None:
        pass

    def before_eval(self, state: TrainState) -> None:
        """At an evaluation point, before the training clock stops: its time counts in
        ``train_time_s``. For work that is part of the method's training cost but only
        needed where its model is evaluated (or at the end), such as recomputing the
        BatchNorm statistics of an averaged model; evaluating itself belongs in ``on_eval``."""

    def on_eval(self, state: TrainState, evaluate: Evaluate) -> dict[str, float]:
        return {}

    def on_end(self, state: TrainState) -> None:
        pass

    def curve_points(self, state: TrainState) -> Iterable[int]:
        """Steps (after ``on_fit_start``) that are tradeoff-curve points besides the
        schedule's own, e.g. the end of each pruning phase."""
        return ()

    def state_dict(self) -> dict[str, Any]:
        """What this method must carry across a checkpoint (plain tensors and values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s contents; called after ``on_fit_start``."""

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        """Problems with this method's place in a resolved recipe: (field path, message)."""
        return ()


METHODS: Registry[type[Method]] = Registry("method")
