"""What does a method cost per step, and per evaluation point?

For each method (with its parameters), trains the same recipe with and without it, interleaved
in one process (plain, with, plain, with, ...) after a warm-up round, and reports from
trainbench's own clock:

- ``ms/step``: the training time per step it adds (``train_time_s``, which includes the
  methods' ``before_eval`` work, e.g. taking a snapshot), median over rounds, and the
  throughput ratio with/without;
- ``eval ms/point``: the time its ``on_eval`` takes at each evaluation point (off the
  training clock: evaluating an ensemble, fitting a temperature), median over all points.

The schedule is cyclic with ``--cycles`` equal cycles (``t_mult`` 1), so ensembles have
cycle ends to snapshot; evaluation happens at the cycle ends only.

    python benchmarks/method_cost.py --methods cutout,randaugment,randaugment:groups=8
    python benchmarks/method_cost.py --methods trivialaugment,augmix,snapshot_ensemble,temperature_scaling
    python benchmarks/method_cost.py --device cuda --dataset synthetic --model resnet9 \\
        --batch-size 512 --methods randaugment,randaugment:groups=32

A method is ``name`` or ``name:param=value:param=value`` (values parsed as YAML).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from trainbench.engine import resolve_device, train
from trainbench.methods import METHODS
from trainbench.recipe import Recipe, load_recipe
from trainbench.results import RunDir


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    name, *params = spec.split(":")
    return name, {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in params)}


def make_recipe(args: argparse.Namespace, method: tuple[str, dict[str, Any]] | None, steps: int) -> Recipe:
    cycle = max(steps // args.cycles, 1)
    sets = [f"data.dataset={args.dataset}", f"data.batch_size={args.batch_size}", "data.augment=[]",
            f"model.name={args.model}", "duration=null", "schedule.name=cyclic", "schedule.warmup=0ba",
            f"schedule.t0={cycle}ba", "schedule.t_mult=1", f"schedule.cycles={args.cycles}",
            "eval.every=null", f"device={args.device}", f"precision={args.precision}"]
    if args.dataset == "synthetic":
        sets += ["data.train_size=10000", "data.test_size=1000"]
    if method is not None:
        sets.append(f"methods.{method[0]}={yaml.safe_dump(method[1], default_flow_style=True).strip()}")
    return load_recipe(Path(__file__).parent.parent / "recipes" / "quickstart.yaml", sets)


EVAL_TIMES: list[float] = []


def timed_on_eval(fn: Any) -> Any:
    def wrapper(self: Any, state: Any, evaluate: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(self, state, evaluate)
        EVAL_TIMES.append(time.perf_counter() - t0)  # its results are read on the host: synced
        return out
    return wrapper


def seconds_per_step(recipe: Recipe) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(tmp)
        run.start(recipe.to_yaml(), {})
        outcome = train(recipe, run)
    assert outcome.status == "completed", outcome.message
    return outcome.points[-1]["train_time_s"] / outcome.points[-1]["step"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", required=True, help="comma-separated: name or name:param=value:...")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    methods = [parse_method(s) for s in args.methods.split(",") if s]
    dev = resolve_device(args.device)
    print(f"device={dev} dataset={args.dataset} model={args.model} batch={args.batch_size} "
          f"steps={args.steps} cycles={args.cycles} precision={args.precision} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    for name, _ in methods:
        cls = METHODS.get(name)
        if "on_eval" in vars(cls) and not hasattr(cls.on_eval, "__wrapped_by_cost__"):
            cls.on_eval = timed_on_eval(cls.on_eval)
            cls.on_eval.__wrapped_by_cost__ = True
    seconds_per_step(make_recipe(args, None, max(args.steps // 4, args.cycles)))  # warm-up
    for m in methods:
        EVAL_TIMES.clear()
        plain, with_m = [], []
        for _ in range(args.rounds):
            plain.append(seconds_per_step(make_recipe(args, None, args.steps)))
            with_m.append(seconds_per_step(make_recipe(args, m, args.steps)))
        added = statistics.median(w - p for w, p in zip(with_m, plain, strict=True)) * 1e3
        ratio = statistics.median(p / w for w, p in zip(with_m, plain, strict=True))
        label = m[0] + "".join(f":{k}={v}" for k, v in m[1].items())
        ev = f"   eval {statistics.median(EVAL_TIMES) * 1e3:8.2f} ms/point" if EVAL_TIMES else ""
        print(f"{label:32s} plain {statistics.median(plain) * 1e3:7.2f} ms/step   +{added:7.2f} ms/step   "
              f"throughput ratio {ratio:.3f}{ev}")


if __name__ == "__main__":
    main()
