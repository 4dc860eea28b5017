"""Stochastic depth: the linear-decay rule per block, exact dropping and scaling of a branch,
identity at evaluation, timm models through drop_path_rate, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import build_state, tiny_data
from torchvision.ops import StochasticDepth as TVStochasticDepth
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.engine import run_recipe
from trainbench.methods import METHODS
from trainbench.methods.stochastic_depth import StochasticDepth, apply_stochastic_depth, drop_rates
from trainbench.models import build_model
from trainbench.models.builtin import Residual
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import RunDir

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


def test_linear_decay_rule() -> None:
    # block l of L drops with l/L * drop_rate: survival 1 - l/L * (1 - p_L)
    assert drop_rates(4, 0.2) == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert [1 - p for p in drop_rates(2, 0.5)] == pytest.approx([0.75, 0.5])


@pytest.mark.parametrize(("name", "blocks"), [("resnet9", 2), ("resnet18_cifar", 8)])
def test_every_residual_block_of_the_builtin_models_gets_its_rate(name: str, blocks: int) -> None:
    torch.manual_seed(0)
    model = build_model({"name": name, "width": 4} if name == "resnet9" else {"name": name}, 3, 10)
    x = torch.randn(2, 3, 8, 8)
    before = model.eval()(x)
    rates = apply_stochastic_depth(model, 0.2, "row")
    found = [m for m in model.modules() if isinstance(m, TVStochasticDepth)]
    assert [m.p for m in found] == pytest.approx([k / blocks * 0.2 for k in range(1, blocks + 1)]) == rates
    assert all(m.mode == "row" for m in found)
    assert torch.equal(model.eval()(x), before)  # identity at evaluation


def test_a_dropped_branch_is_the_identity_and_a_kept_one_is_scaled() -> None:
    torch.manual_seed(0)
    block = Residual(2)
    block.drop_path = TVStochasticDepth(0.5, "row")
    block.train()
    x = torch.randn(64, 2, 3, 3)
    branch = block.body(x).detach()  # BN in train mode: per-batch statistics, same in both calls
    out = block(x).detach()
    dropped = torch.isclose(out, x).flatten(1).all(1)
    kept = torch.isclose(out, x + branch / 0.5, atol=1e-6).flatten(1).all(1)
    assert bool((dropped | kept).all()) and 16 < int(dropped.sum()) < 48  # per sample, p = 0.5


def test_timm_models_use_drop_path_rate_and_keep_their_initial_weights() -> None:
    torch.manual_seed(0)
    section = {"name": "timm:resnet18", "kwargs": {}}
    model = build_model(section, 1, 3)
    state = build_state(model=model, recipe={"model": section}, data=tiny_data())
    rng = torch.get_rng_state()
    StochasticDepth(drop_rate=0.2).on_init(state)
    assert state.model is not model
    assert torch.equal(torch.get_rng_state(), rng)  # the rest of the run draws as without it
    new = state.model.state_dict()
    assert all(torch.equal(v, new[k]) for k, v in model.state_dict().items())
    probs = [m.drop_path.drop_prob if m.drop_path is not None else 0.0
             for m in state.model.modules() if hasattr(m, "drop_path")]
    assert probs == pytest.approx([0.2 * i / 7 for i in range(8)])  # timm's rule for ResNets


@pytest.mark.parametrize(("sets", "field"), [
    (["methods.stochastic_depth={}"], "methods.stochastic_depth: model small_cnn has no residual"),
    (["model.name=torchvision:resnet18", "methods.stochastic_depth={}"],
     "methods.stochastic_depth: works with"),
    (["model.name=timm:resnet18", "model.kwargs={drop_path_rate: 0.1}", "methods.stochastic_depth={}"],
     "model.kwargs.drop_path_rate: is set by"),
    (["model.name=timm:resnet18", "methods.stochastic_depth={mode: batch}"], "methods.stochastic_depth.mode"),
    (["model.name=resnet9", "methods.stochastic_depth={drop_rate: 1.0}"],
     "methods.stochastic_depth.drop_rate"),
])
def test_refused_at_validation(sets: list[str], field: str) -> None:
    assert METHODS.get("stochastic_depth") is StochasticDepth
    with pytest.raises(RecipeError, match=field.replace(".", r"\.")):
        load_recipe(QUICKSTART, sets)


def test_validate_exits_2_naming_the_method() -> None:
    result = CliRunner().invoke(app, ["validate", str(QUICKSTART), "--set", "methods.stochastic_depth={}"])
    assert result.exit_code == 2 and "stochastic_depth" in result.output and "Traceback" not in result.output


def test_short_run_drops_branches_in_training_only(tmp_path: Path, monkeypatch) -> None:
    calls: list[tuple[float, bool]] = []
    forward = TVStochasticDepth.forward

    def spy(self, x):
        calls.append((self.p, self.training))
        return forward(self, x)

    monkeypatch.setattr(TVStochasticDepth, "forward", spy)
    sets = ["model.name=resnet9", "model.width=4", "duration=3ba", "schedule.warmup=0ba", "eval.every=null",
            "data.test_subset=100", "methods.stochastic_depth={drop_rate: 0.2}"]
    out = run_recipe(load_recipe(QUICKSTART, sets), RunDir(tmp_path / "r"))
    assert out.status == "completed", out.message
    assert [round(p, 6) for p, training in calls if training] == [0.1, 0.2] * 3
    assert {c[1] for c in calls[6:]} == {False}  # evaluation: identity
    plain = build_model({"name": "resnet9", "width": 4}, 1, 10)
    plain.load_state_dict(torch.load(tmp_path / "r" / "model.pt", weights_only=True))  # same keys
