"""Planning a ``trainbench run`` call: recipes x seeds -> run directories, checked up front
so bad input fails before any training starts (exit code 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainbench.errors import InputError
from trainbench.recipe import Recipe
from trainbench.results import RunDir


@dataclass
class PlannedRun:
    recipe: Recipe
    run: RunDir
    skip: str = ""  # why this run is skipped, if it is


def run_dir_for(out: Path, recipe: Recipe, smoke: bool) -> RunDir:
    return RunDir(out / recipe.name / f"seed{recipe.seed}{'-smoke' if smoke else ''}")


def seeds_for(recipe: Recipe, seeds: int | None, seed: int | None) -> list[int]:
    first = recipe.seed if seed is None else seed
    return [first + i for i in range(seeds or 1)]


def plan_runs(recipes: Sequence[Recipe], *, out: Path, seeds: int | None = None,
              seed: int | None = None, smoke: bool = False, force: bool = False) -> list[PlannedRun]:
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
            if run.exists() and not force:
                status = _status(run)
                if _recipe_text(run) != r.to_yaml():
                    problems.append(f"{run.path} holds a run of a different recipe (its "
                                    f"recipe.yaml differs from '{r.source}' as resolved now). "
                                    "Use --force to replace it, or another --out.")
                elif status == "completed":
                    plan.skip = f"already completed in {run.path} (use --force to run it again)"
                else:
                    problems.append(f"{run.path} already holds a run with status '{status}'. "
                                    "Use --force to start it over, or another --out.")
            plans.append(plan)
    if problems:
        raise InputError("\n".join(problems))
    _check_writable(out)
    if not smoke:  # smoke runs stand in synthetic data for missing files
        check_data([p.recipe for p in plans if not p.skip])
    return plans


def _status(run: RunDir) -> str:
    try:
        return str(run.read_meta().get("status", "unknown"))
    except (OSError, ValueError):
        return "unreadable"


def _recipe_text(run: RunDir) -> str:
    try:
        return run.recipe_path.read_text()
    except OSError:
        return ""


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".trainbench-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise InputError(f"--out {out}: cannot write there ({e.strerror}). Choose a writable "
                         "folder with --out.") from None


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
        return {"final_acc": None, "best_acc": None, "train_time_s": None}
    return {"final_acc": points[-1]["test_acc"], "best_acc": max(p["test_acc"] for p in points),
            "train_time_s": points[-1]["train_time_s"]}
