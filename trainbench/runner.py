"""Planning a ``trainbench run`` call: recipes x seeds -> run directories, checked up front
so bad input fails before any training starts (exit code 2)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainbench.checkpoint import latest_step
from trainbench.errors import InputError
from trainbench.recipe import Recipe, check_name
from trainbench.results import RunDir
from trainbench.runlock import LOCK_NAME, RunLock, busy_message, is_locked

MAX_CHANGES_SHOWN = 6  # lines of a "different recipe" refusal


@dataclass
class PlannedRun:
    recipe: Recipe
    run: RunDir
    skip: str = ""  # why this run is skipped, if it is
    resume: bool = False  # continue the unfinished run in ``run`` from its last checkpoint
    lock: RunLock | None = None  # held from planning until the run ends
    created: Path | None = None  # the outermost folder planning created for the run, if any

    def release(self) -> None:
        """Unlock the run; a run directory left holding nothing but the lock (the run stopped
        on bad input, or never started) is removed, with the folders planning made for it."""
        if self.lock is None:
            return
        path = self.run.path
        empty = {p.name for p in path.iterdir()} == {LOCK_NAME} if path.is_dir() else False
        if empty:  # still ours: a process opening the lock now is refused, as when we held it
            (path / LOCK_NAME).unlink(missing_ok=True)
        self.lock.release()
        self.lock = None
        while empty and self.created is not None:
            try:
                path.rmdir()  # only if nothing else appeared meanwhile
            except OSError:
                break
            if path == self.created:
                break
            path = path.parent


RESUMABLE = ("running", "interrupted", "failed")


def run_dir_for(out: Path, recipe: Recipe, smoke: bool) -> RunDir:
    """``OUT/<name>/seed<S>``, always inside ``out``. Recipes are checked when loaded; this
    guards a Recipe built some other way from writing (or --force deleting) elsewhere."""
    if problem := check_name(recipe.name):
        raise InputError(f"{recipe.source}: name {recipe.name!r} cannot name a run: it {problem}")
    return RunDir(out / recipe.name / f"seed{recipe.seed}{'-smoke' if smoke else ''}")


def seeds_for(recipe: Recipe, seeds: int | None, seed: int | None) -> list[int]:
    first = recipe.seed if seed is None else seed
    return [first + i for i in range(seeds or 1)]


def plan_runs(recipes: Sequence[Recipe], *, out: Path, seeds: int | None = None,
              seed: int | None = None, smoke: bool = False, force: bool = False,
              resume: bool = False) -> list[PlannedRun]:
    """Recipes x seeds -> run directories, checked before anything trains or is written: a
    completed run of the same recipe is skipped (``force``: run again), an unfinished one is
    continued with ``resume`` and refused otherwise; a directory another process writes, or
    one with files but no meta.json, is refused; so are a device this machine lacks and missing
    data. The runs to train are locked on return;
    bad input raises InputError (exit 2)."""
    if force and resume:
        raise InputError("--force starts runs over and --resume continues them: give one of the two.")
    plans, problems, seen = [], [], set()
    for recipe in recipes:
        for s in seeds_for(recipe, seeds, seed):
            r = recipe.with_seed(s)
            run = run_dir_for(out, r, smoke)
            if run.path in seen:
                problems.append(f"{run.path}: two of the given recipes are both named "
                                f"'{r.name}' with seed {s}; give one a different 'name:'.")
                continue
            seen.add(run.path)
            plan = PlannedRun(r, run)
            if is_locked(run.path):
                problems.append(busy_message(run.path))
            elif run.exists() and not force:
                problem = _existing(plan, resume)
                if problem:
                    problems.append(problem)
            elif not run.exists() and not force and (found := run.contents()):
                problems.append(_foreign_message(run, found))
            plans.append(plan)
    if problems:
        raise InputError("\n".join(problems))
    to_run = [p.recipe for p in plans if not p.skip]
    problems = startup_problems(to_run)
    if not smoke:  # smoke runs stand in synthetic data for missing files
        try:
            check_data(to_run)
        except InputError as e:
            problems.append(str(e))
    if problems:
        raise InputError("\n".join(problems))
    for p in plans:
        p.created = _outermost_missing(p.run.path)
    _check_writable(out)
    locked: list[PlannedRun] = []
    try:
        for p in plans:
            if not p.skip:
                p.lock = RunLock(p.run.path).acquire()
                locked.append(p)
    except InputError:
        for p in locked:
            p.release()
        raise
    return plans


def plan_job(recipes: Sequence[Recipe], **options: Any) -> list[PlannedRun]:
    """:func:`plan_runs` for this process's job. With several processes (a data-parallel job,
    :mod:`trainbench.distributed`) rank 0 alone plans, and so alone locks and creates run
    directories; the other ranks receive its decisions (which runs, skip or resume) or its
    error. Planning on every rank would race: rank 1 checking a run directory could see rank
    0's fresh lock ("busy") or its new meta.json, and decide differently. Rank 0 holds the
    locks for the job: its death releases them (flock), as a single process's would."""
    from trainbench import distributed

    if distributed.world_size() <= 1:
        return plan_runs(recipes, **options)
    plans: list[PlannedRun] = []
    shared: tuple[str, Any] = ("plans", [])
    if distributed.is_main():
        try:
            plans = plan_runs(recipes, **options)
            shared = ("plans", [(p.recipe, str(p.run.path), p.skip, p.resume) for p in plans])
        except InputError as e:
            shared = ("error", str(e))
    kind, value = distributed.broadcast_object(shared)
    if kind == "error":
        raise InputError(value)
    if distributed.is_main():
        return plans
    return [PlannedRun(r, RunDir(path), skip, resume) for r, path, skip, resume in value]


