"""Checkpoints: atomic files, rotation, safe loading, RNG and data-order state, and resumed
runs that equal uninterrupted ones."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from trainbench import checkpoint
from trainbench.data import ImageData
from trainbench.data.loader import DeviceData
from trainbench.engine import run_recipe
from trainbench.errors import InputError
from trainbench.recipe import load_recipe
from trainbench.results import TIMING_COLUMNS, RunDir

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
# Every stateful part at once: augmentation, mixing RNG, two averages, Lookahead's slow weights.
SUBSET = "data.train_subset=512"  # 8 steps per epoch: short runs, several passes
BUSY = [SUBSET, "duration=4ep", "eval.every=1ep", 'data.augment=["random_crop", "hflip"]',
        "methods.mixup.alpha=0.4", "methods.cutmix.alpha=1.0", "methods.ema.decay=0.9",
        "methods.swa.start=0.5dur", "methods.swa.every=5ba", "methods.lookahead.k=5"]
SPE = 512 // 64  # steps per epoch


def timing_free(points: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in p.items() if k not in TIMING_COLUMNS} for p in points]


def same(a: list[dict[str, float]], b: list[dict[str, float]]) -> bool:
    # NaN (blank SWA columns before its window) compares unequal to itself: compare as text.
    return [{k: repr(v) for k, v in p.items()} for p in timing_free(a)] == \
           [{k: repr(v) for k, v in p.items()} for p in timing_free(b)]


def run(tmp_path: Path, name: str, sets: list[str], **kw):
    recipe = load_recipe(QUICKSTART, sets)
    rd = RunDir(tmp_path / name)
    return run_recipe(recipe, rd, **kw), rd, recipe


# --- files ---


def test_save_is_atomic_keeps_the_newest_and_loads_safely(tmp_path: Path) -> None:
    for step in (3, 7, 12):
        checkpoint.save(tmp_path, step, {"w": torch.full((2,), float(step))}, keep=2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [7, 12]
    assert checkpoint.latest_step(tmp_path) == 12
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))
    payload = checkpoint.load(tmp_path / "checkpoints" / "step00000012.pt")
    assert payload["step"] == 12 and torch.equal(payload["w"], torch.full((2,), 12.0))


def test_a_failed_write_leaves_earlier_checkpoints_intact(tmp_path: Path, monkeypatch) -> None:
    checkpoint.save(tmp_path, 5, {"w": torch.ones(1)}, keep=1)

    def full_disk(obj, f) -> None:
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, 9, {"w": torch.ones(1)}, keep=1)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [5]
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))


class Payload:
    """Any class: a pickle holding it would run its code when loaded without weights_only."""

    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_a_checkpoint_with_a_foreign_pickle_payload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "step00000010.pt"
    with path.open("wb") as f:
        pickle.dump({"format": checkpoint.FORMAT, "step": 10, "evil": Payload()}, f, protocol=2)
    with pytest.raises(InputError, match=r"refusing to load.*weights_only"):
        checkpoint.load(path)
    torch.save({"step": 1}, path)  # loadable, but not ours
    with pytest.raises(InputError, match="not a trainbench checkpoint"):
        checkpoint.load(path)


def test_rng_states_round_trip(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    checkpoint.save(tmp_path, 1, {"rng": checkpoint.rng_state()}, keep=1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "checkpoints" / "step00000001.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.parametrize("consumed", [0, 2, 3, 5, 7])
def test_data_order_resumes_mid_pass_and_at_pass_boundaries(consumed: int) -> None:
    g = torch.Generator().manual_seed(0)
    images = ImageData(torch.randint(0, 255, (30, 1, 4, 4), dtype=torch.uint8, generator=g),
                       torch.arange(30) % 3, torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
                       torch.zeros(2, dtype=torch.long), 3)

    def loader() -> DeviceData:
        return DeviceData(images, torch.device("cpu"), batch_size=10, eval_batch_size=10,
                          augment=["random_crop", "hflip"], crop_padding=1, normalize=True, seed=4)

    whole = loader().train_batches()
    reference = [next(whole) for _ in range(consumed + 4)]  # 3 batches per pass
    first = loader()
    batches = first.train_batches()
    for _ in range(consumed):
        next(batches)
    second = loader()
    second.load_state_dict(first.state_dict())
    again = second.state_dict()  # before any batch: the same position, not the pass's start
    assert again["pos"] == first.state_dict()["pos"]
    assert torch.equal(again["order_gen"], first.state_dict()["order_gen"])
    resumed = second.train_batches()
    for x, y in reference[consumed:]:
        rx, ry = next(resumed)
        assert torch.equal(rx, x) and torch.equal(ry, y)


# --- resumed runs ---


@pytest.fixture(scope="module")
def busy_whole(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    whole, whole_run, _ = run(tmp_path_factory.mktemp("busy"), "whole", BUSY)
    assert whole.status == "completed"
    return whole_run


def test_a_completed_run_keeps_its_final_model_not_its_checkpoints(busy_whole: RunDir) -> None:
    assert not (busy_whole.path / "checkpoints").exists()
    state = torch.load(busy_whole.path / "model.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("at", [2 * SPE + 5, 2 * SPE])  # mid-pass; at an epoch end (an eval point)
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path: Path, busy_whole: RunDir,
                                                                  stop_after: type, at: int) -> None:
    whole_run = busy_whole

    cut, cut_run, recipe = run(tmp_path, "cut", BUSY, stop=stop_after(at))
    assert cut.status == "interrupted" and cut.exit_code == 130
    meta = cut_run.read_meta()
    assert meta["status"] == "interrupted" and meta["checkpoint_step"] == at
    assert checkpoint.latest_step(cut_run.path) == at
    assert len(cut_run.read_points()) == at // SPE

    again = run_recipe(recipe, cut_run, resume=True)
    assert again.status == "completed"
    assert same(cut_run.read_points(), whole_run.read_points())
    meta = cut_run.read_meta()
    assert meta["status"] == "completed" and meta["resumed"][0]["from_step"] == at
    assert meta["resumed"][0]["status_was"] == "interrupted"
    final_whole = torch.load(whole_run.path / "model.pt", weights_only=True)
    final_cut = torch.load(cut_run.path / "model.pt", weights_only=True)
    assert all(torch.equal(final_whole[k], final_cut[k]) for k in final_whole)


def test_checkpointing_does_not_change_the_numbers(tmp_path: Path) -> None:
    sets = [SUBSET, "duration=2ep", "eval.every=1ep", "methods.mixup.alpha=0.4", "methods.ema.decay=0.9"]
    _, plain, _ = run(tmp_path, "plain", [*sets, "checkpoint.curve_points=false", "checkpoint.minutes=null"])
    _, often, _ = run(tmp_path, "often", [*sets, "checkpoint.every=3ba", "checkpoint.keep=3"])
    assert same(plain.read_points(), often.read_points())
    assert often.read_meta()["checkpoint_time_s"] > 0


def test_resume_drops_points_measured_after_the_checkpoint(tmp_path: Path, stop_after: type) -> None:
    sets = [SUBSET, "duration=3ep", "eval.every=1ep", "checkpoint.curve_points=false",
            "checkpoint.minutes=null", "checkpoint.every=1ep", "checkpoint.keep=3"]
    _, whole_run, _ = run(tmp_path, "whole", sets)
    _, cut_run, recipe = run(tmp_path, "cut", sets, stop=stop_after(2 * SPE + 3))
    assert [s for s, _ in checkpoint.list_checkpoints(cut_run.path)] == [SPE, 2 * SPE, 2 * SPE + 3]
    # As if killed after the 2-epoch point was written but before its checkpoint, mid-row:
    for _, path in checkpoint.list_checkpoints(cut_run.path)[1:]:
        path.unlink()
    cut_run.points_path.write_text(cut_run.points_path.read_text() + "999,9.0,1,2")
    assert len(cut_run.read_points()) == 2
    run_recipe(recipe, cut_run, resume=True)
    assert same(cut_run.read_points(), whole_run.read_points())
    assert cut_run.points_path.read_text().count("\n") == 4  # header + 3 rows, nothing torn


def test_resume_without_a_checkpoint_starts_over(tmp_path: Path) -> None:
    sets = [SUBSET, "duration=2ep"]
    _, whole_run, recipe = run(tmp_path, "whole", sets)
    rd = RunDir(tmp_path / "fresh")
    rd.start(recipe.to_yaml(), {"name": recipe.name})
    rd.update_meta(status="failed")
    rd.points_path.write_text("garbage\n")
    assert run_recipe(recipe, rd, resume=True).status == "completed"
    assert same(rd.read_points(), whole_run.read_points())


def test_budgets_mode_resumes_the_interrupted_budget_and_keeps_the_completed_ones(tmp_path: Path,
                                                                                  stop_after: type) -> None:
    sets = [SUBSET, "schedule.name=cyclic", "schedule.t0=1ep", "schedule.t_mult=2", "schedule.cycles=2",
            "curve.mode=budgets", "eval.every=null"]
    recipe = load_recipe(QUICKSTART, sets)
    whole = RunDir(tmp_path / "whole")
    assert run_recipe(recipe, whole).status == "completed"  # budgets of 2 and 4 epochs
    cut = RunDir(tmp_path / "cut")
    out = run_recipe(recipe, cut, stop=stop_after(2 * SPE + SPE + 5))  # inside budget 2
    assert out.status == "interrupted" and cut.read_meta()["status"] == "interrupted"
    b1_end = (cut.path / "budget1" / "meta.json").stat().st_mtime_ns
    assert run_recipe(recipe, cut, resume=True).status == "completed"
    assert (cut.path / "budget1" / "meta.json").stat().st_mtime_ns == b1_end  # not re-run
    assert same(cut.read_points(), whole.read_points())  # types too: step 8, not 8.0
    device = whole.read_meta()["device"]  # the parent says where its budget runs ran
    assert device.startswith("cpu") and cut.read_meta()["device"] == device


def test_a_forced_restart_drops_the_earlier_attempts_checkpoints(tmp_path: Path, stop_after: type) -> None:
    sets = [SUBSET, "duration=3ep", "checkpoint.every=2ba", "checkpoint.keep=3"]
    _, rd, recipe = run(tmp_path, "r", sets, stop=stop_after(20))
    assert checkpoint.latest_step(rd.path) == 20
    again = run_recipe(recipe, rd, stop=stop_after(5))  # started over (--force), stopped early
    assert again.status == "interrupted"
    assert [s for s, _ in checkpoint.list_checkpoints(rd.path)] == [2, 4, 5]  # none from before


@pytest.mark.parametrize("extra", [
    # SWALR (its own LR, rebuilt on resume), label smoothing, gradient clipping, fp16 GradScaler.
    ["methods.swa.start=0.5dur", "methods.swa.lr=0.02", "methods.swa.anneal=1ep", "methods.swa.every=3ba",
     "methods.label_smoothing.smoothing=0.1", "methods.grad_clip.max_norm=1.0", "precision=fp16",
     "model.width=8", "data.test_subset=64"],  # small: fp16 is emulated (slow) without AMX-FP16
    # Momentum cycling (host-side per step), BlurPool, channels-last.
    ["schedule.name=triangular", "schedule.step_size=1ep", "schedule.cycle_momentum=true",
     "methods.blurpool={}", "methods.channels_last={}"],
    # SAM, selective backprop, progressive resizing (random crops), stochastic depth, layer
    # freezing (its frozen set): stop mid-ramp, mid-window and with layers frozen.
    ["data.dataset=synthetic", "data.image_size=16", "data.train_size=512", "data.test_size=64",
     "model.name=resnet9", "model.width=4", "methods.sam={rho: 0.1}",
     "methods.selective_backprop={start: 0.3, end: 1.0}",
     "methods.progressive_resizing={size_increment: 2, mode: crop, delay_fraction: 0.3}",
     "methods.stochastic_depth={drop_rate: 0.3}", "methods.layer_freezing={freeze_start: 0.4}"],
], ids=["swalr-ls-clip-fp16", "triangular-momentum-blurpool-nhwc", "sam-sb-pr-sd-lf"])
def test_resume_equality_holds_for_other_stateful_parts(tmp_path: Path, stop_after: type,
                                                        extra: list[str]) -> None:
    sets = [SUBSET, "duration=3ep", "eval.every=1ep", *extra]
    _, whole_run, _ = run(tmp_path, "whole", sets)
    cut, cut_run, recipe = run(tmp_path, "cut", sets, stop=stop_after(2 * SPE + 3))
    assert cut.status == "interrupted"
    assert run_recipe(recipe, cut_run, resume=True).status == "completed"
    assert same(cut_run.read_points(), whole_run.read_points())
