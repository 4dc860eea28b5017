"""Time values in recipes: ``"8ep"`` (epochs), ``"500ba"`` (batches = optimizer steps),
``"2048sp"`` (samples), ``"0.25dur"`` (fraction of the run's duration). A plain number is
epochs. Everything is resolved to whole steps by a :class:`Clock` once the dataset and batch
size are known: rounded to the nearest step (half to even), and a non-zero warmup or interval
is at least one step. 'ba' counts steps itself, so it takes whole numbers only (``0.5ba`` is
refused rather than silently run as one step).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated

from trainbench.registry import Range

UNITS = {"ep": "epochs", "ba": "batches (steps)", "sp": "samples", "dur": "fraction of duration"}
_TIME_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ep|ba|sp|dur)\s*$")


@dataclass(frozen=True)
class Time:
    value: float
    unit: str  # one of UNITS

    @classmethod
    def parse(cls, raw: object) -> Time:
        """Parse ``"8ep"``, ``"500ba"``, ``"2048sp"``, ``"0.25dur"`` or a number (epochs)."""
        if isinstance(raw, Time):
            return raw
        if isinstance(raw, bool):
            raise ValueError(f"expected a time like '8ep', '500ba' or '0.25dur', got {raw!r}")
        if isinstance(raw, int | float):
            value, unit = float(raw), "ep"
        else:
            m = _TIME_RE.match(str(raw))
            if not m:
                raise ValueError(
                    f"expected a time like '8ep', '500ba', '2048sp' or '0.25dur' "
                    f"(a plain number means epochs), got {raw!r}"
                )
            value, unit = float(m.group(1)), m.group(2)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a time must be a finite number >= 0, got {raw!r}")
        if unit == "ba" and value != int(value):
            raise ValueError(f"'ba' counts optimizer steps, so it takes a whole number, got {raw!r}; "
                             f"use {max(round(value), 1)}ba, or 'sp' (samples, rounded to the "
                             "nearest step)")
        return cls(value, unit)

    def __str__(self) -> str:
        v = int(self.value) if self.value == int(self.value) else self.value
        return f"{v}{self.unit}"


ZERO = Time(0.0, "ep")
# An interval (eval.every, a step size, ...): zero would mean "every 0 steps".
PosTime = Annotated[Time, Range(gt=0)]


@dataclass(frozen=True)
class Clock:
    """Converts times to steps for one run.

    ``steps_per_epoch`` is a float on purpose: smoke runs dilate time (an epoch becomes a
    step or two) while keeping every phase of the schedule in proportion.
    """

    steps_per_epoch: float
    batch_size: int
    total_steps: int = 0  # 0 while the duration itself is being resolved
    batch_scale: float = 1.0  # smoke runs shrink 'ba'/'sp' times by the same factor as epochs

    def steps(self, t: Time | str | float, *, at_least_one: bool = False) -> int:
        t = Time.parse(t)
        if t.unit == "ep":
            raw = t.value * self.steps_per_epoch
        elif t.unit == "ba":
            raw = t.value * self.batch_scale
        elif t.unit == "sp":
            raw = t.value / self.batch_size * self.batch_scale
        else:
            if self.total_steps <= 0:
                raise ValueError("'dur' is a fraction of the run's duration; it cannot define it")
            raw = t.value * self.total_steps
        n = round(raw)
        return max(n, 1) if at_least_one and t.value > 0 else n

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch
