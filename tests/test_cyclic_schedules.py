"""The cyclic family (cyclic, sgdr, triangular, onecycle): curve points, step-by-step
agreement with torch.optim.lr_scheduler, and the recipe rules of self-timed schedules."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, CyclicLR, LambdaLR, LRScheduler, OneCycleLR

from trainbench.budgets import budget_recipes
from trainbench.engine import bound_schedule, run_recipe
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import RunDir
from trainbench.schedules import SGDR, Cyclic, OneCycle, Schedule, Triangular, build_schedule
from trainbench.timeunits import Clock, Time

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
OPT_LR = 0.1
MIN_LR = 0.001
TOL = 1e-12


def ep(v: float) -> Time:
    return Time(v, "ep")


def paper_cyclic(**kw: object) -> Cyclic:
    """warmup 1ep, t0 2ep, t_mult 2, 4 cycles at 10 steps per epoch: ends at epochs 3, 7, 15, 31."""
    params: dict[str, object] = {"warmup": ep(1), "t0": ep(2), "t_mult": 2.0, "cycles": 4,
                                 "min_lr": MIN_LR, **kw}
    return Cyclic(**params).bind(Clock(steps_per_epoch=10, batch_size=8, total_steps=0), OPT_LR)  # type: ignore[arg-type]


def run_torch(opt: torch.optim.Optimizer, sched: LRScheduler, steps: int,
              step_fn: Callable[[int], None] | None = None) -> tuple[list[float], list[float]]:
    """(LR, momentum) used by optimizer steps 0..steps-1, the scheduler stepped after each
    optimizer step (``step_fn(i)`` steps it before step i, default ``sched.step()``)."""
    lrs, moms = [], []
    for i in range(steps):
        if i:
            opt.step()
            step_fn(i) if step_fn else sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0].get("momentum", math.nan))
    return lrs, moms


def sgd(lr: float, momentum: float = 0.0) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=momentum)


def driven(schedule: Schedule, steps: int) -> tuple[list[float], list[float | None]]:
    """The LR a real SGD optimizer uses at each step under LambdaLR(opt, schedule.factor),
    and the schedule's momentum for that step (what the engine sets)."""
    opt = sgd(OPT_LR, 0.9)
    lrs, _ = run_torch(opt, LambdaLR(opt, schedule.factor), steps)
    return lrs, [schedule.momentum(i) for i in range(steps)]


# --- cyclic: the tradeoff schedule ---


def test_cyclic_curve_points_are_the_cycle_ends() -> None:
    s = paper_cyclic()
    assert s.warmup_steps == 10
    assert s.curve_points() == [30, 70, 150, 310]  # epochs 3, 7, 15, 31
    assert s.total == 310
    assert s.starts == [10, 30, 70, 150]
    for end in s.curve_points():
        assert s.end_factor(end) * OPT_LR == pytest.approx(MIN_LR, rel=1e-15)  # decayed to min_lr
    # right-continuous: the step after a cycle end restarts at the peak; the last one stays low
    assert [s.factor(e) for e in s.curve_points()] == [1.0, 1.0, 1.0, pytest.approx(MIN_LR / OPT_LR)]
    assert s.factor(29) < s.factor(28) < s.factor(11) < s.factor(10) == 1.0


def test_cyclic_warmup_is_linear_and_continuous_into_the_first_cycle() -> None:
    s = paper_cyclic()
    assert [s.factor(i) for i in range(10)] == pytest.approx([(i + 1) / 10 for i in range(10)], abs=1e-15)
    assert s.factor(9) == 1.0 == s.factor(10)  # no jump at the seam
    assert [s.end_factor(i) for i in (0, 5, 10)] == [0.0, 0.5, 1.0]  # left limits during warmup


def test_cyclic_cosine_values_inside_a_cycle() -> None:
    s = paper_cyclic()
    floor = MIN_LR / OPT_LR
    for start, end in zip(s.starts, s.curve_points(), strict=True):
        for step in range(start, end):
            expect = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (step - start) / (end - start)))
            assert s.factor(step) == pytest.approx(expect, abs=1e-15)
            assert s.end_factor(step + 1) == pytest.approx(
                floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (step + 1 - start) / (end - start))),
                abs=1e-15)
    # halfway through the second cycle (steps 30..70): exactly the mean of peak and floor
    assert s.factor(50) == pytest.approx((1 + floor) / 2, abs=1e-15)


