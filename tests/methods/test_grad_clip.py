"""Gradient clipping: exact total norm after clipping, and fp16 unscaling done once, first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import build_state
from torch import nn

from trainbench.engine import run_recipe
from trainbench.methods import METHODS
from trainbench.methods.grad_clip import GradClip, clip_gradients
from trainbench.optim import build_optimizer
from trainbench.recipe import load_recipe
from trainbench.results import RunDir

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


def total_norm(params: list[torch.Tensor], p: float = 2.0) -> float:
    return float(torch.linalg.vector_norm(torch.cat([q.grad.flatten() for q in params]), p))


def params_with_grads(*grads: list[float]) -> list[nn.Parameter]:
    out = []
    for g in grads:
        p = nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g)
        out.append(p)
    return out


def test_clips_to_max_norm_exactly() -> None:
    ps = params_with_grads([3.0, 0.0], [0.0, 4.0, 0.0])  # total L2 norm 5
    clip_gradients(ps, max_norm=1.0)
    assert total_norm(ps) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(ps[0].grad, torch.tensor([0.6, 0.0]), rtol=0, atol=1e-5)
    torch.testing.assert_close(ps[1].grad, torch.tensor([0.0, 0.8, 0.0]), rtol=0, atol=1e-5)


def test_small_gradients_unchanged() -> None:
    ps = params_with_grads([0.3, 0.0], [0.0, 0.4, 0.0])  # norm 0.5
    before = [p.grad.clone() for p in ps]
    clip_gradients(ps, max_norm=1.0)
    for p, b in zip(ps, before, strict=True):
        assert torch.equal(p.grad, b)


def test_other_norm_types_and_missing_grads() -> None:
    ps = params_with_grads([3.0, -1.0], [2.0])  # L1 norm 6
    ps.append(nn.Parameter(torch.ones(3)))  # no gradient: ignored
    clip_gradients(ps, max_norm=3.0, norm_type=1.0)
    assert total_norm(ps[:2], 1.0) == pytest.approx(3.0, abs=1e-5)
    assert ps[2].grad is None
    clip_gradients([nn.Parameter(torch.ones(1))], max_norm=1.0)  # nothing to clip: no error


def model_and_loss() -> tuple[nn.Module, torch.Tensor]:
    """A linear model and a loss whose gradient norm is well above 1."""
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.copy_(torch.arange(12.0).reshape(3, 4) / 10)
        model.bias.zero_()
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)) * 10
    return model, nn.functional.cross_entropy(model(x), torch.arange(8) % 3) * 10


def test_method_after_backward_without_scaler() -> None:
    assert METHODS.get("grad_clip") is GradClip
    assert (GradClip().max_norm, GradClip().norm_type) == (1.0, 2.0)
    model, loss = model_and_loss()
    state = build_state(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert not state.scaler.is_enabled()
    loss.backward()
    assert total_norm(list(model.parameters())) > 1.0
    GradClip(max_norm=0.5).after_backward(state)
    assert total_norm(list(model.parameters())) == pytest.approx(0.5, abs=1e-5)


def test_fp16_scaler_unscales_once_before_clipping() -> None:
    ref, loss = model_and_loss()
    loss.backward()
    true_grads = [p.grad.clone() for p in ref.parameters()]
    true_norm = total_norm(list(ref.parameters()))
    assert true_norm > 1.0

    model, loss = model_and_loss()
    w0 = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    state = build_state(model=model, optimizer=opt, scaler=scaler)
    scaler.scale(loss).backward()
    assert total_norm(list(model.parameters())) == pytest.approx(1024 * true_norm, rel=1e-5)

    GradClip(max_norm=1.0).after_backward(state)  # unscale, then clip the true gradients
    assert total_norm(list(model.parameters())) == pytest.approx(1.0, abs=1e-5)
    for p, g in zip(model.parameters(), true_grads, strict=True):
        torch.testing.assert_close(p.grad, g / true_norm, rtol=0, atol=1e-5)

    scaler.step(opt)  # must not unscale a second time
    scaler.update()
    for p, w, g in zip(model.parameters(), w0, true_grads, strict=True):
        torch.testing.assert_close(p.detach(), w - 0.1 * g / true_norm, rtol=0, atol=1e-6)
    assert scaler.get_scale() == 1024.0  # no inf found: scale kept


def test_fp16_scaler_still_skips_non_finite_steps() -> None:
    model = nn.Linear(2, 1)
    w0 = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    state = build_state(model=model, optimizer=opt, scaler=scaler)
    scaler.scale(model(torch.ones(1, 2)).sum()).backward()
    model.weight.grad[0, 0] = float("inf")
    GradClip().after_backward(state)
    scaler.step(opt)
    scaler.update()
    for p, w in zip(model.parameters(), w0, strict=True):
        assert torch.equal(p.detach(), w)  # step skipped
    assert scaler.get_scale() == 512.0  # and the scale backed off


def test_end_to_end_the_optimizer_steps_with_clipped_gradients(tmp_path: Path, monkeypatch) -> None:
    # The total gradient norm each optimizer step of the engine's run sees.
    from trainbench import engine

    norms: list[float] = []

    def record(opt: torch.optim.Optimizer, args, kwargs) -> None:
        norms.append(total_norm([p for g in opt.param_groups for p in g["params"] if p.grad is not None]))

    def build(*args, **kw) -> torch.optim.Optimizer:
        opt = build_optimizer(*args, **kw)
        opt.register_step_pre_hook(record)
        return opt

    monkeypatch.setattr(engine, "build_optimizer", build)
    # Unclipped, this run's gradient norms are 0.49 to 0.64: every step is clipped.
    recipe = load_recipe(QUICKSTART, ["model.width=8", "duration=5ba", "schedule.warmup=0ba",
                                      "eval.every=null",
                                      "methods.grad_clip={max_norm: 0.05}"])
    assert run_recipe(recipe, RunDir(tmp_path / "r")).status == "completed"
    assert norms == pytest.approx([0.05] * 5, rel=1e-4)
