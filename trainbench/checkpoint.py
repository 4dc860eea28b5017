"""Checkpoints: everything a run needs to continue bit for bit, in ``RUN/checkpoints/``.

A checkpoint (``stepNNNNNNNN.pt``) holds the model, the optimizer, the LR scheduler's
position, the GradScaler, every method's state (SWA/EMA averages, Lookahead's slow weights,
pruning masks), every RNG (python, numpy, torch CPU and CUDA, the data-order, augmentation
and method generators), the position in the data order, the accumulated training time and
loss, and the points measured so far. It is written to a temporary file and renamed, so a
crash leaves the previous checkpoints intact; only the newest ``keep`` are kept.

Loading uses ``torch.load(weights_only=True)``: tensors, numbers, strings and containers
only, never arbitrary pickled objects. A file that needs more is refused.
"""

from __future__ import annotations

import contextlib
import pickle
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainbench.errors import InputError
from trainbench.results import atomic_write
from trainbench.timeunits import Clock, Time

FORMAT = "trainbench-checkpoint/1"
DIRNAME = "checkpoints"
NAME_RE = re.compile(r"step(\d{8,})\.pt")


# --- where and when ---


def checkpoint_dir(run_path: Path) -> Path:
    return run_path / DIRNAME


def list_checkpoints(run_path: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    d = checkpoint_dir(run_path)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := NAME_RE.fullmatch(p.name))]
    return sorted(found)


def latest_step(run_path: Path) -> int | None:
    found = list_checkpoints(run_path)
    return found[-1][0] if found else None


@dataclass
class Policy:
    """When to write a checkpoint: at curve points, every ``every_steps`` steps and at least
    every ``seconds`` of wall-clock time (host clock only: no device sync to decide)."""

    curve: set[int]
    every_steps: int | None
    seconds: float | None
    keep: int
    last: float = 0.0  # perf_counter() of the last checkpoint (or of the loop's start)

    @classmethod
    def from_recipe(cls, section: dict[str, Any], clock: Clock, curve: set[int]) -> Policy:
        every = section["every"]
        minutes = section["minutes"]
        return cls(curve=set(curve) if section["curve_points"] else set(),
                   every_steps=clock.steps(Time.parse(every), at_least_one=True) if every else None,
                   seconds=60.0 * minutes if minutes else None, keep=section["keep"],
                   last=time.perf_counter())

    def due(self, step: int, timer: bool | None = None) -> bool:
        """Whether ``step`` ends with a checkpoint; ``timer``: whether the time-based rule is
        due, as the ranks of a data-parallel run agreed (each has its own clock), instead of
        this process's clock."""
        return (step in self.curve
                or (self.every_steps is not None and step % self.every_steps == 0)
                or (self.timer_due() if timer is None else timer))

    def timer_due(self) -> bool:
        return self.seconds is not None and time.perf_counter() - self.last >= self.seconds


# --- RNG states as plain values (weights_only-loadable) ---


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    out: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # One GPU per process: reading every GPU's state would open a context on each.
            out["cuda_current"] = torch.cuda.get_rng_state()
        else:
            out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "cuda_current" in state and torch.cuda.is_available():  # this process's GPU
        torch.cuda.set_rng_state(state["cuda_current"])


# --- writing and reading ---


def save_file(path: Path, obj: Any) -> None:
    """``obj`` saved with torch.save into ``path``, atomically. On a full disk torch raises
    "RuntimeError: ... unexpected pos" with the ENOSPC OSError as its context; the engine
    reports the disk as full from that (``engine._disk_full``)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save(run_path: Path, step: int, payload: dict[str, Any], keep: int) -> Path:
    """Write ``payload`` as the checkpoint of ``step`` atomically, then drop all but the
    newest ``keep``. A failure (e.g. a full disk) leaves the earlier checkpoints as they were."""
    d = checkpoint_dir(run_path)
    d.mkdir(exist_ok=True)
    path = d / f"step{step:08d}.pt"
    save_file(path, {"format": FORMAT, "step": step, **payload})
    for _, old in list_checkpoints(run_path)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load(path: Path) -> dict[str, Any]:
    """A checkpoint's payload, loaded safely (``weights_only=True``) onto the CPU; the
    ``load_state_dict`` methods copy tensors to their devices (RNG states must be on the CPU)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            f"{path}: refusing to load this checkpoint: it is not a plain trainbench checkpoint "
            f"(torch.load with weights_only=True failed: {first}). It may hold arbitrary pickled "
            "objects or be damaged. Delete it to resume from an earlier checkpoint, or re-run "
            "with --force to start the run over.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(f"{path}: not a trainbench checkpoint (format {found!r}, expected "
                         f"{FORMAT!r}). Delete it, or re-run with --force to start over.")
    return payload


def remove_all(run_path: Path) -> None:
    """Drop the run's checkpoints (once it has completed: model.pt holds the final weights)."""
    for _, p in list_checkpoints(run_path):
        p.unlink(missing_ok=True)
    d = checkpoint_dir(run_path)
    if d.is_dir():
        for tmp in d.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # something else lives there: leave it
            d.rmdir()
