"""data.label_noise: the exact corruption (count, kinds, determinism), the recipe checks,
and a smoke run that trains on the noisy labels, tests on the clean ones, and records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trainbench.data.label_noise import changed_count, corrupt
from trainbench.errors import InputError
from trainbench.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
LABELS = torch.arange(1000) % 10  # 100 images of each of 10 classes


def test_changed_count_is_rate_times_n_rounded_half_up() -> None:
    assert changed_count(0.25, 10) == 3  # 2.5 -> 3
    assert changed_count(0.2, 10) == 2
    assert changed_count(0.24, 10) == 2
    assert changed_count(0.0, 10) == 0 and changed_count(1.0, 7) == 7
    assert changed_count(0.4, 300) == 120


@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
@pytest.mark.parametrize("rate", [0.0, 0.137, 0.4, 1.0])
def test_exactly_round_rate_n_labels_change_each_to_another_class(kind: str, rate: float) -> None:
    noisy, idx = corrupt(LABELS, 10, rate=rate, kind=kind, seed=3)
    changed = torch.nonzero(noisy != LABELS).flatten()
    assert len(changed) == changed_count(rate, 1000) == round(rate * 1000)
    assert torch.equal(changed, idx)  # the indices returned are those changed, sorted
    assert noisy.dtype == torch.int64 and bool(((noisy >= 0) & (noisy < 10)).all())
    if kind == "pairflip":
        assert torch.equal(noisy[idx], (LABELS[idx] + 1) % 10)
    assert torch.equal(LABELS, torch.arange(1000) % 10)  # the input is not modified


def test_symmetric_noise_spreads_over_the_other_classes() -> None:
    noisy, _ = corrupt(LABELS, 10, rate=1.0, kind="symmetric", seed=0)
    offsets = ((noisy - LABELS) % 10).numpy()
    counts = np.bincount(offsets, minlength=10)
    assert counts[0] == 0  # never the true class
    assert counts[1:].min() > 70 and counts[1:].max() < 150  # ~111 each of the 9 other classes
    # and it is not pairflip: from class 0, labels go to many classes
    assert len(set(noisy[LABELS == 0].tolist())) == 9


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    a, ia = corrupt(LABELS, 10, rate=0.3, seed=5)
    b, ib = corrupt(LABELS, 10, rate=0.3, seed=5)
    _, ic = corrupt(LABELS, 10, rate=0.3, seed=6)
    assert torch.equal(a, b) and torch.equal(ia, ib)
    assert not torch.equal(ia, ic) and len(ia) == len(ic) == 300


def test_recipe_fills_defaults_and_refuses_bad_fields() -> None:
    r = load_recipe(ROOT / "recipes" / "quickstart.yaml", ["data.label_noise={rate: 0.2}"])
    assert r["data"]["label_noise"] == {"rate": 0.2, "kind": "symmetric", "seed": 0}
    assert load_recipe(ROOT / "recipes" / "quickstart.yaml")["data"]["label_noise"] is None
    with pytest.raises(InputError) as e:
        load_recipe(ROOT / "recipes" / "quickstart.yaml", ["data.label_noise={rate: 1.5, kind: pair}"])
    msg = str(e.value)
    assert "data.label_noise.rate: must be <= 1, got 1.5" in msg
    assert ("data.label_noise.kind: expected one of symmetric, pairflip; got 'pair'. "
            "Did you mean 'pairflip'?") in msg
    with pytest.raises(InputError, match=r"data.label_noise.rate: required for data.label_noise"):
        load_recipe(ROOT / "recipes" / "quickstart.yaml", ["data.label_noise={kind: pairflip}"])


def test_a_run_trains_on_noisy_labels_tests_on_clean_ones_and_records_it(tmp_path: Path,
                                                                          monkeypatch) -> None:
    from trainbench import engine
    from trainbench.results import RunDir

    seen = {}
    real = engine.DeviceData

    def spy(data, *args, **kwargs):
        seen["train_y"], seen["test_y"] = data.train_y.clone(), data.test_y.clone()
        return real(data, *args, **kwargs)

    monkeypatch.setattr(engine, "DeviceData", spy)
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml",
                         ["data.label_noise={rate: 0.25, kind: pairflip, seed: 1}", "device=cpu"])
    clean, _, _ = engine.load_data(recipe, smoke=True)
    out = engine.run_recipe(recipe, RunDir(tmp_path / "run"), smoke=True)
    assert out.status == "completed"
    expected, idx = corrupt(clean.train_y, 10, rate=0.25, kind="pairflip", seed=1)
    assert len(idx) == 16  # 0.25 of the 64 smoke training images
    assert torch.equal(seen["train_y"], expected)
    assert torch.equal(seen["test_y"], clean.test_y)  # the test set stays clean
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["label_noise"] == {"rate": 0.25, "kind": "pairflip", "seed": 1, "train_images": 64,
                                   "changed": 16}
