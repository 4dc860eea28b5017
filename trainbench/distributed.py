"""One run on several processes: torch.distributed set-up and the few collectives the loop needs.

A run is data-parallel when torch's launcher started it: ``trainbench run --nproc-per-node N``
(:func:`launch`, torch's ``elastic_launch``, what ``torchrun --standalone`` runs), or an
external ``torchrun --nnodes M --nproc-per-node N -m trainbench run ...`` (or ``srun torchrun
...`` under Slurm). Each process reads its place from the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``) and
joins the process group: NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on a CPU.

The engine asks this module, never ``torch.distributed`` directly. Everything here is a no-op
(or the identity) in a single process, so the one-process path is unchanged.

What the loop shares across ranks, and when (none of it adds a host sync per step):

- gradients: ``DistributedDataParallel``'s bucketed all-reduce, overlapped with the backward;
- the stop flag (a first SIGINT/SIGTERM to any rank): combined every :data:`STOP_CHECK_EVERY`
  steps over a gloo group on the host (:func:`stop_requested`), so every rank stops after the
  same step;
- the training loss, at the steps where the loop reads it anyway (divergence checks,
  evaluation points): all-reduced there (:func:`all_reduce_sum`);
- evaluation: each rank evaluates its shard of the test set, the sums are all-reduced once per
  evaluation (:func:`all_reduce_sum`); the floating-point buffers (BatchNorm running
  statistics) of the evaluated model are first broadcast from rank 0 (:func:`broadcast_buffers`),
  so the numbers are those of rank 0's model, the one saved in checkpoints and ``model.pt``.

BatchNorm statistics are per rank while training (each rank normalises its own slice; DDP's
per-forward buffer broadcast is turned off: rank 0's running statistics are taken at
evaluation points instead); ``model.sync_bn: true`` converts the model to ``SyncBatchNorm``
(CUDA only: torch's SyncBatchNorm refuses CPU tensors).
"""

from __future__ import annotations

import inspect
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from trainbench.errors import InputError
from trainbench.results import RunDir

STOP_CHECK_EVERY = 10  # steps between two combinations of the ranks' stop flags (host only)
BACKENDS = {"cuda": "nccl", "cpu": "gloo"}
TIMEOUT = timedelta(minutes=30)  # a rank waiting longer than this for the others fails


@dataclass(frozen=True)
class World:
    """This process's place in the job (a single process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: str | None = None

    @property
    def nodes(self) -> int:
        return max(1, self.size // max(1, self.local_size))


_world = World()
_control: Any = None  # a gloo group for host-side flags and objects (the default one on gloo)


def launched() -> bool:
    """Whether torch's launcher (torchrun, ``--nproc-per-node``) started this process as one
    of several: ``WORLD_SIZE`` > 1 in the environment."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def world() -> World:
    return _world


def rank() -> int:
    return _world.rank


def world_size() -> int:
    return _world.size


def is_main() -> bool:
    """Rank 0: the process that writes the run directory and prints."""
    return _world.rank == 0


def setup(device_type: str) -> World:
    """Join the process group torch's launcher described in the environment; ``device_type``
    ('cpu' or 'cuda') picks the backend. On CUDA each process takes ``cuda:LOCAL_RANK``."""
    global _world, _control
    import torch.distributed as dist

    env = os.environ
    w = World(rank=int(env["RANK"]), size=int(env["WORLD_SIZE"]),
              local_rank=int(env.get("LOCAL_RANK", 0)),
              local_size=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
              backend=BACKENDS[device_type])
    if device_type == "cuda":
        if w.local_rank >= torch.cuda.device_count():
            raise InputError(f"this node has {torch.cuda.device_count()} GPU(s) but torch's launcher "
                             f"started {w.local_size} processes on it (one GPU each): lower "
                             "--nproc-per-node.")
        torch.cuda.set_device(w.local_rank)
    dist.init_process_group(w.backend, timeout=TIMEOUT,
                            device_id=torch.device("cuda", w.local_rank) if device_type == "cuda" else None)
    _control = dist.new_group(backend="gloo") if w.backend != "gloo" else dist.group.WORLD
    _world = w
    return w


def teardown() -> None:
    global _world, _control
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _world, _control = World(), None


def meta() -> dict[str, Any]:
    """What meta.json records about the job's processes."""
    return {"world_size": _world.size, "nodes": _world.nodes, "backend": _world.backend}


def local_device(dev: torch.device) -> torch.device:
    """The device this rank trains on: its own GPU (``cuda:LOCAL_RANK``) in a CUDA job."""
    if _world.size > 1 and dev.type == "cuda":
        return torch.device("cuda", _world.local_rank)
    return dev


# --- checks made before anything starts ---


