"""The training loop: determinism, evaluation points, timing, divergence, metrics (precision:
tests/test_precision.py)."""

from __future__ import annotations

import contextlib
import itertools
import math
from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch import nn

from trainbench.data import ImageData
from trainbench.data.loader import DeviceData
from trainbench.engine import eval_steps, evaluate, make_clock, run_recipe
from trainbench.recipe import load_recipe
from trainbench.results import TIMING_COLUMNS, RunDir

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
SHORT = ["duration=3ep", "eval.every=1ep"]


def _run(tmp_path: Path, name: str, sets: list[str]):
    recipe = load_recipe(QUICKSTART, sets)
    run = RunDir(tmp_path / name)
    return run_recipe(recipe, run), run


def test_same_seed_gives_identical_points(tmp_path: Path) -> None:
    a, run_a = _run(tmp_path, "a", SHORT)
    b, run_b = _run(tmp_path, "b", SHORT)
    assert a.status == b.status == "completed"
    pa, pb = run_a.read_points(), run_b.read_points()
    assert len(pa) == len(pb) == 3
    for ra, rb in zip(pa, pb, strict=True):
        assert {k: v for k, v in ra.items() if k not in TIMING_COLUMNS} == \
               {k: v for k, v in rb.items() if k not in TIMING_COLUMNS}
    _, run_c = _run(tmp_path, "c", [*SHORT, "seed=1"])
    assert run_c.read_points()[-1]["train_loss"] != pa[-1]["train_loss"]


