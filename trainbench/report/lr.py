"""A run's LR schedule rebuilt from its recipe.yaml (the engine's own schedule code), for the
report's schedule plots and TensorBoard backfills."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainbench.trackers.base import LR_SAMPLES


@dataclass
class LRTrace:
    schedule: str  # the schedule's name
    steps: list[int]  # sampled training steps (1-based: the LR step s trained with)
    epochs: list[float]
    lrs: list[float]
    curve_steps: list[int]  # the run's curve points
    curve_epochs: list[float]
    curve_lrs: list[float]  # the LR reached there (points.csv's lr column)


def lr_trace(run_path: Path, smoke: bool = False) -> LRTrace | None:
    """The LR of the run in ``run_path``, sampled every ``max(1, total // 1000)`` steps (plus
    the first and last), with its curve points (meta.json's ``curve_steps`` when recorded).
    None when recipe.yaml does not rebuild here (unreadable, a dataset whose size is unknown)
    or the run is a budgets run (each budget has its own schedule)."""
    from trainbench.data import dataset_shape
    from trainbench.engine import bound_schedule
    from trainbench.errors import InputError
    from trainbench.recipe import load_recipe

    try:
        recipe = load_recipe(run_path / "recipe.yaml")
        if recipe["curve"]["mode"] == "budgets":
            return None
        data = recipe["data"]
        train_size = dataset_shape(data["dataset"], data).train_size
        if data["train_subset"] and not smoke:  # the engine: smoke runs use the full size's clock
            train_size = min(train_size, data["train_subset"])
        clock, sched = bound_schedule(recipe, train_size, smoke=smoke)
    except (InputError, OSError, KeyError, ValueError):
        return None
    peak = recipe["optimizer"]["lr"]
    total = sched.total
    every = max(1, total // LR_SAMPLES)
    steps = sorted({1, *range(every, total + 1, every), total})
    try:
        curve = [int(s) for s in json.loads((run_path / "meta.json").read_text())["curve_steps"]]
    except (OSError, ValueError, KeyError, TypeError):
        curve = sorted({*sched.curve_points(), total})
    curve = [s for s in curve if 0 < s <= total]
    return LRTrace(
        schedule=recipe["schedule"]["name"],
        steps=steps, epochs=[clock.epoch(s) for s in steps],
        lrs=[peak * sched.factor(s - 1) for s in steps],  # step s trains with factor(s - 1)
        curve_steps=curve, curve_epochs=[clock.epoch(s) for s in curve],
        curve_lrs=[peak * sched.end_factor(s) for s in curve])
