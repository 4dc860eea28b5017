"""SAM / ASAM: the ascent step by hand, the second gradient taken at w + e and applied at w,
BatchNorm statistics from the first pass only, fp16 scaling and gradient clipping."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import build_state, record_forwards
from torch import nn

from trainbench.engine import run_recipe
from trainbench.methods import METHODS
from trainbench.methods.grad_clip import GradClip
from trainbench.methods.sam import SAM, sam_perturbation
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import RunDir

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


def test_perturbation_is_rho_g_over_its_norm() -> None:
    w = [torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0, 3.0])]
    g = [torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0, 0.0])]  # ||g|| = 5 over both
    e = sam_perturbation(w, g, rho=0.1)
    torch.testing.assert_close(e[0], torch.tensor([0.06, 0.0]), rtol=0, atol=1e-7)
    torch.testing.assert_close(e[1], torch.tensor([0.0, 0.08, 0.0]), rtol=0, atol=1e-7)
    assert torch.equal(g[0], torch.tensor([3.0, 0.0]))  # gradients untouched


def test_asam_scales_by_the_weights() -> None:
    # e = rho * w^2 g / || |w| g ||: |w| g = [2, 1, 0], norm sqrt(5); w^2 g = [4, 1, 0]
    w = [torch.tensor([2.0, -1.0]), torch.tensor([5.0])]
    g = [torch.tensor([1.0, 1.0]), torch.tensor([0.0])]
    e = sam_perturbation(w, g, rho=0.5, adaptive=True)
    s = 0.5 / math.sqrt(5)
    torch.testing.assert_close(e[0], torch.tensor([4 * s, s]), rtol=0, atol=1e-7)
    torch.testing.assert_close(e[1], torch.tensor([0.0]), rtol=0, atol=0)


def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(6, 4)
    return model, x, torch.tensor([0, 1, 2, 0, 1, 2])


def grads_at(model: nn.Module, weights: list[torch.Tensor], x: torch.Tensor,
             y: torch.Tensor) -> list[torch.Tensor]:
    """The loss gradient at ``weights`` (a copy of the model; the model is not changed)."""
    import copy

    m = copy.deepcopy(model)
    with torch.no_grad():
        for p, w in zip(m.parameters(), weights, strict=True):
            p.copy_(w)
    m.zero_grad()
    F.cross_entropy(m(x), y).backward()
    return [p.grad.clone() for p in m.parameters()]


def engine_step(state, method: SAM, x: torch.Tensor, y: torch.Tensor, extra=()) -> None:
    """What the engine does around a method in one step."""
    x, y = method.on_batch(state, x, y)
    state.optimizer.zero_grad(set_to_none=True)
    with state.autocast():
        loss = state.loss_fn(state.model(x), y)
    state.scaler.scale(loss).backward()
    for m in (method, *extra):
        m.after_backward(state)
    state.scaler.step(state.optimizer)
    state.scaler.update()


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_second_gradient_is_taken_at_w_plus_e_and_applied_at_w(adaptive: bool) -> None:
    model, x, y = tiny()
    w = [p.detach().clone() for p in model.parameters()]
    g1 = grads_at(model, w, x, y)
    e = sam_perturbation(w, g1, rho=0.2, adaptive=adaptive)
    g2 = grads_at(model, [a + b for a, b in zip(w, e, strict=True)], x, y)
    state = build_state(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    sam = SAM(rho=0.2, adaptive=adaptive)

    sam.on_batch(state, x, y)  # pass 1, then the weights move to w + e
    for p, a, b in zip(model.parameters(), w, e, strict=True):
        torch.testing.assert_close(p.detach(), a + b, rtol=0, atol=1e-7)
    state.optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()  # the engine's pass: pass 2
    sam.after_backward(state)
    for p, a, g in zip(model.parameters(), w, g2, strict=True):
        assert torch.equal(p.detach(), a)  # back at w exactly
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-7)  # pass 2's gradient
    state.optimizer.step()
    for p, a, g in zip(model.parameters(), w, g2, strict=True):
        torch.testing.assert_close(p.detach(), a - 0.1 * g, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(g1[0], g2[0])  # the two gradients do differ


def test_batchnorm_statistics_count_the_first_pass_only() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    x, y = torch.randn(8, 4), torch.arange(8) % 3
    import copy

    ref = copy.deepcopy(model)
    ref(x)  # one training-mode pass at w
    state = build_state(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0))
    engine_step(state, SAM(rho=0.5), x, y)
    assert torch.equal(model[1].running_mean, ref[1].running_mean)
    assert torch.equal(model[1].running_var, ref[1].running_var)
    assert int(model[1].num_batches_tracked) == 1


def test_fp16_scaling_and_clipping_act_on_the_applied_gradient() -> None:
    # Reference: fp32, no scaler; the applied gradient is pass 2's, clipped to norm 0.01.
    model, x, y = tiny()
    w = [p.detach().clone() for p in model.parameters()]
    g2 = grads_at(model, [a + b for a, b in zip(w, sam_perturbation(w, grads_at(model, w, x, y), 0.2),
                                                 strict=True)], x, y)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in g2]))
    assert norm > 0.01
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    state = build_state(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scaler=scaler)
    engine_step(state, SAM(rho=0.2), x, y, extra=(GradClip(max_norm=0.01),))
    for p, a, g in zip(model.parameters(), w, g2, strict=True):
        torch.testing.assert_close(p.detach(), a - 0.1 * g * 0.01 / norm, rtol=1e-5, atol=1e-7)
    assert scaler.get_scale() == 1024.0


def test_an_overflowing_first_pass_skips_the_step_and_keeps_the_weights() -> None:
    model, x, y = tiny()
    w = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**200 / 2.0**100)  # 2^100
    state = build_state(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scaler=scaler)
    # A huge scale overflows float32 in backward: inf gradients, NaN perturbation.
    state.loss_fn = lambda logits, t: F.cross_entropy(logits, t) * 1e30
    engine_step(state, SAM(rho=0.2), x, y)
    for p, a in zip(model.parameters(), w, strict=True):
        assert torch.equal(p.detach(), a)
    assert scaler.get_scale() < 2.0**100  # backed off


def test_registered_with_the_papers_defaults_and_validated() -> None:
    assert METHODS.get("sam") is SAM
    assert (SAM().rho, SAM().adaptive) == (0.05, False)
    with pytest.raises(RecipeError, match=r"methods\.sam\.rho"):
        load_recipe(QUICKSTART, ["methods.sam={rho: 0}"])


def test_short_run_with_grad_clip_and_lookahead(tmp_path: Path, monkeypatch) -> None:
    seen = record_forwards(monkeypatch)
    sets = ["model.width=8", "duration=4ba", "schedule.warmup=0ba", "eval.every=null", "data.batch_size=32",
            "methods.sam={rho: 0.5}", "methods.grad_clip={}", "methods.lookahead={k: 2}"]
    out = run_recipe(load_recipe(QUICKSTART, sets), RunDir(tmp_path / "sam"))
    assert out.status == "completed", out.message
    assert [shape[0] for training, shape in seen if training] == [32] * 8  # two passes per step
