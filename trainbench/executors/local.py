"""The local executor: the planned runs in this process, one after another (the default)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich.markup import escape

from trainbench.errors import InputError
from trainbench.executors import Abort
from trainbench.executors.display import RichProgress

if TYPE_CHECKING:
    from rich.console import Console

    from trainbench.executors import SummaryRow
    from trainbench.runner import PlannedRun


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """torch's CPU threads set to ``n`` (None: left as they are) for the block; yields the
    count the run uses. CPU kernels may sum in another order with another thread count, so
    the count is recorded in meta.json and pinned alike by every executor (--cpus-per-run)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def execute(plans: list[PlannedRun], smoke: bool, *, console: Console, err: Console,
            threads: int | None = None) -> tuple[list[SummaryRow], int]:
    """Run the plans in order; a failed run does not stop the others, an interrupt (Ctrl-C,
    SIGTERM) stops them all. Returns the summary rows and the exit code (2 bad input, 1 a run
    failed or diverged, 0 all completed). An interrupt exits with 128 + the signal's number."""
    from trainbench import distributed
    from trainbench.engine import run_recipe
    from trainbench.interrupts import StopSignal, exit_code
    from trainbench.runner import resume_note, summarize

    rows, code = [], 0
    several = distributed.world_size() > 1  # one of the processes of a torchrun job
    with StopSignal() as stop:
        for i, plan in enumerate(plans, 1):
            r = plan.recipe
            if plan.skip:
                console.print(f"[yellow]skip[/] {escape(r.name)} seed {r.seed}: {escape(plan.skip)}")
                rows.append((r, "skipped", summarize(plan.run.read_points()), plan.run))
                continue
            if distributed.stop_requested(stop):  # with several ranks: has any been signalled?
                rows.append((r, "not run", summarize([]), plan.run))
                plan.release()
                continue
            how = f" ({escape(resume_note(plan))})" if plan.resume else ""
            console.print(f"[bold]run {i}/{len(plans)}[/] {escape(r.name)} seed {r.seed}"
                          f"{' (smoke)' if smoke else ''}{how} -> {escape(str(plan.run.path))}")
            try:
                progress = RichProgress(console) if distributed.is_main() else None  # rank 0 draws
                with torch_threads(threads) as n:
                    outcome = run_recipe(r, plan.run, smoke=smoke, progress=progress,
                                         resume=plan.resume, stop=stop, extra_meta={"torch_threads": n})
            except InputError as e:
                err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
                rows.append((r, "failed", summarize(plan.run.read_points()), plan.run))
                code = 2
                continue
            except KeyboardInterrupt as e:
                err.print(f"[yellow]interrupted[/]: {escape(str(plan.run.path))} keeps the points "
                          "measured so far; continue it with --resume.")
                raise Abort(exit_code(e)) from None
            finally:
                plan.release()
            if outcome.status == "interrupted":
                err.print(f"[yellow]interrupted[/]: {escape(r.name)} seed {r.seed}: "
                          f"{escape(outcome.message)} ({escape(str(plan.run.path))}).", highlight=False)
                code = outcome.exit_code or stop.exit_code
            elif outcome.status != "completed":
                err.print(f"[bold red]{outcome.status}[/]: {escape(r.name)} seed {r.seed}: "
                          f"{escape(outcome.message)}", highlight=False)
                code = max(code, 1)
            rows.append((r, outcome.status, summarize(outcome.points), plan.run))
            if several and outcome.status == "failed":
                break  # a rank failed: the job's processes are no longer in step; end the job
        if stop.requested:
            code = stop.exit_code
    return rows, code