def test_cyclic_linear_shape_decays_linearly() -> None:
    s = paper_cyclic(shape="linear", min_lr=0.0)
    for start, end in zip(s.starts, s.curve_points(), strict=True):
        n = end - start
        values = [s.factor(step) for step in range(start, end)]
        assert values == [1 - i / n for i in range(n)]
        diffs = [a - b for a, b in itertools.pairwise(values)]
        assert diffs == pytest.approx([1 / n] * (n - 1), abs=1e-12)  # constant slope
        assert s.end_factor(end) == 0.0


def test_cyclic_peak_decay_halves_each_cycles_peak() -> None:
    s = paper_cyclic(peak_decay=0.5, min_lr=0.0)
    assert [s.factor(start) for start in s.starts] == [1.0, 0.5, 0.25, 0.125]
    assert [s.end_factor(end) for end in s.curve_points()] == [0.0] * 4
    assert s.factor(9) == 1.0  # the warmup still reaches the first cycle's full peak
    # with a floor: the peak decays, the floor does not
    f = paper_cyclic(peak_decay=0.5)
    floor = MIN_LR / OPT_LR
    assert [f.factor(start) for start in f.starts] == pytest.approx([1.0, 0.5, 0.25, 0.125], abs=1e-15)
    assert f.factor(50) == pytest.approx((0.5 + floor) / 2, abs=1e-15)


PARAMS = {"warmup": "1ep", "t0": "2ep", "t_mult": 2.0, "cycles": 4, "min_lr": MIN_LR}


def test_cyclic_derived_duration_and_default_budgets() -> None:
    assert Cyclic.derived_duration(PARAMS) == Time(31, "ep")
    assert Cyclic.default_budgets(PARAMS) == [ep(3), ep(7), ep(15), ep(31)]
    assert SGDR.derived_duration({**PARAMS, "warmup": "0ep", "t0": "10ep", "cycles": 3}) == ep(70)
    assert Cyclic.derived_duration({**PARAMS, "warmup": "100ba", "t0": "50ba"}) == Time(850, "ba")


@pytest.mark.parametrize("budget", [ep(3), ep(7), ep(15), ep(31)])
def test_cyclic_budget_params_are_one_cycle_filling_the_budget(budget: Time) -> None:
    params = Cyclic.budget_params(PARAMS, budget)
    assert params == {**PARAMS, "cycles": 1, "t0": f"{int(budget.value) - 1}ep"}
    assert Cyclic.derived_duration(params) == budget
    assert Cyclic.default_budgets(params) == [budget]
    # bound, it is one cosine from the peak to min_lr after the same warmup
    s = Cyclic(warmup=ep(1), t0=Time.parse(params["t0"]), t_mult=2.0, cycles=1,
               min_lr=MIN_LR).bind(Clock(10, 8), OPT_LR)
    assert s.curve_points() == [int(10 * budget.value)] and s.warmup_steps == 10
    assert s.end_factor(s.total) * OPT_LR == pytest.approx(MIN_LR, rel=1e-15)


def test_cyclic_non_integer_t_mult() -> None:
    s = paper_cyclic(t0=ep(4), t_mult=1.5)
    # cycles of 4, 6, 9 and 13.5 epochs after 1ep warmup: ends at epochs 5, 11, 20, 33.5
    assert s.curve_points() == [50, 110, 200, 335]
    assert [e - b for b, e in zip(s.starts, s.curve_points(), strict=True)] == [40, 60, 90, 135]
    params = {**PARAMS, "t0": "4ep", "t_mult": 1.5}
    assert Cyclic.derived_duration(params) == Time(33.5, "ep")
    assert Cyclic.default_budgets(params) == [ep(5), ep(11), ep(20), ep(33.5)]


