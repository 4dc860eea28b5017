"""Layer freezing: Composer's depth rule, the frozen set at given steps (per cycle in a cyclic
run), frozen parameters left alone by the optimizer, resume of the frozen set."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from conftest import build_state

from trainbench.engine import run_recipe
from trainbench.methods import METHODS
from trainbench.methods.layer_freezing import LayerFreezing, freeze_depth, leaf_modules
from trainbench.models import build_model
from trainbench.optim import build_optimizer
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import RunDir
from trainbench.timeunits import Clock

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


def test_composers_depth_rule() -> None:
    # 13 leaves, the last never frozen: depth = int(pct * 12)
    assert [freeze_depth(f, 13, 0.5, 1.0) for f in (0.0, 0.5, 0.6, 0.75, 0.99, 1.0)] == [0, 0, 2, 6, 11, 12]
    assert freeze_depth(1.0, 13, 0.5, 0.5) == 6
    assert freeze_depth(0.9, 13, 1.0, 1.0) == 0


def frozen_names(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if not p.requires_grad]


def method_on(ends: list[int], total: int) -> tuple[LayerFreezing, torch.nn.Module]:
    model = build_model({"name": "small_cnn", "width": 4}, 1, 3)
    assert len(leaf_modules(model)) == 13
    state = build_state(model=model, clock=Clock(10, 8, total),
                        schedule=SimpleNamespace(self_timed=len(ends) > 1, curve_points=lambda: ends))
    lf = LayerFreezing()
    lf.on_fit_start(state)
    return lf, model


def test_frozen_set_at_given_steps() -> None:
    lf, model = method_on([100], 100)
    assert lf.depth_at(50) == 0 and lf.depth_at(75) == 6
    lf._set(lf.depth_at(75))  # conv-bn-relu, conv-bn-relu frozen
    assert frozen_names(model) == ["0.0.weight", "0.1.weight", "0.1.bias",
                                   "1.0.weight", "1.1.weight", "1.1.bias"]
    lf._set(lf.depth_at(99))  # all but the classifier
    assert len(frozen_names(model)) == 9 and model[-1].weight.requires_grad


def test_layers_unfreeze_at_each_cycle_start() -> None:
    lf, model = method_on([40, 100], 100)
    assert [lf.depth_at(d) for d in (19, 30, 39, 40, 69, 85, 99)] == [0, 6, 11, 0, 0, 6, 11]
    lf._set(lf.depth_at(39))
    assert frozen_names(model)
    lf._set(lf.depth_at(40))
    assert frozen_names(model) == []


def test_frozen_parameters_are_not_updated_and_the_set_resumes() -> None:
    lf, model = method_on([100], 100)
    opt = build_optimizer(model, {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                                  "weight_decay": 0.1, "exempt_norm_bias": False})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lf._set(6)
    opt.zero_grad(set_to_none=True)
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    opt.step()
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]) == (n in frozen_names(model)), n  # no step, no decay
    again, fresh = method_on([100], 100)
    again.load_state_dict(lf.state_dict())
    assert frozen_names(fresh) == frozen_names(model)


def test_registered_and_validated() -> None:
    assert METHODS.get("layer_freezing") is LayerFreezing
    try:
        load_recipe(QUICKSTART, ["methods.layer_freezing={freeze_start: 1.5}"])
    except RecipeError as e:
        assert "methods.layer_freezing.freeze_start" in str(e)
    else:
        raise AssertionError("freeze_start 1.5 was accepted")


def test_short_run_freezes_progressively(tmp_path: Path, monkeypatch) -> None:
    from trainbench import engine

    with_grads: list[int] = []

    def build(*args, **kw) -> torch.optim.Optimizer:
        opt = build_optimizer(*args, **kw)
        opt.register_step_pre_hook(lambda o, a, k: with_grads.append(
            sum(p.grad is not None for g in o.param_groups for p in g["params"])))
        return opt

    monkeypatch.setattr(engine, "build_optimizer", build)
    sets = ["model.width=4", "duration=6ba", "schedule.warmup=0ba", "eval.every=null",
            "methods.layer_freezing={freeze_start: 0.0}"]
    out = run_recipe(load_recipe(QUICKSTART, sets), RunDir(tmp_path / "r"))
    assert out.status == "completed", out.message
    # depth 2 * (steps done) of 13 leaves: 11 parameters, then fewer and fewer get gradients
    assert with_grads == [11, 8, 7, 5, 4, 2]
