"""The benchmark scripts keep working (tiny sizes; their numbers are checked by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def bench(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("methods", [[], ["--methods", "mixup,cutmix,label_smoothing,ema"], [
    "--methods", "cutout,progressive_resizing,layer_freezing,selective_backprop,stochastic_depth",
    "--model", "resnet9", "--set", "model.width=4", "--set", "data.size=32"]])
def test_overhead_prints_a_ratio(methods: list[str]) -> None:
    out = bench("overhead.py", "--steps", "6", "--rounds", "1", *methods)
    assert "throughput ratio trainbench/raw = " in out


def test_checkpoint_cost_prints_size_and_fraction() -> None:
    out = bench("checkpoint_cost.py", "--recipe", str(ROOT / "recipes" / "quickstart.yaml"), "--steps", "5",
                "--every", "2")
    assert "checkpoint size" in out and "checkpoint / epoch" in out


def test_parallel_prints_speedup_and_overhead() -> None:
    pytest.importorskip("ray")
    out = bench("parallel.py", "--steps", "4", "--rounds", "1")
    assert "speedup local/ray = " in out and "ray per-call overhead = " in out


def test_loader_benchmark_prints_both_ratios() -> None:
    out = bench("loader.py", "--images", "40", "--rounds", "1", "--batch", "8", "--workers", "1",
                "--e2e-epochs", "2")
    assert "loader throughput ratio trainbench/timm = " in out
    assert "accuracy gap stream-device = +0.00 pp" in out  # on a CPU both modes see the same batches
    assert "end-to-end throughput ratio stream/device = " in out


def test_method_cost_prints_per_step_and_per_evaluation_costs() -> None:
    out = bench("method_cost.py", "--methods", "randaugment:groups=2,snapshot_ensemble", "--steps", "4",
                "--cycles", "2", "--rounds", "1")
    assert "randaugment:groups=2" in out and "ms/step" in out and "throughput ratio" in out
    assert "snapshot_ensemble" in out and "eval" in out and "ms/point" in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_check_says_it_checked_nothing_without_a_gpu() -> None:
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=120, env={**__import__("os").environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    assert "SKIPPED, nothing was checked: no CUDA GPU" in out.stdout
