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

import bisect
import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from trainbench.registry import Fraction, NonNegFloat, PosFloat, PosInt, Range, Registry, instantiate
from trainbench.timeunits import ZERO, Clock, PosTime, Time

SCHEDULES: Registry[type[Schedule]] = Registry("schedule")


@dataclass(kw_only=True)
class Schedule:
    warmup: Time = ZERO

    # A self-timed schedule defines the run's length itself (warmup + its cycles): the
    # recipe's ``duration`` is derived from it, and every cycle end is a curve point.
    self_timed: ClassVar[bool] = False

    def bind(self, clock: Clock, opt_lr: float) -> Schedule:
        """Resolve times to steps for a run of ``clock.total_steps`` steps whose optimizer
        LR (the peak, multiplier 1) is ``opt_lr``.
        Afterwards ``self.total`` is the run's length in steps."""
        self.clock, self.opt_lr = clock, opt_lr
        self.total = clock.total_steps
        self.warmup_steps = min(clock.steps(self.warmup, at_least_one=True), self.total)
        return self

    def factor(self, step: int) -> float:
        """LR multiplier for the optimizer step with index ``step`` (0-based)."""
        w = self.warmup_steps
        if step < w:
            return (step + 1) / w
        return self.main_factor(step - w, self.total - w)

    def end_factor(self, step: int) -> float:
        """The multiplier the schedule has reached once ``step`` steps are done (its left
        limit there: at a cycle end, the end of the cycle just completed, not the restart).
        This is the ``lr`` column of points.csv."""
        return self.factor(step)

    def momentum(self, step: int) -> float | None:
        """SGD momentum for step ``step`` when the schedule cycles it, else None."""
        return None

    def main_factor(self, t: int, length: int) -> float:
        """The schedule after warmup: ``t`` steps into a stretch of ``length`` steps."""
        raise NotImplementedError

    def curve_points(self) -> list[int]:
        """Steps after which the tradeoff curve has a point (the run's end by default)."""
        return [self.total]

    @classmethod
    def derived_duration(cls, params: dict[str, Any]) -> Time | None:
        """The run's length for a self-timed schedule's resolved parameters."""
        return None

    @classmethod
    def budget_params(cls, params: dict[str, Any], budget: Time) -> dict[str, Any]:
        """Parameters of this schedule for one separate run of length ``budget`` (the
        reference curve): unchanged by default, so 'dur' times scale with the budget."""
        return dict(params)

    @classmethod
    def default_budgets(cls, params: dict[str, Any]) -> list[Time] | None:
        """Budgets of the reference curve that line up with this schedule's curve points."""
        return None

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        warm, dur = Time.parse(recipe["schedule"]["warmup"]), Time.parse(recipe["duration"])
        if (warm.unit == "dur" and warm.value >= 1) or (warm.unit == dur.unit and warm.value >= dur.value):
            yield ("schedule", "warmup"), (f"warmup {warm} is not shorter than the run's "
                                           f"duration {dur}; shorten it or lengthen 'duration'.")

    def step_problems(self, duration: str, where: str) -> Iterable[tuple[tuple[str, ...], str]]:
        """Problems that show only in steps, on a schedule bound to a run's real clock: a
        warmup in another unit than the run's ``duration`` that is not shorter than it, say.
        ``where`` describes the clock (steps per epoch and why) for the messages."""
        warmup = self.clock.steps(self.warmup, at_least_one=True)  # bind caps it at the total
        if warmup >= self.total:
            yield ("schedule", "warmup"), (
                f"warmup {self.warmup} is {warmup} steps, not shorter than the run "
                f"({duration} = {self.total} steps) {where}: the run would end at the peak LR "
                "without ever decaying. Shorten the warmup or lengthen the run.")


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

    step_size: PosTime = Time(30, "ep")
    gamma: PosFloat = 0.1

    def bind(self, clock: Clock, opt_lr: float) -> Schedule:
        super().bind(clock, opt_lr)
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

    def bind(self, clock: Clock, opt_lr: float) -> Schedule:
        super().bind(clock, opt_lr)
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
        floor = self.min_lr / self.opt_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / max(length, 1)))

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        yield from super().check_recipe(recipe)
        yield from _check_min_lr(recipe)


