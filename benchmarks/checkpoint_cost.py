"""What a checkpoint costs: its size, and its writing time as a fraction of an epoch.

Trains a recipe (default: ResNet-9 on synthetic CIFAR-shaped data, 50,000 training images)
for a few steps with a checkpoint every few steps, in one run, and reports from that run's
``meta.json``: the checkpoint's size, the mean time to write one, the measured training
time per step, and so the checkpoint's time as a fraction of one epoch's training time
(steps per epoch x time per step). Both times come from the same run, so the ratio holds on
a noisy machine.

    .venv/bin/python benchmarks/checkpoint_cost.py                       # CPU
    .venv/bin/python benchmarks/checkpoint_cost.py --device cuda --steps 60 --every 10
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from trainbench.engine import run_recipe
from trainbench.recipe import load_recipe
from trainbench.results import RunDir

ROOT = Path(__file__).parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "synthetic" / "cifar_shape_speed.yaml"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=12, help="training steps")
    ap.add_argument("--every", type=int, default=3, help="a checkpoint every this many steps")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="recipe overrides")
    args = ap.parse_args()

    total = args.steps
    recipe = load_recipe(args.recipe, [f"device={args.device}", f"duration={total}ba", "schedule.warmup=0ba",
                                       "eval.every=null",
                                       "checkpoint.curve_points=false", "checkpoint.minutes=null",
                                       f"checkpoint.every={args.every}ba", *args.sets])
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run")
        outcome = run_recipe(recipe, run)
        if outcome.status != "completed":
            raise SystemExit(f"run {outcome.status}: {outcome.message}")
        meta = run.read_meta()
    n_ckpt = (total - 1) // args.every  # none at the last step
    per_ckpt = meta["checkpoint_time_s"] / n_ckpt
    per_step = outcome.points[-1]["train_time_s"] / total
    epoch = per_step * meta["steps_per_epoch"]
    print(f"recipe {recipe.name} on {meta['device']}: {meta['steps_per_epoch']} steps per epoch, "
          f"batch {meta['batch_size']}")
    print(f"checkpoint size       {meta['checkpoint_bytes'] / 2**20:.1f} MiB")
    print(f"checkpoint write      {per_ckpt:.3f} s (mean of {n_ckpt})")
    print(f"training per step     {per_step:.3f} s  ->  epoch {epoch:.1f} s")
    print(f"checkpoint / epoch    {per_ckpt / epoch:.4f}")


if __name__ == "__main__":
    main()
