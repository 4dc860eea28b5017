"""What runs on a worker (a Ray task, a Slurm job): one planned run, trained by the same
``engine.run_recipe`` as in process. Nothing here imports ray or submitit: the executors
ship :func:`run_task` and :func:`probe` to their workers.

Hand-over with the driver, through the run directory (the unit of truth on a shared --out):
- the lock: the driver releases its ``RUN/.lock`` when it submits the run and the worker takes
  it (``flock`` dies with its process, so a worker killed by ``kill -9`` never blocks the retry);
- retries resume: the driver gives each planned run an ``attempt`` id, recorded in meta.json;
  a task that finds its own attempt id there is a retry of a dead worker and resumes from the
  run's last checkpoint, even when the plan was a fresh start or ``--force``;
- stop: the driver writes one stop file (Ctrl-C); workers look for it at most every
  ``STOP_POLL_S`` of wall-clock time (a ``stat``, no device sync, no network round-trip);
- progress: the worker writes ``RUN/.progress.json`` at most every ``PROGRESS_EVERY_S``; the
  driver reads those for its one display.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainbench.errors import InputError
from trainbench.interrupts import StopSignal
from trainbench.recipe import Recipe
from trainbench.results import RunDir, atomic_write_text
from trainbench.runlock import RunLock

STOP_POLL_S = 0.5
PROGRESS_EVERY_S = 1.0
PROGRESS_NAME = ".progress.json"
LOCK_WAIT_S = 10.0  # a dead holder's lock is gone at once; this covers a slow driver hand-over


@dataclass(frozen=True)
class RunTask:
    """One planned run as shipped to a worker (plain values: pickles anywhere)."""

    recipe: Recipe
    run_path: str
    smoke: bool
    resume: bool  # the plan continues an unfinished run (--resume)
    attempt: str  # this call's id for the run: a retry that finds it in meta.json resumes
    stop_path: str  # the driver's stop file
    threads: int | None  # torch CPU threads for the run (None: torch's default)
    command: tuple[str, ...] = ()  # the driver's command line, for meta.json and the lock


@dataclass
class TaskResult:
    status: str  # completed | diverged | interrupted | failed | not run
    message: str = ""
    bad_input: bool = False  # the run stopped on bad input (exit 2)
    exit_code: int | None = None
    host: str = ""
    pid: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StopFile:
    """The engine's ``stop``: a local SIGINT/SIGTERM (a Slurm pre-emption, a cancelled job),
    or the driver's stop file, looked for at most every ``STOP_POLL_S`` seconds."""

    def __init__(self, path: Path, local: StopSignal | None = None) -> None:
        self.path = path
        self.local = local
        self._signum: int | None = None
        self._next = 0.0

    @property
    def requested(self) -> bool:
        if self.local is not None and self.local.requested:
            return True
        if self._signum is None and (t := time.monotonic()) >= self._next:
            self._next = t + STOP_POLL_S
            self._signum = read_stop(self.path)
        return self._signum is not None

    @property
    def signum(self) -> int | None:
        if self.local is not None and self.local.signum is not None:
            return self.local.signum
        return self._signum

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


def write_stop(path: Path, signum: int) -> None:
    atomic_write_text(path, str(int(signum)))


def read_stop(path: Path) -> int | None:
    """The signal number in a stop file, or None when there is none."""
    try:
        return int(path.read_text().strip() or signal.SIGINT)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return signal.SIGINT


class ProgressFile:
    """The engine's ``progress``, written to ``RUN/.progress.json`` at most every
    ``PROGRESS_EVERY_S`` seconds (atomically), for the driver's display."""

    def __init__(self, run_path: Path, attempt: str) -> None:
        self.path = run_path / PROGRESS_NAME
        self.record: dict[str, Any] = {"attempt": attempt, "step": 0, "total": 0, "loss": None,
                                       "acc": None}
        self._next = 0.0

    def start(self, total_steps: int, clock: Any, label: str, first_step: int = 0) -> None:
        self.record.update(total=total_steps, step=first_step, label=label)
        self._write(force=True)

    def update(self, step: int, loss: float | None = None, acc: float | None = None) -> None:
        self.record["step"] = step
        if loss is not None:
            self.record["loss"] = loss
        if acc is not None:
            self.record["acc"] = acc
        self._write(force=False)

    def stop(self) -> None:
        self._write(force=True)

    def _write(self, force: bool) -> None:
        t = time.monotonic()
        if not force and t < self._next:
            return
        self._next = t + PROGRESS_EVERY_S
        with contextlib.suppress(OSError):  # the display is a nicety; training goes on
            atomic_write_text(self.path, json.dumps(self.record))


def read_progress(run_path: Path, attempt: str) -> dict[str, Any] | None:
    """The progress record a worker of this ``attempt`` wrote, if any."""
    try:
        rec = json.loads((run_path / PROGRESS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("attempt") == attempt else None


def _acquire(run_path: Path) -> RunLock:
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return RunLock(run_path).acquire()
        except InputError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def run_task(task: RunTask) -> dict[str, Any]:
    """Train one planned run on this worker; returns a :class:`TaskResult` as a dict. A
    worker that dies (killed, node lost) raises nothing here: its executor retries the task,
    and the retry resumes (see the module's docstring)."""
    import torch

    from trainbench.engine import run_recipe

    me = {"host": socket.gethostname(), "pid": os.getpid()}
    if read_stop(Path(task.stop_path)) is not None:  # stopped before it started: untouched
        return TaskResult("not run", "the driver was stopped before this run started", **me).to_dict()
    if task.threads:
        torch.set_num_threads(task.threads)
    run = RunDir(task.run_path)
    if task.command:  # meta.json and the lock name the user's command, not the worker's
        sys.argv[:] = list(task.command)
    try:
        lock = _acquire(run.path)
    except InputError as e:
        return TaskResult("failed", str(e), bad_input=True, **me).to_dict()
    progress = ProgressFile(run.path, task.attempt)
    try:
        meta = run.read_meta() if run.exists() else {}
        retry = meta.get("attempt") == task.attempt
        if retry and meta.get("status") == "completed":  # finished, but its worker died after
            return TaskResult("completed", **me).to_dict()
        with StopSignal() as local:
            try:
                outcome = run_recipe(task.recipe, run, smoke=task.smoke, progress=progress,
                                     resume=task.resume or retry, stop=StopFile(Path(task.stop_path), local),
                                     extra_meta={"attempt": task.attempt, "host": me["host"],
                                                 "torch_threads": torch.get_num_threads()})
            except InputError as e:
                return TaskResult("failed", str(e), bad_input=True, **me).to_dict()
        return TaskResult(outcome.status, outcome.message, exit_code=outcome.exit_code, **me).to_dict()
    finally:
        progress.path.unlink(missing_ok=True)
        lock.release()


def probe(path: str, token: str) -> str:
    """Write ``token`` into ``path`` (a file in --out) for the driver to read back: --out is
    then shared between the driver and this worker. Returns the worker's host name."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), token)
    return socket.gethostname()