def test_cyclic_fractional_steps_per_epoch_keeps_every_cycle() -> None:
    # 2.5 steps per epoch (a smoke-dilated clock): warmup 1ep = 2 steps (round half to even),
    # cycles of 0.1, 0.2, 0.4, ... epochs end at 2.75, 3.25, 4.25, 6.25, 10.25, 18.25 steps:
    # rounded 3, 3, 4, 6, 10, 18, then pushed apart so every cycle has at least one step.
    s = Cyclic(warmup=ep(1), t0=ep(0.1), t_mult=2.0, cycles=6, min_lr=0.0).bind(Clock(2.5, 8), OPT_LR)
    assert s.warmup_steps == 2
    assert s.curve_points() == [3, 4, 5, 6, 10, 18]
    assert s.starts == [2, 3, 4, 5, 6, 10]
    ends = s.curve_points()
    assert all(b > a for a, b in zip([s.warmup_steps, *ends], ends, strict=False))
    # one-step cycles still start at the peak and end at the floor
    for start, end in zip(s.starts, ends, strict=True):
        assert s.factor(start) == 1.0 and s.end_factor(end) == 0.0
    # t_mult 1: four cycles of 0.1ep would all round to step 3 (or 4); each gets its own step
    t = Cyclic(warmup=ep(1), t0=ep(0.1), t_mult=1.0, cycles=4).bind(Clock(2.5, 8), OPT_LR)
    assert t.curve_points() == [3, 4, 5, 6]


# --- sgdr: torch's CosineAnnealingWarmRestarts ---


@pytest.mark.parametrize(("t0", "t_mult", "eta_min", "cycles", "spe"), [
    (1, 1, 0.0, 4, 10), (2, 2, 0.01, 3, 7), (1, 3, 0.001, 3, 6), (3, 1, 0.005, 2, 9), (1, 2, 0.0, 5, 4)])
def test_sgdr_matches_cosine_annealing_warm_restarts(t0: int, t_mult: int, eta_min: float, cycles: int,
                                                     spe: int) -> None:
    s = SGDR(t0=ep(t0), t_mult=t_mult, cycles=cycles, min_lr=eta_min).bind(Clock(spe, 8), OPT_LR)
    assert s.total == spe * t0 * sum(t_mult**k for k in range(cycles))
    ours, _ = driven(s, s.total)
    opt = sgd(OPT_LR)
    ref = CosineAnnealingWarmRestarts(opt, T_0=t0, T_mult=t_mult, eta_min=eta_min)
    theirs, _ = run_torch(opt, ref, s.total, lambda i: ref.step(i / spe))
    assert ours == pytest.approx(theirs, abs=TOL, rel=0)
    # the curve points are the restarts: torch is back at the peak on the step after each end
    assert s.curve_points()[:-1] == [i for i in range(1, s.total) if theirs[i] == OPT_LR]
    assert [s.end_factor(e) * OPT_LR for e in s.curve_points()] == pytest.approx([eta_min] * cycles, abs=TOL)


# --- triangular: torch's CyclicLR ---


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("max_lr", [None, 0.3])
def test_triangular_matches_cycliclr(mode: str, max_lr: float | None) -> None:
    total, half, base = 47, 5, 0.01
    gamma = 0.99 if mode == "exp_range" else 1.0
    s = Triangular(base_lr=base, max_lr=max_lr, step_size=ep(0.5), mode=mode, gamma=gamma,  # type: ignore[arg-type]
                   cycle_momentum=True, base_momentum=0.8, max_momentum=0.9).bind(Clock(10, 8, total), OPT_LR)
    assert s.half == half
    ours, our_moms = driven(s, total)
    opt = sgd(OPT_LR, 0.9)
    ref = CyclicLR(opt, base_lr=base, max_lr=OPT_LR if max_lr is None else max_lr, step_size_up=half,
                   mode=mode, gamma=gamma, cycle_momentum=True, base_momentum=0.8, max_momentum=0.9)
    theirs, their_moms = run_torch(opt, ref, total + 1)
    assert ours == pytest.approx(theirs[:total], abs=TOL, rel=0)
    assert our_moms == pytest.approx(their_moms[:total], abs=TOL, rel=0)
    # a point at each full cycle end (back at base_lr) and at the run's end
    assert s.curve_points() == [10, 20, 30, 40, 47]
    assert [s.end_factor(p) * OPT_LR for p in s.curve_points()[:-1]] == pytest.approx([base] * 4, abs=TOL)
    assert s.end_factor(total) * OPT_LR == pytest.approx(theirs[total], abs=TOL)  # mid-cycle at the end