def _check_min_lr(recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
    """A schedule that decays to min_lr needs it below the peak (the optimizer's lr)."""
    min_lr, lr = recipe["schedule"]["min_lr"], recipe["optimizer"]["lr"]
    if min_lr >= lr:
        yield ("schedule", "min_lr"), (
            f"min_lr {min_lr} is not below the peak LR (optimizer.lr {lr}), so the schedule would "
            "rise (or stay flat) where it should decay. Lower min_lr or raise optimizer.lr.")


# --- the cyclic family: curve points inside one run ---


def _cycle_ends(warmup: float, t0: Time, t_mult: float, cycles: int) -> list[Time]:
    """Cycle-end times, warmup included, in t0's unit: cumulative sums (no drift), rounded
    to 9 digits so 0.1-style lengths land on the step they mean; in 'ba' to whole steps, as
    the clock would round them (a fractional 'ba' time is not a valid recipe value)."""
    ends, cum = [], warmup
    for k in range(cycles):
        cum += t0.value * t_mult**k
        ends.append(Time(round(cum) if t0.unit == "ba" else round(cum, 9), t0.unit))
    return ends


@dataclass(kw_only=True)
class _Restarts(Schedule):
    """Warmup, then ``cycles`` cycles of lengths t0, t0*t_mult, t0*t_mult^2, ..., each
    decaying from its peak to min_lr. Self-timed: the run ends with the last cycle."""

    t0: Time = Time(2, "ep")
    t_mult: Annotated[float, Range(ge=1)] = 2.0
    cycles: PosInt = 4
    min_lr: NonNegFloat = 0.0
    self_timed: ClassVar[bool] = True

    def bind(self, clock: Clock, opt_lr: float) -> Schedule:
        self.clock, self.opt_lr = clock, opt_lr
        self.warmup_steps = clock.steps(self.warmup, at_least_one=True)
        # The same cycle-end times as the budgets runs get (default_budgets). A recipe's
        # cycles are at least one step each on its real clock (step_problems refuses shorter
        # ones); on a smoke run's dilated clock they are pushed apart to keep every cycle.
        self.rounded_ends = [clock.steps(t) for t in
                             _cycle_ends(self.warmup.value, self.t0, self.t_mult, self.cycles)]
        ends: list[int] = []
        for end in self.rounded_ends:
            ends.append(max(end, (ends[-1] if ends else self.warmup_steps) + 1))
        self.ends = ends
        self.starts = [self.warmup_steps, *ends[:-1]]
        self.total = ends[-1]
        return self

    def peak(self, k: int) -> float:
        return 1.0

    def decay(self, pos: float) -> float:
        """1 at the start of a cycle (pos 0), 0 at its end (pos 1): cosine."""
        return 0.5 * (1 + math.cos(math.pi * pos))

    def _value(self, k: int, step: int) -> float:
        floor = self.min_lr / self.opt_lr
        pos = (step - self.starts[k]) / (self.ends[k] - self.starts[k])
        return floor + (self.peak(k) - floor) * self.decay(min(pos, 1.0))

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        k = bisect.bisect_right(self.ends, step)  # the cycle with start <= step < end
        return self._value(min(k, self.cycles - 1), step)

    def end_factor(self, step: int) -> float:
        if step <= self.warmup_steps:
            return step / self.warmup_steps if self.warmup_steps else 1.0
        k = bisect.bisect_left(self.ends, step)  # the cycle with start < step <= end
        return self._value(min(k, self.cycles - 1), step)

    def curve_points(self) -> list[int]:
        return list(self.ends)

    @classmethod
    def derived_duration(cls, params: dict[str, Any]) -> Time:
        return cls.default_budgets(params)[-1]

    @classmethod
    def default_budgets(cls, params: dict[str, Any]) -> list[Time]:
        return _cycle_ends(Time.parse(params["warmup"]).value, Time.parse(params["t0"]), params["t_mult"],
                           params["cycles"])

    @classmethod
    def budget_params(cls, params: dict[str, Any], budget: Time) -> dict[str, Any]:
        """One cycle of the same shape filling the budget after the same warmup (the
        paper's reference: a separate cosine-with-warmup run per budget)."""
        warm = Time.parse(params["warmup"]).value
        return {**params, "cycles": 1, "t0": str(Time(round(budget.value - warm, 9), budget.unit))}

    def step_problems(self, duration: str, where: str) -> Iterable[tuple[tuple[str, ...], str]]:
        """Every cycle at least one step: a shorter one would end on the step where the one
        before it (or the warmup) ends, and the cyclic run (which pushes it a step on) and
        its budget runs (each exactly its budget) would disagree on where it ends."""
        for k, (end, rounded) in enumerate(zip(self.ends, self.rounded_ends, strict=True)):
            if end != rounded:
                before = f"cycle {k}" if k else "the warmup"
                length = Time(round(self.t0.value * self.t_mult**k, 9), self.t0.unit)
                yield ("schedule", "t0"), (
                    f"cycle {k + 1} ({length} long) would end at step {rounded}, where {before} "
                    f"ends, {where}: every cycle needs at least one step. "
                    + self._min_t0_hint())
                return

    def _min_t0_hint(self) -> str:
        """The smallest t0 (a whole number of steps, in t0's unit) whose cycles all fit."""
        clock, unit = self.clock, self.t0.unit
        for m in range(1, 1025):
            value = {"ep": math.ceil(m / clock.steps_per_epoch * 1e4) / 1e4, "ba": float(m),
                     "sp": float(m * clock.batch_size)}[unit]
            trial = dataclasses.replace(self, t0=Time(value, unit)).bind(clock, self.opt_lr)
            if trial.ends == trial.rounded_ends:
                return f"Use t0 >= {Time(value, unit)} ({m} step{'s' if m > 1 else ''})."
        return "Lengthen t0."

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        sched, lr = recipe["schedule"], recipe["optimizer"]["lr"]
        t0, warm = Time.parse(sched["t0"]), Time.parse(sched["warmup"])
        if t0.unit == "dur" or t0.value == 0:
            yield ("schedule", "t0"), (f"t0 must be a positive time in 'ep', 'ba' or 'sp' "
                                       f"(the schedule defines the run's length), got {t0}.")
        elif warm.value and warm.unit != t0.unit:
            yield ("schedule", "warmup"), (f"warmup {warm} and t0 {t0} must use the same unit, "
                                           "so the run's length is exact; e.g. both in 'ep'.")
        floor_problems = list(_check_min_lr(recipe))
        yield from floor_problems
        if floor_problems or "peak_decay" not in sched:  # sgdr: every peak is optimizer.lr
            return
        for k in range(1, sched["cycles"]):
            peak = lr * sched["peak_decay"] ** k
            if peak <= sched["min_lr"]:
                yield ("schedule", "peak_decay"), (
                    f"with peak_decay {sched['peak_decay']}, cycle {k + 1}'s peak LR "
                    f"({peak:.4g} = optimizer.lr {lr} x {sched['peak_decay']}^{k}) is not above "
                    f"min_lr {sched['min_lr']}, so that cycle would rise instead of decay. Raise "
                    "peak_decay, lower min_lr, or use fewer cycles.")
                return


@SCHEDULES.register("cyclic")
@dataclass(kw_only=True)
class Cyclic(_Restarts):
    """Tradeoff schedule (Portes et al. 2022): warmup, then cycles t0*t_mult^k decaying to min_lr."""

    shape: Literal["cosine", "linear"] = "cosine"
    peak_decay: Annotated[float, Range(gt=0, le=1)] = 1.0  # peak LR multiplied by this per cycle

    def peak(self, k: int) -> float:
        return self.peak_decay**k

    def decay(self, pos: float) -> float:
        return 1 - pos if self.shape == "linear" else super().decay(pos)


@SCHEDULES.register("sgdr")
@dataclass(kw_only=True)
class SGDR(_Restarts):
    """Cosine annealing with warm restarts (Loshchilov & Hutter 2017); a point at each restart."""

    t0: Time = Time(10, "ep")
    t_mult: PosInt = 2  # integer, as torch's CosineAnnealingWarmRestarts requires


def _check_momentum_cycling(recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
    opt = recipe["optimizer"]
    if recipe["schedule"]["cycle_momentum"] and (opt["name"] != "sgd" or opt["momentum"] == 0):
        yield ("schedule", "cycle_momentum"), (
            f"momentum cycling needs optimizer 'sgd' with momentum > 0 (got '{opt['name']}'"
            f"{'' if opt['name'] != 'sgd' else ' with momentum 0'}); for Adam-family optimizers "
            "it would rewrite beta1 (the CyclicLR/OneCycleLR trap), so set cycle_momentum: false.")
    if recipe["schedule"]["base_momentum"] > recipe["schedule"]["max_momentum"]:
        yield ("schedule", "base_momentum"), "base_momentum must not exceed max_momentum."


@SCHEDULES.register("triangular")
@dataclass(kw_only=True)
class Triangular(Schedule):
    """Cyclical LR (Smith 2017): base_lr up to max_lr and back every 2*step_size (torch CyclicLR)."""

    base_lr: NonNegFloat = 0.0  # absolute LR at the bottom of each cycle
    max_lr: PosFloat | None = None  # absolute LR at the top; null: the optimizer's lr
    step_size: PosTime = Time(2, "ep")  # half a cycle
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    gamma: Annotated[float, Range(gt=0, le=1)] = 1.0  # exp_range: amplitude * gamma^step
    cycle_momentum: bool = False  # SGD only: momentum moves opposite to the LR
    base_momentum: Fraction = 0.8
    max_momentum: Fraction = 0.9

    def bind(self, clock: Clock, opt_lr: float) -> Schedule:
        super().bind(clock, opt_lr)
        self.half = clock.steps(self.step_size, at_least_one=True)
        self.top = self.max_lr if self.max_lr is not None else opt_lr
        return self

    def _scale(self, t: int) -> tuple[float, float]:
        """(position height in [0, 1], amplitude scale) at step t after warmup, as CyclicLR."""
        cycle = math.floor(1 + t / (2 * self.half))
        x = 1.0 + t / (2 * self.half) - cycle
        height = x / 0.5 if x <= 0.5 else (x - 1) / -0.5
        amp = {"triangular": 1.0, "triangular2": 1 / 2.0 ** (cycle - 1),
               "exp_range": self.gamma**t}[self.mode]
        return height, amp

    def main_factor(self, t: int, length: int) -> float:
        height, amp = self._scale(t)
        return (self.base_lr + (self.top - self.base_lr) * height * amp) / self.opt_lr

    def momentum(self, step: int) -> float | None:
        if not self.cycle_momentum:
            return None
        height, amp = self._scale(max(step - self.warmup_steps, 0))
        return self.max_momentum - (self.max_momentum - self.base_momentum) * height * amp

    def curve_points(self) -> list[int]:
        cycle = 2 * self.half
        return [*range(self.warmup_steps + cycle, self.total, cycle), self.total]

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        yield from super().check_recipe(recipe)
        sched, lr = recipe["schedule"], recipe["optimizer"]["lr"]
        top = sched["max_lr"] if sched["max_lr"] is not None else lr
        if sched["base_lr"] >= top:
            yield ("schedule", "base_lr"), (f"base_lr {sched['base_lr']} must be below max_lr "
                                            f"{top} (max_lr defaults to optimizer.lr).")
        yield from _check_momentum_cycling(recipe)


@SCHEDULES.register("onecycle")
@dataclass(kw_only=True)
class OneCycle(Schedule):
    """One-cycle policy (Smith & Topin 2019), torch OneCycleLR semantics; peak = optimizer lr."""

    pct_start: Annotated[float, Range(gt=0, lt=1)] = 0.3
    anneal: Literal["cos", "linear"] = "cos"
    div_factor: PosFloat = 25.0  # initial LR = peak / div_factor
    final_div_factor: PosFloat = 1e4  # final LR = initial LR / final_div_factor
    three_phase: bool = False
    cycle_momentum: bool = False  # SGD only: momentum moves opposite to the LR
    base_momentum: Fraction = 0.85
    max_momentum: Fraction = 0.95

    def bind(self, clock: Clock, opt_lr: float) -> Schedule:
        super().bind(clock, opt_lr)
        n = self.total - self.warmup_steps
        init, low = 1 / self.div_factor, 1 / self.div_factor / self.final_div_factor
        lo_m, hi_m = self.base_momentum, self.max_momentum
        if self.three_phase:  # (end step, lr from -> to, momentum from -> to), as torch
            self.phases = [(self.pct_start * n - 1, init, 1.0, hi_m, lo_m),
                           (2 * self.pct_start * n - 2, 1.0, init, lo_m, hi_m),
                           (n - 1, init, low, hi_m, hi_m)]
        else:
            self.phases = [(self.pct_start * n - 1, init, 1.0, hi_m, lo_m),
                           (n - 1, 1.0, low, lo_m, hi_m)]
        return self

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal == "linear":
            return (end - start) * pct + start
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def _at(self, t: int, lr: bool) -> float:
        t = min(t, self.phases[-1][0])  # past the end: stay at the final value
        start = 0.0
        for i, (end, a, b, ma, mb) in enumerate(self.phases):
            if t <= end or i == len(self.phases) - 1:
                pct = (t - start) / (end - start)
                return self._anneal(a, b, pct) if lr else self._anneal(ma, mb, pct)
            start = end
        raise AssertionError("unreachable")

    def main_factor(self, t: int, length: int) -> float:
        return self._at(t, lr=True)

    def momentum(self, step: int) -> float | None:
        if not self.cycle_momentum:
            return None
        return self._at(max(step - self.warmup_steps, 0), lr=False)

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        yield from super().check_recipe(recipe)
        yield from _check_momentum_cycling(recipe)


def build_schedule(params: dict[str, Any]) -> Schedule:
    """A schedule from a resolved ``schedule:`` section."""
    return instantiate(SCHEDULES.get(params["name"]), params)
