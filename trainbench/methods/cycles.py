"""The fraction of training done, anchored per cycle in cyclic runs.

Methods scheduled on "the fraction of training" (Composer's progressive resizing, layer
freezing, selective backprop's window) are ill-defined when one run holds a whole tradeoff
curve (Portes et al. 2022). They use this module to anchor their schedule per cycle: with a
self-timed schedule (``cyclic``, ``sgdr``) of several cycles, cycle k spans the steps after
the (k-1)-th cycle end (0 for the first cycle, warmup included, so the first point is exactly
the matching budget run's) up to the k-th; any other schedule is one cycle, the whole run.
In budgets mode each budget run is a single cycle, so the fraction is that run's.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from trainbench.methods.base import TrainState


def cycle_ends(state: TrainState) -> list[int]:
    """The steps at which the run's cycles end (the last one is the run's last step)."""
    sched = state.schedule
    ends = list(sched.curve_points()) if sched is not None else []
    if sched is not None and sched.self_timed and len(ends) > 1:
        return ends
    return [state.clock.total_steps]


def cycle_fraction(ends: Sequence[int], done: int) -> float:
    """The fraction of its cycle elapsed after ``done`` completed steps, in [0, 1): the cycle
    is the one the next step (``done + 1``) belongs to; past the last step, 1."""
    k = bisect.bisect_right(ends, done)
    if k >= len(ends):
        return 1.0
    start = ends[k - 1] if k else 0
    return (done - start) / (ends[k] - start)