def test_triangular_momentum_off_and_curve_points_with_warmup() -> None:
    s = Triangular(warmup=ep(1), base_lr=0.01, step_size=Time(5, "ba")).bind(Clock(10, 8, 40), OPT_LR)
    assert [s.momentum(i) for i in range(40)] == [None] * 40
    assert s.curve_points() == [20, 30, 40]  # full cycles counted from the warmup's end
    assert [s.factor(i) for i in range(10)] == pytest.approx([(i + 1) / 10 for i in range(10)], abs=1e-15)
    # after warmup, the first cycle starts at base_lr: CyclicLR over the remaining 30 steps
    opt = sgd(OPT_LR)
    theirs, _ = run_torch(opt, CyclicLR(opt, base_lr=0.01, max_lr=OPT_LR, step_size_up=5,
                                        cycle_momentum=False), 30)
    assert driven(s, 40)[0][10:] == pytest.approx(theirs, abs=TOL, rel=0)


# --- onecycle: torch's OneCycleLR ---


@pytest.mark.parametrize(("three_phase", "anneal", "div", "final_div", "pct", "total"), [
    (False, "cos", 25.0, 1e4, 0.3, 50),
    (False, "linear", 10.0, 100.0, 0.25, 37),
    (True, "cos", 5.0, 1e3, 0.3, 61),
    (True, "linear", 20.0, 50.0, 0.4, 45)])
@pytest.mark.parametrize("cycle_momentum", [False, True])
def test_onecycle_matches_onecyclelr(three_phase: bool, anneal: str, div: float, final_div: float, pct: float,
                                     total: int, cycle_momentum: bool) -> None:
    s = OneCycle(pct_start=pct, anneal=anneal, div_factor=div, final_div_factor=final_div,  # type: ignore[arg-type]
                 three_phase=three_phase, cycle_momentum=cycle_momentum, base_momentum=0.8,
                 max_momentum=0.97).bind(Clock(10, 8, total), OPT_LR)
    ours, our_moms = driven(s, total)
    opt = sgd(OPT_LR, 0.9)
    ref = OneCycleLR(opt, max_lr=OPT_LR, total_steps=total, pct_start=pct, anneal_strategy=anneal,
                     div_factor=div, final_div_factor=final_div, three_phase=three_phase,
                     cycle_momentum=cycle_momentum, base_momentum=0.8, max_momentum=0.97)
    theirs, their_moms = run_torch(opt, ref, total)
    assert ours == pytest.approx(theirs, abs=TOL, rel=0)
    assert ours[0] == pytest.approx(OPT_LR / div, rel=1e-12)
    assert ours[-1] == pytest.approx(OPT_LR / div / final_div, rel=1e-12)
    if cycle_momentum:
        assert our_moms == pytest.approx(their_moms, abs=TOL, rel=0)
    else:
        assert our_moms == [None] * total
    assert s.curve_points() == [total]


def test_onecycle_after_warmup_is_onecyclelr_over_the_rest() -> None:
    s = OneCycle(warmup=Time(8, "ba"), div_factor=4.0).bind(Clock(10, 8, 48), OPT_LR)
    opt = sgd(OPT_LR)
    theirs, _ = run_torch(opt, OneCycleLR(opt, max_lr=OPT_LR, total_steps=40, div_factor=4.0,
                                          cycle_momentum=False), 40)
    ours, _ = driven(s, 48)
    assert ours[:8] == pytest.approx([OPT_LR * (i + 1) / 8 for i in range(8)], abs=TOL)
    assert ours[8:] == pytest.approx(theirs, abs=TOL, rel=0)


