"""Snapshot ensembles: the ensemble's accuracy and ECE equal the hand-averaged softmax's, the
bounded window of snapshots on the host, the state round trip, recipe checks, a cyclic run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import build_state, tiny_data
from torch import nn

from trainbench.engine import run_recipe
from trainbench.methods import METHODS
from trainbench.methods.snapshot_ensemble import SnapshotEnsemble, ensemble_metrics
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import RunDir

QUICKSTART = Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml"
CYCLIC = ["duration=null", "schedule.name=cyclic", "schedule.warmup=0ep", "schedule.t0=1ep",
          "schedule.t_mult=1", "schedule.cycles=3"]


def hand_ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    total = 0.0
    for b in range(bins):
        rows = [i for i in range(len(labels)) if min(int(probs[i].max() * bins), bins - 1) == b]
        conf = sum(float(probs[i].max()) for i in rows)
        hits = sum(float(probs[i].argmax() == labels[i]) for i in rows)
        total += abs(conf - hits)
    return total / len(labels)


def test_ensemble_metrics_are_the_averaged_softmaxs() -> None:
    a = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    b = torch.tensor([[0.1, 0.7, 0.2], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1]])
    y = torch.tensor([1, 1, 2])
    acc, ece = ensemble_metrics([a, b], y)
    # mean: [.5 .4 .1] -> 0 (wrong), [.15 .65 .2] -> 1 (right), [.3 .25 .45] -> 2 (right)
    assert acc.item() == pytest.approx(2 / 3)
    assert ece.item() == pytest.approx(hand_ece((a + b) / 2, y))


def model_and_state(max_snapshots: int = 6):
    data = tiny_data(n=40, channels=1, size=4, classes=3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    state = build_state(model=model, data=data, schedule=SimpleNamespace(curve_points=lambda: [2, 4, 6]))
    m = SnapshotEnsemble(max_snapshots=max_snapshots)
    m.on_init(state)
    m.on_fit_start(state)
    return m, state, model, data


def new_weights(model: nn.Module, seed: int, data) -> torch.Tensor:
    """Gives the model new weights (as training would); returns its test probabilities."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 3)
        return model(torch.cat([x for x, _ in data.test_batches()])).softmax(1)


def at(m: SnapshotEnsemble, state, step: int) -> dict[str, float]:
    state.step = step
    m.before_eval(state)
    return m.on_eval(state, lambda mod: {})


def test_each_point_reports_the_snapshots_so_far_bounded_to_the_newest() -> None:
    assert METHODS.get("snapshot_ensemble") is SnapshotEnsemble
    m, state, model, data = model_and_state(max_snapshots=2)
    y = data.test_y
    p1 = new_weights(model, 1, data)
    assert at(m, state, 1) == {}  # before the first cycle end: blank
    r = at(m, state, 2)
    assert r["test_acc_ens"] == pytest.approx((p1.argmax(1) == y).float().mean().item())  # the model alone
    p2 = new_weights(model, 2, data)
    assert at(m, state, 3) == r  # mid-cycle: the same ensemble, the live model not in it
    r = at(m, state, 4)
    mean = (p1 + p2) / 2
    assert r["test_acc_ens"] == pytest.approx((mean.argmax(1) == y).float().mean().item(), abs=1e-7)
    assert r["test_ece_ens"] == pytest.approx(hand_ece(mean, y), abs=1e-6)
    assert r["test_acc_ens"] not in ((p1.argmax(1) == y).float().mean().item(),
                                     (p2.argmax(1) == y).float().mean().item())  # a real ensemble
    p3 = new_weights(model, 3, data)
    r = at(m, state, 6)
    mean = (p2 + p3) / 2  # bounded: the oldest snapshot was dropped
    assert m.steps == [4, 6] and all(t.device.type == "cpu" for s in m.snapshots for t in s.values())
    assert r["test_acc_ens"] == pytest.approx((mean.argmax(1) == y).float().mean().item(), abs=1e-7)
    # the snapshots round-trip through a checkpoint's state: the same ensemble after loading
    again, state2, _, _ = model_and_state(max_snapshots=2)
    again.load_state_dict(m.state_dict())
    state2.step = 6
    assert again.on_eval(state2, lambda mod: {}) == r


def test_check_recipe_needs_several_cycles_in_one_run() -> None:
    def problems(sets: list[str]) -> str:
        with pytest.raises(RecipeError) as e:
            load_recipe(QUICKSTART, ["methods.snapshot_ensemble={}", *sets])
        return str(e.value)

    assert "methods.snapshot_ensemble: the 'cosine' schedule has no cycles" in problems([])
    assert "schedule.cycles: snapshot_ensemble needs several cycles" in problems(
        [*CYCLIC, "schedule.cycles=1"])
    assert "in curve.mode: budgets each budget run has a single cycle" in problems(
        [*CYCLIC, "curve.mode=budgets"])
    assert "methods.snapshot_ensemble.max_snapshots: must be >= 1" in problems(
        [*CYCLIC, "methods.snapshot_ensemble.max_snapshots=0"])
    load_recipe(QUICKSTART, ["methods.snapshot_ensemble={}", "schedule.name=triangular",
                             "schedule.step_size=1ep"])  # FGE's cycles


def test_cyclic_run_reports_the_ensemble_from_the_first_cycle_end(tmp_path: Path) -> None:
    recipe = load_recipe(QUICKSTART, [*CYCLIC, "data.train_subset=256", "eval.every=0.5ep",
                                      "methods.snapshot_ensemble.max_snapshots=2", "model.width=8"])
    run = RunDir(tmp_path / "r")
    assert run_recipe(recipe, run).status == "completed"
    rows = run.read_points()
    assert [r["curve"] for r in rows] == [0, 1, 0, 1, 0, 1]
    assert [r["test_acc_ens"] == r["test_acc_ens"] for r in rows] == [False] + [True] * 5  # NaN: blank
    assert rows[1]["test_acc_ens"] == rows[1]["test_acc"]  # one snapshot: the model itself, fp32
    assert rows[2]["test_acc_ens"] == rows[1]["test_acc_ens"]  # mid-cycle: the snapshots so far
    assert all(0 <= r["test_ece_ens"] <= 1 for r in rows[1:])