def test_points_fall_on_eval_steps_with_curve_at_the_end(tmp_path: Path) -> None:
    _, run = _run(tmp_path, "r", SHORT)
    points = run.read_points()
    spe = 1437 // 64  # digits training set, quickstart batch size
    assert [p["step"] for p in points] == [spe, 2 * spe, 3 * spe]
    assert [p["epoch"] for p in points] == [1.0, 2.0, 3.0]
    assert [p["samples"] for p in points] == [spe * 64, 2 * spe * 64, 3 * spe * 64]
    assert [p["curve"] for p in points] == [0, 0, 1]
    assert points[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at min_lr
    times = [p["train_time_s"] for p in points]
    assert all(0 < t1 < t2 for t1, t2 in itertools.pairwise(times))
    for p in points:
        assert 0 <= p["test_acc"] <= 1 and 0 <= p["test_ece"] <= 1 and p["test_loss"] > 0
    meta = run.read_meta()
    assert meta["status"] == "completed" and meta["total_steps"] == 3 * spe
    assert meta["end_time"] and meta["versions"]["torch"] == metadata.version("torch")
    assert run.curve_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_steps_include_final_and_curve_points() -> None:
    recipe = load_recipe(QUICKSTART, ["duration=50ba", "eval.every=20ba"])
    clock = make_clock(recipe, 1437, smoke=False)
    assert eval_steps(recipe, clock, [35]) == [20, 35, 40, 50]
    recipe = load_recipe(QUICKSTART, ["duration=50ba", "eval.every=null"])
    assert eval_steps(recipe, clock, [50]) == [50]


def test_smoke_runs_evaluate_at_most_four_times_besides_curve_points() -> None:
    # CIFAR's 'every: 2ep' over 24 epochs, dilated into 16 smoke steps, would evaluate at
    # every step; a smoke run evaluates every 4th (and still at every curve point).
    recipe = load_recipe(ROOT / "recipes" / "cifar10" / "baseline.yaml")
    clock = make_clock(recipe, 50000, smoke=True)
    assert clock.total_steps == 16
    assert eval_steps(recipe, clock, [16]) == list(range(1, 17))
    assert eval_steps(recipe, clock, [16], smoke=True) == [4, 8, 12, 16]
    assert eval_steps(recipe, clock, [7, 16], smoke=True) == [4, 7, 8, 12, 16]


def test_divergence_stops_keeps_points_and_marks_run(tmp_path: Path) -> None:
    outcome, run = _run(tmp_path, "d", ["optimizer.lr=1e4", "duration=3ep", "eval.every=1ba"])
    assert outcome.status == "diverged"
    assert "training loss became nan" in outcome.message or "inf" in outcome.message
    meta = run.read_meta()
    assert meta["status"] == "diverged" and meta["message"] == outcome.message
    points = run.read_points()
    # every point measured before divergence is on disk
    assert [(p["step"], p["train_loss"]) for p in points] == \
           [(p["step"], p["train_loss"]) for p in outcome.points]
    assert len(points) < 66  # stopped early (66 steps in the full run)
    assert all(math.isfinite(p["train_loss"]) for p in points)


def test_label_smoothing_method_changes_the_loss(tmp_path: Path) -> None:
    _, plain = _run(tmp_path, "plain", SHORT)
    _, smooth = _run(tmp_path, "ls", [*SHORT, "methods.label_smoothing.smoothing=0.2"])
    # With smoothing e over K=10 classes the loss cannot fall below the smoothed targets'
    # entropy: -(1-e+e/K) ln(1-e+e/K) - (K-1)(e/K) ln(e/K) = 0.809 for e=0.2.
    floor = -(0.82 * math.log(0.82) + 9 * 0.02 * math.log(0.02))
    assert smooth.read_points()[-1]["train_loss"] > floor
    assert plain.read_points()[-1]["train_loss"] < floor / 2


def test_failed_run_keeps_traceback_and_status(tmp_path: Path) -> None:
    # A ViT built for 224x224 images fails on 8x8 digits inside the step loop.
    outcome, run = _run(tmp_path, "f", ["model.name=timm:vit_tiny_patch16_224", "duration=2ba",
                                        "schedule.warmup=0ba"])
    assert outcome.status == "failed"
    assert "error.log" in outcome.message
    assert "Traceback" in (run.path / "error.log").read_text()
    assert run.read_meta()["status"] == "failed"


def test_evaluate_accuracy_loss_and_ece_exactly() -> None:
    # Four test images; a fake model returns fixed logits, so every metric is hand-computable.
    x = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1)
    y = torch.tensor([0, 1, 1, 0])
    data = DeviceData(ImageData(x, y, x, y, 2), torch.device("cpu"), batch_size=2,
                      eval_batch_size=3, augment=[], crop_padding=0, normalize=False, seed=0)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.5]])

    class Fixed(nn.Module):
        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            return logits[(inp.view(-1) * 255).round().long()]  # inputs arrive as x/255

    out = evaluate(Fixed(), data, contextlib.nullcontext)
    probs = logits.softmax(1)
    conf, pred = probs.max(1)
    hit = (pred == y).float()  # [1, 1, 0, 0]
    assert out["test_acc"] == pytest.approx(0.5)
    assert out["test_loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    # 15 equal-width confidence bins; ECE = sum over bins of |acc - conf| * n_bin / N.
    bins = (conf * 15).long().clamp(max=14)
    ece = sum(abs(hit[bins == b].sum() - conf[bins == b].sum()).item() for b in bins.unique()) / 4
    assert out["test_ece"] == pytest.approx(ece, rel=1e-6)


def test_train_time_counts_every_step_between_points(tmp_path: Path, monkeypatch) -> None:
    # A fake clock that advances by one "second" per training batch served, and by large,
    # distinct amounts inside evaluation (1000 s), checkpoint saving (1e6 s) and the run
    # directory's writes (meta.json, points.csv: 1e9 s). train_time_s at a point must then
    # equal the steps trained so far: evaluation, checkpoints and bookkeeping excluded, and no
    # step lost across divergence checks, checkpoints or points.
    import types

    from trainbench import checkpoint, costs, engine
    from trainbench.results import PointsWriter

    now = [0.0]

    def advancing(fn, seconds: float):
        def timed(*args, **kw):
            now[0] += seconds / 2  # on both sides of the work: whatever is read in between
            try:
                return fn(*args, **kw)
            finally:
                now[0] += seconds / 2
        return timed

    real_batches = DeviceData.train_batches

    def counting(self):
        for batch in real_batches(self):
            now[0] += 1
            yield batch

    monkeypatch.setattr(DeviceData, "train_batches", counting)
    monkeypatch.setattr(engine, "evaluate", advancing(engine.evaluate, 1e3))
    monkeypatch.setattr(checkpoint, "save", advancing(checkpoint.save, 1e6))
    monkeypatch.setattr(RunDir, "update_meta", advancing(RunDir.update_meta, 1e9))
    monkeypatch.setattr(PointsWriter, "append", advancing(PointsWriter.append, 1e9))
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(engine, "DIVERGENCE_CHECK_EVERY", 4)
    # An energy counter on the same clock (1 J per "second"): energy_j must cover exactly the
    # intervals train_time_s covers.
    monkeypatch.setattr(costs, "energy_counter", lambda dev: types.SimpleNamespace(
        source="clockwork", read_j=lambda: now[0]))
    # 8 steps an epoch, 24 steps: points at 10, 20, 24; checkpoints at 5, 10, 15, 20 (two of
    # them on a point's step); divergence checks every 4 steps.
    out, run = _run(tmp_path, "r", ["data.train_subset=512", "model.width=8", "duration=3ep",
                                    "eval.every=10ba", "checkpoint.every=5ba"])
    assert out.status == "completed"
    meta = run.read_meta()
    assert meta["checkpoint_step"] == 20 and meta["checkpoint_time_s"] == 4e6  # the saves ran
    points = run.read_points()
    assert [p["step"] for p in points] == [10, 20, 24]
    # The batch for step s is served before step s's clock read: times are steps.
    assert [p["train_time_s"] for p in points] == [10.0, 20.0, 24.0]
    # ... and all of it was spent in next(batches): data_wait_s times the fetch alone.
    assert [p["data_wait_s"] for p in points] == [10.0, 20.0, 24.0]
    assert [p["energy_j"] for p in points] == [p["device_time_s"] for p in points] == [10.0, 20.0, 24.0]
    assert meta["energy"] == "clockwork"


# --- device choice: errors are bad input (exit 2), checked on a CPU-only machine too ---


def test_resolve_device_errors_name_the_device_and_the_fix(monkeypatch) -> None:
    from trainbench.engine import resolve_device
    from trainbench.errors import InputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(InputError) as err:
            resolve_device(spec)
        assert str(err.value) == (f"device: '{spec}' was asked for but this machine has no usable CUDA "
                                  "GPU (torch.cuda.is_available() is False). Use --device cpu, or "
                                  "device: auto in the recipe.")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    for spec in ("cuda:2", "cuda:3"):  # indices count from 0: cuda:2 is the third GPU
        with pytest.raises(InputError) as err:
            resolve_device(spec)
        assert str(err.value) == (f"device: '{spec}' does not exist; this machine has 2 GPU(s) "
                                  "(cuda:0 ...).")


@pytest.mark.parametrize(("device", "gpus", "says"), [
    ("cuda", 0, "'cuda' was asked for but this machine has no usable CUDA GPU"),
    ("cuda:3", 2, "'cuda:3' does not exist; this machine has 2 GPU(s)"),
])
def test_cli_turns_a_missing_device_into_exit_2(tmp_path: Path, monkeypatch, device: str, gpus: int,
                                               says: str) -> None:
    from typer.testing import CliRunner

    from trainbench.cli import app

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    result = CliRunner().invoke(app, ["run", str(QUICKSTART), "--out", str(tmp_path), "--device", device,
                                      "--set", "duration=2ba", "--set", "schedule.warmup=0ba"])
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())  # rich wraps long lines
    assert says in out and "Traceback" not in out


