"""The driver of runs that train elsewhere (Ray tasks, Slurm jobs): the same loop for both,
around a small backend (:mod:`.ray`, :mod:`.slurm`) that speaks its engine's own API.

The driver checks first that --out is shared (a probe task writes a file it reads back),
submits at most ``--jobs`` runs at once (handing each run's lock to its worker, see
:mod:`.worker`), shows one display for all of them, retries a run whose worker died (Ray
retries by itself through ``max_retries``; Slurm jobs are resubmitted here) and, on Ctrl-C,
writes the stop file that makes every running run stop after its current step with a
checkpoint.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from rich.markup import escape

from trainbench.errors import InputError
from trainbench.executors import Abort, ExecOptions
from trainbench.executors.display import Counts, RunsDisplay
from trainbench.executors.worker import RunTask, read_progress, write_stop
from trainbench.interrupts import StopSignal
from trainbench.runlock import RunLock

if TYPE_CHECKING:
    from rich.console import Console

    from trainbench.executors import SummaryRow
    from trainbench.runner import PlannedRun

POLL_S = 0.5  # how often the driver looks at its tasks and their progress records


class WorkerLost(Exception):
    """The process running a task died (killed, node lost, job pre-empted or cancelled)."""


class Backend(Protocol):
    name: str
    retries_itself: bool  # True: a dead worker's task is retried by the engine (Ray)

    def probe(self, path: str, token: str) -> str: ...  # a task writes token into path
    def submit(self, task: RunTask) -> Any: ...
    def job_id(self, handle: Any) -> str: ...
    def finished(self, handles: list[Any], timeout: float) -> list[Any]: ...
    def result(self, handle: Any) -> dict[str, Any]: ...  # raises WorkerLost
    def cancel(self, handle: Any) -> None: ...
    def close(self) -> None: ...


class DriverStop(StopSignal):
    """The driver's SIGINT/SIGTERM handling: the first asks every run to stop after its step
    (stop file); a second sets ``now`` (cancel the tasks) instead of raising inside the
    engine's wait call, where an exception from a signal handler would surface as Ray's own
    error rather than ours."""

    now = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            self.now = True
            return
        super()._handle(signum, frame)


@dataclass
class Slot:
    plan: PlannedRun
    task: RunTask
    retries_left: int

    @property
    def label(self) -> str:
        return f"{self.plan.recipe.name}/s{self.plan.recipe.seed}"


def check_shared_out(backend: Backend, out: Path) -> None:
    """A worker writes a file into --out and the driver reads it back; exit 2 when it cannot
    (--out local to this machine, not mounted on the workers, not writable there)."""
    token = secrets.token_hex(8)
    path = out / f".trainbench-probe-{token}"
    try:
        host = backend.probe(str(path), token)
    except Exception as e:  # the worker could not write there: its own error, in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise InputError(f"--out {out}: a {backend.name} worker could not write there ({first}). Every "
                         "worker must see --out at the same path: give a folder on a shared file "
                         "system (NFS, Lustre, ...).") from None
    try:
        seen = path.read_text() == token
        path.unlink()
    except OSError:
        seen = False
    if not seen:
        raise InputError(f"--out {out}: a {backend.name} worker on {host} wrote a file there that this "
                         "machine cannot see, so the runs' results would be lost to it. Every worker "
                         "must see --out at the same path: give a folder on a shared file system "
                         "(NFS, Lustre, ...).")


def drive(plans: list[PlannedRun], *, smoke: bool, opts: ExecOptions, out: Path, backend: Backend,
          console: Console, err: Console) -> tuple[list[SummaryRow], int]:
    """Train the plans through ``backend``; the summary rows (plan order) and the exit code."""
    from trainbench.runner import summarize

    try:
        try:
            check_shared_out(backend, out.resolve())
        except InputError:
            for p in plans:
                p.release()
            raise
        results: dict[int, str] = {}
        for i, p in enumerate(plans):
            if p.skip:
                console.print(f"[yellow]skip[/] {escape(p.recipe.name)} seed {p.recipe.seed}: "
                              f"{escape(p.skip)}")
                results[i] = "skipped"
        todo = [i for i in range(len(plans)) if not plans[i].skip]
        if opts.no_wait:
            _submit_only(plans, todo, smoke, opts, out, backend, console)
            return [], 0
        code = _run_all(plans, todo, results, smoke, opts, out, backend, console, err)
    finally:
        backend.close()
    rows = [(p.recipe, results.get(i, "not run"), summarize(p.run.read_points()), p.run)
            for i, p in enumerate(plans)]
    return rows, code


def _task(plan: PlannedRun, smoke: bool, opts: ExecOptions, stop_path: Path) -> RunTask:
    return RunTask(recipe=plan.recipe, run_path=str(plan.run.path.resolve()), smoke=smoke,
                   resume=plan.resume, attempt=secrets.token_hex(8), stop_path=str(stop_path),
                   threads=opts.cpus_per_run or 1, command=tuple(sys.argv))


def _hand_over(plan: PlannedRun) -> None:
    """Release the driver's lock on the run: the worker takes it (see :mod:`.worker`)."""
    if plan.lock is not None:
        plan.lock.release()
        plan.lock = None


