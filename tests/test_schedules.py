"""LR schedules as pure multipliers of the step, checked against torch.optim.lr_scheduler."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, MultiStepLR, StepLR

from trainbench.recipe import load_recipe
from trainbench.schedules import SCHEDULES, Constant, Cosine, MultiStep, Schedule, Step, build_schedule
from trainbench.timeunits import Clock, Time

REPO = Path(__file__).resolve().parents[1]
BASE_LR = 0.4


def lrs(make: Callable[[torch.optim.Optimizer], LRScheduler], steps: int) -> list[float]:
    """The LR each optimizer step 0..steps-1 uses, with the scheduler stepped per batch."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=BASE_LR)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def driven(schedule: Schedule, steps: int) -> list[float]:
    return lrs(lambda opt: LambdaLR(opt, schedule.factor), steps)


# --- warmup ---


@pytest.mark.parametrize("cls", [Constant, Cosine, Step, MultiStep])
def test_warmup_is_linear_and_reaches_one_at_its_last_step(cls: type[Schedule]) -> None:
    s = cls(warmup=Time(1, "ep")).bind(Clock(10, 32, 100), BASE_LR)
    assert s.warmup_steps == 10
    assert [s.factor(i) for i in range(10)] == pytest.approx([(i + 1) / 10 for i in range(10)], abs=1e-15)
    assert s.factor(9) == 1.0  # exactly the peak at the last warmup step
    assert s.factor(10) == 1.0  # and the schedule proper starts at the peak: no jump


@pytest.mark.parametrize(("warmup", "steps"), [("5ba", 5), ("0.1dur", 10), ("64sp", 2), ("0ep", 0),
                                               ("8sp", 1), ("3ep", 30)])
def test_warmup_units(warmup: str, steps: int) -> None:
    s = Constant(warmup=Time.parse(warmup)).bind(Clock(10, 32, 100), BASE_LR)
    assert s.warmup_steps == steps
    if steps:
        assert s.factor(0) == pytest.approx(1 / steps)
        assert s.factor(steps - 1) == 1.0
    assert [s.factor(i) for i in range(steps, 100)] == [1.0] * (100 - steps)


def test_warmup_longer_than_the_run_is_cut_to_the_run() -> None:
    s = Constant(warmup=Time(20, "ep")).bind(Clock(10, 32, 50), BASE_LR)
    assert s.warmup_steps == 50
    assert s.factor(49) == 1.0 and s.factor(0) == pytest.approx(1 / 50)


def test_cosine_warmup_continues_into_cosine() -> None:
    total, w = 60, 12
    s = Cosine(warmup=Time(w, "ba"), min_lr=0.01).bind(Clock(6, 16, total), BASE_LR)
    got = driven(s, total)
    assert got[:w] == pytest.approx([BASE_LR * (i + 1) / w for i in range(w)], rel=1e-12)
    # after warmup: a cosine over the remaining steps, as CosineAnnealingLR over total - w steps
    ref = lrs(lambda opt: CosineAnnealingLR(opt, T_max=total - w, eta_min=0.01), total - w)
    assert got[w:] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    steps = [got[i + 1] - got[i] for i in range(w - 1)]
    assert steps == pytest.approx([BASE_LR / w] * (w - 1), rel=1e-9)  # linear ramp
    assert abs(got[w] - got[w - 1]) < BASE_LR / w  # no jump at the seam


# --- constant ---


def test_constant() -> None:
    s = Constant().bind(Clock(10, 32, 40), BASE_LR)
    assert s.warmup_steps == 0
    assert driven(s, 40) == [BASE_LR] * 40
    assert s.curve_points() == [40]


# --- step / multistep vs torch ---


@pytest.mark.parametrize(("spe", "step_size", "every"), [(10, Time(3, "ep"), 30), (7, Time(25, "ba"), 25),
                                                         (10, Time(0.2, "dur"), 20)])
def test_step_matches_steplr(spe: int, step_size: Time, every: int) -> None:
    total = 100
    s = Step(step_size=step_size, gamma=0.5).bind(Clock(spe, 32, total), BASE_LR)
    assert s.every == every
    ref = lrs(lambda opt: StepLR(opt, step_size=every, gamma=0.5), total)
    assert driven(s, total) == pytest.approx(ref, rel=1e-12)
    assert s.factor(every - 1) == 1.0 and s.factor(every) == 0.5 and s.factor(2 * every) == 0.25


