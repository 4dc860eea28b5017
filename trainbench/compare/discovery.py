"""Finding and reading run directories (see :mod:`trainbench.results` for their layout)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainbench.results import STATUSES, parse_points
from trainbench.runlock import is_locked

# Folders trackers keep beside the runs: MLflow's artifact copies hold a meta.json per run.
TRACKER_DIRS = frozenset({"mlflow-artifacts", "mlruns"})


@dataclass
class Run:
    path: Path
    name: str
    seed: int | None
    status: str
    smoke: bool
    device: str | None
    versions: dict[str, str]
    points: list[dict[str, float]]  # every row of points.csv (a torn last line skipped)
    columns: list[str]  # points.csv header
    torn: bool = False  # points.csv ended mid-row (the writer died): that row was skipped
    curve_mode: str | None = None
    message: str = ""
    budget_of: str | None = None  # set in a budgets-mode run's sub-runs
    orphaned: bool = False  # status 'running' but no process holds its lock: killed
    recipe: dict[str, Any] | None = None  # recipe.yaml, resolved; None if missing or unreadable
    world_size: int = 1  # devices the run trained on (meta.json; 1 when absent)

    @property
    def state(self) -> str:
        return "running, no process (killed?)" if self.orphaned else self.status

    @property
    def label(self) -> str:
        return self.state + (" (half-written)" if self.torn else "")


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Run directories under ``paths`` (each a run directory or a folder searched
    recursively, not descending into run directories), in order, without duplicates; and a
    problem message for each path that is missing, a file, or holds no run directory."""
    found: list[Path] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_file() and p.name == "meta.json":
            p = p.parent
        if not p.exists():
            problems.append(f"{p}: no such file or directory.")
            continue
        if not p.is_dir():
            problems.append(f"{p}: not a directory; give a run directory (it holds meta.json) "
                            "or a folder holding run directories.")
            continue
        if (p / "meta.json").exists():
            candidates = [p]
        else:
            candidates = []

            def onerror(e: OSError) -> None:
                problems.append(f"{e.filename}: cannot be read ({e.strerror}); skipped.")

            for root, dirs, files in os.walk(p, onerror=onerror):
                dirs[:] = sorted(d for d in dirs if d not in TRACKER_DIRS)
                if "meta.json" in files:
                    candidates.append(Path(root))
                    dirs[:] = []  # a run's sub-folders are budget sub-runs
        if not candidates:
            problems.append(f"{p}: no run directories in it (a run directory holds meta.json).")
        for c in candidates:
            key = c.resolve()
            if key not in seen:
                seen.add(key)
                found.append(c)
    return found, problems


def load_run(path: Path) -> Run:
    """Read one run directory; raises ``ValueError`` with a message if it is unreadable or
    not a trainbench run."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: meta.json cannot be read ({type(e).__name__}: {e}); skipped.") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) \
            or meta.get("status") not in STATUSES:
        raise ValueError(f"{path}: not a trainbench run directory (its meta.json has no recipe "
                         "'name' or no known 'status'); skipped.")
    try:
        header, points, torn = parse_points(path / "points.csv")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: points.csv cannot be read ({type(e).__name__}: {e}); skipped.") from None
    versions = dict(meta.get("versions") or {})
    if meta.get("torch_build"):
        versions["torch_build"] = str(meta["torch_build"])
    seed = meta.get("seed")
    return Run(path=path, name=meta["name"], seed=seed if isinstance(seed, int) else None,
               status=meta["status"], smoke=bool(meta.get("smoke", False)),
               device=meta.get("device"), versions={k: str(v) for k, v in versions.items()},
               points=points, columns=header, torn=torn,
               curve_mode=meta.get("curve_mode"), message=str(meta.get("message") or ""),
               budget_of=meta.get("budget_of") or None,
               orphaned=meta["status"] == "running" and not is_locked(path),
               recipe=_read_recipe(path), world_size=_world_size(meta))


def _world_size(meta: dict[str, Any]) -> int:
    n = meta.get("world_size")
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def _read_recipe(path: Path) -> dict[str, Any] | None:
    """The run's resolved recipe (recipe.yaml), or None when it is missing or not a YAML
    mapping (such a run is grouped by its name alone)."""
    try:
        doc = yaml.safe_load((path / "recipe.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return doc if isinstance(doc, dict) else None


def load_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[str]]:
    """Discover and read runs; a directory that cannot be used (unreadable, foreign, a
    budget sub-run) is a problem message and the others are still read."""
    dirs, problems = discover(paths)
    runs = []
    for d in dirs:
        try:
            run = load_run(d)
        except ValueError as e:
            problems.append(str(e))
            continue
        if run.budget_of:
            problems.append(f"{d}: a budget sub-run of {run.budget_of} (the parent run directory's "
                            "points.csv holds its final point); skipped.")
            continue
        runs.append(run)
    return runs, problems
