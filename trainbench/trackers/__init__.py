"""Trackers: the run's points also sent to TensorBoard, MLflow or Weights & Biases.

The run directory stays the source of truth; a tracker is a copy for the tools researchers
already watch. One module per tracker (:mod:`.tensorboard`, :mod:`.mlflow`, :mod:`.wandb`),
each a :class:`~trainbench.trackers.base.Tracker`, each an optional extra imported only when
used. The engine knows them through two calls: :func:`open_trackers` at the start of a run
(which hands them to the run's points writer: every row appended to points.csv, and the LR
of every step, reach them) and ``Trackers.end()`` once the run's status is recorded.

Which trackers: the recipe's ``log:`` list (``trainbench run --log`` adds to it). ``log`` is
not part of a run's identity: a completed run is skipped, and an unfinished one resumed,
whatever trackers are asked for now.

A tracker never fails a training run: its first error (a server down, a full disk, a client
bug) prints one warning, switches that tracker off for the rest of the run, and is recorded
in meta.json (``trackers``); ``trainbench export`` sends the run later. A missing extra is
found before anything trains (:func:`tracker_problems`, exit 2).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainbench.trackers.base import RunInfo, Tracker, Trackers

if TYPE_CHECKING:
    from trainbench.recipe import Recipe
    from trainbench.results import RunDir

# name -> (module.Class, the top-level package it needs; the extra has the tracker's name)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("trainbench.trackers.tensorboard:TensorBoardTracker", "tensorboard"),
    "mlflow": ("trainbench.trackers.mlflow:MlflowTracker", "mlflow"),
    "wandb": ("trainbench.trackers.wandb:WandbTracker", "wandb"),
}

__all__ = ["TRACKERS", "RunInfo", "Tracker", "Trackers", "install_hint", "missing_extra",
           "missing_module", "new_tracker", "open_trackers", "parse_log_option", "tracker_problems"]


def install_hint(name: str) -> str:
    return f'pip install "trainbench[{name}]"'


def missing_extra(name: str) -> bool:
    """Whether the package the tracker ``name`` needs is missing."""
    return missing_module(TRACKERS[name][1])


def missing_module(module: str) -> bool:
    """Whether ``module`` is not installed, found without importing it (mlflow takes seconds
    to import). A module set to None in sys.modules counts as missing, as it does for
    ``import``."""
    if module in sys.modules:
        return sys.modules[module] is None
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def tracker_problems(recipes: Iterable[Recipe]) -> list[str]:
    """One message per tracker asked for (a recipe's ``log``) whose extra is not installed."""
    asked: dict[str, list[str]] = {}
    for r in recipes:
        for name in r["log"]:
            asked.setdefault(name, []).append(r.source)
    return [f"the {name} tracker (log: {name}, or --log {name}; asked by "
            f"{', '.join(dict.fromkeys(srcs))}) needs the '{name}' extra, which is not installed: "
            f"{install_hint(name)}" for name, srcs in asked.items() if missing_extra(name)]


def parse_log_option(value: str | None) -> list[str]:
    """``--log tensorboard,mlflow`` -> the tracker names; ValueError naming the bad one."""
    from trainbench.registry import suggest

    names = [v.strip() for v in (value or "").split(",") if v.strip()]
    for n in names:
        if n not in TRACKERS:
            raise ValueError(f"--log {value}: unknown tracker '{n}'; choose from {', '.join(TRACKERS)} "
                             "(comma-separated)." + suggest(n, TRACKERS))
    return list(dict.fromkeys(names))


def new_tracker(name: str) -> Tracker:
    target, _ = TRACKERS[name]
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()


def open_trackers(recipe: Recipe, run: RunDir, *, resumed: bool = False) -> Trackers:
    """Start the recipe's trackers for ``run`` (its meta.json already written) and attach them
    to its points writer. With no ``log``, an empty :class:`Trackers` that does nothing."""
    names = list(dict.fromkeys(recipe["log"]))
    if not names:
        return Trackers([], None)
    from trainbench.checkpoint import latest_step

    info = RunInfo(run=run, recipe=recipe.data, name=recipe.name, seed=recipe.seed, resumed=resumed,
                   from_step=latest_step(run.path) if resumed else None, out=out_dir(run.path))
    trackers = Trackers([], info)
    for name in names:
        trackers.add(name, lambda n=name: new_tracker(n))
    trackers.start()
    run.listeners.append(trackers)
    return trackers


def out_dir(run_path: Path) -> Path:
    """The ``--out`` folder of a run directory ``OUT/<name>/seed<S>``."""
    return run_path.resolve().parent.parent


def names_in(recipes: Sequence[Recipe]) -> list[str]:
    return list(dict.fromkeys(n for r in recipes for n in r["log"]))
