"""Lookahead: slow weights by hand, param groups shared with the base optimizer (LR schedule)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import build_state
from timm.optim import Lookahead as TimmLookahead
from torch import nn

from trainbench.engine import run_recipe
from trainbench.methods import METHODS
from trainbench.methods.lookahead import Lookahead, LookaheadMethod
from trainbench.recipe import load_recipe
from trainbench.results import RunDir

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


def one_param(value: float = 1.0) -> nn.Parameter:
    return nn.Parameter(torch.tensor([value]))


def step(opt: torch.optim.Optimizer, p: nn.Parameter, grad: float) -> float:
    opt.zero_grad()
    p.grad = torch.tensor([grad])
    opt.step()
    return p.item()


def test_slow_weights_by_hand() -> None:
    p = one_param(1.0)
    opt = Lookahead(torch.optim.SGD([p], lr=0.1), alpha=0.5, k=3)
    # fast steps: 1 - 0.1*1 = 0.9, 0.9 - 0.1*2 = 0.7, 0.7 - 0.1*3 = 0.4
    assert step(opt, p, 1.0) == pytest.approx(0.9)
    assert step(opt, p, 2.0) == pytest.approx(0.7)
    # at step k: slow = 1 + 0.5 * (0.4 - 1) = 0.7, and the fast weight restarts there
    assert step(opt, p, 3.0) == pytest.approx(0.7)
    assert opt.state[p]["lookahead_slow_buff"].item() == pytest.approx(0.7)
    # next round: 0.6, 0.5, 0.4 -> slow = 0.7 + 0.5 * (0.4 - 0.7) = 0.55
    assert [step(opt, p, 1.0) for _ in range(3)] == pytest.approx([0.6, 0.5, 0.55])


def test_timm_alone_would_skip_the_first_interpolation() -> None:
    # why the method subclasses timm's wrapper: timm starts the slow weights at step k
    p = one_param(1.0)
    opt = TimmLookahead(torch.optim.SGD([p], lr=0.1), alpha=0.5, k=3)
    assert [step(opt, p, g) for g in (1.0, 2.0, 3.0)] == pytest.approx([0.9, 0.7, 0.4])


def test_lr_schedule_on_the_base_optimizer_reaches_the_wrapper() -> None:
    p = one_param(1.0)
    base = torch.optim.SGD([p], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(base, lambda s: 0.5 ** s)  # built first, as the engine
    opt = Lookahead(base, alpha=0.5, k=100)
    assert opt.param_groups is base.param_groups
    assert step(opt, p, 1.0) == pytest.approx(0.9)
    scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert step(opt, p, 1.0) == pytest.approx(0.85)  # the step used the scheduled LR
    scheduler.step()
    assert step(opt, p, 1.0) == pytest.approx(0.825)
    # the engine's momentum cycling writes the wrapper's groups: the base sees it
    opt.param_groups[0]["momentum"] = 0.3
    assert base.param_groups[0]["momentum"] == 0.3


def test_adam_base_still_initialises_its_state() -> None:
    p = one_param(1.0)
    base = torch.optim.Adam([p], lr=0.1)
    opt = Lookahead(base, alpha=0.5, k=2)
    assert p not in base.state  # slow weights live in the wrapper, not in Adam's state
    step(opt, p, 1.0)
    assert {"step", "exp_avg", "exp_avg_sq"} <= set(base.state[p])
    assert p.item() == pytest.approx(0.9)  # Adam's first step moves by lr
    step(opt, p, 1.0)  # fast 0.8, slow = 1 + 0.5 * (0.8 - 1)
    assert p.item() == pytest.approx(0.9, abs=1e-6)


def test_works_under_an_enabled_grad_scaler() -> None:
    p = one_param(1.0)
    opt = Lookahead(torch.optim.SGD([p], lr=0.1), alpha=0.5, k=1)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    opt.zero_grad()
    scaler.scale((p * 2.0).sum()).backward()  # gradient 2, scaled to 16
    scaler.step(opt)
    scaler.update()
    assert p.item() == pytest.approx(1.0 + 0.5 * (0.8 - 1.0))


def test_method_wraps_the_state_optimizer() -> None:
    assert METHODS.get("lookahead") is LookaheadMethod
    assert (LookaheadMethod().alpha, LookaheadMethod().k) == (0.5, 6)
    model = nn.Linear(3, 2)
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    state = build_state(model=model, optimizer=base)
    LookaheadMethod(alpha=0.8, k=4).on_fit_start(state)
    assert isinstance(state.optimizer, Lookahead) and state.optimizer._base_optimizer is base
    assert state.optimizer.param_groups[0]["lookahead_alpha"] == 0.8
    assert state.optimizer.param_groups[0]["lookahead_k"] == 4
    for p in model.parameters():  # slow weights start at the initial weights
        assert torch.equal(state.optimizer.state[p]["lookahead_slow_buff"], p.detach())


def test_end_to_end_differs_from_a_plain_run(tmp_path: Path) -> None:
    # Same seed, same data order: only Lookahead's slow-weight syncs (every 3 steps) can make
    # its points differ from the plain run's.
    sets = ["model.width=8", "duration=8ba", "schedule.warmup=0ba", "eval.every=4ba"]
    plain = run_recipe(load_recipe(QUICKSTART, sets), RunDir(tmp_path / "plain"))
    la = run_recipe(load_recipe(QUICKSTART, [*sets, "methods.lookahead={k: 3}"]), RunDir(tmp_path / "la"))
    assert plain.status == la.status == "completed", la.message

    def losses(outcome) -> list[tuple[float, float]]:
        return [(p["train_loss"], p["test_loss"]) for p in outcome.points]

    assert [p["step"] for p in la.points] == [4, 8]
    for (a, b), (c, d) in zip(losses(plain), losses(la), strict=True):
        assert a != c and b != d
def test_end_to_end_with_the_other_methods(tmp_path: Path) -> None:
    sets = ["duration=10ba", "schedule.warmup=0ba",
            "eval.every=null", "methods.lookahead={k: 3}", "methods.grad_clip={}",
            "methods.channels_last={}", "methods.blurpool={}", "optimizer.name=adamw",
            "optimizer.lr=0.003"]
    outcome = run_recipe(load_recipe(QUICKSTART, sets), RunDir(tmp_path / "r"))
    assert outcome.status == "completed", outcome.message