# --- fp16: the GradScaler skips a step whose gradients hold an inf, inside a real run ---


def test_fp16_scaler_skips_the_step_with_an_inf_gradient_and_halves_the_scale(tmp_path: Path,
                                                                             monkeypatch) -> None:
    from trainbench.methods import METHODS, Method, TrainState
    from trainbench.registry import Entry

    made: list[Method] = []

    class InfGradientAtStep3(Method):
        """Test only: an inf in one gradient of step 3; records scale and weights after each step."""

        def __init__(self) -> None:
            self.scales: list[float] = []
            self.weights: list[list[torch.Tensor]] = []
            made.append(self)

        def snapshot(self, state: TrainState) -> list[torch.Tensor]:
            return [p.detach().clone() for p in state.model.parameters()]

        def on_fit_start(self, state: TrainState) -> None:
            self.weights.append(self.snapshot(state))

        def after_backward(self, state: TrainState) -> None:
            if state.step + 1 == 3:  # state.step counts the steps completed
                next(state.model.parameters()).grad.view(-1)[0] = math.inf

        def after_step(self, state: TrainState) -> None:
            self.scales.append(state.scaler.get_scale())
            self.weights.append(self.snapshot(state))

    monkeypatch.setitem(METHODS._entries, "inf_gradient",
                        Entry("inf_gradient", InfGradientAtStep3, "test only", {}))
    outcome, _ = _run(tmp_path, "r", ["model.width=8", "precision=fp16", "duration=5ba",
                                      "schedule.warmup=0ba",
                                      "eval.every=null", "methods.inf_gradient={}"])
    assert outcome.status == "completed", outcome.message
    assert math.isfinite(outcome.points[-1]["train_loss"])  # the inf was in a gradient, not the loss
    (m,) = made
    s = m.scales[0]
    assert m.scales == [s, s, s / 2, s / 2, s / 2]  # backed off once, at step 3 only
    for step, (before, after) in enumerate(itertools.pairwise(m.weights), 1):
        same = all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        assert same == (step == 3), f"step {step}: weights {'unchanged' if same else 'changed'}"
