"""Two runs at once with Ray versus one after another: the wall-clock gain and Ray's overhead.

Two single-threaded digits runs (the same recipe, seeds 0 and 1, ``--cpus-per-run 1``) are
trained by ``trainbench run``'s executors, called in this process as the CLI calls them:
``--executor local`` (in process, one after the other) and ``--executor ray --jobs 2`` (two
Ray tasks on an embedded local Ray runtime). The two alternate round by round (local, ray,
local, ray, ...), because these machines are noisy and only side-by-side figures mean much.

Printed:
- Ray start-up: ``ray.init()`` of the embedded runtime (once per command), and the first
  call's extra cost (its worker processes start and import torch);
- per round: both wall-clock times and their ratio local/ray;
- ``speedup local/ray`` (median over the warm rounds) and Ray's per-call overhead: the Ray
  call's wall time minus the longer of its two runs' time alone (the local round's mean run).

    python benchmarks/parallel.py                    # 300 steps per run, 3 rounds
    python benchmarks/parallel.py --steps 600 --rounds 5
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from trainbench.executors import ExecOptions, execute
from trainbench.recipe import load_recipe
from trainbench.runner import plan_runs

ROOT = Path(__file__).parent.parent


def one_call(recipe_path: Path, steps: int, executor: str, out: Path) -> float:
    """Wall-clock seconds of one `trainbench run --seeds 2` call with ``executor``."""
    recipe = load_recipe(recipe_path, ["device=cpu", "schedule.warmup=0ba", f"duration={steps}ba",
                                       "eval.every=null"])
    plans = plan_runs([recipe], out=out, seeds=2, force=True)
    opts = ExecOptions(executor, jobs=2 if executor == "ray" else None, cpus_per_run=1)
    quiet = Console(file=io.StringIO())
    t0 = time.perf_counter()
    rows, code = execute(plans, smoke=False, opts=opts, out=out, console=quiet, err=quiet)
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{executor}: exit {code}: {[row[1] for row in rows]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "digits" / "baseline.yaml")
    ap.add_argument("--steps", type=int, default=300, help="training steps per run")
    ap.add_argument("--rounds", type=int, default=3, help="warm rounds (after one cold Ray call)")
    args = ap.parse_args()

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        local = one_call(args.recipe, args.steps, "local", out / "local")
        cold = one_call(args.recipe, args.steps, "ray", out / "ray")
        print(f"two single-threaded runs of {args.steps} steps ({args.recipe.name}, seeds 0 and 1)")
        print(f"ray start-up: ray.init {startup:.2f} s; first call {cold:.2f} s vs local {local:.2f} s "
              f"(its workers start and import torch)")
        ratios, overheads = [], []
        for k in range(args.rounds):
            local = one_call(args.recipe, args.steps, "local", out / "local")
            rayed = one_call(args.recipe, args.steps, "ray", out / "ray")
            ratios.append(local / rayed)
            overheads.append(rayed - local / 2)
            print(f"round {k + 1}: local {local:7.2f} s   ray --jobs 2 {rayed:7.2f} s   "
                  f"ratio {local / rayed:.2f}")
    ray.shutdown()
    print(f"speedup local/ray = {statistics.median(ratios):.2f}x (median of {len(ratios)}; goal >= 1.7x)")
    print(f"ray per-call overhead = {statistics.median(overheads):.2f} s (ray wall - one run's local "
          f"wall); start-up = {startup:.2f} s (goal < 5 s)")


if __name__ == "__main__":
    main()