def recipe_problems(recipe: Any, world_size: int) -> list[str]:
    """Why ``recipe`` cannot run on ``world_size`` processes (none when it is 1)."""
    if world_size <= 1:
        return []
    r, out = recipe.data, []
    bs = r["data"]["batch_size"]
    if bs % world_size:
        lower, upper = bs - bs % world_size, bs + world_size - bs % world_size
        out.append(f"{recipe.source}: data.batch_size {bs} is the global batch, split evenly across "
                   f"the {world_size} processes, and {world_size} does not divide it; use e.g. "
                   f"{lower or upper} or {upper}, or another number of processes.")
    device = str(r["device"])
    if ":" in device:
        out.append(f"{recipe.source}: device '{device}' names one GPU, but with {world_size} "
                   "processes each takes its own (cuda:LOCAL_RANK); use device: cuda or auto.")
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if r["model"].get("sync_bn") and cpu:
        out.append(f"{recipe.source}: model.sync_bn: true needs CUDA (torch's SyncBatchNorm refuses "
                   "CPU tensors); on a CPU set model.sync_bn: false (BatchNorm statistics per "
                   "process) or use a model without BatchNorm.")
    return out


def job_problems(recipes: Sequence[Any], world_size: int, local_size: int) -> None:
    """Refuse (InputError, exit 2) recipes that cannot run as a job of ``world_size`` processes,
    ``local_size`` of them on this machine: before any process starts, or any file is written."""
    problems = [p for r in recipes for p in recipe_problems(r, world_size)]
    if not problems and device_type_of(recipes) == "cuda" and local_size > torch.cuda.device_count():
        problems.append(f"{local_size} processes on this machine need one GPU each, and it has "
                        f"{torch.cuda.device_count()}; lower --nproc-per-node.")
    if problems:
        raise InputError("\n".join(problems))


def device_type_of(recipes: Sequence[Any]) -> str:
    """The one device type ('cpu' or 'cuda') the recipes of a data-parallel job run on."""
    from trainbench.engine import device_type

    types = {device_type(r["device"]) for r in recipes}
    if len(types) > 1:
        raise InputError("one data-parallel job runs on one kind of device, but these recipes ask "
                         f"for {' and '.join(sorted(types))}; give --device, or run them separately.")
    return types.pop()


