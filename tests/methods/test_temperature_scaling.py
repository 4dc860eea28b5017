"""Temperature scaling: the fitted temperature minimises the held-out NLL, test_ece_ts is the
hand-computed ECE of the scaled test predictions, the held-out slice (fixed, stratified,
removed from training), the shared ECE equals the engine's, recipe checks."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_state, tiny_data
from scipy.special import logsumexp
from test_snapshot_ensemble import hand_ece
from torch import nn

from trainbench.calibration import expected_calibration_error, predict
from trainbench.engine import evaluate
from trainbench.errors import InputError
from trainbench.methods import METHODS
from trainbench.methods.temperature_scaling import (
    TemperatureScaling,
    fit_temperature,
    nll,
    split_holdout,
)
from trainbench.recipe import RecipeError, load_recipe

QUICKSTART = Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml"


@pytest.mark.parametrize("sharpness", [0.3, 4.0])  # under- and overconfident logits
def test_fitted_temperature_minimises_the_nll(sharpness: float) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    logits = rng.normal(size=(200, 5))
    logits[np.arange(200), labels] += 1.0
    logits *= sharpness
    t = fit_temperature(logits, labels)
    grid = np.geomspace(0.01, 100, 2001)[:, None, None]  # the NLL at each T, vectorised
    z = logits[None] / grid
    on_grid = (logsumexp(z, axis=2) - z[:, np.arange(200), labels]).mean(1)
    assert nll(logits, labels, t) <= on_grid.min() + 1e-12
    assert nll(logits, labels, t) <= min(nll(logits, labels, t * (1 + d)) for d in (-1e-4, 1e-4))
    assert (t > 1) == (sharpness > 1)  # overconfident logits are softened, and vice versa


def test_the_held_out_slice_is_fixed_stratified_and_disjoint() -> None:
    labels = torch.arange(100) % 4
    keep, held = split_holdout(labels, 0.2)
    assert len(held) == 20 and torch.bincount(labels[held]).tolist() == [5, 5, 5, 5]
    assert sorted(keep.tolist() + held.tolist()) == list(range(100))
    assert torch.equal(split_holdout(labels, 0.2)[1], held)  # the same images every time


def test_on_eval_fits_on_held_out_images_and_scales_the_test_logits() -> None:
    assert METHODS.get("temperature_scaling") is TemperatureScaling
    data = tiny_data(n=40, channels=1, size=4, classes=3)
    all_x, all_y = data.train_x.clone(), data.train_y.clone()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        model[1].weight.mul_(8)  # confident, so the temperature is far from 1
    state = build_state(model=model, data=data)
    m = TemperatureScaling(holdout=0.25)
    m.on_init(state)
    keep, held = split_holdout(all_y, 0.25)
    assert torch.equal(data.train_x, all_x[keep]) and torch.equal(data.train_y, all_y[keep])  # not trained on
    with torch.no_grad():
        held_logits = model(data.normalize(all_x[held])).double().numpy()
        test_logits = model(data.normalize(data.test_x))
    t = fit_temperature(held_logits, all_y[held].numpy())
    r = m.on_eval(state, lambda mod: {})
    assert r["temperature"] == pytest.approx(t, rel=1e-6) and abs(t - 1) > 0.1
    assert r["test_ece_ts"] == pytest.approx(hand_ece((test_logits / t).softmax(1), data.test_y), abs=1e-6)
    hand_nll = nll(test_logits.double().numpy(), data.test_y.numpy(), t)
    assert r["test_loss_ts"] == pytest.approx(hand_nll, rel=1e-5)
    assert m.state_dict() == {"temperature": r["temperature"]}


def test_the_shared_ece_is_the_engines() -> None:
    data = tiny_data(n=40, channels=1, size=4, classes=3)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    logits, labels = predict(model, data.test_batches())
    ours = expected_calibration_error(logits.softmax(1), labels).item()
    assert ours == pytest.approx(evaluate(model, data, contextlib.nullcontext)["test_ece"], abs=1e-7)


def test_holdout_checks_name_the_field() -> None:
    for bad in ("0", "1"):
        with pytest.raises(RecipeError, match=r"methods\.temperature_scaling\.holdout: must be"):
            load_recipe(QUICKSTART, [f"methods.temperature_scaling.holdout={bad}"])
    state = build_state(data=tiny_data(n=16))  # batch 8: holding out 10 leaves 6
    with pytest.raises(InputError, match=r"methods\.temperature_scaling\.holdout: holding out 10 of 16"):
        TemperatureScaling(holdout=0.6).on_init(state)