def _submit_only(plans: list[PlannedRun], todo: list[int], smoke: bool, opts: ExecOptions, out: Path,
                 backend: Backend, console: Console) -> None:
    """--no-wait: submit every run and print the job ids; `trainbench compare OUT` reads the
    results once they are written. (No retries and no stop file: nobody is waiting.)"""
    stop_path = out.resolve() / f".trainbench-stop-{secrets.token_hex(8)}"
    for i in todo:
        task = _task(plans[i], smoke, opts, stop_path)
        _hand_over(plans[i])
        job = backend.submit(task)
        r = plans[i].recipe
        console.print(f"submitted {escape(r.name)} seed {r.seed}: {backend.name} job "
                      f"{escape(backend.job_id(job))} -> {escape(str(plans[i].run.path))}", highlight=False)
    console.print(f"{len(todo)} job(s) submitted; follow them with your scheduler (squeue) and read the "
                  f"results with: trainbench compare {escape(str(out))}", highlight=False)


def _run_all(plans: list[PlannedRun], todo: list[int], results: dict[int, str], smoke: bool,
             opts: ExecOptions, out: Path, backend: Backend, console: Console, err: Console) -> int:
    stop_path = out.resolve() / f".trainbench-stop-{secrets.token_hex(8)}"
    queue = list(todo)
    running: dict[Any, tuple[int, Slot]] = {}
    counts = Counts(queued=len(queue))
    jobs = opts.jobs or len(queue) or 1
    code = 0
    stop = DriverStop()

    def finish(i: int, status: str, message: str = "") -> None:
        results[i] = status
        r = plans[i].recipe
        if status == "completed":
            counts.completed += 1
            return
        counts.failed += 1
        if status == "not run" and plans[i].lock is None:  # its worker left it untouched
            with contextlib.suppress(InputError):
                plans[i].lock = RunLock(plans[i].run.path).acquire()
        if status == "not run":
            plans[i].release()  # a directory holding only the lock goes
        elif status == "interrupted":
            err.print(f"[yellow]interrupted[/]: {escape(r.name)} seed {r.seed}: {escape(message)} "
                      f"({escape(str(plans[i].run.path))}).", highlight=False)
        elif status != "not run":
            err.print(f"[bold red]{status}[/]: {escape(r.name)} seed {r.seed}: {escape(message)}",
                      highlight=False)

    try:
        with stop, RunsDisplay(console, len(todo)) as display:
            stop_written = False
            while queue or running:
                if stop.now:  # a second Ctrl-C: stop at once
                    raise KeyboardInterrupt
                while queue and len(running) < jobs and not stop.requested:
                    i = queue.pop(0)
                    slot = Slot(plans[i], _task(plans[i], smoke, opts, stop_path), opts.max_retries)
                    _hand_over(plans[i])
                    running[backend.submit(slot.task)] = (i, slot)
                if stop.requested and not stop_written:
                    assert stop.signum is not None
                    write_stop(stop_path, stop.signum)  # every running run checkpoints and stops
                    stop_written = True
                    for i in queue:
                        finish(i, "not run")
                    queue.clear()
                for h in backend.finished(list(running), timeout=POLL_S):
                    i, slot = running.pop(h)
                    done = _collect(backend, h, slot, stop.requested, err)
                    if done is None:  # resubmitted: the same attempt id, so the retry resumes
                        running[backend.submit(slot.task)] = (i, slot)
                    elif done[0] == "bad input":
                        finish(i, "failed", done[1])
                        code = 2
                    else:
                        finish(i, *done)
                counts.running, counts.queued = len(running), len(queue)
                display.update(counts, {s.label: read_progress(s.plan.run.path, s.task.attempt)
                                        for _, s in running.values()})
            if stop.requested:
                return stop.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once
        for h, (i, _) in running.items():
            backend.cancel(h)
            results[i] = "interrupted"
        for i in queue:
            plans[i].release()
        err.print("[yellow]interrupted[/]: the running runs were cancelled; their last checkpoints "
                  "are kept: continue them with --resume.")
        raise Abort(stop.exit_code) from None
    finally:
        with contextlib.suppress(OSError):
            stop_path.unlink(missing_ok=True)
    statuses = [results[i] for i in todo]
    if code == 2:
        return 2
    return 1 if any(s != "completed" for s in statuses) else 0


def _collect(backend: Backend, handle: Any, slot: Slot, stopping: bool,
             err: Console) -> tuple[str, str] | None:
    """A finished task's (status, message); None when it is to be submitted again: its
    worker died, or its own machine stopped it (a pre-empted job), and retries are left."""
    try:
        res = backend.result(handle)
    except WorkerLost as e:
        if not backend.retries_itself and slot.retries_left > 0:
            slot.retries_left -= 1
            err.print(f"[yellow]retrying[/] {escape(slot.label)}: {escape(str(e))}; it resumes from its "
                      "last checkpoint.", highlight=False)
            return None
        message = f"its worker died ({e}); no retries left: continue it with --resume"
        _mark_failed(slot.plan, message)
        return "failed", message
    status = res["status"]
    if status == "interrupted" and not stopping and slot.retries_left > 0:
        slot.retries_left -= 1
        err.print(f"[yellow]retrying[/] {escape(slot.label)}: stopped on its machine "
                  f"({escape(res['message'])}); it resumes from its last checkpoint.", highlight=False)
        return None
    return ("bad input" if res.get("bad_input") else status), res.get("message", "")


def _mark_failed(plan: PlannedRun, message: str) -> None:
    """A run whose every worker died still says 'running' in meta.json: mark it failed (under
    its lock, free now that its holder is dead), so that compare and --resume see it as it is."""
    try:
        lock = RunLock(plan.run.path).acquire()
    except InputError:
        return  # someone else writes it now
    try:
        if plan.run.exists() and plan.run.status() == "running":
            plan.run.update_meta(status="failed", message=message)
    except (OSError, ValueError):
        pass
    finally:
        lock.release()
