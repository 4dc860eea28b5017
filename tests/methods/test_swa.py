"""SWA: averaging steps and cycle windows, the running mean, BN recomputation on clean images,
SWALR annealing, the per-cycle reset in cyclic runs, recipe checks and an end-to-end run."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import build_state, tiny_data
from torch import nn

from trainbench.data import ImageData
from trainbench.data.loader import DeviceData
from trainbench.engine import run_recipe
from trainbench.methods import METHODS, TrainState
from trainbench.methods import swa as swa_mod
from trainbench.methods.swa import SWA, cycle_windows, swa_steps, swa_update_
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import RunDir
from trainbench.schedules import build_schedule
from trainbench.timeunits import Clock, Time

QUICKSTART = Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml"
CYCLIC = ["duration=null", "schedule.name=cyclic", "schedule.warmup=0ep", "schedule.t0=1ep",
          "schedule.t_mult=2", "schedule.cycles=3"]


# --- pure functions ---


def test_swa_steps_count_back_from_the_end() -> None:
    assert swa_steps(23, 30, 1) == list(range(23, 31))
    assert swa_steps(23, 30, 3) == [24, 27, 30]  # the end is always a snapshot
    assert swa_steps(24, 30, 3) == [24, 27, 30]
    assert swa_steps(25, 30, 3) == [27, 30]
    assert swa_steps(0, 6, 2) == [2, 4, 6]  # step 0 (the initial weights) never
    assert swa_steps(30, 30, 5) == [30]
    assert swa_steps(31, 30, 1) == []


def test_cycle_windows_by_hand() -> None:
    # cycles (0, 10], (10, 30], (30, 70]: 75% into each is 7.5 -> 8, 15, 30 steps in
    assert cycle_windows([10, 30, 70], 0.75) == [(8, 10), (25, 30), (60, 70)]
    assert cycle_windows([10, 30, 70], 0.0) == [(1, 10), (11, 30), (31, 70)]  # never the previous end
    assert cycle_windows([4, 12, 28], 0.5) == [(2, 4), (8, 12), (20, 28)]
    assert cycle_windows([1, 2], 0.9) == [(1, 1), (2, 2)]  # at least the cycle's last step


def test_swa_update_is_the_running_mean() -> None:
    g = torch.Generator().manual_seed(0)
    snaps = [[torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(4, generator=g,
                                                                              dtype=torch.float64)]
             for _ in range(5)]
    avg = [torch.full((3, 2), 99.0, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)]
    for n, snap in enumerate(snaps):
        swa_update_(avg, snap, n)  # n = 0: a copy, whatever was there
    for i in range(2):
        torch.testing.assert_close(avg[i], torch.stack([s[i] for s in snaps]).mean(0), rtol=0, atol=1e-12)


# --- the method, driven as the engine drives it ---


def constant_schedule(clock: Clock) -> Any:
    return build_schedule({"name": "constant", "warmup": "0ep"}).bind(clock, 0.1)


def make(model: nn.Module, clock: Clock, data: DeviceData | None = None, schedule: Any = None,
         recipe: dict[str, Any] | None = None, **params: Any) -> tuple[SWA, TrainState]:
    state = build_state(model=model, clock=clock, data=data, recipe=recipe)
    method = SWA(**params)
    method.on_init(state)
    state.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state.schedule = schedule or constant_schedule(clock)
    method.on_fit_start(state)
    return method, state


def set_weights(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def fake_evaluate(model: nn.Module) -> dict[str, float]:
    """Reports the mean of the first weight as 'test_acc': enough to see which average it is."""
    return {"test_acc": float(next(model.parameters()).mean()), "test_loss": 0.0, "test_ece": 0.0}


def test_average_of_snapshots_is_their_arithmetic_mean() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    # 10 steps, 2 per epoch: start 0.5dur = step 5, every 1ep = 2 steps -> steps 6, 8, 10
    method, state = make(model, Clock(2, 8, 10), start=Time(0.5, "dur"), every=Time(1, "ep"))
    assert method.order == 10 and METHODS.get("swa") is SWA
    snapshots = {}
    for step in range(1, 11):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
        snapshots[step] = [p.detach().clone() for p in model.parameters()]
        state.step = step
        method.after_step(state)
        if step == 5:
            assert method.n == 0 and method.on_eval(state, fake_evaluate) == {}  # blank before
    assert method.n == 3 and int(method.swa.n_averaged) == 3
    for i, p in enumerate(method.swa.module.parameters()):
        mean = torch.stack([snapshots[s][i] for s in (6, 8, 10)]).mean(0)
        torch.testing.assert_close(p, mean, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in method.swa.parameters())
    cols = method.on_eval(state, fake_evaluate)
    assert set(cols) == set(SWA.columns)
    assert cols["test_acc_swa"] == pytest.approx(float(method.swa.module.weight.mean()))


def test_the_copy_is_of_the_plain_module_and_weights_come_from_the_live_model() -> None:
    class Compiled(nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self._orig_mod = inner

    inner = nn.Linear(2, 2)
    method, state = make(inner, Clock(1, 8, 2), start=Time(0, "dur"), every=Time(1, "ba"))
    assert isinstance(method.swa.module, nn.Linear)
    state.model = Compiled(inner)  # a later method (compile) wraps the model
    for step, v in ((1, 1.0), (2, 3.0)):
        set_weights(inner, v)
        state.step = step
        method.after_step(state)
    torch.testing.assert_close(method.swa.module.weight, torch.full((2, 2), 2.0))


# --- BatchNorm statistics ---


def bn_model() -> nn.Module:
    # BN first: its running mean is the per-channel mean of the images it is fed
    return nn.Sequential(nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def test_bn_statistics_recomputed_from_clean_training_images(monkeypatch) -> None:
    data = tiny_data(n=32, channels=2, size=4)  # eval batch 16: two equal batches
    data.augment, data.crop_padding = ["random_crop", "hflip"], 1  # would change the images
    model = bn_model()
    with torch.no_grad():
        model[0].running_mean.fill_(5.0)  # stale statistics that the average copies
        model[0].running_var.fill_(7.0)
    method, state = make(model, Clock(2, 8, 4), data=data, start=Time(0.5, "dur"), every=Time(1, "ba"))
    for step in range(1, 5):
        state.step = step
        method.after_step(state)
    bn = method.swa.module[0]
    assert bn.running_mean.eq(5.0).all()  # copied, not yet recomputed

    fed: list[torch.Tensor] = []

    def spy(_mod: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        assert not torch.is_autocast_enabled("cpu")
        fed.append(args[0].clone())

    hook = method.swa.module.register_forward_pre_hook(spy)

    def forbidden(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the BN pass must see clean images, not augmented training batches")

    monkeypatch.setattr(DeviceData, "augmented", forbidden)
    monkeypatch.setattr(DeviceData, "train_batches", forbidden)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the method turns autocast off itself
        method.recompute_bn(state)
    hook.remove()

    clean = data.normalize(data.train_x)
    assert [len(b) for b in fed] == [16, 16]
    # every clean image exactly once, in a shuffled order
    key = clean.flatten(1)
    got = torch.cat(fed).flatten(1)
    perm = [int((key == row).all(1).nonzero()[0]) for row in got]
    assert sorted(perm) == list(range(32)) and perm != list(range(32))
    torch.testing.assert_close(bn.running_mean, clean.mean((0, 2, 3)), rtol=0, atol=1e-5)
    var = torch.stack([b.var((0, 2, 3), unbiased=True) for b in fed]).mean(0)
    torch.testing.assert_close(bn.running_var, var, rtol=0, atol=1e-5)
    assert int(bn.num_batches_tracked) == 2 and bn.momentum == 0.1  # momentum restored


def sorted_bn_data(n: int = 37, eval_batch_size: int = 16) -> DeviceData:
    """Class-sorted images (as imagefolder stores them) whose classes differ in mean: class c
    is about 60 c + 20 everywhere. 37 images in slices of 16 leave a short last batch of 5."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) * 3 // n  # 0..0, 1..1, 2..2
    x = (y.view(-1, 1, 1, 1) * 60 + 20 + torch.randint(0, 10, (n, 2, 4, 4), generator=g)).to(torch.uint8)
    return DeviceData(ImageData(x, y, x.clone(), y.clone(), 3), torch.device("cpu"), batch_size=8,
                      eval_batch_size=eval_batch_size, augment=[], crop_padding=0, normalize=True, seed=0)


