"""The training loop: one recipe, one seed, one run directory.

Read :func:`train` top to bottom: set-up, the step loop, evaluation points. Methods plug in
through the events of :mod:`trainbench.methods.base`; the loop itself never changes for them.

Performance rules followed here (each one measured in ``benchmarks/overhead.py``):
- the dataset lives on the device; batches are sliced, normalised and augmented there;
- the step loop never reads a device value on the host, except for a divergence check every
  ``DIVERGENCE_CHECK_EVERY`` steps and at evaluation points;
- ``train_time_s`` is wall-clock time of the step loop only, synchronised with the device
  before it is read, with evaluation and start-up excluded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainbench.data import DATASETS, ImageData
from trainbench.data.loader import DeviceData
from trainbench.errors import InputError
from trainbench.methods import METHODS, Method, TrainState
from trainbench.models import build_model
from trainbench.optim import build_optimizer
from trainbench.recipe import Recipe
from trainbench.registry import instantiate
from trainbench.results import POINT_COLUMNS, RunDir
from trainbench.schedules import build_schedule
from trainbench.smoke import BATCH_SIZE as SMOKE_BATCH_SIZE
from trainbench.smoke import smoke_clock, smoke_data
from trainbench.timeunits import Clock

DIVERGENCE_CHECK_EVERY = 50  # steps; one host sync each, negligible at this interval
ECE_BINS = 15
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Progress(Protocol):
    def start(self, total_steps: int, clock: Clock, label: str) -> None: ...
    def update(self, step: int, loss: float | None = None, acc: float | None = None) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Outcome:
    status: str  # completed | diverged | interrupted | failed
    points: list[dict[str, float]] = field(default_factory=list)
    message: str = ""


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
    n_train, n_test = section["train_subset"], section["test_subset"]  # None = all
    data.train_x, data.train_y = data.train_x[:n_train], data.train_y[:n_train]
    data.test_x, data.test_y = data.test_x[:n_test], data.test_y[:n_test]
    return data, len(data.train_y), False


def make_clock(recipe: Recipe, train_size: int, smoke: bool) -> Clock:
    bs = recipe["data"]["batch_size"]
    if smoke:
        return smoke_clock(recipe["duration"], bs, train_size)
    spe = train_size // bs
    if spe < 1:
        raise InputError(f"data.batch_size: {bs} is larger than the training set "
                         f"({train_size} images); lower it.")
    total = Clock(spe, bs).steps(recipe["duration"], at_least_one=True)
    return Clock(spe, bs, total)


def eval_steps(recipe: Recipe, clock: Clock, curve: list[int]) -> list[int]:
    every = recipe["eval"]["every"]
    steps = set(curve) | {clock.total_steps}
    if every is not None:
        n = clock.steps(every, at_least_one=True)
        steps |= set(range(n, clock.total_steps + 1, n))
    return sorted(s for s in steps if 0 < s <= clock.total_steps)


# --- evaluation ---


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, autocast: Callable[[], Any]) -> dict[str, float]:
    """Test loss (plain cross-entropy), accuracy and expected calibration error (15 bins),
    accumulated on the device and read once."""
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
    n = len(data.test_y)
    ece = (bin_conf - bin_correct).abs().sum() / n
    stats = torch.stack([loss_sum / n, correct / n, ece]).tolist()
    model.train(was_training)
    return {"test_loss": stats[0], "test_acc": stats[1], "test_ece": stats[2]}


# --- the run ---


def run_recipe(recipe: Recipe, run: RunDir, *, smoke: bool = False,
               progress: Progress | None = None) -> Outcome:
    """Train one recipe into ``run``, recording status in meta.json whatever happens.

    Bad input (InputError) propagates after the run is marked failed; any other error
    marks the run failed with its traceback in ``error.log`` and returns."""
    run.start(recipe.to_yaml(), {"name": recipe.name, "seed": recipe.seed, "smoke": smoke,
                                 "recipe_source": recipe.source})
    if recipe["curve"]["mode"] == "budgets":
        from trainbench.budgets import run_budgets as run_fn
    else:
        run_fn = train
    try:
        outcome = run_fn(recipe, run, smoke=smoke, progress=progress)
    except KeyboardInterrupt:
        run.update_meta(status="interrupted", message="interrupted by the user")
        raise
    except InputError as e:
        run.update_meta(status="failed", message=str(e))
        raise
    except Exception as e:  # a bug or a runtime error: keep what was measured, report, go on
        (run.path / "error.log").write_text(traceback.format_exc())
        outcome = Outcome("failed", run.read_points(),
                          f"{type(e).__name__}: {e} (traceback in {run.path / 'error.log'})")
    finally:
        if progress is not None:
            progress.stop()
    run.update_meta(status=outcome.status, message=outcome.message)
    points = run.read_points()
    if points:
        from trainbench.plots import plot_run_curve

        plot_run_curve(points, run.curve_path, f"{recipe.name} (seed {recipe.seed})")
    return outcome


def train(recipe: Recipe, run: RunDir, *, smoke: bool = False,
          progress: Progress | None = None) -> Outcome:
    r = recipe.data
    dev = resolve_device(r["device"])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    seed_everything(recipe.seed)

    # Data: uint8 tensors on the device; an epoch is defined by the real training-set size.
    images, real_train_size, synthetic = load_data(recipe, smoke)
    batch_size = min(r["data"]["batch_size"], SMOKE_BATCH_SIZE) if smoke else r["data"]["batch_size"]
    data = DeviceData(images, dev, batch_size=batch_size,
                      eval_batch_size=r["data"]["eval_batch_size"], augment=r["data"]["augment"],
                      crop_padding=r["data"]["crop_padding"], normalize=r["data"]["normalize"],
                      seed=recipe.seed)
    clock = make_clock(recipe, real_train_size, smoke)
    peak_lr = r["optimizer"]["lr"]
    schedule = build_schedule(r["schedule"]).bind(clock, peak_lr)
    clock = dataclasses.replace(clock, total_steps=schedule.total)  # self-timed: its own length

    # Model, methods, optimizer, schedule. Methods run in their declared order (model
    # surgery first, compile last), recipe order among equals.
    model = build_model(r["model"], data.shape[0], data.num_classes).to(dev)
    methods: list[Method] = sorted((instantiate(METHODS.get(n), p) for n, p in r["methods"].items()),
                                   key=lambda m: m.order)
    precision = r["precision"]
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    state = TrainState(recipe=r, model=model, device=dev, clock=clock,
                       num_classes=data.num_classes, data=data, scaler=scaler,
                       generator=torch.Generator(dev).manual_seed(recipe.seed * 1000 + 3),
                       host_rng=np.random.default_rng(recipe.seed * 1000 + 4))
    for m in methods:
        m.on_init(state)
    model = state.model
    state.optimizer = build_optimizer(model, r["optimizer"])
    state.schedule = schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(state.optimizer, schedule.factor)
    for m in methods:
        m.on_fit_start(state)
    optimizer = state.optimizer  # a method may wrap it (lookahead)
    if precision in AUTOCAST_DTYPES:
        def autocast() -> Any:
            return torch.autocast(dev.type, dtype=AUTOCAST_DTYPES[precision])
    else:
        autocast = contextlib.nullcontext

    cycles_momentum = schedule.momentum(0) is not None
    curve = set(schedule.curve_points()) | {clock.total_steps}
    curve |= {s for m in methods for s in m.curve_points(state) if 0 < s <= clock.total_steps}
    evals = set(eval_steps(recipe, clock, sorted(curve)))
    columns = [*POINT_COLUMNS, *(c for m in methods for c in m.columns)]
    points_out = run.points_writer(columns)
    run.update_meta(device=device_name(dev), torch_build=torch.__version__, cuda=torch.version.cuda,
                    total_steps=clock.total_steps, steps_per_epoch=clock.steps_per_epoch,
                    batch_size=batch_size, synthetic_data=synthetic, curve_steps=sorted(curve))
    total = clock.total_steps
    progress_every = max(1, total // 200)
    if progress is not None:
        progress.start(total, clock, f"{recipe.name}/s{recipe.seed}")

    points: list[dict[str, float]] = []
    loss_sum = torch.zeros((), device=dev)  # summed on the device, read at eval points only
    steps_in_sum = 0
    train_time = 0.0
    batches = data.train_batches()
    model.train()
    t0 = time.perf_counter()
    try:
        for step in range(1, total + 1):
            x, y = next(batches)
            for m in methods:
                x, y = m.on_batch(state, x, y)
            if cycles_momentum:  # host-side floats only: no device sync
                for group in optimizer.param_groups:
                    group["momentum"] = schedule.momentum(step - 1)
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = state.loss_fn(model(x), y)
            scaler.scale(loss).backward()
            for m in methods:
                m.after_backward(state)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach().float()
            steps_in_sum += 1
            state.step = step
            for m in reversed(methods):
                m.after_step(state)
            if progress is not None and step % progress_every == 0:
                progress.update(step)

            is_eval = step in evals
            if not is_eval and step % DIVERGENCE_CHECK_EVERY:
                continue
            if is_eval:
                sync(dev)
                train_time += time.perf_counter() - t0
            train_loss = loss_sum.item() / steps_in_sum
            if not math.isfinite(train_loss):
                return Outcome("diverged", points, f"training loss became {train_loss} "
                               f"by step {step} (epoch {clock.epoch(step):.2f})")
            if not is_eval:
                continue
            row: dict[str, float] = {
                "step": step, "epoch": clock.epoch(step), "samples": step * batch_size,
                "train_time_s": train_time, "lr": peak_lr * schedule.end_factor(step),
                "train_loss": train_loss, **evaluate(model, data, autocast),
                "curve": int(step in curve)}
            for m in methods:
                row.update(m.on_eval(state, lambda mod: evaluate(mod, data, autocast)))
            points_out.append(row)
            points.append(row)
            if progress is not None:
                progress.update(step, train_loss, row["test_acc"])
            loss_sum.zero_()
            steps_in_sum = 0
            t0 = time.perf_counter()
        for m in methods:
            m.on_end(state)
    finally:
        points_out.close()
    return Outcome("completed", points)
