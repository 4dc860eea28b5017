"""EMA: the decay rule, the in-place update against the closed form and a hand recursion
(with and without warmup, buffers included), no host sync per step, evaluation columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import build_state
from torch import nn
from torch.optim.swa_utils import AveragedModel

from trainbench.methods import METHODS, TrainState
from trainbench.methods.ema import EMA, ema_decay, ema_update_
from trainbench.recipe import RecipeError, load_recipe

QUICKSTART = Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml"


def test_decay_rule_none_and_tf() -> None:
    assert ema_decay(0.999, 0, "none") == ema_decay(0.999, 10**6, "none") == 0.999
    # TensorFlow's ExponentialMovingAverage: min(decay, (1 + n) / (10 + n)) after n updates
    assert [ema_decay(0.999, n, "tf") for n in (0, 1, 2, 8)] == [0.1, 2 / 11, 3 / 12, 9 / 18]
    assert ema_decay(0.9, 80, "tf") == 0.9  # 81/90 = 0.9: the cap takes over from here
    assert ema_decay(0.9, 79, "tf") == 80 / 89


def test_decay_rule_timm_per_update() -> None:
    # ModelEmaV3 (use_warmup, gamma 1, power 2/3) as timm's train.py calls it, step = updates
    # so far including this one: step 1 -> 0 (copy), then 1 - (1 + (step - 1)) ** -(2/3)
    want = [0.0, 1 - 2 ** (-2 / 3), 1 - 3 ** (-2 / 3), 1 - 4 ** (-2 / 3), 1 - 11 ** (-2 / 3)]
    got = [ema_decay(0.9999, n, "timm") for n in (0, 1, 2, 3, 10)]
    assert got == pytest.approx(want, abs=1e-15)
    assert ema_decay(0.999, 31_621, "timm") == pytest.approx(0.999, abs=1e-6)  # timm: 0.999 at ~31.6k
    assert ema_decay(0.99, 10**6, "timm") == 0.99  # capped at decay
    assert ema_decay(0.9, 5, "timm", gamma=2.0, power=0.75) == pytest.approx(1 - 3.5 ** -0.75)


def test_decay_rule_timm_matches_timm_itself() -> None:
    timm_ema = pytest.importorskip("timm.utils.model_ema")
    ref = timm_ema.ModelEmaV3(nn.Linear(1, 1), decay=0.999, use_warmup=True, warmup_gamma=3.0,
                              warmup_power=0.75)
    for n in range(0, 200, 7):
        assert ema_decay(0.999, n, "timm", gamma=3.0, power=0.75) == pytest.approx(
            ref.get_decay(step=n + 1), abs=1e-15)


def test_update_matches_the_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    d, n = 0.8, 6
    e0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    snaps = [torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(n)]
    ema = [e0.clone()]
    for m in snaps:
        ema_update_(ema, [m], d)
    # e_n = d^n e_0 + sum_k (1 - d) d^(n - k) m_k
    closed = d**n * e0 + sum((1 - d) * d ** (n - k) * m for k, m in enumerate(snaps, 1))
    torch.testing.assert_close(ema[0], closed, rtol=0, atol=1e-12)


def test_update_lerps_floats_and_copies_integers() -> None:
    ema = [torch.tensor([1.0, 2.0]), torch.tensor(3, dtype=torch.long), torch.tensor([10.0])]
    model = [torch.tensor([3.0, 6.0]), torch.tensor(17, dtype=torch.long), torch.tensor([0.0])]
    ema_update_(ema, model, 0.75)
    torch.testing.assert_close(ema[0], torch.tensor([1.5, 3.0]), rtol=0, atol=0)
    assert ema[1].dtype == torch.long and int(ema[1]) == 17
    torch.testing.assert_close(ema[2], torch.tensor([7.5]), rtol=0, atol=0)


# --- the method ---


def bn_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))


def setup(model: nn.Module, **params: Any) -> tuple[EMA, TrainState]:
    state = build_state(model=model)
    method = EMA(**params)
    method.on_init(state)
    state.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    method.on_fit_start(state)
    return method, state


def randomise(model: nn.Module, g: torch.Generator) -> None:
    """New weights and BN statistics, as a training step (and its forward) would give."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))
            else:
                t.add_(3)  # num_batches_tracked


HAND_DECAY = {  # decay of update n (0-based), written out per rule
    "none": lambda n: 0.7,
    "tf": lambda n: min(0.7, (1 + n) / (10 + n)),
    "timm": lambda n: 0.0 if n == 0 else min(0.7, 1 - (1 + n) ** (-2 / 3)),
    True: lambda n: min(0.7, (1 + n) / (10 + n)),  # the earlier spelling of tf
    False: lambda n: 0.7,
}