def test_step_counts_from_the_run_start_with_warmup() -> None:
    s = Step(warmup=Time(5, "ba"), step_size=Time(20, "ba"), gamma=0.1).bind(Clock(10, 32, 60), BASE_LR)
    assert [s.factor(i) for i in (0, 4, 5, 19, 20, 39, 40, 59)] == pytest.approx(
        [0.2, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rel=1e-12)


def test_multistep_matches_multisteplr() -> None:
    total = 100
    s = MultiStep(milestones=[Time(0.75, "dur"), Time(3, "ep"), Time(40, "ba")], gamma=0.2)
    s.bind(Clock(10, 32, total), BASE_LR)
    assert s.milestone_steps == [30, 40, 75]
    ref = lrs(lambda opt: MultiStepLR(opt, milestones=[30, 40, 75], gamma=0.2), total)
    assert driven(s, total) == pytest.approx(ref, rel=1e-12)
    assert [s.factor(i) for i in (29, 30, 39, 40, 74, 75, 99)] == pytest.approx(
        [1, 0.2, 0.2, 0.04, 0.04, 0.008, 0.008], rel=1e-12)


def test_multistep_default_milestones_are_half_and_three_quarters() -> None:
    s = MultiStep().bind(Clock(10, 32, 200), BASE_LR)
    assert s.milestone_steps == [100, 150]
    assert [s.factor(i) for i in (99, 100, 149, 150)] == pytest.approx([1, 0.1, 0.1, 0.01], rel=1e-12)


# --- cosine vs torch ---


@pytest.mark.parametrize(("total", "min_lr"), [(100, 0.0), (37, 0.004), (1, 0.0)])
def test_cosine_matches_cosineannealinglr(total: int, min_lr: float) -> None:
    s = Cosine(min_lr=min_lr).bind(Clock(10, 32, total), BASE_LR)
    assert s.warmup_steps == 0
    ref = lrs(lambda opt: CosineAnnealingLR(opt, T_max=total, eta_min=min_lr), total)
    assert driven(s, total) == pytest.approx(ref, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("warmup", ["0ep", "2ep"])
def test_cosine_ends_at_min_lr(warmup: str) -> None:
    s = Cosine(warmup=Time.parse(warmup), min_lr=0.004).bind(Clock(10, 32, 100), BASE_LR)
    assert s.factor(100) * BASE_LR == pytest.approx(0.004, rel=1e-12)
    assert s.factor(99) * BASE_LR > 0.004
    assert s.factor(50 + s.warmup_steps // 2) * BASE_LR == pytest.approx((BASE_LR + 0.004) / 2, rel=1e-12)
    assert Cosine().bind(Clock(10, 32, 100), BASE_LR).factor(100) == 0.0


@pytest.mark.parametrize("cls", [Constant, Cosine, Step, MultiStep])
def test_curve_point_is_the_run_end(cls: type[Schedule]) -> None:
    assert cls().bind(Clock(10, 32, 123), BASE_LR).curve_points() == [123]
    assert cls(warmup=Time(1, "ep")).bind(Clock(2.5, 32, 7), BASE_LR).curve_points() == [7]


# --- build_schedule ---


def test_build_schedule_from_resolved_sections() -> None:
    clock = Clock(10, 32, 100)
    cos = build_schedule({"name": "cosine", "warmup": "1ep", "min_lr": 0.002}).bind(clock, 0.2)
    assert type(cos) is Cosine and cos.warmup == Time(1, "ep") and cos.min_lr == 0.002
    assert cos.warmup_steps == 10 and cos.factor(100) * 0.2 == pytest.approx(0.002)

    step = build_schedule({"name": "step", "warmup": "0ep", "step_size": "3ep", "gamma": 0.5})
    step.bind(clock, 0.2)
    assert type(step) is Step and step.step_size == Time(3, "ep") and step.every == 30
    assert step.factor(30) == 0.5

    ms = build_schedule({"name": "multistep", "warmup": "0.1dur", "milestones": ["0.5dur", "80ba"],
                         "gamma": 0.1}).bind(clock, 0.2)
    assert type(ms) is MultiStep and ms.milestones == [Time(0.5, "dur"), Time(80, "ba")]
    assert ms.warmup_steps == 10 and ms.milestone_steps == [50, 80]

    const = build_schedule({"name": "constant", "warmup": 5}).bind(clock, 0.2)  # plain number: epochs
    assert type(const) is Constant and const.warmup_steps == 50


def test_build_schedule_unknown_name() -> None:
    with pytest.raises(KeyError, match=r"unknown schedule 'cosin'.*Did you mean 'cosine'\?"):
        build_schedule({"name": "cosin"})
    assert {"constant", "step", "multistep", "cosine"} <= set(SCHEDULES.names())


@pytest.mark.parametrize("name", ["constant", "step", "multistep", "cosine"])
def test_build_schedule_from_a_loaded_recipe(name: str) -> None:
    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml",
                         [f"schedule.name={name}", "schedule.warmup=1ep"])
    section = recipe["schedule"]
    assert section["name"] == name and section["warmup"] == "1ep"
    s = build_schedule(section)
    assert type(s) is SCHEDULES.get(name)
    s.bind(Clock(10, 64, 300), recipe["optimizer"]["lr"])
    assert s.warmup_steps == 10
    assert s.factor(9) == 1.0
    assert all(0 <= s.factor(i) <= 1 for i in range(301))
    assert s.curve_points() == [300]
    assert not math.isnan(s.factor(300))


def test_fractional_batches_are_not_a_time() -> None:
    # 'ba' counts steps: 0.5ba used to run as one step (a non-zero time is at least one)
    with pytest.raises(ValueError, match=r"'ba' counts optimizer steps, so it takes a whole number"):
        Time.parse("0.5ba")
    assert Time.parse("3.0ba") == Time(3, "ba")


@pytest.mark.parametrize("schedule", [("schedule.name=cosine",), ("schedule.name=cyclic",),
                                      ("schedule.name=sgdr", "schedule.t0=2ep")])
@pytest.mark.parametrize("min_lr", [0.05, 0.5])
def test_min_lr_not_below_the_peak_is_refused(schedule: tuple[str, ...], min_lr: float) -> None:
    from trainbench.recipe import RecipeError

    quickstart = REPO / "recipes" / "quickstart.yaml"  # optimizer.lr 0.05
    with pytest.raises(RecipeError) as e:
        load_recipe(quickstart, [*schedule, f"schedule.min_lr={min_lr}"])
    (p,) = e.value.problems
    assert (p.path, p.message) == ("schedule.min_lr", (
        f"min_lr {min_lr} is not below the peak LR (optimizer.lr 0.05), so the schedule would rise "
        "(or stay flat) where it should decay. Lower min_lr or raise optimizer.lr."))
    assert load_recipe(quickstart, [*schedule, "schedule.min_lr=0.049"])["schedule"]["min_lr"] == 0.049
