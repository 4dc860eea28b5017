"""Budgets mode (``curve: {mode: budgets}``): the expensive reference curve.

One separate run per budget, each with the recipe's schedule scaled to that budget, in
sub-directories ``budget1/``, ``budget2/``, ... of the run directory; the run's own
``points.csv`` collects each budget run's final point (``curve`` = 1), with that run's own
training time. By default the budgets are the cyclic schedule's cycle ends, so a budgets
run and a cyclic run of the same recipe line up point by point.

Scaling (see each schedule's ``budget_params``): a cyclic or sgdr schedule becomes a single
cycle of the same shape, decaying to ``min_lr`` at the budget's end, after the *same*
warmup (an absolute length, as in the paper: 8 warmup epochs for every budget). Other
schedules keep their parameters, so times given in ``dur`` scale with the budget and times
in ``ep``/``ba`` do not.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from trainbench.recipe import Recipe, resolve
from trainbench.results import RunDir, parse_points
from trainbench.schedules import SCHEDULES
from trainbench.timeunits import Time

if TYPE_CHECKING:
    from trainbench.engine import Outcome, Progress
    from trainbench.interrupts import StopSignal


def budget_recipes(recipe: Recipe) -> list[Recipe]:
    """One single-run recipe per budget (curve mode cyclic, duration = the budget)."""
    sched = recipe["schedule"]
    cls = SCHEDULES.get(sched["name"])
    out = []
    for k, raw_budget in enumerate(recipe["curve"]["budgets"], 1):
        budget = Time.parse(raw_budget)
        data = copy.deepcopy(recipe.data)
        # log=[]: trackers follow the parent run, which collects each budget's final point.
        data.update(name=f"{recipe.name}-budget{k}", curve={"mode": "cyclic", "budgets": None}, log=[],
                    schedule=cls.budget_params(sched, budget), duration=str(budget))
        out.append(Recipe(resolve(data, {}, recipe.source), recipe.source))
    return out


def run_budgets(recipe: Recipe, run: RunDir, *, smoke: bool = False,
                progress: Progress | None = None, resume: bool = False,
                stop: StopSignal | None = None) -> Outcome:
    """Each budget's run in turn. Resuming keeps the budget runs that completed (with the
    same recipe) and resumes the one that was interrupted."""
    from trainbench import distributed
    from trainbench.engine import Outcome, run_recipe

    points: list[dict[str, float]] = []
    writer = None
    subs = budget_recipes(recipe)
    run.update_meta(curve_mode="budgets", budgets=recipe["curve"]["budgets"],
                    budget_dirs=[f"budget{k}" for k in range(1, len(subs) + 1)])
    if distributed.is_main():  # the other ranks of a data-parallel run write nothing
        run.points_path.unlink(missing_ok=True)  # rebuilt from the budget runs' final points
    try:
        for k, sub in enumerate(subs, 1):
            sub_run = type(run)(run.path / f"budget{k}")  # read-only on ranks other than 0
            if resume and _completed(sub_run, sub):
                final = {**sub_run.read_points()[-1], "curve": 1}
            else:
                if stop is not None and stop.requested:
                    return Outcome("interrupted", points, f"stopped before budget {k}; continue with "
                                   "--resume", exit_code=stop.exit_code)
                outcome = run_recipe(sub, sub_run, smoke=smoke, progress=progress, resume=resume, stop=stop)
                sub_run.update_meta(budget_of=recipe.name)  # readers (compare) skip sub-runs
                if outcome.status != "completed":
                    return Outcome(outcome.status, points, f"budget {k} ({sub['duration']}): "
                                   f"{outcome.message}", exit_code=outcome.exit_code)
                final = {**outcome.points[-1], "curve": 1}
            if writer is None:  # the first budget run: it also says where the runs ran
                run.update_meta(**{k: v for k, v in sub_run.read_meta().items()
                                   if k in ("device", "torch_build", "cuda", "precision")})
                # The budget runs' own columns: a cell they leave empty (energy_j where it is
                # not measured) stays a column here too.
                writer = run.points_writer(parse_points(sub_run.points_path)[0])
            writer.append(final)
            points.append(final)
    finally:
        if writer is not None:
            writer.close()
    return Outcome("completed", points)


def _completed(sub_run: RunDir, sub: Recipe) -> bool:
    from trainbench.engine import device_type

    return (sub_run.status() == "completed" and sub_run.holds(sub.to_yaml(), device_type(sub["device"]))
            and bool(sub_run.read_points()))


def resume_note(recipe: Recipe, run: RunDir) -> str:
    """What resuming this budgets run does, in words: which budget runs it keeps and where the
    first unfinished one continues (as :func:`run_budgets` will)."""
    from trainbench.checkpoint import latest_step

    subs = budget_recipes(recipe)
    for k, sub in enumerate(subs, 1):
        sub_run = RunDir(run.path / f"budget{k}")
        if _completed(sub_run, sub):
            continue
        step = latest_step(sub_run.path) if sub_run.exists() else None
        where = f"from step {step}" if step is not None else "from its start (no checkpoint)"
        return f"resuming: {k - 1} of {len(subs)} budget runs completed, continuing budget {k} {where}"
    return f"resuming: all {len(subs)} budget runs completed, collecting their points"
