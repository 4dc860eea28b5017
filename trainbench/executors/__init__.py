"""Where the planned runs of a ``trainbench run`` call train.

- ``local`` (:mod:`.local`): in this process, one after another (the default);
- ``ray`` (:mod:`.ray`): one Ray task per run, on an embedded local cluster or a running one;
- ``slurm`` (:mod:`.slurm`): one Slurm job per run, through submitit.

Every executor takes the runs planned by :func:`trainbench.runner.plan_runs` and trains each
with the same ``engine.run_recipe``; the run directory stays the unit of truth (same lock,
checkpoints, skip/force/resume). Only :mod:`.ray` and :mod:`.slurm` import ray and submitit,
and only when chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainbench.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from trainbench.recipe import Recipe
    from trainbench.results import RunDir
    from trainbench.runner import PlannedRun

    SummaryRow = tuple[Recipe, str, dict[str, Any], RunDir]

EXECUTORS = ("local", "ray", "slurm")
DEFAULT_SLURM_MINUTES = 24 * 60  # submitit's own default (5 min) would kill real runs


class Abort(Exception):
    """Stop the command now with ``code`` (a second Ctrl-C); the summary is not printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class ExecOptions:
    """How and where runs train (the ``run`` command's executor options)."""

    executor: str = "local"
    jobs: int | None = None  # runs at once (ray/slurm); local is sequential
    cpus_per_run: int | None = None  # CPUs asked per run = torch's CPU threads in the run
    gpus_per_run: float | None = None  # ray: GPUs per run (default 1 when the cluster has GPUs)
    address: str | None = None  # ray: an existing cluster ("auto", HOST:PORT)
    slurm_partition: str | None = None
    slurm_time: int | None = None  # minutes
    slurm_gpus_per_run: int | None = None
    slurm_extra: dict[str, str] = field(default_factory=dict)
    no_wait: bool = False
    max_retries: int = 2

    def problems(self) -> list[str]:
        """Options that do not fit the chosen executor, each with its fix."""
        out = []
        if self.executor not in EXECUTORS:
            out.append(f"--executor {self.executor}: choose one of {', '.join(EXECUTORS)}.")
        if self.executor == "local" and self.jobs not in (None, 1):
            out.append(f"--jobs {self.jobs}: the local executor trains one run at a time; use "
                       "--executor ray (this machine or a cluster) or --executor slurm to run several "
                       "at once.")
        if self.executor != "ray":
            for opt, v in (("--address", self.address), ("--gpus-per-run", self.gpus_per_run)):
                if v is not None:
                    out.append(f"{opt} is for --executor ray; add --executor ray or drop {opt}.")
        if self.executor != "slurm":
            for opt, v in (("--slurm-partition", self.slurm_partition), ("--slurm-time", self.slurm_time),
                           ("--slurm-gpus-per-run", self.slurm_gpus_per_run),
                           ("--slurm-extra", self.slurm_extra or None), ("--no-wait", self.no_wait or None)):
                if v is not None:
                    out.append(f"{opt} is for --executor slurm; add --executor slurm or drop {opt}.")
        return out


def parse_extra(items: list[str] | None) -> dict[str, str]:
    """``--slurm-extra KEY=VALUE`` items as a dict (sbatch options without the dashes)."""
    extra = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InputError(f"--slurm-extra {item!r}: give KEY=VALUE, an sbatch option without its "
                             "dashes, e.g. --slurm-extra constraint=volta32gb.")
        extra[key.strip().replace("-", "_")] = value
    return extra


def missing_extra(executor: str, e: ImportError) -> InputError:
    extra = {"ray": "ray", "slurm": "slurm"}[executor]
    what = {"ray": "Ray", "slurm": "submitit"}[executor]
    return InputError(f"--executor {executor} needs {what}, which is not installed ({e}). Install it "
                      f'with: pip install "trainbench[{extra}]"')


def load_backend(opts: ExecOptions, out: Path) -> Any:
    """The chosen remote executor's backend; a missing extra is bad input (exit 2)."""
    try:
        if opts.executor == "ray":
            from trainbench.executors.ray import RayBackend

            return RayBackend(opts)
        from trainbench.executors.slurm import SlurmBackend

        return SlurmBackend(opts, out)
    except ImportError as e:
        if (e.name or "").split(".")[0] in ("ray", "submitit"):
            raise missing_extra(opts.executor, e) from None
        raise


def execute(plans: list[PlannedRun], *, smoke: bool, opts: ExecOptions, out: Path, console: Console,
            err: Console) -> tuple[list[SummaryRow], int]:
    """Train the planned runs with the chosen executor: the summary rows (plan order) and the
    exit code (0 all completed, 1 a run failed or diverged, 2 bad input, 128 + signal when
    interrupted). Raises :class:`Abort` on a second Ctrl-C and InputError before anything
    trains (a missing extra, an unreachable cluster, an --out the workers cannot see)."""
    if opts.executor == "local" or all(p.skip for p in plans):  # nothing to send anywhere
        from trainbench.executors.local import execute as run_local

        return run_local(plans, smoke, console=console, err=err, threads=opts.cpus_per_run)
    from trainbench.executors.remote import drive

    try:
        backend = load_backend(opts, out)
    except InputError:
        for p in plans:
            p.release()
        raise
    return drive(plans, smoke=smoke, opts=opts, out=out, backend=backend, console=console, err=err)
