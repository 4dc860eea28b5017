"""Learning-rate schedules: LR multipliers as pure functions of the step.

A schedule is a dataclass whose fields are its recipe parameters (``schedule.<field>``).
:meth:`Schedule.bind` resolves its times to steps for one run; after that
:meth:`Schedule.factor` gives the LR multiplier for a step (the engine drives
``torch.optim.lr_scheduler.LambdaLR`` with it) and :meth:`Schedule.curve_points` says
after which steps the tradeoff curve has a point, so the engine evaluates exactly there.

Warmup is a prefix: a linear ramp over ``warmup`` whose last step reaches the peak LR,
after which the schedule proper runs over the remaining steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from trainbench.registry import NonNegFloat, PosFloat, Registry, instantiate
from trainbench.timeunits import ZERO, Clock, Time

SCHEDULES: Registry[type[Schedule]] = Registry("schedule")


@dataclass(kw_only=True)
class Schedule:
    warmup: Time = ZERO

    def bind(self, clock: Clock, base_lr: float) -> Schedule:
        """Resolve times to steps for a run of ``clock.total_steps`` steps at ``base_lr``."""
        self.clock, self.base_lr = clock, base_lr
        self.total = clock.total_steps
        self.warmup_steps = min(clock.steps(self.warmup, at_least_one=True), self.total)
        return self

    def factor(self, step: int) -> float:
        """LR multiplier for the optimizer step with index ``step`` (0-based)."""
        w = self.warmup_steps
        if step < w:
            return (step + 1) / w
        return self.main_factor(step - w, self.total - w)

    def main_factor(self, t: int, length: int) -> float:
        """The schedule after warmup: ``t`` steps into a stretch of ``length`` steps."""
        raise NotImplementedError

    def curve_points(self) -> list[int]:
        """Steps after which the tradeoff curve has a point (the run's end by default)."""
        return [self.total]

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        warm, dur = Time.parse(recipe["schedule"]["warmup"]), Time.parse(recipe["duration"])
        if (warm.unit == "dur" and warm.value >= 1) or (warm.unit == dur.unit and warm.value >= dur.value):
            yield ("schedule", "warmup"), (f"warmup {warm} is not shorter than the run's "
                                           f"duration {dur}; shorten it or lengthen 'duration'.")


@SCHEDULES.register("constant")
@dataclass(kw_only=True)
class Constant(Schedule):
    """Constant LR after an optional linear warmup."""

    def main_factor(self, t: int, length: int) -> float:
        return 1.0


@SCHEDULES.register("step")
@dataclass(kw_only=True)
class Step(Schedule):
    """LR multiplied by gamma every step_size (counted from the start of the run)."""

    step_size: Time = Time(30, "ep")
    gamma: PosFloat = 0.1

    def bind(self, clock: Clock, base_lr: float) -> Schedule:
        super().bind(clock, base_lr)
        self.every = clock.steps(self.step_size, at_least_one=True)
        return self

    def main_factor(self, t: int, length: int) -> float:
        step = t + self.warmup_steps
        return self.gamma ** (step // self.every) if self.every else 1.0


@SCHEDULES.register("multistep")
@dataclass(kw_only=True)
class MultiStep(Schedule):
    """LR multiplied by gamma at each milestone (times from the start of the run)."""

    milestones: list[Time] = field(default_factory=lambda: [Time(0.5, "dur"), Time(0.75, "dur")])
    gamma: PosFloat = 0.1

    def bind(self, clock: Clock, base_lr: float) -> Schedule:
        super().bind(clock, base_lr)
        self.milestone_steps = sorted(clock.steps(m) for m in self.milestones)
        return self

    def main_factor(self, t: int, length: int) -> float:
        step = t + self.warmup_steps
        return self.gamma ** sum(step >= m for m in self.milestone_steps)


@SCHEDULES.register("cosine")
@dataclass(kw_only=True)
class Cosine(Schedule):
    """Cosine decay from the peak LR to min_lr over the run, after an optional warmup."""

    min_lr: NonNegFloat = 0.0

    def main_factor(self, t: int, length: int) -> float:
        floor = self.min_lr / self.base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / max(length, 1)))


def build_schedule(params: dict[str, Any]) -> Schedule:
    """A schedule from a resolved ``schedule:`` section."""
    return instantiate(SCHEDULES.get(params["name"]), params)