# --- recipes: self-timed durations, budgets, validation ---


def load(*sets: str, path: Path = QUICKSTART):
    return load_recipe(path, list(sets))


def problems(*sets: str, path: Path = QUICKSTART) -> list[str]:
    with pytest.raises(RecipeError) as e:
        load(*sets, path=path)
    return [f"{p.path}: {p.message}" for p in e.value.problems]


def test_cyclic_recipe_derives_its_duration() -> None:
    r = load("schedule.name=cyclic")
    assert r["duration"] == "31ep"  # the quickstart's 1ep warmup + 2 + 4 + 8 + 16
    assert r["schedule"] == {"name": "cyclic", "warmup": "1ep", "t0": "2ep", "t_mult": 2.0, "cycles": 4,
                             "min_lr": 0.0, "shape": "cosine", "peak_decay": 1.0}
    assert r["curve"] == {"mode": "cyclic", "budgets": None}
    assert load("schedule.name=cyclic", "duration=31ep")["duration"] == "31ep"  # consistent: fine
    assert load("schedule.name=sgdr", "schedule.t0=3ep", "schedule.cycles=2")["duration"] == "10ep"


def test_conflicting_explicit_duration_names_the_derived_one() -> None:
    assert problems("schedule.name=cyclic", "duration=30ep") == [
        "duration: the 'cyclic' schedule defines the run's length (31ep: warmup plus its cycles); "
        "remove 'duration' or set it to 31ep."]