def _existing(plan: PlannedRun, resume: bool) -> str:
    """What to do with a run directory that already holds a run (sets ``plan.skip`` or
    ``plan.resume``); a problem message if it cannot be used."""
    from trainbench.engine import device_type

    run, r = plan.run, plan.recipe
    status = run.status()
    changes = run.changes(r.to_yaml(), device_type(r["device"]))
    if changes:
        shown = changes[:MAX_CHANGES_SHOWN]
        if len(changes) > len(shown):
            shown.append(f"... and {len(changes) - len(shown)} more")
        return (f"{run.path} holds a run of a different recipe: its recipe.yaml differs from "
                f"'{r.source}' as resolved now (its value -> now):\n"
                + "".join(f"    {c}\n" for c in shown)
                + "  Use --force to replace it, or another --out.")
    if status == "completed":
        plan.skip = f"already completed in {run.path} (use --force to run it again)"
        return ""
    step = latest_step(run.path)
    where = f"its last checkpoint is at step {step}" if step is not None else "it has no checkpoint yet"
    if status in RESUMABLE:
        if resume:
            plan.resume = True
            return ""
        what = (f"has status '{status}'" + (" but no process is writing it (killed?)"
                                             if status == "running" else ""))
        return (f"{run.path} holds an unfinished run: it {what}; {where}. Use --resume to continue "
                "it" + (" from there" if step is not None else " (it starts over)")
                + ", or --force to start it over.")
    return (f"{run.path} already holds a run with status '{status}'"
            + (", which --resume cannot continue" if resume else "")
            + ". Use --force to start it over, or another --out.")


def _foreign_message(run: RunDir, found: list[str]) -> str:
    listed = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    return (f"{run.path} holds {listed} but no meta.json, so trainbench cannot tell what ran "
            "there or whether it finished (was meta.json deleted?). Use --force to replace it "
            "with a new run, or another --out.")


def resume_note(plan: PlannedRun) -> str:
    """What ``--resume`` does with the planned run, in words for the terminal."""
    if plan.recipe["curve"]["mode"] == "budgets":
        from trainbench.budgets import resume_note as budgets_note

        return budgets_note(plan.recipe, plan.run)
    step = latest_step(plan.run.path)
    return "no checkpoint: from the start" if step is None else f"resuming from step {step}"


def startup_problems(recipes: Sequence[Recipe]) -> list[str]:
    """What would stop these runs as they start, found without loading any data: a device
    this machine lacks, a tracker (``log``) whose extra is not installed. (A batch larger than
    the training set is refused when the recipe loads: :mod:`trainbench.clock_checks`.)"""
    from trainbench.engine import resolve_device
    from trainbench.trackers import tracker_problems

    problems = []
    for r in recipes:
        try:
            resolve_device(r["device"])
        except InputError as e:
            problems.append(f"{r.source}: {e}")
    problems += tracker_problems(recipes)
    return list(dict.fromkeys(problems))


def _outermost_missing(path: Path) -> Path | None:
    """The outermost of ``path`` and its parents that does not exist yet, if any."""
    top = None
    while not path.exists() and path != path.parent:
        top, path = path, path.parent
    return top


MIN_FREE_BYTES = 64 * 2**20  # below this, checkpoints and points would soon fail to write


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".trainbench-write-test"
        probe.write_text("ok")
        probe.unlink()
        free = shutil.disk_usage(out).free
    except OSError as e:
        raise InputError(f"--out {out}: cannot write there ({e.strerror}). Choose a writable "
                         "folder with --out.") from None
    if free < MIN_FREE_BYTES:
        raise InputError(f"--out {out}: only {free / 2**20:.1f} MiB free on that disk; trainbench "
                         f"needs at least {MIN_FREE_BYTES // 2**20} MiB for points and checkpoints. "
                         "Free space, or choose another --out.")


def check_data(recipes: Sequence[Recipe]) -> None:
    """Every recipe's dataset files are present (or downloadable); raise with all gaps."""
    from trainbench.data import check_dataset
    from trainbench.errors import DataMissingError

    problems = []
    for r in recipes:
        try:
            check_dataset(r["data"]["dataset"], r["data"])
        except DataMissingError as e:
            problems.append(f"{r.source}: {e}")
    if problems:
        raise InputError("\n".join(dict.fromkeys(problems)))


def summarize(points: list[dict[str, float]]) -> dict[str, float | None]:
    if not points:
        return {"final_acc": None, "best_acc": None, "train_time_s": None, "data_wait": None}
    last = points[-1]
    return {"final_acc": last["test_acc"], "best_acc": max(p["test_acc"] for p in points),
            "train_time_s": last["train_time_s"], "data_wait": data_wait_fraction(last)}


DATA_WAIT_WARN = 0.10  # of training time: above it, the loader is the bottleneck


def data_wait_fraction(point: dict[str, float]) -> float | None:
    """The share of training time the step loop spent waiting for batches (None for points
    written before the column existed)."""
    wait, total = point.get("data_wait_s"), point.get("train_time_s")
    if wait is None or total is None or total != total or wait != wait:  # absent or NaN
        return None
    return wait / total if total > 0 else 0.0


def data_wait_warning(name: str, fraction: float | None) -> str | None:
    if fraction is None or fraction <= DATA_WAIT_WARN:
        return None
    return (f"{name}: the step loop waited for data {fraction:.0%} of its training time (over "
            f"{DATA_WAIT_WARN:.0%}): the loader is the bottleneck: raise data.workers or use a "
            "GPU decoder.")