@pytest.mark.parametrize("warmup", list(HAND_DECAY))
def test_method_follows_the_hand_recursion(warmup: Any) -> None:
    g = torch.Generator().manual_seed(1)
    model = bn_model()
    method, state = setup(model, decay=0.7, warmup=warmup)
    assert method.order == 10 and METHODS.get("ema") is EMA
    expected = {k: v.clone().double() for k, v in model.state_dict().items()}
    for step in range(1, 8):
        randomise(model, g)
        d = HAND_DECAY[warmup](step - 1)
        for k, v in model.state_dict().items():
            expected[k] = v.double() if not v.is_floating_point() else d * expected[k] + (1 - d) * v.double()
        state.step = step
        method.after_step(state)
    got = method.ema.state_dict()
    for k in expected:
        torch.testing.assert_close(got[k].double(), expected[k], rtol=0, atol=1e-5, msg=k)
    # BN running statistics averaged, num_batches_tracked copied
    assert not torch.equal(got["1.running_mean"], model[1].running_mean)
    assert int(got["1.num_batches_tracked"]) == int(model[1].num_batches_tracked) == 21
    assert method.updates == 7
    assert not method.ema.training and not any(p.requires_grad for p in method.ema.parameters())


def test_every_n_steps() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    method, state = setup(model, decay=0.5, every=3)
    for step in range(1, 10):
        with torch.no_grad():
            model.weight.fill_(float(step))
        state.step = step
        method.after_step(state)
    # updates at steps 3, 6, 9: ((0 * .5 + 3 * .5) * .5 + 6 * .5) * .5 + 9 * .5 = 6.375
    assert method.updates == 3
    assert float(method.ema.weight) == pytest.approx(6.375)


def test_after_step_makes_no_host_sync(monkeypatch) -> None:
    method, state = setup(bn_model(), decay=0.9, warmup="tf")
    torch_avg = AveragedModel(state.model)
    torch_avg.update_parameters(state.model)  # n_averaged becomes 1

    def sync(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a device value was read on the host")

    for name in ("item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    for step in range(1, 4):
        state.step = step
        method.after_step(state)
    # the guard does catch a sync: torch's AveragedModel reads n_averaged on the host
    with pytest.raises(AssertionError, match="host"):
        torch_avg.update_parameters(state.model)
    monkeypatch.undo()
    assert method.updates == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_after_step_makes_no_cuda_sync() -> None:
    state = build_state(model=bn_model().cuda(), device=torch.device("cuda"))
    method = EMA(decay=0.9, warmup="tf")
    method.on_init(state)
    method.on_fit_start(state)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(1, 4):
            state.step = step
            method.after_step(state)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_on_eval_evaluates_the_average() -> None:
    model = nn.Linear(2, 2)
    method, state = setup(model, decay=0.5)
    seen: list[nn.Module] = []

    def evaluate(m: nn.Module) -> dict[str, float]:
        seen.append(m)
        return {"test_acc": 0.25, "test_loss": 1.5, "test_ece": 0.125}

    cols = method.on_eval(state, evaluate)
    assert seen == [method.ema] and seen[0] is not model
    assert cols == {"test_acc_ema": 0.25, "test_loss_ema": 1.5, "test_ece_ema": 0.125}
    assert tuple(cols) == EMA.columns


def test_recipe_parameters() -> None:
    r = load_recipe(QUICKSTART, ["methods.ema.decay=0.99"])
    assert r["methods"]["ema"] == {"decay": 0.99, "warmup": "none", "warmup_gamma": 1.0,
                                   "warmup_power": 2 / 3, "every": 1}
    assert load_recipe(QUICKSTART, ["methods.ema.warmup=timm"])["methods"]["ema"]["warmup"] == "timm"
    assert load_recipe(QUICKSTART, ["methods.ema.warmup=true"])["methods"]["ema"]["warmup"] is True
    with pytest.raises(RecipeError, match=r"methods\.ema\.warmup: .*'none', 'tf', 'timm'"):
        load_recipe(QUICKSTART, ["methods.ema.warmup=keras"])
    for bad, text in (("decay=1", "must be < 1"), ("decay=0", "must be > 0"), ("every=0", "must be >= 1")):
        with pytest.raises(RecipeError, match=f"methods.ema.{bad.split('=')[0]}: {text}"):
            load_recipe(QUICKSTART, [f"methods.ema.{bad}"])