def test_bn_statistics_on_class_sorted_data_with_a_short_last_batch_are_the_full_datas() -> None:
    data = sorted_bn_data()
    model = bn_model()
    method, state = make(model, Clock(2, 8, 4), data=data, recipe={"seed": 3},
                         start=Time(0.5, "dur"), every=Time(1, "ba"))
    for step in range(1, 5):
        state.step = step
        method.after_step(state)
    method.recompute_bn(state)
    bn = method.swa.module[0]
    clean = data.normalize(data.train_x)
    # true full-data statistics of the BN layer's input, by hand
    true_mean = clean.mean((0, 2, 3))
    true_var = clean.transpose(0, 1).reshape(2, -1).var(1, unbiased=True)
    assert true_var.min() > 0.9  # normalised: about 1; stored-order batches see ~0.02
    torch.testing.assert_close(bn.running_mean, true_mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(bn.running_var, true_var, rtol=0.1, atol=0)
    # a second recomputation (another evaluation point, or after a resume) is identical
    before = bn.running_var.clone()
    method.bn_stale = True
    method.recompute_bn(state)
    assert torch.equal(bn.running_var, before)


def test_update_bn_weighted_weights_batches_by_size() -> None:
    bn = nn.BatchNorm1d(1)
    xs = [torch.tensor([[0.0], [2.0], [4.0], [6.0]]), torch.tensor([[10.0], [14.0]])]
    swa_mod.update_bn_weighted([(x, None) for x in xs], bn)
    # mean: (4 * 3 + 2 * 12) / 6 = 6; var: (4 * var([0,2,4,6]) + 2 * var([10,14])) / 6
    assert bn.running_mean.item() == pytest.approx(6.0)
    assert bn.running_var.item() == pytest.approx((4 * 20 / 3 + 2 * 8) / 6)
    assert bn.momentum == 0.1 and bn.training


def test_bn_pass_runs_before_eval_and_on_eval_recomputes_once_per_new_average(monkeypatch) -> None:
    data = tiny_data(n=32, channels=2, size=4)
    method, state = make(bn_model(), Clock(2, 8, 4), data=data, start=Time(0.5, "dur"),
                         every=Time(1, "ba"))
    calls: list[int] = []
    real = swa_mod.update_bn_weighted
    monkeypatch.setattr(swa_mod, "update_bn_weighted",
                        lambda batches, model: calls.append(1) or real(batches, model))
    seen: list[nn.Module] = []

    def evaluate(model: nn.Module) -> dict[str, float]:
        seen.append(model)
        return fake_evaluate(model)

    state.step = 1
    method.after_step(state)
    method.before_eval(state)
    assert method.on_eval(state, evaluate) == {} and calls == []  # nothing averaged yet
    for step in (2, 3):
        state.step = step
        method.after_step(state)
    method.before_eval(state)  # the engine fires it, on the training clock
    assert calls == [1]
    first = method.on_eval(state, evaluate)
    again = method.on_eval(state, evaluate)  # no new snapshot: no recomputation, same numbers
    assert calls == [1] and first == again and seen == [method.swa.module]
    state.step = 4
    method.after_step(state)
    method.on_eval(state, evaluate)  # without before_eval (events driven by hand): still done
    assert calls == [1, 1]
    torch.testing.assert_close(method.swa.module[0].running_mean,
                               data.normalize(data.train_x).mean((0, 2, 3)), rtol=0, atol=1e-5)


def test_no_bn_pass_without_batchnorm(monkeypatch) -> None:
    def forbidden(*_a: Any, **_k: Any) -> None:
        raise AssertionError("BN pass for a model without BatchNorm")

    monkeypatch.setattr(swa_mod, "update_bn_weighted", forbidden)
    method, state = make(nn.Sequential(nn.Flatten(), nn.Linear(32, 3)), Clock(2, 8, 4),
                         data=tiny_data(channels=2), start=Time(0, "dur"), every=Time(1, "ba"))
    state.step = 4
    method.after_step(state)
    method.before_eval(state)
    assert method.on_eval(state, fake_evaluate)["test_acc_swa"] == pytest.approx(
        float(method.swa.module[1].weight.mean()))


def test_bn_pass_counts_as_training_time(tmp_path: Path, monkeypatch) -> None:
    # A fake clock that advances by 1 per training batch served and by 1000 inside the SWA
    # BN pass: train_time_s at the last point must hold both (2 BN passes: the eval points
    # with new snapshots), and evaluation (which advances nothing here) none.
    import types

    from trainbench import engine

    now = [0.0]
    real_batches, real_bn = DeviceData.train_batches, swa_mod.update_bn_weighted

    def counting(self):
        for batch in real_batches(self):
            now[0] += 1
            yield batch

    def slow_bn(batches, model):
        now[0] += 1000
        real_bn(batches, model)

    monkeypatch.setattr(DeviceData, "train_batches", counting)
    monkeypatch.setattr(swa_mod, "update_bn_weighted", slow_bn)
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    recipe = load_recipe(QUICKSTART, ["data.train_subset=256", "duration=4ep", "eval.every=2ep",
                                      "methods.swa.start=0.5dur", "methods.swa.every=1ep",
                                      "schedule.warmup=0ep"])
    run = RunDir(tmp_path / "r")
    out = run_recipe(recipe, run)
    assert out.status == "completed"
    points = run.read_points()
    spe = points[0]["step"] // 2
    assert [p["step"] for p in points] == [2 * spe, 4 * spe]
    # the first point (step 2 epochs) already holds the snapshot after epoch 2
    assert [p["train_time_s"] for p in points] == [2 * spe + 1000, 4 * spe + 2000]


# --- SWALR ---


def drive_lr(method: SWA, state: TrainState, steps: int, factor: Any = lambda s: 1.0) -> list[float]:
    """The engine's order: optimizer step, its LambdaLR step, then after_step. Returns the LR
    each optimizer step used."""
    opt = state.optimizer
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    used = []
    for step in range(1, steps + 1):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        state.step = step
        method.after_step(state)
    return used


def test_swalr_linear_anneal_by_hand() -> None:
    # start after step 4, anneal over 4 steps from the schedule's 0.1 to 0.01, then hold
    method, state = make(nn.Linear(2, 2), Clock(10, 8, 20), start=Time(4, "ba"), lr=0.01,
                         anneal=Time(4, "ba"), anneal_strategy="linear")
    used = drive_lr(method, state, 12)
    expected = [0.1] * 5 + [0.1 - 0.09 * t / 4 for t in (1, 2, 3, 4)] + [0.01] * 3
    assert used == pytest.approx(expected, abs=1e-12)
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(0.01, abs=1e-12)


def test_swalr_cos_anneal_wins_over_a_decaying_schedule() -> None:
    # the engine's schedule keeps lowering the LR (factor 1 - s/40); SWALR must still end at lr
    method, state = make(nn.Linear(2, 2), Clock(10, 8, 30), start=Time(10, "ba"), lr=0.05,
                         anneal=Time(0.5, "ep"))  # 5 steps, cos
    used = drive_lr(method, state, 30, lambda s: 1 - s / 40)
    start_lr = 0.1 * (1 - 10 / 40)  # the schedule's LR for step 11, where SWALR takes over
    for t in range(6):
        alpha = (1 - math.cos(math.pi * t / 5)) / 2
        assert used[10 + t] == pytest.approx(start_lr * (1 - alpha) + 0.05 * alpha, abs=1e-12)
    assert used[15:] == pytest.approx([0.05] * 15, abs=1e-12)
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(0.05, abs=1e-12)


def test_swalr_without_anneal_jumps_to_lr_and_no_lr_leaves_the_schedule_alone() -> None:
    method, state = make(nn.Linear(2, 2), Clock(10, 8, 10), start=Time(0.5, "dur"), lr=0.02)
    assert drive_lr(method, state, 10)[4:] == pytest.approx([0.1] + [0.02] * 5, abs=1e-12)
    method, state = make(nn.Linear(2, 2), Clock(10, 8, 10), start=Time(0.5, "dur"))
    assert drive_lr(method, state, 10) == [0.1] * 10 and method.swalr is None


# --- cyclic runs: anchored per cycle ---


def test_per_cycle_reset_in_a_cyclic_run() -> None:
    clock = Clock(2, 8)  # 2 steps per epoch
    sched = build_schedule({"name": "cyclic", "warmup": "0ep", "t0": "2ep", "t_mult": 2.0,
                            "cycles": 3}).bind(clock, 0.1)
    assert sched.curve_points() == [4, 12, 28]
    clock = Clock(2, 8, sched.total)
    method, state = make(nn.Linear(2, 1), clock, schedule=sched, start=Time(0.5, "dur"),
                         every=Time(1, "ba"))
    assert method.windows == [(2, 4), (8, 12), (20, 28)]
    points = {}
    for step in range(1, 29):
        set_weights(state.model, float(step))  # the weights are the step number
        state.step = step
        method.after_step(state)
        points[step] = method.on_eval(state, fake_evaluate).get("test_acc_swa")
    # each cycle end: the mean of that cycle's window only (2..4, 8..12, 20..28)
    assert points[4] == pytest.approx(3.0) and points[12] == pytest.approx(10.0)
    assert points[28] == pytest.approx(24.0)
    # blank before the first window, and after a restart until the new window opens
    assert points[1] is None and all(points[s] is None for s in (5, 6, 7, 13, 19))
    assert points[8] == pytest.approx(8.0)  # the new window's first snapshot: a copy
    assert points[10] == pytest.approx(9.0)


def test_cyclic_every_counts_back_from_each_cycle_end() -> None:
    clock = Clock(2, 8)
    sched = build_schedule({"name": "sgdr", "warmup": "0ep", "t0": "2ep", "t_mult": 2,
                            "cycles": 3}).bind(clock, 0.1)
    method, _ = make(nn.Linear(2, 1), Clock(2, 8, sched.total), schedule=sched,
                     start=Time(0.25, "dur"), every=Time(1, "ep"))
    hits = [s for s in range(1, 29) if method.is_swa_step(s)]
    assert hits == [2, 4, 6, 8, 10, 12, 16, 18, 20, 22, 24, 26, 28]


def test_single_cycle_self_timed_run_uses_the_whole_run() -> None:
    clock = Clock(2, 8)
    sched = build_schedule({"name": "cyclic", "warmup": "1ep", "t0": "4ep", "cycles": 1}).bind(clock, 0.1)
    method, _ = make(nn.Linear(2, 1), Clock(2, 8, sched.total), schedule=sched,
                     start=Time(0.5, "dur"), every=Time(1, "ba"), lr=0.01)
    assert sched.total == 10 and method.windows == [(5, 10)]


# --- recipe checks ---


def problems(sets: list[str]) -> str:
    with pytest.raises(RecipeError) as e:
        load_recipe(QUICKSTART, sets)
    return str(e.value)


def test_check_recipe_refuses_a_start_at_the_end() -> None:
    msg = problems(["methods.swa.start=1dur"])
    assert "methods.swa.start: start 1dur is not before the end of the run (30ep)" in msg
    assert "lower it, e.g. start: 0.75dur" in msg
    assert "methods.swa.start: start 30ep is not before the end" in problems(["methods.swa.start=30ep"])
    assert "start 40ep" in problems(["methods.swa.start=40ep"])
    load_recipe(QUICKSTART, ["methods.swa.start=29ep"])  # fine
    load_recipe(QUICKSTART, ["methods.swa.start=5000ba"])  # other units: checked when the run starts


def test_check_recipe_cyclic_needs_dur_start_and_no_lr() -> None:
    msg = problems([*CYCLIC, "methods.swa.start=3ep", "methods.swa.lr=0.01"])
    assert ("methods.swa.start: in a cyclic run ('cyclic' schedule, 3 cycles) 'start' is the fraction "
            "into each cycle, so it must be in 'dur' (got 3ep)") in msg
    assert "methods.swa.lr: in a cyclic run ('cyclic' schedule, 3 cycles) the cyclic schedule " \
           "governs the LR; set lr: null" in msg
    assert "every' must be in 'ep', 'ba' or 'sp' (got 0.1dur)" in problems(
        [*CYCLIC, "methods.swa.every=0.1dur"])
    assert "'sgdr' schedule" in problems([*CYCLIC, "schedule.name=sgdr", "methods.swa.lr=0.01"])
    load_recipe(QUICKSTART, [*CYCLIC, "methods.swa.start=0.75dur"])  # fine
    # one cycle, or budgets mode (each budget run is one cycle): an ordinary run
    load_recipe(QUICKSTART, [*CYCLIC, "schedule.cycles=1", "methods.swa.start=0.5ep", "methods.swa.lr=0.01"])
    load_recipe(QUICKSTART, [*CYCLIC, "curve.mode=budgets", "methods.swa.start=0.5ep", "methods.swa.lr=0.01"])


def test_check_recipe_other_fields() -> None:
    assert "methods.swa.anneal: anneal 2ep has no effect without lr" in problems(["methods.swa.anneal=2ep"])
    assert "methods.swa.every: every must be greater than 0" in problems(["methods.swa.every=0ep"])
    assert "methods.swa.lr: must be > 0" in problems(["methods.swa.lr=0"])
    assert "methods.swa.anneal_strategy: expected one of cos, linear" in problems(
        ["methods.swa.anneal_strategy=cosine"])
    r = load_recipe(QUICKSTART, ["methods.swa.lr=0.01", "methods.swa.anneal=2ep"])
    assert r["methods"]["swa"] == {"start": "0.75dur", "lr": 0.01, "anneal": "2ep",
                                   "anneal_strategy": "cos", "every": "1ep"}


# --- end to end ---


def read_csv(run: RunDir) -> list[dict[str, str]]:
    with run.points_path.open() as f:
        return list(csv.DictReader(f))


def test_end_to_end_swa_and_ema_columns(tmp_path: Path) -> None:
    recipe = load_recipe(QUICKSTART, ["duration=3ep", "eval.every=1ep", "methods.swa.start=0.5dur",
                                      "methods.ema.decay=0.9"])
    outcome = run_recipe(recipe, RunDir(tmp_path / "r"))
    assert outcome.status == "completed", outcome.message
    rows = read_csv(RunDir(tmp_path / "r"))
    assert [float(r["epoch"]) for r in rows] == [1.0, 2.0, 3.0]
    # before 0.5 of the run: blank; after: filled (snapshots after epochs 2 and 3)
    assert rows[0]["test_acc_swa"] == rows[0]["test_loss_swa"] == rows[0]["test_ece_swa"] == ""
    for r in rows[1:]:
        assert 0 <= float(r["test_acc_swa"]) <= 1 and float(r["test_loss_swa"]) > 0
        assert 0 <= float(r["test_ece_swa"]) <= 1
    for r in rows:
        assert 0 <= float(r["test_acc_ema"]) <= 1 and math.isfinite(float(r["test_loss_ema"]))
        assert 0 <= float(r["test_ece_ema"]) <= 1
    assert float(rows[-1]["test_acc_swa"]) > 0.5  # a trained average, BN statistics included


def test_end_to_end_cyclic_run_has_swa_at_each_cycle_end(tmp_path: Path) -> None:
    recipe = load_recipe(QUICKSTART, ["duration=null", "schedule.name=cyclic", "schedule.warmup=0ep",
                                      "schedule.t0=1ep", "schedule.t_mult=1", "schedule.cycles=2",
                                      "eval.every=0.5ep", "methods.swa.start=0.75dur",
                                      "methods.swa.every=1ba", "model.width=8"])
    outcome = run_recipe(recipe, RunDir(tmp_path / "c"))
    assert outcome.status == "completed", outcome.message
    rows = read_csv(RunDir(tmp_path / "c"))
    assert [r["curve"] for r in rows] == ["0", "1", "0", "1"]
    assert [r["test_acc_swa"] != "" for r in rows] == [False, True, False, True]


def test_lr_column_shows_swalr_once_it_governs(tmp_path: Path) -> None:
    recipe = load_recipe(QUICKSTART, ["duration=4ep", "eval.every=1ep", "methods.swa.start=0.5dur",
                                      "methods.swa.lr=0.02", "methods.swa.anneal=0ep"])
    assert run_recipe(recipe, RunDir(tmp_path / "r")).status == "completed"
    lrs = [float(r["lr"]) for r in read_csv(RunDir(tmp_path / "r"))]
    # epochs 1 (cosine, before SWA), 2 (SWALR from step 2*spe: 0.02), 3, 4
    assert lrs[0] > 0.02 and lrs[1:] == pytest.approx([0.02] * 3, abs=1e-12)
