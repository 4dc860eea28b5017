"""``trainbench export OUT --to mlflow|tensorboard``: send finished run directories to a tracker
afterwards, as if it had followed them live (the same tracker code, fed from the files).

Each run found under the paths (as ``compare`` finds them; smoke runs only when asked) gets
its points, its LR schedule (TensorBoard: rebuilt from recipe.yaml, as ``show --lr-plot``
draws it) and its end (status, artifacts). Exporting twice does not duplicate: a run already
in the MLflow experiment (tag ``trainbench.run_dir``) or with a ``tb/`` folder is skipped
(``--force``: replaced). A run that a process is still writing is left for later. The run
directories are not changed, except for the ``tb/`` folder TensorBoard writes there.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from trainbench.compare.discovery import Run, load_runs
from trainbench.errors import InputError
from trainbench.results import RunDir
from trainbench.runlock import is_locked
from trainbench.trackers import install_hint, missing_extra, new_tracker, out_dir
from trainbench.trackers.base import RunInfo, Trackers

TARGETS = ("mlflow", "tensorboard")


@dataclass
class Exported:
    path: Path
    what: str  # "exported", "replaced", or why it was skipped


def export(paths: Iterable[str | Path], to: str, *, force: bool = False,
           include_smoke: bool = False) -> tuple[list[Exported], list[str]]:
    """Send every run under ``paths`` to the tracker ``to``; returns what happened to each run
    and the problems (paths that hold no readable run). InputError: a missing extra, no runs."""
    if to not in TARGETS:
        raise InputError(f"--to {to}: choose one of {', '.join(TARGETS)}.")
    if missing_extra(to):
        raise InputError(f"export --to {to} needs the '{to}' extra, which is not installed: "
                         f"{install_hint(to)}")
    runs, problems = load_runs(paths)
    smoke = [r for r in runs if r.smoke]
    if not include_smoke:
        runs = [r for r in runs if not r.smoke]
    if not runs:
        why = f": all {len(smoke)} are smoke runs (--include-smoke)" if smoke else ""
        raise InputError(f"no runs to export{why}." + "".join(f"\n  {p}" for p in problems))
    done = []
    for r in runs:
        if is_locked(r.path):
            done.append(Exported(r.path, "skipped: a process is still writing it (export it when it ends)"))
            continue
        if r.recipe is None:
            done.append(Exported(r.path, "skipped: no readable recipe.yaml"))
            continue
        replaced = False
        if _already(r, to):
            if not force:
                done.append(Exported(r.path, f"skipped: already in {to} (--force replaces it)"))
                continue
            _remove(r, to)
            replaced = True
        failed = _send(r, to)
        what = f"failed: {failed}" if failed else "replaced" if replaced else "exported"
        done.append(Exported(r.path, what))
    return done, problems


def _info(r: Run) -> RunInfo:
    assert r.recipe is not None
    return RunInfo(run=RunDir(r.path), recipe=r.recipe, name=r.name, seed=r.seed or 0,
                   out=out_dir(r.path), backfill=True)


def _already(r: Run, to: str) -> bool:
    if to == "tensorboard":
        from trainbench.trackers.tensorboard import DIRNAME

        return (r.path / DIRNAME).is_dir()
    return bool(_mlflow_runs(r))


def _mlflow_runs(r: Run) -> list[str]:
    from trainbench.trackers.mlflow import RUN_DIR_TAG, client_for, experiment_name

    out = out_dir(r.path)
    client, _ = client_for(out)
    exp = client.get_experiment_by_name(experiment_name(out))
    if exp is None:
        return []
    found = client.search_runs([exp.experiment_id],
                               filter_string=f"tags.`{RUN_DIR_TAG}` = '{_quote(str(r.path.resolve()))}'")
    return [x.info.run_id for x in found]


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


def _remove(r: Run, to: str) -> None:
    if to == "tensorboard":
        from trainbench.trackers.tensorboard import DIRNAME

        shutil.rmtree(r.path / DIRNAME)
        return
    from trainbench.trackers.mlflow import client_for

    client, _ = client_for(out_dir(r.path))
    for run_id in _mlflow_runs(r):
        client.delete_run(run_id)


def _send(r: Run, to: str) -> str:
    """Replay the run into the tracker; the error text if the tracker failed (it warned)."""
    info = _info(r)
    trackers = Trackers([], info)
    trackers.add(to, lambda: new_tracker(to))
    trackers.start()
    if to == "tensorboard":
        samples = lr_samples(r)
        for row in r.points:
            while samples and samples[0][0] <= row["step"]:
                step, lr = samples.pop(0)
                trackers.lr(step, lr)
            trackers.point(row)
        for step, lr in samples:
            trackers.lr(step, lr)
    else:
        for row in r.points:
            trackers.point(row)
    trackers.end()
    return trackers.failed.get(to, "")


def lr_samples(r: Run) -> list[tuple[int, float]]:
    """The LR the run's schedule gives every ``max(1, total // 1000)`` steps, rebuilt from its
    recipe.yaml; [] when the recipe cannot be rebuilt here (say, a dataset this machine lacks
    the size of)."""
    from trainbench.report.lr import lr_trace

    trace = lr_trace(r.path, smoke=r.smoke)
    return [] if trace is None else list(zip(trace.steps, trace.lrs, strict=True))
