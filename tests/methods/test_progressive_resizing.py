"""Progressive resizing: Composer's scale schedule, the pinned sizes at given steps (per cycle
in a cyclic run), the resizing itself, evaluation at full size."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import build_state, record_forwards

from trainbench.engine import bound_schedule, run_recipe
from trainbench.methods import METHODS
from trainbench.methods.progressive_resizing import (
    ProgressiveResizing,
    pinned_size,
    resize_batch,
    resize_scale,
)
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import RunDir
from trainbench.timeunits import Clock

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


@pytest.mark.parametrize(("fraction", "scale"), [
    (0.0, 0.5), (0.49, 0.5), (0.5, 0.5), (0.65, 0.75), (0.74, 0.9), (0.8, 1.0), (0.95, 1.0)])
def test_composers_scale_schedule(fraction: float, scale: float) -> None:
    assert resize_scale(fraction, 0.5, delay_fraction=0.5, finetune_fraction=0.2) == pytest.approx(scale)


def test_pinned_sizes() -> None:
    assert [pinned_size(32, s, 4) for s in (0.5, 0.6167, 0.75, 0.99, 1.0)] == [16, 20, 24, 32, 32]
    assert pinned_size(30, 1.0, 4) == 30  # never above the full side
    assert pinned_size(8, 0.1, 4) == 4  # never below one increment
    assert pinned_size(3, 0.1, 4) == 3


def state_for(ends: list[int], total: int):
    sched = SimpleNamespace(self_timed=len(ends) > 1, curve_points=lambda: ends)
    return build_state(clock=Clock(10, 8, total), schedule=sched)


def test_size_at_given_steps_of_a_single_run() -> None:
    pr = ProgressiveResizing()  # Composer's defaults: 0.5, delay 0.5, finetune 0.2, increment 4
    pr.on_fit_start(state_for([100], 100))
    sizes = {done: pr.size_at(done, (32, 32)) for done in (0, 49, 57, 65, 79, 80, 99)}
    assert sizes == {0: (16, 16), 49: (16, 16), 57: (20, 20), 65: (24, 24), 79: (32, 32),
                     80: (32, 32), 99: (32, 32)}


def test_size_restarts_each_cycle_of_a_cyclic_run() -> None:
    pr = ProgressiveResizing()
    pr.on_fit_start(state_for([40, 100], 100))
    # cycle 1 is steps 1..40, cycle 2 steps 41..100 (60 steps): each has the whole schedule
    assert [pr.size_at(d, (32, 32))[0] for d in (0, 19, 26, 32, 39)] == [16, 16, 24, 32, 32]
    assert [pr.size_at(d, (32, 32))[0] for d in (40, 69, 79, 85, 99)] == [16, 16, 24, 28, 32]


def test_cycles_come_from_the_recipes_cyclic_schedule() -> None:
    recipe = load_recipe(QUICKSTART, ["schedule.name=cyclic", "schedule.warmup=1ep", "schedule.t0=1ep",
                                      "schedule.t_mult=2", "schedule.cycles=2"])
    clock, schedule = bound_schedule(recipe, 1437, smoke=False)  # 22 steps per epoch
    pr = ProgressiveResizing()
    pr.on_fit_start(build_state(clock=clock, schedule=schedule))
    assert pr.ends == [44, 88]
    assert pr.size_at(43, (8, 8)) == (8, 8) and pr.size_at(44, (8, 8)) == (4, 4)


def test_resize_and_crop() -> None:
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    assert resize_batch(torch.ones(2, 3, 8, 8), (4, 4)).shape == (2, 3, 4, 4)
    torch.testing.assert_close(resize_batch(torch.ones(2, 3, 8, 8), (4, 4)), torch.ones(2, 3, 4, 4))
    # antialiased bilinear halving of a linear ramp: away from the borders (where the filter is
    # cut off) each output is the mean of its 2x2 block
    torch.testing.assert_close(resize_batch(x, (4, 4))[:, :, 1:3, 1:3],
                               torch.nn.functional.avg_pool2d(x, 2)[:, :, 1:3, 1:3])
    assert torch.equal(resize_batch(x, (4, 4), "crop", (1, 3)), x[:, :, 1:5, 3:7])
    assert resize_batch(x, (8, 8)) is x


def test_validation_names_the_field() -> None:
    assert METHODS.get("progressive_resizing") is ProgressiveResizing
    with pytest.raises(RecipeError, match=r"methods\.progressive_resizing\.finetune_fraction.*at most 1"):
        load_recipe(QUICKSTART, ["methods.progressive_resizing={delay_fraction: 0.7, "
                                 "finetune_fraction: 0.4}"])
    with pytest.raises(RecipeError, match=r"methods\.progressive_resizing\.initial_scale"):
        load_recipe(QUICKSTART, ["methods.progressive_resizing={initial_scale: 0}"])
    # resnet9's three max-pools need 8x8: 4x4 digits would fail at the first step
    with pytest.raises(RecipeError, match=r"progressive_resizing\.initial_scale: the first training "
                                          r"images are 4x4 .* too small for model resnet9"):
        load_recipe(QUICKSTART, ["model.name=resnet9", "methods.progressive_resizing={}"])
    load_recipe(QUICKSTART, ["methods.progressive_resizing={}"])  # small_cnn takes 4x4


def test_short_run_trains_small_first_and_evaluates_at_full_size(tmp_path: Path, monkeypatch) -> None:
    seen = record_forwards(monkeypatch)
    sets = ["model.width=8", "duration=10ba", "schedule.warmup=0ba", "eval.every=5ba",
            "methods.progressive_resizing={size_increment: 2, mode: crop}"]
    out = run_recipe(load_recipe(QUICKSTART, sets), RunDir(tmp_path / "r"))
    assert out.status == "completed", out.message
    train = [shape[2:] for training, shape in seen if training]
    # delay 0.5: steps 1-5 at 4x4; ramp to step 8 (f = 0.8); then full size
    assert train == [(4, 4)] * 5 + [(4, 4), (6, 6), (6, 6), (8, 8), (8, 8)]
    assert {shape[2:] for training, shape in seen if not training} == {(8, 8)}
