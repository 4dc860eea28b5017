"""Recipe checks that need the run's clock, made when the recipe is validated.

Some mistakes only show in steps: a warmup in epochs against a duration in batches, cycles
shorter than one step, budgets out of order once converted, a training subset larger than the
dataset. A dataset's size is known without loading it (:func:`trainbench.data.dataset_shape`),
so validation binds the schedule to the run's real clock exactly as the run will
(:func:`trainbench.engine.bound_schedule`) and compares there, before anything is written.

A dataset whose size cannot be known without its files (an ``imagefolder`` whose folders are
missing) skips the checks that need the clock; ``trainbench run`` refuses such a recipe anyway
(missing data) before it writes anything, and once the files are there validation knows the size.
The torchvision datasets count as their published sizes (e.g. CIFAR-10's 50,000 images).
Smoke runs dilate time (:mod:`trainbench.smoke`) but keep every phase at least one step, so a
recipe that passes on its real clock runs in smoke mode too; nothing here looks at the smoke clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainbench.schedules import SCHEDULES, Schedule
from trainbench.timeunits import Clock, Time

Problems = Iterable[tuple[tuple[str, ...], str]]


def clock_problems(recipe: dict[str, Any], source: str) -> Problems:
    """Problems of a resolved, otherwise valid recipe (a dict) seen on its real clock."""
    from trainbench.data import dataset_shape

    data = recipe["data"]
    shape = dataset_shape(data["dataset"], data)
    known = shape.train_size > 0  # 0: an imagefolder without files
    for key, size, which in (("train_subset", shape.train_size, "training"),
                             ("test_subset", shape.test_size, "test")):
        if known and data[key] is not None and data[key] > size:
            yield ("data", key), (f"{data[key]} is more than the {size} {which} images of "
                                  f"'{data['dataset']}'; use at most {size}, or null for all of them.")
            return
    train_size = data["train_subset"] or shape.train_size
    batch = data["batch_size"]
    if known and batch > train_size:
        yield ("data", "batch_size"), (f"{batch} is larger than the training set ({train_size} "
                                       "images), so an epoch would have no step; lower it.")
        return
    clock = Clock(train_size // batch, batch) if known else None
    yield from _budget_order(recipe["curve"], clock)
    if clock is None:
        return
    where = (f"at {clock.steps_per_epoch} steps per epoch ({train_size} training images / batch "
             f"size {batch})")
    sched, curve = recipe["schedule"], recipe["curve"]
    cls = SCHEDULES.get(sched["name"])
    budgets = curve["budgets"] if curve["mode"] == "budgets" else None
    if budgets is None or (cls.self_timed and budgets == [str(b) for b in cls.default_budgets(sched)]):
        # One run; or the budget runs of a cyclic schedule's own cycle ends, which end on the
        # same steps as its cycles once every cycle has a step of its own (checked here).
        yield from _bound(recipe, source, train_size).step_problems(recipe["duration"], where)
    elif cls.self_timed:  # each budget run: the same warmup, then one cycle to the budget
        warmup = clock.steps(sched["warmup"], at_least_one=True)
        for i, b in enumerate(budgets):
            if (steps := clock.steps(b)) <= warmup:
                yield ("curve", "budgets"), (
                    f"item {i} ({b}) is {steps} steps, not longer than the warmup {sched['warmup']} "
                    f"({warmup} steps) {where}: each budget run is the warmup plus one cycle up to the "
                    "budget. Drop it or give a longer budget.")
                return
    else:  # each budget is a separate run of that duration: the warmup must fit each one
        for b in budgets:
            yield from _bound({**recipe, "duration": b}, source, train_size).step_problems(
                f"the budget {b}", where)


def _bound(recipe: dict[str, Any], source: str, train_size: int) -> Schedule:
    """The recipe's schedule bound to its real clock, the way the run binds it."""
    from trainbench.engine import bound_schedule
    from trainbench.recipe import Recipe

    return bound_schedule(Recipe(recipe, source), train_size, smoke=False)[1]


def _budget_order(curve: dict[str, Any], clock: Clock | None) -> Problems:
    """Budgets in increasing order, each a different length: the last is the curve's final
    point and each budget runs in its own directory (budget1, budget2, ...). Compared in steps
    when the clock is known, else by value when they share a unit."""
    if curve["mode"] != "budgets" or not curve["budgets"]:
        return
    times = [Time.parse(b) for b in curve["budgets"]]
    if clock is not None:
        keys: list[float] = [clock.steps(t) for t in times]
    elif len({t.unit for t in times}) == 1:
        keys = [t.value for t in times]
    else:
        return
    in_steps = " (in steps)" if clock is not None and len({t.unit for t in times}) > 1 else ""
    for i in range(1, len(keys)):
        if keys[i] <= keys[i - 1]:
            first: dict[float, str] = {}  # of budgets of the same length, the first one given
            for key, t in zip(keys, times, strict=True):
                first.setdefault(key, str(t))
            order = sorted(first.items())
            what = "the same length as" if keys[i] == keys[i - 1] else "shorter than"
            yield ("curve", "budgets"), (
                f"item {i} ({times[i]}) is {what} item {i - 1} ({times[i - 1]}){in_steps}: budgets "
                "must be distinct and in increasing order (the last one is the curve's final point). "
                f"Write [{', '.join(b for _, b in order)}].")
            return