# --- the model ---


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` (several processes), else unchanged. Call it
    after model surgery, pruning's reparametrisation, the averaging copies and compile (the
    methods' ``on_init``): DDP registers hooks on the final parameters. DDP's per-forward
    buffer broadcast is off (see the module docstring)."""
    if _world.size <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    no_buffer_sync = ({"forward_sync_buffers": False}
                      if "forward_sync_buffers" in inspect.signature(DDP).parameters
                      else {"broadcast_buffers": False})
    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, **no_buffer_sync)


def convert_sync_bn(model: nn.Module, sync_bn: bool) -> nn.Module:
    """BatchNorm layers replaced by ``SyncBatchNorm`` (same parameters and buffers) when asked
    and there are several processes; a single process keeps plain BatchNorm (the same thing)."""
    if not sync_bn or _world.size <= 1:
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def local(model: nn.Module) -> nn.Module:
    """The module a rank runs on its own (DDP's ``module``): evaluation must not go through
    DDP, whose forward may start collectives that the other ranks do not make."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return model.module if isinstance(model, DDP) else model


# --- collectives (no-ops in a single process) ---


def sum_over_ranks(value: float | None, *, per_node: bool = False) -> float | None:
    """A host-side measurement summed over the job's ranks, on the host group (no device
    sync): None if any rank has none. ``per_node``: the value is the node's, read alike by
    all its ranks (a CPU package's energy), so only each node's local rank 0 counts it."""
    if _world.size <= 1:
        return value
    import torch
    import torch.distributed as dist

    counts = not per_node or _world.local_rank == 0
    t = torch.tensor([value if value is not None and counts else 0.0, float(value is None)],
                     dtype=torch.float64)
    dist.all_reduce(t, group=_control)
    return None if t[1] > 0 else float(t[0])


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks (a new tensor on ``t``'s device)."""
    if _world.size <= 1:
        return t
    import torch.distributed as dist

    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def all_gather(t: torch.Tensor) -> torch.Tensor:
    """Every rank's scalar ``t``, in rank order (shape ``[world_size]``)."""
    if _world.size <= 1:
        return t.detach().reshape(1).clone()
    import torch.distributed as dist

    parts = [torch.empty(1, dtype=t.dtype, device=t.device) for _ in range(_world.size)]
    dist.all_gather(parts, t.detach().reshape(1).contiguous())
    return torch.cat(parts)


@torch.no_grad()
def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's floating-point buffers (BatchNorm running statistics) copied to every rank.
    Integer and boolean buffers (counters, pruning masks) are identical on every rank already."""
    if _world.size <= 1:
        return
    import torch.distributed as dist

    for b in model.buffers():
        if b.is_floating_point():
            dist.broadcast(b, src=0)


def poll(stop: Any, step: int, timer: Callable[[], bool]) -> tuple[bool, bool]:
    """The loop's host-side decisions after ``step``: whether to stop (the first SIGINT/SIGTERM,
    :class:`~trainbench.interrupts.StopSignal`) and whether the time-based checkpoint rule is
    due (``timer()``). A single process reads its own flags at every step. Several ranks must
    decide alike, so they combine theirs every :data:`STOP_CHECK_EVERY` steps (a host-side
    all-reduce over a gloo group: no device sync) and answer no in between: once any rank got
    a signal, every rank's ``stop`` holds it and all stop after the same step, with one
    checkpoint."""
    requested = stop is not None and stop.requested  # read once per step, as the loop always has
    if _world.size <= 1:
        return requested, timer()
    sig = (stop.signum or 2) if requested else 0
    if step % STOP_CHECK_EVERY:
        return False, False
    import torch.distributed as dist

    flags = torch.tensor([sig, int(timer())], dtype=torch.int64)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=_control)
    sig, due = int(flags[0]), bool(flags[1])
    if sig and stop is not None and stop.signum is None:
        stop.signum = sig  # as if this rank had got it: it stops, and reports it, the same way
    return sig != 0, due


def stop_requested(stop: Any) -> bool:
    """Between runs: whether any rank has been asked to stop (all ranks call it together)."""
    return poll(stop, 0, lambda: False)[0]


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank."""
    if _world.size <= 1:
        return obj
    import torch.distributed as dist

    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


# --- torch's launcher ---


def launch(nproc_per_node: int, argv: list[str]) -> int:
    """Run ``python -m trainbench <argv>`` as ``nproc_per_node`` processes on this machine
    through torch's own launcher (``elastic_launch``, as ``torchrun --standalone``: a c10d
    rendezvous on a free local port, no restarts) and wait. Returns the exit code to give:
    0 when every rank succeeded, else the ranks' own code (2 bad input, 1 a failed run,
    128 + N an interrupt), 1 for a rank killed by a signal."""
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torchrun would force OMP_NUM_THREADS=1; give each process its share of the cores instead.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // nproc_per_node)))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc_per_node,
                          run_id=str(uuid.uuid4()), rdzv_backend="c10d", rdzv_endpoint="localhost:0",
                          max_restarts=0, monitor_interval=0.1)
    try:
        elastic_launch(config, sys.executable)("-m", "trainbench", *argv)
    except ChildFailedError as e:
        return exit_code_of({rank: f.exitcode for rank, f in e.failures.items()})
    except SignalException as e:  # the launcher itself was signalled; it passed it on to the ranks
        return 128 + int(e.sigval)
    return 0


def exit_code_of(codes: dict[int, int]) -> int:
    """One exit code for the job from its failed ranks' codes (negative: killed by that signal).
    A rank killed by a signal it cannot handle (SIGKILL, a crash; anything but the SIGTERM the
    launcher ends the survivors with) failed the run: 1, whatever the survivors then did (they
    see the launcher's SIGTERM as an interrupt, 143). Otherwise rank 0 speaks for the job: its
    own exit code when it exited by itself. Otherwise, among the ranks that exited by themselves
    (the launcher kills the others once one has ended), an interrupt (128 + N) only when all of
    them were interrupted, else the worst of bad input (2) and failure (1); 1 when every
    failed rank was killed."""
    if any(c < 0 and c != -signal.SIGTERM for c in codes.values()):
        return 1
    if codes.get(0, -1) > 0:
        return codes[0]
    own = [c for c in codes.values() if c > 0]
    if not own:
        return 1
    if all(c >= 128 for c in own):
        return max(own)
    return max(c for c in own if c < 128)


# --- the run directory as ranks other than 0 see it ---


class _NoPoints:
    """A points writer that writes nothing and feeds no tracker (rank 0's does both)."""

    def append(self, row: dict[str, Any]) -> None:
        pass

    def lr(self, step: int, lr: float) -> None:
        pass

    def close(self) -> None:
        pass


class ReadOnlyRun(RunDir):
    """The run directory as ranks other than 0 see it: read as usual, never written (rank 0
    writes points.csv, meta.json, checkpoints and model.pt)."""

    def _skip(self, *args: Any, **kwargs: Any) -> None:
        return None

    start = resume = restore_meta = make_reserve = release_reserve = _skip
    rewrite_points = update_meta = _skip

    def points_writer(self, columns: list[str]) -> Any:
        return _NoPoints()
