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


@pytest.mark.parametrize("methods", [[], ["--methods", "mixup,cutmix,label_smoothing,ema"]])
def test_overhead_prints_a_ratio(methods: list[str]) -> None:
    out = bench("overhead.py", "--steps", "6", "--rounds", "1", *methods)
    assert "throughput ratio trainbench/raw = " in out


def test_checkpoint_cost_prints_size_and_fraction() -> None:
    out = bench("checkpoint_cost.py", "--recipe", str(ROOT / "recipes" / "quickstart.yaml"), "--steps", "5",
                "--every", "2")
    assert "checkpoint size" in out and "checkpoint / epoch" in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_check_says_it_checked_nothing_without_a_gpu() -> None:
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=120, env={**__import__("os").environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    assert "SKIPPED, nothing was checked: no CUDA GPU" in out.stdout
