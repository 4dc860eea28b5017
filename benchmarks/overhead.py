"""How much does trainbench's loop cost over a minimal hand-written PyTorch loop?

Both loops train the same model (same init), on the same data tensors held on the device,
with the same batch size, optimizer and LR schedule, for the same number of steps. They run
interleaved in one process (raw, trainbench, raw, trainbench, ...) after a warm-up round,
because these machines are noisy and only side-by-side ratios mean anything. trainbench's
time is its own ``train_time_s`` (training only); the raw loop is timed the same way
(perf_counter around the step loop, device-synchronised at the end).

    python benchmarks/overhead.py                        # CPU: digits, small_cnn
    python benchmarks/overhead.py --device cuda --model resnet9 --dataset synthetic \\
        --batch-size 512 --steps 300                     # GPU: CIFAR-shaped synthetic data
    python benchmarks/overhead.py --methods mixup,cutmix,label_smoothing,ema
    python benchmarks/overhead.py --methods cutout --set methods.cutout.length=4
    python benchmarks/overhead.py --methods stochastic_depth --model resnet9 --set model.width=8
    torchrun --standalone --nproc-per-node 2 benchmarks/overhead.py --ddp   # DDP mode

DDP mode (``--ddp``, under torchrun): both loops run on every rank with the model in
DistributedDataParallel, each rank taking its slice of the same global batch; the raw loop
is the usual hand-written DDP loop, trainbench's is its own data-parallel path
(:mod:`trainbench.distributed`). Throughput is in global steps per second; rank 0 prints.

Prints per-round throughputs and ``throughput ratio trainbench/raw`` (median over rounds).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainbench import distributed
from trainbench.engine import load_data, resolve_device, seed_everything, sync, train
from trainbench.methods.cutmix import cutmix_batch, cutmix_box
from trainbench.methods.cutout import cutout_batch
from trainbench.methods.extra_pass import norm_buffers, restore_buffers, save_buffers
from trainbench.methods.layer_freezing import freeze_depth, freeze_layers, leaf_modules
from trainbench.methods.mixup import mixup_batch
from trainbench.methods.progressive_resizing import pinned_size, resize_batch, resize_scale
from trainbench.methods.selective_backprop import is_active, select_highest_loss
from trainbench.methods.stochastic_depth import apply_stochastic_depth
from trainbench.models import build_model
from trainbench.optim import build_optimizer
from trainbench.recipe import Recipe, load_recipe
from trainbench.results import RunDir
from trainbench.schedules import build_schedule
from trainbench.timeunits import Clock


def make_recipe(args: argparse.Namespace, steps: int) -> Recipe:
    sets = [
        f"data.dataset={args.dataset}", f"data.batch_size={args.batch_size}", "data.augment=[]",
        f"model.name={args.model}", f"duration={steps}ba", "schedule.warmup=0ba", "eval.every=null",
        f"device={args.device}", f"precision={args.precision}",
    ]
    if args.dataset == "synthetic":
        sets += ["data.train_size=10000", "data.test_size=1000"]
    for m in filter(None, args.methods.split(",")):
        sets.append(f"methods.{m}={{}}")  # each method's defaults (the raw loop uses the same)
    sets += args.set  # after: a method's own parameters (methods.cutout.length=4)
    return load_recipe(Path(__file__).parent.parent / "recipes" / "quickstart.yaml", sets)


def raw_loop(recipe: Recipe, steps: int) -> float:
    """The minimal loop a user would write by hand; returns steps per second. With methods
    on, it does the same work inline (the same mixing functions, smoothed cross-entropy, a
    foreach EMA), so the ratio measures trainbench's own overhead, not the methods' compute."""
    r = recipe.data
    methods = r["methods"]
    dev = distributed.local_device(resolve_device(r["device"]))
    seed_everything(recipe.seed)
    images, _, _ = load_data(recipe, smoke=False)
    x_all = images.train_x.to(dev).float() / 255
    mean = x_all.mean((0, 2, 3), keepdim=True)
    std = x_all.std((0, 2, 3), keepdim=True)
    x_all = (x_all - mean) / std
    y_all = images.train_y.to(dev)
    k = images.num_classes
    model = build_model(r["model"], x_all.shape[1], k).to(dev)
    if "stochastic_depth" in methods:
        apply_stochastic_depth(model, methods["stochastic_depth"]["drop_rate"],
                               methods["stochastic_depth"]["mode"])
    leaves, depth = leaf_modules(model), 0
    buffers = norm_buffers(model)  # BatchNorm statistics the scoring pass must leave as they were
    ema = copy.deepcopy(model).requires_grad_(False) if "ema" in methods else None
    model = distributed.wrap(model, dev)  # DDP mode: the usual DistributedDataParallel loop
    opt = build_optimizer(model, r["optimizer"])
    bs = r["data"]["batch_size"]
    lbs, rank = bs // distributed.world_size(), distributed.rank()
    order = torch.Generator(dev).manual_seed(0)  # the same permutation on every rank
    spe = len(y_all) // bs
    sched = build_schedule(r["schedule"]).bind(Clock(spe, bs, steps), r["optimizer"]["lr"])
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, sched.factor)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(r["precision"])
    smoothing = methods.get("label_smoothing", {}).get("smoothing", 0.0)
    rng = np.random.default_rng(0)
    ema_f = [] if ema is None else [
        (e, m) for e, m in zip([*ema.parameters(), *ema.buffers()], [*model.parameters(), *model.buffers()],
                               strict=True) if e.is_floating_point()]
    model.train()
    perm = torch.randperm(len(y_all), device=dev, generator=order)
    sync(dev)
    t0 = time.perf_counter()
    for step in range(steps):
        i = step % spe
        if i == 0:
            perm = torch.randperm(len(y_all), device=dev, generator=order)
        idx = perm[i * bs:(i + 1) * bs][rank * lbs:(rank + 1) * lbs]
        x, y = x_all[idx], y_all[idx]
        frac = step / steps  # one cycle: the methods' schedules as fractions of the run
        if "cutout" in methods:
            p = methods["cutout"]
            cy = torch.randint(0, x.shape[2], (len(y),), device=dev)
            cx = torch.randint(0, x.shape[3], (len(y),), device=dev)
            apply = torch.rand(len(y), device=dev) < p["prob"] if p["prob"] < 1 else None
            x = cutout_batch(x, cy, cx, p["length"], apply)
        if "progressive_resizing" in methods:
            p = methods["progressive_resizing"]
            scale = resize_scale(frac, p["initial_scale"], p["delay_fraction"], p["finetune_fraction"])
            x = resize_batch(x, (pinned_size(x.shape[2], scale, p["size_increment"]),
                                 pinned_size(x.shape[3], scale, p["size_increment"])))
        if "layer_freezing" in methods:
            p = methods["layer_freezing"]
            if (d := freeze_depth(frac, len(leaves), p["freeze_start"], p["freeze_level"])) != depth:
                freeze_layers(leaves, d)
                depth = d
        if "cutmix" in methods and ("mixup" not in methods or rng.random() < 0.5):
            lam = rng.beta(1.0, 1.0)
            box = cutmix_box(x.shape[2], x.shape[3], lam, rng)
            x, y, _ = cutmix_batch(x, y, k, box, torch.randperm(len(y), device=dev))
        elif "mixup" in methods:
            x, y = mixup_batch(x, y, k, rng.beta(0.2, 0.2), torch.randperm(len(y), device=dev))
        if "selective_backprop" in methods:
            p = methods["selective_backprop"]
            if is_active(frac, step, p["start"], p["end"], p["interrupt"]):
                with torch.no_grad():  # the scoring pass, BatchNorm statistics left as they were
                    saved = save_buffers(buffers)
                    losses = F.cross_entropy(model(x), y, reduction="none", label_smoothing=smoothing)
                    restore_buffers(buffers, saved)
                keep = select_highest_loss(losses, p["keep"])
                x, y = x[keep], y[keep]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
        loss.backward()
        opt.step()
        lr_sched.step()
        if ema_f:
            torch._foreach_lerp_([e for e, _ in ema_f], [m for _, m in ema_f], 1 - 0.999)
    sync(dev)
    return steps / (time.perf_counter() - t0)


def trainbench_loop(recipe: Recipe, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(tmp)
        run.start(recipe.to_yaml(), {})
        outcome = train(recipe, run)
    assert outcome.status == "completed", outcome.message
    return steps / outcome.points[-1]["train_time_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--methods", default="", help="comma-separated methods to switch on in trainbench")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override (repeatable), e.g. methods.cutout.length=4 or model.width=8")
    ap.add_argument("--ddp", action="store_true", help="DDP mode: run under torchrun (see above)")
    args = ap.parse_args()
    recipe = make_recipe(args, args.steps)
    dev = resolve_device(args.device)
    if args.ddp:
        if not distributed.launched():
            raise SystemExit("--ddp: start this script with torchrun --nproc-per-node N (N >= 2)")
        distributed.setup(dev.type)
        dev = distributed.local_device(dev)
    try:
        measure(args, recipe, dev)
    finally:
        distributed.teardown()


def measure(args: argparse.Namespace, recipe: Recipe, dev: torch.device) -> None:
    say = print if distributed.is_main() else (lambda *a, **k: None)
    say(f"processes={distributed.world_size()} device={dev} dataset={args.dataset} model={args.model} "
          f"batch={args.batch_size} "
          f"steps={args.steps} precision={args.precision} methods={args.methods or '-'} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    warm = max(args.steps // 4, 10)  # warm-up round: allocator, cuDNN autotune, lazy init
    raw_loop(recipe, warm)
    trainbench_loop(make_recipe(args, warm), warm)
    ratios = []
    for k in range(args.rounds):
        raw = raw_loop(recipe, args.steps)
        tb = trainbench_loop(recipe, args.steps)
        ratios.append(tb / raw)
        say(f"round {k + 1}: raw {raw:8.1f} steps/s   trainbench {tb:8.1f} steps/s   ratio {tb / raw:.3f}")
    say(f"throughput ratio trainbench/raw = {statistics.median(ratios):.3f} "
          f"(median of {args.rounds}; min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
