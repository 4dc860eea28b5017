"""Selective backprop: the kept fraction, the highest-loss samples kept, Composer's window and
interrupt rule (per cycle), BatchNorm statistics untouched by the scoring pass."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import build_state, record_forwards
from torch import nn

from trainbench.engine import run_recipe
from trainbench.methods import METHODS
from trainbench.methods.selective_backprop import (
    SelectiveBackprop,
    is_active,
    kept_count,
    select_highest_loss,
)
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import RunDir
from trainbench.timeunits import Clock

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


def test_kept_count_and_highest_losses() -> None:
    assert [kept_count(64, k) for k in (0.5, 0.25, 0.3, 1.0)] == [32, 16, 19, 64]
    assert kept_count(3, 0.1) == 1
    losses = torch.tensor([0.1, 2.0, 0.5, 3.0, 0.0, 1.0])
    assert select_highest_loss(losses, 0.5).tolist() == [3, 1, 5]


def test_composers_window_and_interrupt() -> None:
    active = [is_active(d / 10, d, start=0.5, end=0.9, interrupt=2) for d in range(10)]
    # steps 6..9 (done 5..8) are in [0.5, 0.9); every 2nd step (6, 8) trains on the full batch,
    # so steps 7 and 9 are selective
    assert active == [False] * 5 + [False, True, False, True, False]
    assert [is_active(0.6, d, 0.5, 0.9, 0) for d in range(3)] == [True] * 3


def model_with_bn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_keeps_the_highest_loss_samples_and_leaves_bn_statistics_alone() -> None:
    model = model_with_bn()
    x, y = torch.randn(10, 4), torch.arange(10) % 3
    state = build_state(model=model, clock=Clock(10, 10, 10),
                        schedule=SimpleNamespace(self_timed=False, curve_points=lambda: [10]))
    sb = SelectiveBackprop(keep=0.3, start=0.0, end=1.0, interrupt=0)
    sb.on_fit_start(state)
    with torch.no_grad():
        losses = F.cross_entropy(model(x), y, reduction="none")  # train mode, as the method scores
    model[1].reset_running_stats()
    xs, ys = sb.on_batch(state, x, y)
    top = losses.argsort(descending=True)[:3]
    assert torch.equal(xs, x[top]) and torch.equal(ys, y[top])
    assert torch.equal(model[1].running_mean, torch.zeros(8)) and int(model[1].num_batches_tracked) == 0


def test_soft_targets_and_label_smoothing_in_the_score() -> None:
    model = model_with_bn()
    x = torch.randn(6, 4)
    y = torch.softmax(torch.randn(6, 3), 1)  # mixed targets
    state = build_state(model=model, clock=Clock(10, 6, 10), loss_fn=nn.CrossEntropyLoss(label_smoothing=0.2),
                        schedule=SimpleNamespace(self_timed=False, curve_points=lambda: [10]))
    sb = SelectiveBackprop(keep=0.5, start=0.0, end=1.0, interrupt=0)
    sb.on_fit_start(state)
    with torch.no_grad():
        losses = F.cross_entropy(model(x), y, reduction="none", label_smoothing=0.2)
    xs, _ = sb.on_batch(state, x, y)
    assert torch.equal(xs, x[losses.argsort(descending=True)[:3]])


def test_window_is_per_cycle_in_a_cyclic_run() -> None:
    state = build_state(clock=Clock(10, 8, 30),
                        schedule=SimpleNamespace(self_timed=True, curve_points=lambda: [10, 30]))
    sb = SelectiveBackprop(keep=0.5, start=0.5, end=0.9, interrupt=0)
    sb.on_fit_start(state)
    model = model_with_bn()
    state.model = model
    x, y = torch.randn(8, 4), torch.arange(8) % 3
    sizes = {}
    for done in (4, 5, 8, 9, 10, 19, 20, 27, 28):
        state.step = done
        sizes[done] = sb.on_batch(state, x, y)[0].shape[0]
    assert sizes == {4: 8, 5: 4, 8: 4, 9: 8, 10: 8, 19: 8, 20: 4, 27: 4, 28: 8}


def test_validation_names_the_field() -> None:
    assert METHODS.get("selective_backprop") is SelectiveBackprop
    with pytest.raises(RecipeError, match=r"methods\.selective_backprop\.end: end \(0\.5\) must be after"):
        load_recipe(QUICKSTART, ["methods.selective_backprop={start: 0.5, end: 0.5}"])
    with pytest.raises(RecipeError, match=r"methods\.selective_backprop\.keep"):
        load_recipe(QUICKSTART, ["methods.selective_backprop={keep: 0}"])


def test_short_run_backpropagates_the_kept_fraction(tmp_path: Path, monkeypatch) -> None:
    seen = record_forwards(monkeypatch)
    sets = ["model.width=8", "duration=6ba", "schedule.warmup=0ba", "eval.every=null", "data.batch_size=32",
            "methods.selective_backprop={keep: 0.25, start: 0.5, end: 1.0, interrupt: 0}"]
    out = run_recipe(load_recipe(QUICKSTART, sets), RunDir(tmp_path / "r"))
    assert out.status == "completed", out.message
    # steps 1-3 plain; steps 4-6: a scoring pass on 32, then the trained pass on 8
    assert [shape[0] for training, shape in seen if training] == [32, 32, 32] + [32, 8] * 3
