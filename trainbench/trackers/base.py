"""The tracker interface and the fan-out that keeps a failing tracker from failing a run."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from trainbench.results import RunDir

LR_SAMPLES = 1000  # the per-step LR is sampled every max(1, total_steps // this) steps


@dataclass
class RunInfo:
    """What a tracker knows about the run it follows."""

    run: RunDir
    recipe: dict[str, Any]  # the resolved recipe
    name: str
    seed: int
    resumed: bool = False
    from_step: int | None = None  # resumed: the checkpoint it continues from (None: from the start)
    out: Path = Path()  # the --out folder holding <name>/seed<S>
    backfill: bool = False  # `trainbench export`: a finished run sent afterwards; meta.json untouched

    @property
    def label(self) -> str:
        return f"{self.name}/seed{self.seed}"


class Tracker:
    """One tracker for one run: ``start``, then ``point`` per points.csv row (``lrs`` with the
    LR samples before it), then ``end`` with the run's final status (or ``discard`` when the
    attempt was thrown away on bad input). Methods may raise: :class:`Trackers` contains it."""

    name: ClassVar[str]

    def start(self, info: RunInfo) -> None:
        raise NotImplementedError

    def point(self, row: dict[str, float]) -> None:
        raise NotImplementedError

    def lrs(self, samples: list[tuple[int, float]]) -> None:
        """(step, LR) samples of the training steps since the previous point."""

    def end(self, status: str) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        self.end("failed")

    def close(self) -> None:
        """Release what the tracker holds after it failed (best effort)."""


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """A points.csv row as finite floats by column (blank and non-finite cells left out; the
    step is the x axis, not a value)."""
    out = {}
    for k, v in row.items():
        if k == "step" or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out[k] = float(v)
    return out


class Trackers:
    """The run's trackers behind one object: a tracker that raises is reported once (a
    warning on stderr), switched off and recorded in meta.json; the others and the run go on.

    The per-step LR arrives inside the timed step loop, so it is only sampled into a list
    there (host floats, no device sync, no I/O) and handed to the trackers with the next
    point, outside ``train_time_s``."""

    def __init__(self, trackers: list[Tracker], info: RunInfo | None) -> None:
        self.trackers = trackers
        self.info = info
        self.failed: dict[str, str] = {}
        self._lr_every: int | None = None
        self._lr_buffer: list[tuple[int, float]] = []
        self._ended = False

    def add(self, name: str, make: Callable[[], Tracker]) -> None:
        try:
            self.trackers.append(make())
        except Exception as e:  # e.g. an import error behind the extra's package
            self._report(name, "start", e)

    def _report(self, name: str, what: str, e: BaseException) -> None:
        msg = f"{type(e).__name__}: {e}".strip()
        self.failed[name] = f"failed at {what}: {msg}"
        where = f" for {self.info.label}" if self.info else ""
        print(f"warning: the {name} tracker failed{where} ({what}: {msg}); it is off for the rest of "
              "this run. Training goes on and the run directory is complete as always; "
              f"`trainbench export OUT --to {name}` can send the run later.", file=sys.stderr, flush=True)

    def _call(self, what: str, *args: Any) -> None:
        for t in list(self.trackers):
            try:
                getattr(t, what)(*args)
            except Exception as e:
                self.trackers.remove(t)
                self._report(t.name, what, e)
                with contextlib.suppress(Exception):
                    t.close()

    def start(self) -> None:
        self._call("start", self.info)

    def point(self, row: dict[str, float]) -> None:
        self._flush_lr()
        self._call("point", row)

    def lr(self, step: int, lr: float) -> None:
        if not self.trackers:
            return
        if self._lr_every is None:
            total = 0
            if self.info is not None:
                with contextlib.suppress(OSError, ValueError):
                    total = int(self.info.run.read_meta().get("total_steps") or 0)
            self._lr_every = max(1, total // LR_SAMPLES)
        if step % self._lr_every == 0:
            self._lr_buffer.append((step, lr))

    def _flush_lr(self) -> None:
        if self._lr_buffer:
            samples, self._lr_buffer = self._lr_buffer, []
            self._call("lrs", samples)

    def end(self) -> None:
        """End every tracker with the status meta.json now holds; a run directory whose
        meta.json is gone (an attempt discarded on bad input) discards the trackers' runs."""
        if self._ended or self.info is None:
            return
        self._ended = True
        run = self.info.run
        if not run.exists():
            self._call("discard")
            return
        self._flush_lr()
        self._call("end", run.status())
        if not self.info.backfill:
            with contextlib.suppress(OSError):
                run.update_meta(trackers={**{t.name: "logged" for t in self.trackers}, **self.failed})