def test_extends_switching_to_cyclic_drops_the_base_duration(tmp_path: Path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {QUICKSTART}\nname: child\nschedule: {{name: cyclic, t0: 1ep, cycles: 3}}\n")
    r = load_recipe(child)
    assert load_recipe(QUICKSTART)["duration"] == "30ep"
    assert r["duration"] == "8ep"  # 1ep warmup (kept: a common key) + 1 + 2 + 4
    assert r["schedule"]["warmup"] == "1ep"
    # a child that states a conflicting duration itself is still refused
    child.write_text(f"extends: {QUICKSTART}\nduration: 9ep\n"
                     "schedule: {name: cyclic, t0: 1ep, cycles: 3}\n")
    with pytest.raises(RecipeError, match=r"set it to 8ep"):
        load_recipe(child)


def test_warmup_and_t0_in_different_units() -> None:
    assert problems("schedule.name=cyclic", "schedule.t0=20ba") == [
        "schedule.warmup: warmup 1ep and t0 20ba must use the same unit, so the run's length is exact; "
        "e.g. both in 'ep'."]
    # no warmup: any unit for t0
    assert load("schedule.name=cyclic", "schedule.warmup=0ep", "schedule.t0=20ba",
                "schedule.cycles=2")["duration"] == "60ba"


@pytest.mark.parametrize("t0", ["0.5dur", "0ep"])
def test_t0_must_be_a_positive_absolute_time(t0: str) -> None:
    assert problems("schedule.name=cyclic", f"schedule.t0={t0}") == [
        f"schedule.t0: t0 must be a positive time in 'ep', 'ba' or 'sp' (the schedule defines the run's "
        f"length), got {t0}."]


def test_cosine_without_duration() -> None:
    assert problems("duration=null") == [
        "duration: the 'cosine' schedule needs the run's duration, e.g. duration: 30ep."]


@pytest.mark.parametrize(("sets", "msg"), [
    (("schedule.base_lr=0.05",), "base_lr 0.05 must be below max_lr 0.05 (max_lr defaults to optimizer.lr)."),
    (("schedule.base_lr=0.2", "schedule.max_lr=0.1"), "base_lr 0.2 must be below max_lr 0.1"),
])
def test_triangular_base_lr_below_max_lr(sets: tuple[str, ...], msg: str) -> None:
    (problem,) = problems("schedule.name=triangular", *sets)
    assert problem.startswith("schedule.base_lr: " + msg)


@pytest.mark.parametrize("schedule", ["triangular", "onecycle"])
def test_momentum_cycling_refused_for_adam(schedule: str) -> None:
    (problem,) = problems(f"schedule.name={schedule}", "optimizer.name=adam", "schedule.cycle_momentum=true")
    assert problem == (
        "schedule.cycle_momentum: momentum cycling needs optimizer 'sgd' with momentum > 0 (got 'adam'); "
        "for Adam-family optimizers it would rewrite beta1 (the CyclicLR/OneCycleLR trap), so set "
        "cycle_momentum: false.")
    assert "beta1" in problem
    # without cycling, Adam is fine; SGD with momentum may cycle
    assert load(f"schedule.name={schedule}", "optimizer.name=adam")["schedule"]["cycle_momentum"] is False
    assert load(f"schedule.name={schedule}", "schedule.cycle_momentum=true")["schedule"]["cycle_momentum"]


def test_budgets_mode_fills_budgets_from_the_cycle_ends() -> None:
    r = load("schedule.name=cyclic", "curve.mode=budgets")
    assert r["curve"] == {"mode": "budgets", "budgets": ["3ep", "7ep", "15ep", "31ep"]}
    given = load("schedule.name=cyclic", "curve.mode=budgets", "curve.budgets=[5ep, 10ep]")
    assert given["curve"]["budgets"] == ["5ep", "10ep"]


def test_budgets_mode_with_cosine_needs_budgets() -> None:
    assert problems("curve.mode=budgets") == [
        "curve.budgets: budgets mode needs 'curve.budgets' (a list of run lengths, e.g. [10ep, 20ep, 40ep]) "
        "for the 'cosine' schedule; only cyclic and sgdr schedules provide them."]
    assert load("curve.mode=budgets", "curve.budgets=[10ep, 20ep]")["curve"]["budgets"] == ["10ep", "20ep"]


@pytest.mark.parametrize("sets", [("schedule.name=cyclic",), ("schedule.name=cyclic", "curve.mode=budgets"),
                                  ("schedule.name=sgdr", "schedule.t0=2ep"),
                                  ("schedule.name=triangular", "schedule.cycle_momentum=true"),
                                  ("schedule.name=onecycle", "schedule.three_phase=true")])
def test_resolved_recipe_round_trips(tmp_path: Path, sets: tuple[str, ...]) -> None:
    r = load(*sets)
    path = tmp_path / "resolved.yaml"
    path.write_text(r.to_yaml())
    again = load_recipe(path)
    assert again.data == r.data
    assert again.to_yaml() == r.to_yaml()



@pytest.mark.parametrize(("t0", "t_mult", "warmup", "spe"), [
    (0.7, 1.5, 0.0, 10), (0.3, 1.7, 0.1, 13), (1.1, 1.3, 0.5, 7), (0.9, 2.0, 0.2, 391)])
def test_cycle_ends_fall_on_the_steps_of_the_budget_runs(t0: float, t_mult: float, warmup: float,
                                                         spe: int) -> None:
    # fidelity compares point k of the cyclic run with the run of budget k: same step.
    params = {"name": "cyclic", "t0": f"{t0}ep", "t_mult": t_mult, "cycles": 5, "warmup": f"{warmup}ep"}
    sched = build_schedule(params).bind(Clock(spe, 8), 0.1)
    budgets = Cyclic.default_budgets({**params, "t0": f"{t0}ep"})
    assert sched.curve_points() == [Clock(spe, 8).steps(b) for b in budgets]


def test_peak_decay_below_min_lr_names_the_cycle() -> None:
    # quickstart lr 0.05: peaks 0.05, 0.015, 0.0045 (cycle 3) against min_lr 0.01
    assert problems("schedule.name=cyclic", "schedule.min_lr=0.01", "schedule.peak_decay=0.3") == [
        "schedule.peak_decay: with peak_decay 0.3, cycle 3's peak LR (0.0045 = optimizer.lr 0.05 x 0.3^2) "
        "is not above min_lr 0.01, so that cycle would rise instead of decay. Raise peak_decay, lower "
        "min_lr, or use fewer cycles."]
    assert load("schedule.name=cyclic", "schedule.min_lr=0.01", "schedule.peak_decay=0.3",
                "schedule.cycles=2")["schedule"]["cycles"] == 2  # the last peak 0.015 is above it
    assert load("schedule.name=cyclic", "schedule.peak_decay=0.3")  # min_lr 0: any decay is fine


# Sub-step cycles. digits: 1437 training images; batch 143 -> 10 steps per epoch.
DIGITS_TRAIN = 1437


def _cyclic_sets(t0: str, t_mult: float, warmup: str, batch: int) -> list[str]:
    return [f"data.batch_size={batch}", "schedule.name=cyclic", f"schedule.t0={t0}",
            f"schedule.t_mult={t_mult}", f"schedule.warmup={warmup}", "schedule.cycles=5"]


@pytest.mark.parametrize(("t0", "t_mult", "warmup", "batch", "refused"), [
    ("0.05ep", 1.0, "0ep", 143, True),  # the issue's: cyclic ends 1..5, budget totals 1, 1, 2, 2, 2
    ("0.1ep", 1.0, "0.15ep", 143, True),  # 1 step each, but 1.5 -> 2 and 2.5 -> 2 (half to even)
    ("0.05ep", 2.0, "0ep", 143, True),
    ("0.1ep", 1.0, "0ep", 143, False),
    ("0.15ep", 1.0, "0.05ep", 143, False),
    ("0.07ep", 1.3, "0ep", 64, False),
    ("3ba", 1.5, "2ba", 64, False),
    ("100sp", 1.0, "0sp", 64, False),
])
def test_cyclic_run_and_its_budget_runs_agree_or_the_recipe_is_refused(
        t0: str, t_mult: float, warmup: str, batch: int, refused: bool) -> None:
    # Each side through its own code path: the cyclic run's curve points from its bound
    # schedule, each budget run's length from its own resolved recipe and clock.
    sets = _cyclic_sets(t0, t_mult, warmup, batch)
    if refused:
        (p,) = problems(*sets)
        assert p.startswith("schedule.t0: cycle ") and "every cycle needs at least one step. Use t0 >= " in p
        return
    cyclic = load(*sets)
    _, schedule = bound_schedule(cyclic, DIGITS_TRAIN, smoke=False)
    totals = [bound_schedule(sub, DIGITS_TRAIN, smoke=False)[0].total_steps
              for sub in budget_recipes(load(*sets, "curve.mode=budgets"))]
    assert schedule.curve_points() == totals


def test_sub_step_cycle_message_gives_the_smallest_t0_that_works() -> None:
    assert problems(*_cyclic_sets("0.05ep", 1.0, "0ep", 143)) == [
        "schedule.t0: cycle 1 (0.05ep long) would end at step 0, where the warmup ends, at 10 steps per "
        "epoch (1437 training images / batch size 143): every cycle needs at least one step. Use t0 >= "
        "0.1ep (1 step)."]
    load(*_cyclic_sets("0.1ep", 1.0, "0ep", 143))  # which validates


def test_cyclic_and_budget_runs_put_their_curve_points_on_the_same_steps(tmp_path: Path) -> None:
    # End to end on real (tiny) runs: 160 images / batch 16 = 10 steps per epoch; cycles of
    # 0.15ep end at 1.5, 3, 4.5 steps -> 2, 3, 4.
    sets = ["data.train_subset=160", "data.batch_size=16", "model.width=4", "eval.every=null",
            "schedule.name=cyclic", "schedule.warmup=0ep", "schedule.t0=0.15ep", "schedule.t_mult=1",
            "schedule.cycles=3", "device=cpu"]
    cyclic, budgets = load(*sets), load(*sets, "curve.mode=budgets", "name=budgets")
    assert run_recipe(cyclic, RunDir(tmp_path / "cyclic")).status == "completed"
    assert run_recipe(budgets, RunDir(tmp_path / "budgets")).status == "completed"
    cyclic_steps = [p["step"] for p in RunDir(tmp_path / "cyclic").read_points() if p["curve"] == 1]
    budget_steps = [p["step"] for p in RunDir(tmp_path / "budgets").read_points()]
    assert cyclic_steps == budget_steps == [2, 3, 4]
