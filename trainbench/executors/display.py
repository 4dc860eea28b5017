"""Progress on the terminal: one run's bar (in process), and one display for many runs
training elsewhere (Ray tasks, Slurm jobs), fed by the records their workers write."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from rich.console import Console

    from trainbench.timeunits import Clock


class RichProgress:
    """Progress bar for one run: epoch, step, last loss and accuracy, ETA."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar: Any = None

    def start(self, total_steps: int, clock: Clock, label: str, first_step: int = 0) -> None:
        self.clock = clock
        self.bar = Progress(
            # The label holds the recipe's name: plain text (markup would also turn :x: into emoji).
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
            TextColumn("ep {task.fields[epoch]}"), TextColumn("step"), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}"),
            TimeRemainingColumn(), console=self.console, transient=False)
        self.task = self.bar.add_task(label, total=total_steps, completed=first_step,
                                      epoch=f"{clock.epoch(first_step):.1f}", loss="-", acc="-")
        self.bar.start()

    def update(self, step: int, loss: float | None = None, acc: float | None = None) -> None:
        fields: dict[str, str] = {"epoch": f"{self.clock.epoch(step):.1f}"}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if acc is not None:
            fields["acc"] = f"{100 * acc:.2f}%"
        self.bar.update(self.task, completed=step, **fields)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@dataclass
class Counts:
    completed: int = 0
    failed: int = 0  # failed, diverged, interrupted, not run
    running: int = 0
    queued: int = 0

    def text(self) -> str:
        return (f"{self.completed} completed, {self.failed} failed/stopped, {self.running} running, "
                f"{self.queued} queued")


class RunsDisplay:
    """One live display for the runs of a call: an overall bar (runs done, the running ones
    counted by their fraction of steps; ETA) with the counts, and one line per running run
    (step, loss, accuracy) from its worker's progress record."""

    def __init__(self, console: Console, n_runs: int) -> None:
        self.bar = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(),
            TextColumn("{task.fields[info]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False)
        self.overall = self.bar.add_task("all runs", total=max(n_runs, 1), info="")
        self.lines: dict[str, TaskID] = {}

    def __enter__(self) -> RunsDisplay:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def update(self, counts: Counts, running: dict[str, dict[str, Any] | None]) -> None:
        """``running``: label -> its latest progress record (None before the worker wrote one)."""
        fraction = 0.0
        for label, rec in running.items():
            step, total = (rec or {}).get("step", 0), (rec or {}).get("total", 0)
            fraction += step / total if total else 0.0
            info = f"step {step}/{total or '?'}"
            if rec and rec.get("loss") is not None:
                info += f"  loss {rec['loss']:.4f}"
            if rec and rec.get("acc") is not None:
                info += f"  acc {100 * rec['acc']:.2f}%"
            if label not in self.lines:
                self.lines[label] = self.bar.add_task(label, total=1, info="")
            self.bar.update(self.lines[label], total=max(total, 1), completed=step, info=info)
        for label in [x for x in self.lines if x not in running]:
            self.bar.remove_task(self.lines.pop(label))
        self.bar.update(self.overall, completed=counts.completed + counts.failed + fraction,
                        info=counts.text())
