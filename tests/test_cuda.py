"""What only a CUDA GPU can show: autocast precisions, channels-last and compile on the GPU,
the CUDA RNG in checkpoints, and a resumed GPU run. Skipped without CUDA; run by
``benchmarks/gpu_check.sh``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainbench import checkpoint
from trainbench.engine import run_recipe
from trainbench.recipe import load_recipe
from trainbench.results import RunDir

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
TINY = ["device=cuda", "duration=2ep", "schedule.warmup=0ba", "eval.every=1ep", "data.train_subset=512"]


def run(tmp_path: Path, name: str, sets: list[str], **kw):
    recipe = load_recipe(QUICKSTART, [*TINY, *sets])
    rd = RunDir(tmp_path / name)
    return run_recipe(recipe, rd, **kw), rd


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_precisions_train_on_the_gpu(tmp_path: Path, precision: str) -> None:
    out, rd = run(tmp_path, precision, [f"precision={precision}"])
    assert out.status == "completed", out.message
    meta = rd.read_meta()
    assert meta["device_type"] == "cuda" and meta["precision"]["used"] == precision
    assert out.points[-1]["test_acc"] > 0.5


def test_channels_last_on_the_gpu(tmp_path: Path) -> None:
    out, rd = run(tmp_path, "cl", ["methods.channels_last={}"])
    assert out.status == "completed", out.message
    weights = torch.load(rd.path / "model.pt", weights_only=True)
    assert weights["0.0.weight"].is_contiguous(memory_format=torch.channels_last)


def test_compile_on_the_gpu(tmp_path: Path) -> None:
    out, _ = run(tmp_path, "compiled", ["methods.compile={}"])
    assert out.status == "completed", out.message
    assert out.points[-1]["test_acc"] > 0.5


def test_cuda_rng_state_round_trips_through_a_checkpoint() -> None:
    torch.cuda.manual_seed(7)
    torch.rand(3, device="cuda")  # initialise CUDA
    state = checkpoint.rng_state()
    assert "cuda" in state
    expected = torch.rand(5, device="cuda")
    torch.rand(11, device="cuda")
    checkpoint.set_rng_state(state)
    assert torch.equal(torch.rand(5, device="cuda"), expected)


def test_interrupted_gpu_run_resumes_to_the_same_points(tmp_path: Path, stop_after: type) -> None:
    sets = ["methods.mixup.alpha=0.4", 'data.augment=["random_crop", "hflip"]',
            "methods.ema.decay=0.9"]
    whole, whole_run = run(tmp_path, "whole", sets)
    cut, cut_run = run(tmp_path, "cut", sets, stop=stop_after(5))
    assert whole.status == "completed" and cut.status == "interrupted"
    again = run_recipe(load_recipe(QUICKSTART, [*TINY, *sets]), cut_run, resume=True)
    assert again.status == "completed"
    a, b = whole_run.read_points(), cut_run.read_points()
    assert [p["step"] for p in a] == [p["step"] for p in b]
    for p, q in zip(a, b, strict=True):  # cuDNN may pick other kernels run to run: near, not bitwise
        assert q["train_loss"] == pytest.approx(p["train_loss"], rel=1e-3)
        assert abs(q["test_acc"] - p["test_acc"]) <= 0.01
