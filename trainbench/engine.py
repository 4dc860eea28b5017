"""The training loop: one recipe, one seed, one run directory.

Read :func:`train` top to bottom: set-up, the step loop, evaluation points. Methods plug in
through the events of :mod:`trainbench.methods.base`; the loop itself never changes for them.

Performance rules followed here (each one measured in ``benchmarks/overhead.py``):
- the dataset lives on the device; batches are sliced, normalised and augmented there;
- the step loop never reads a device value on the host, except for a divergence check every
  ``DIVERGENCE_CHECK_EVERY`` steps and at evaluation points -- and, with ``precision: fp16``,
  once per step inside ``GradScaler.step``, which must know whether the gradients hold an
  inf/NaN to skip the update (inherent to torch's loss scaling; bf16 and fp32 need no scaler);
- ``train_time_s`` is wall-clock time of the step loop only, synchronised with the device
  before it is read, with evaluation, checkpoints and start-up excluded (methods'
  ``before_eval`` work, such as SWA's BatchNorm pass, is training and counts).

Long runs: at checkpoint steps (:mod:`trainbench.checkpoint`) everything stateful is saved
(:class:`Resumable`), and ``resume=True`` rebuilds the run, restores the newest checkpoint
and continues from its step bit for bit; a ``stop`` request (the first SIGINT/SIGTERM) ends
the run after the current step with a checkpoint.

Precision (:mod:`trainbench.precision`): the recipe's, except that a smoke run on a CPU
trains in fp32; meta.json records both.

Several processes (:mod:`trainbench.distributed`): every rank runs this same loop in lockstep
on its slice of each global batch, the model in DistributedDataParallel; rank 0 alone writes
the run directory (the others see a :class:`~trainbench.distributed.ReadOnlyRun`), every rank loads the
checkpoint on resume, and the stop flag, the training loss and the evaluation sums are
combined across ranks where the loop reads them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import random
import shutil
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainbench import checkpoint, costs, distributed
from trainbench.data import DATASETS, ImageData
from trainbench.data.choose import choose_loader, loader_meta, stream_data
from trainbench.data.label_noise import apply_label_noise
from trainbench.data.loader import DeviceData
from trainbench.data.stream import StreamData
from trainbench.data.subset import subset_split
from trainbench.errors import InputError
from trainbench.interrupts import StopSignal
from trainbench.methods import Method, TrainState, build_methods
from trainbench.methods.ema import unwrap
from trainbench.models import build_model
from trainbench.optim import build_optimizer
from trainbench.precision import choose as choose_precision
from trainbench.precision import warn_once
from trainbench.recipe import Recipe
from trainbench.registry import instantiate
from trainbench.results import POINT_COLUMNS, RESERVE_NAME, RunDir, read_points
from trainbench.runlock import LOCK_NAME
from trainbench.schedules import Schedule, build_schedule
from trainbench.smoke import BATCH_SIZE as SMOKE_BATCH_SIZE
from trainbench.smoke import MAX_PERIODIC_EVALS as SMOKE_MAX_PERIODIC_EVALS
from trainbench.smoke import smoke_clock, smoke_data
from trainbench.timeunits import Clock
from trainbench.trackers import open_trackers

DIVERGENCE_CHECK_EVERY = 50  # steps; one host sync each, negligible at this interval
ECE_BINS = 15
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Progress(Protocol):
    def start(self, total_steps: int, clock: Clock, label: str, first_step: int = 0) -> None: ...
    def update(self, step: int, loss: float | None = None, acc: float | None = None) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Outcome:
    status: str  # completed | diverged | interrupted | failed
    points: list[dict[str, float]] = field(default_factory=list)
    message: str = ""
    exit_code: int | None = None  # interrupted by a signal: 128 + its number


# --- set-up helpers ---


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device: '{spec}' was asked for but this machine has no usable "
                             "CUDA GPU (torch.cuda.is_available() is False). Use "
                             "--device cpu, or device: auto in the recipe.")
        index = int(spec.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InputError(f"device: '{spec}' does not exist; this machine has "
                             f"{torch.cuda.device_count()} GPU(s) (cuda:0 ...).")
    return torch.device(spec)


def device_type(spec: str) -> str:
    """'cpu' or 'cuda': what a recipe's ``device`` resolves to here, availability unchecked
    (part of a run's identity; ``auto`` is the one spec that depends on the machine)."""
    return resolve_device(spec).type if spec == "auto" else spec.partition(":")[0]


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({torch.get_num_threads()} threads)"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def seed_everything(seed: int) -> None:
    """Global RNGs (model init, dropout); data order, augmentation and methods use
    their own generators derived from the same seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_data(recipe: Recipe, smoke: bool) -> tuple[ImageData, int, bool]:
    """The run's data, the real training-set size (which defines an epoch) and whether
    synthetic stand-in data is used (smoke runs without the dataset's files)."""
    section = recipe["data"]
    if smoke:
        from trainbench.data import dataset_shape

        data, synthetic = smoke_data(section, recipe.seed)
        return data, dataset_shape(section["dataset"], section).train_size, synthetic
    data = instantiate(DATASETS.get(section["dataset"]), section)
    # Class-stratified, with a fixed seed: the same images for every seed and recipe.
    data.train_x, data.train_y = subset_split(data.train_x, data.train_y, section["train_subset"])
    data.test_x, data.test_y = subset_split(data.test_x, data.test_y, section["test_subset"])
    return data, len(data.train_y), False


def make_clock(recipe: Recipe, train_size: int, smoke: bool) -> Clock:
    bs = recipe["data"]["batch_size"]
    if smoke:
        return smoke_clock(recipe["duration"], bs, train_size)
    spe = train_size // bs
    if problem := batch_problem(bs, train_size):
        raise InputError(problem)
    total = Clock(spe, bs).steps(recipe["duration"], at_least_one=True)
    return Clock(spe, bs, total)


def batch_problem(batch_size: int, train_size: int) -> str | None:
    if batch_size > train_size:
        return (f"data.batch_size: {batch_size} is larger than the training set ({train_size} "
                "images); lower it.")
    return None


def bound_schedule(recipe: Recipe, train_size: int, smoke: bool) -> tuple[Clock, Schedule]:
    """The run's clock and its LR schedule bound to it; a self-timed schedule (cyclic,
    sgdr) sets the clock's total steps."""
    clock = make_clock(recipe, train_size, smoke)
    schedule = build_schedule(recipe["schedule"]).bind(clock, recipe["optimizer"]["lr"])
    return dataclasses.replace(clock, total_steps=schedule.total), schedule


def eval_steps(recipe: Recipe, clock: Clock, curve: list[int], smoke: bool = False) -> list[int]:
    """The steps evaluated: every curve point, the last step, and every ``eval.every`` (in a
    smoke run at most ``MAX_PERIODIC_EVALS`` of those, evenly spaced)."""
    every = recipe["eval"]["every"]
    steps = set(curve) | {clock.total_steps}
    if every is not None:
        n = clock.steps(every, at_least_one=True)
        if smoke:
            n = max(n, -(-clock.total_steps // SMOKE_MAX_PERIODIC_EVALS))
        steps |= set(range(n, clock.total_steps + 1, n))
    return sorted(s for s in steps if 0 < s <= clock.total_steps)


# --- evaluation ---


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData | StreamData,
             autocast: Callable[[], Any]) -> dict[str, float]:
    """Test loss (plain cross-entropy), accuracy and expected calibration error (15 bins),
    accumulated on the device and read once. With several processes each rank evaluates its
    shard of the test set with rank 0's buffers, and the sums are all-reduced (one collective),
    so the numbers are over the whole test set, each image once."""
    model = distributed.local(model)
    distributed.broadcast_buffers(model)
    was_training = model.training
    model.eval()
    dev = data.test_y.device
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev)
    bin_n = torch.zeros(ECE_BINS, device=dev)
    bin_conf = torch.zeros(ECE_BINS, device=dev)
    bin_correct = torch.zeros(ECE_BINS, device=dev)
    for x, y in data.test_batches():
        with autocast():
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        conf, pred = logits.softmax(1).max(1)
        hit = (pred == y).float()
        correct += hit.sum()
        # nan_to_num: a model that has just diverged gives NaN confidences; bin them at 0.
        b = (conf * ECE_BINS).nan_to_num_(0).long().clamp_(0, ECE_BINS - 1)
        bin_n.index_add_(0, b, torch.ones_like(conf))
        bin_conf.index_add_(0, b, conf)
        bin_correct.index_add_(0, b, hit)
    sums = distributed.all_reduce_sum(torch.cat([torch.stack([loss_sum, correct]), bin_conf, bin_correct]))
    loss_sum, correct, (bin_conf, bin_correct) = sums[0], sums[1], sums[2:].chunk(2)
    n = data.test_size
    ece = (bin_conf - bin_correct).abs().sum() / n
    stats = torch.stack([loss_sum / n, correct / n, ece]).tolist()
    model.train(was_training)
    return {"test_loss": stats[0], "test_acc": stats[1], "test_ece": stats[2]}


# --- the run ---


def run_recipe(recipe: Recipe, run: RunDir, *, smoke: bool = False,
               progress: Progress | None = None, resume: bool = False,
               stop: StopSignal | None = None, extra_meta: dict[str, Any] | None = None) -> Outcome:
    """Train one recipe into ``run``, recording status in meta.json whatever happens.

    ``resume``: continue the run in ``run`` from its last checkpoint (from the start if it
    has none). ``stop``: polled after every step; when set, a checkpoint is written and the
    run ends ``interrupted``. Bad input (InputError) propagates and leaves nothing behind:
    a fresh start that measured nothing removes what it wrote (the corrected command starts
    cleanly), a resumed run gets its meta.json back as it was (the corrected command resumes
    it); past that, the run is marked failed. Any other error marks the run failed with its
    traceback in ``error.log`` and returns; what was written before stays valid.
    ``extra_meta``: more meta.json fields from the caller (an executor's attempt id, torch's
    thread count), written before training starts.

    With several processes, ranks other than 0 train alongside (:func:`_follow`) and write
    nothing."""
    if not distributed.is_main():
        return _follow(recipe, run, smoke=smoke, resume=resume, stop=stop)
    dev = resolve_device(recipe["device"])  # no such device: bad input before anything is written
    meta = {"name": recipe.name, "seed": recipe.seed, "smoke": smoke, "recipe_source": recipe.source,
            "device_type": dev.type, **distributed.meta(), **(extra_meta or {})}
    resuming = resume and run.exists()
    if resuming:
        meta_before = run.read_meta()
        run.resume(meta, from_step=checkpoint.latest_step(run.path))
    else:
        before = set(os.listdir(run.path)) if run.path.is_dir() else set()
        checkpoint.remove_all(run.path)  # a fresh start never resumes an earlier attempt's state
        run.start(recipe.to_yaml(), meta)
    run.make_reserve()  # so that a full disk cannot keep the run's end out of meta.json
    trackers = open_trackers(recipe, run, resumed=resuming)  # fed by run.points_writer(); never fail the run
    run_fn = _train_fn(recipe)
    try:
        outcome = run_fn(recipe, run, smoke=smoke, progress=progress, resume=resume, stop=stop)
    except KeyboardInterrupt:
        step = checkpoint.latest_step(run.path)
        _record_end(run, "interrupted", "stopped at once by a second signal; " + (
            f"resume from the checkpoint at step {step} with --resume" if step is not None
            else "no checkpoint yet: --resume starts it over"))
        trackers.end()
        raise
    except InputError as e:
        if resuming:  # the run stays as it was: the corrected command resumes it
            with contextlib.suppress(OSError):
                run.restore_meta(meta_before)
            run.release_reserve()
        elif not _measured(run):  # the corrected command starts as if this never ran
            _discard_attempt(run, before)
        else:
            _record_end(run, "failed", str(e))
        trackers.end()  # the status meta.json is left with; a discarded attempt is discarded there too
        raise
    except Exception as e:  # a bug or a runtime error: keep what was measured, report, go on
        outcome = Outcome("failed", run.read_points(), _failure_message(e, run))
    finally:
        if progress is not None:
            progress.stop()
    _record_end(run, outcome.status, outcome.message)
    points = run.read_points()
    if points:
        from trainbench.plots import plot_run_curve

        with contextlib.suppress(OSError):  # e.g. a full disk: the numbers are what matters
            plot_run_curve(points, run.curve_path, f"{recipe.name} (seed {recipe.seed})")
    trackers.end()  # after curve.png: trackers take the finished files
    return outcome


def _train_fn(recipe: Recipe) -> Callable[..., Outcome]:
    if recipe["curve"]["mode"] == "budgets":
        from trainbench.budgets import run_budgets

        return run_budgets
    return train


def _follow(recipe: Recipe, run: RunDir, *, smoke: bool, resume: bool,
            stop: StopSignal | None) -> Outcome:
    """A rank other than 0: the same training in lockstep with rank 0, through a view of the
    run directory that reads but never writes (rank 0 records the run's status). An error is
    printed here, as this rank cannot write error.log."""
    try:
        return _train_fn(recipe)(recipe, distributed.ReadOnlyRun(run.path), smoke=smoke,
                                 resume=resume, stop=stop)
    except InputError:
        raise
    except Exception as e:
        traceback.print_exc()
        return Outcome("failed", [], f"rank {distributed.rank()}: {type(e).__name__}: {e}")


# What a fresh start writes at the top of its run directory, replacing an earlier run's.
ATTEMPT_FILES = frozenset({"recipe.yaml", "meta.json", "points.csv", "curve.png", "model.pt",
                           "error.log", checkpoint.DIRNAME, RESERVE_NAME})


def _measured(run: RunDir) -> bool:
    """Whether the run (or one of its budget runs) has trained: points, checkpoints, weights."""
    dirs = [run.path, *(p for p in run.path.iterdir() if p.is_dir())] if run.path.is_dir() else []
    return any(read_points(d / "points.csv") or checkpoint.list_checkpoints(d)
               or (d / "model.pt").exists() for d in dirs)


def _discard_attempt(run: RunDir, before: set[str]) -> None:
    """Remove what a fresh start wrote before it stopped on bad input: its own files and
    whatever appeared since (budget runs); anything else that was there stays, and so does the
    planner's ``.lock`` (its holder removes it); an emptied directory goes. After ``--force``,
    the replaced run's files were already gone or overwritten: the directory then holds no run."""
    with contextlib.suppress(OSError):
        for name in set(os.listdir(run.path)) - (before - ATTEMPT_FILES) - {LOCK_NAME}:
            p = run.path / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        run.path.rmdir()  # only if empty


def _failure_message(e: Exception, run: RunDir) -> str:
    full = _disk_full(e)
    if full is not None:
        return (f"the disk is full ({full.filename or run.path}): the run stopped; what was written "
                "before it (complete points.csv rows, meta.json, earlier checkpoints if any) is "
                "intact. Free space, then continue with --resume.")
    try:
        (run.path / "error.log").write_text(traceback.format_exc())
        where = f" (traceback in {run.path / 'error.log'})"
    except OSError:
        where = ""
    return f"{type(e).__name__}: {e}{where}"


def _disk_full(e: BaseException | None) -> OSError | None:
    """The ENOSPC OSError behind ``e``, if any: a library that catches it may raise its own
    error instead (torch's "unexpected pos"), with the OSError as its context."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _record_end(run: RunDir, status: str, message: str) -> None:
    """Best effort: on a full disk, meta.json is written in the space of the run's reserve
    (RunDir.update_meta); if even that fails it keeps its last complete version (atomic
    writes) and the status is reported on the terminal only."""
    with contextlib.suppress(OSError):
        run.update_meta(status=status, message=message)
    run.release_reserve()


def train(recipe: Recipe, run: RunDir, *, smoke: bool = False, progress: Progress | None = None,
          resume: bool = False, stop: StopSignal | None = None) -> Outcome:
    r = recipe.data
    dev = distributed.local_device(resolve_device(r["device"]))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    seed_everything(recipe.seed)

    # Data: uint8 tensors on the device, or streamed from disk (data.loader); an epoch is
    # defined by the real training-set size. With several processes each serves its rank's
    # slice of every global batch.
    batch_size = r["data"]["batch_size"]
    if smoke:  # small, and still a multiple of the number of processes (which divides the recipe's)
        w = distributed.world_size()
        batch_size = min(batch_size, -(-SMOKE_BATCH_SIZE // w) * w)
    ranks = {"rank": distributed.rank(), "world_size": distributed.world_size()}
    loader = choose_loader(r["data"], dev, smoke,
                           started_with=run.read_meta().get("data_loader") if resume else None)
    label_noise = None
    if loader.mode == "stream":
        if r["data"]["label_noise"]:
            raise InputError(f"{recipe.source}: data.label_noise is applied to labels held in memory "
                             f"and this run streams its dataset ({loader.reason}); set data.loader: "
                             "device, or remove data.label_noise.")
        data: DeviceData | StreamData = stream_data(r["data"], dev, batch_size=batch_size,
                                                    seed=recipe.seed, report=run.update_meta, **ranks)
        real_train_size, synthetic = data.train_size, False
    else:
        images, real_train_size, synthetic = load_data(recipe, smoke)
        label_noise = apply_label_noise(images, r["data"]["label_noise"])  # training labels only
        data = DeviceData(images, dev, batch_size=batch_size,
                          eval_batch_size=r["data"]["eval_batch_size"], augment=r["data"]["augment"],
                          crop_padding=r["data"]["crop_padding"], normalize=r["data"]["normalize"],
                          seed=recipe.seed, **ranks)
    clock, schedule = bound_schedule(recipe, real_train_size, smoke)
    peak_lr = r["optimizer"]["lr"]

    # Model, methods, optimizer, schedule. Methods run in their declared order (model
    # surgery first, compile last), recipe order among equals.
    model = build_model(r["model"], data.shape[0], data.num_classes).to(dev)
    model = distributed.convert_sync_bn(model, r["model"]["sync_bn"])
    methods = build_methods(r["methods"])
    # fp16 needs loss scaling (its range underflows small gradients); bf16 has fp32's range.
    precision_choice = choose_precision(r["precision"], dev.type, smoke)
    warn_once(precision_choice.warning)  # a CPU without native bf16/fp16: slow, but as asked
    precision = precision_choice.used
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    state = TrainState(recipe=r, model=model, device=dev, clock=clock,
                       num_classes=data.num_classes, data=data, scaler=scaler,
                       generator=torch.Generator(dev).manual_seed(recipe.seed * 1000 + 3),
                       host_rng=np.random.default_rng(recipe.seed * 1000 + 4), smoke=smoke)
    for m in methods.values():
        m.on_init(state)
    # Several processes: DDP wraps the model the methods have made (see distributed.wrap).
    model = state.model = distributed.wrap(state.model, dev)
    state.optimizer = build_optimizer(model, r["optimizer"])
    state.schedule = schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(state.optimizer, schedule.factor)
    for m in methods.values():
        m.on_fit_start(state)
    optimizer = state.optimizer  # a method may wrap it (lookahead)
    if precision in AUTOCAST_DTYPES:
        def autocast() -> Any:
            return torch.autocast(dev.type, dtype=AUTOCAST_DTYPES[precision])
    else:
        autocast = contextlib.nullcontext
    state.autocast = autocast  # for methods with forward passes of their own (sam)

    cycles_momentum = schedule.momentum(0) is not None
    curve = set(schedule.curve_points()) | {clock.total_steps}
    curve |= {s for m in methods.values() for s in m.curve_points(state) if 0 < s <= clock.total_steps}
    evals = set(eval_steps(recipe, clock, sorted(curve), smoke))
    columns = [*POINT_COLUMNS, *(c for m in methods.values() for c in m.columns)]
    total = clock.total_steps
    energy = costs.EnergyMeter.for_device(dev)  # read only where the training clock starts/stops
    run.update_meta(device=device_name(dev), torch_build=torch.__version__, cuda=torch.version.cuda,
                    energy=energy.source, total_steps=total, steps_per_epoch=clock.steps_per_epoch,
                    batch_size=batch_size, synthetic_data=synthetic, curve_steps=sorted(curve),
                    precision=precision_choice.meta(), data_loader=loader_meta(loader, data),
                    **({"label_noise": label_noise} if label_noise else {}))

    # Everything a checkpoint holds, so a resumed run continues bit for bit.
    loop = LoopState(loss_sum=torch.zeros((), device=dev), energy_j=energy.zero)  # loss summed on the device
    parts = Resumable(model, optimizer, scheduler, scaler, methods, state, data, loop)
    if resume and (found := checkpoint.list_checkpoints(run.path)):
        parts.load(checkpoint.load(found[-1][1]))
        run.rewrite_points(columns, loop.points)  # drops rows measured after the checkpoint
    elif resume:
        run.rewrite_points(columns, [])  # no checkpoint yet: the run starts over
    points_out = run.points_writer(columns)
    ckpt = checkpoint.Policy.from_recipe(r["checkpoint"], clock, curve)
    progress_every = max(1, total // 200)
    if progress is not None:
        progress.start(total, clock, f"{recipe.name}/s{recipe.seed}", loop.step)

    batches = data.train_batches()
    model.train()
    t0 = time.perf_counter()
    energy.start()
    try:
        for step in range(loop.step + 1, total + 1):
            t_wait = time.perf_counter()  # host-side: the wait for the loader (no device sync)
            x, y = next(batches)
            loop.data_wait += time.perf_counter() - t_wait
            for m in methods.values():
                x, y = m.on_batch(state, x, y)
            if cycles_momentum:  # host-side floats only: no device sync
                for group in optimizer.param_groups:
                    group["momentum"] = schedule.momentum(step - 1)
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = state.loss_fn(model(x), y)
            scaler.scale(loss).backward()
            for m in methods.values():
                m.after_backward(state)
            scaler.step(optimizer)
            scaler.update()
            points_out.lr(step, optimizer.param_groups[0]["lr"])  # the LR this step used: a host float
            scheduler.step()
            loop.loss_sum += loss.detach().float()
            loop.steps_in_sum += 1
            loop.step = state.step = step
            for m in reversed(methods.values()):
                m.after_step(state)
            if progress is not None and step % progress_every == 0:
                progress.update(step)

            is_eval = step in evals
            # Host-side flags; with several ranks, agreed every few steps (distributed.poll).
            stop_now, timer_due = distributed.poll(stop, step, ckpt.timer_due)
            stopping = step < total and stop_now
            is_ckpt = step < total and (stopping or ckpt.due(step, timer_due))
            if not (is_eval or is_ckpt or step % DIVERGENCE_CHECK_EVERY == 0):
                continue
            if is_eval:  # on the training clock: e.g. SWA's BN pass is training work
                for m in methods.values():
                    m.before_eval(state)
            if is_eval or is_ckpt:
                sync(dev)
                loop.train_time += time.perf_counter() - t0
                loop.energy_j = energy.stop(loop.energy_j)
            # The mean over the ranks of their slices' mean losses: the global batch's mean loss.
            train_loss = distributed.all_reduce_sum(loop.loss_sum).item() / distributed.world_size() \
                / loop.steps_in_sum
            if not math.isfinite(train_loss):
                return Outcome("diverged", loop.points, f"training loss became {train_loss} "
                               f"by step {step} (epoch {clock.epoch(step):.2f})")
            if is_eval:
                row: dict[str, float] = {
                    "step": step, "epoch": clock.epoch(step), "samples": step * batch_size,
                    "train_time_s": loop.train_time, **costs.point_costs(
                        loop.train_time, loop.energy_j, per_node=dev.type != "cuda"),
                    "data_wait_s": loop.data_wait,
                    "lr": peak_lr * schedule.end_factor(step),
                    "train_loss": train_loss, **evaluate(model, data, autocast),
                    "curve": int(step in curve)}
                for m in methods.values():
                    row.update(m.on_eval(state, lambda mod: evaluate(mod, data, autocast)))
                points_out.append(row)
                loop.points.append(row)
                if progress is not None:
                    progress.update(step, train_loss, row["test_acc"])
                loop.loss_sum.zero_()
                loop.steps_in_sum = 0
            if is_ckpt:
                t_ckpt = time.perf_counter()
                payload = parts.state_dict()  # on every rank: it gathers their loss sums
                written = (checkpoint.save(run.path, step, payload, ckpt.keep)
                           if distributed.is_main() else None)
                loop.checkpoint_time += time.perf_counter() - t_ckpt
                ckpt.last = time.perf_counter()
                run.update_meta(checkpoint_step=step, checkpoint_time_s=loop.checkpoint_time,
                                checkpoint_bytes=written.stat().st_size if written else 0)
                if stopping:
                    assert stop is not None and stop.signum is not None
                    return Outcome("interrupted", loop.points,
                                   f"stopped by {signal.Signals(stop.signum).name} at step {step} of "
                                   f"{total}; continue with --resume", exit_code=stop.exit_code)
            if is_eval or is_ckpt:  # evaluation and checkpoint time is not training time
                t0 = time.perf_counter()
                energy.start()
        for m in methods.values():
            m.on_end(state)
    finally:
        points_out.close()
    if distributed.is_main():
        save_model(unwrap(model), run.path / "model.pt")
        checkpoint.remove_all(run.path)  # completed: model.pt holds the final weights
    return Outcome("completed", loop.points)


@dataclass
class LoopState:
    """The training loop's own counters (checkpointed with everything else)."""

    loss_sum: torch.Tensor  # training loss summed since the last evaluation point
    step: int = 0
    steps_in_sum: int = 0
    train_time: float = 0.0
    data_wait: float = 0.0  # seconds the step loop waited for batches (part of train_time)
    checkpoint_time: float = 0.0
    energy_j: float | None = None  # over the training intervals; None: not measured (costs.py)
    points: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Resumable:
    """What a checkpoint saves and restores: every stateful part of a run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    methods: dict[str, Method]
    state: TrainState
    data: DeviceData | StreamData
    loop: LoopState

    def state_dict(self) -> dict[str, Any]:
        loop = self.loop
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "methods": {name: m.state_dict() for name, m in self.methods.items()},
            "rng": checkpoint.rng_state(),
            "method_rng": {"device": self.state.generator.get_state(),
                           "host": self.state.host_rng.bit_generator.state},
            "data": self.data.state_dict(),
            # Each rank's own loss sum (they differ: each sums its slices' losses).
            "loop": {"step": loop.step, "loss_sum": loop.loss_sum,
                     "loss_sums": distributed.all_gather(loop.loss_sum), "steps_in_sum": loop.steps_in_sum,
                     "train_time": loop.train_time, "checkpoint_time": loop.checkpoint_time,
                     "data_wait": loop.data_wait, "energy_j": loop.energy_j, "points": loop.points},
        }

    def load(self, ckpt: dict[str, Any]) -> None:
        """Restore a checkpoint into the freshly built run (after every method's on_fit_start)."""
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        for name, m in self.methods.items():
            m.load_state_dict(ckpt["methods"][name])
        checkpoint.set_rng_state(ckpt["rng"])  # last: set-up above may have drawn from them
        self.state.generator.set_state(ckpt["method_rng"]["device"])
        self.state.host_rng.bit_generator.state = ckpt["method_rng"]["host"]
        self.data.load_state_dict(ckpt["data"])
        saved = ckpt["loop"]
        self.loop.step = self.state.step = saved["step"]
        self.loop.loss_sum.copy_(_own_loss_sum(saved))
        self.loop.steps_in_sum = saved["steps_in_sum"]
        self.loop.train_time, self.loop.checkpoint_time = saved["train_time"], saved["checkpoint_time"]
        self.loop.data_wait = saved.get("data_wait", 0.0)
        self.loop.energy_j = saved.get("energy_j")  # absent in older checkpoints: not measured
        self.loop.points = [dict(p) for p in saved["points"]]


def _own_loss_sum(saved: dict[str, Any]) -> torch.Tensor:
    """This rank's loss sum from a checkpoint's loop state: its own when the world size is
    the one the checkpoint was written with; otherwise the mean of the saved ranks' sums (the
    next point's ``train_loss``, a mean over ranks, is the same)."""
    sums = saved.get("loss_sums")
    if sums is None:  # written before data parallelism
        return saved["loss_sum"]
    return sums[distributed.rank()] if len(sums) == distributed.world_size() else sums.mean()


def save_model(model: nn.Module, path: Path) -> None:
    """The final weights as a plain state_dict (load with ``torch.load(weights_only=True)``),
    written atomically."""
    checkpoint.save_file(path, model.state_dict())
