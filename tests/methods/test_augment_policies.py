"""Augmentation policies: the exact uint8 round trip, torchvision's transforms seeded per
image (or group) from the seed alone, per-image vs per-batch randomness, DDP slices, other
random streams untouched, recipe checks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import build_state, tiny_data
from torchvision.transforms import v2

from trainbench.methods import METHODS
from trainbench.methods.augment_policies import (
    AugMix,
    RandAugment,
    TrivialAugment,
    augment_uint8,
    group_bounds,
    to_uint8,
)
from trainbench.methods.draws import mix_seed
from trainbench.recipe import RecipeError, load_recipe

QUICKSTART = Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml"
POLICIES = {"randaugment": RandAugment, "trivialaugment": TrivialAugment, "augmix": AugMix}


def images(n: int = 12, same: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (1 if same else n, 3, 8, 8), generator=g, dtype=torch.uint8)
    return x.expand(n, -1, -1, -1).contiguous() if same else x


def test_uint8_round_trip_is_exact() -> None:
    data = tiny_data(channels=3)
    u8 = data.train_x[:16]
    assert torch.equal(to_uint8(data.normalize(u8), data.scale, data.shift), u8)


def test_group_bounds() -> None:
    assert group_bounds(3, None) == [(0, 1), (1, 2), (2, 3)]
    assert group_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert group_bounds(2, 5) == [(0, 1), (1, 2)]  # never an empty group


@pytest.mark.parametrize("make", [v2.RandAugment, v2.TrivialAugmentWide,
                                  lambda: AugMix().transform()], ids=["ra", "ta", "augmix"])
def test_per_image_draws_come_from_the_seed_and_the_image_position(make) -> None:
    t, x = make(), images()
    a = augment_uint8(t, x, 5)
    assert a.dtype == torch.uint8 and torch.equal(a, augment_uint8(t, x, 5))  # the seed alone
    assert not torch.equal(a, augment_uint8(t, x, 6))
    for i in (0, 7):  # image i is one call, seeded from (seed, i): independent of the others
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(5, i))
            assert torch.equal(a[i:i + 1], t(x[i:i + 1]))
    # a rank's slice of the global batch gets exactly the draws it gets in one process
    assert torch.equal(augment_uint8(t, x[4:8], 5, offset=4, global_batch=12), a[4:8])


def test_per_image_randomness_differs_across_images_per_batch_does_not() -> None:
    same = images(16, same=True)
    per_image = augment_uint8(v2.RandAugment(), same, 1)
    assert len({bytes(im.flatten().tolist()) for im in per_image}) > 8
    per_batch = augment_uint8(v2.RandAugment(), same, 1, groups=1)
    assert all(torch.equal(im, per_batch[0]) for im in per_batch)
    assert not torch.equal(per_batch[0], same[0])
    four = augment_uint8(v2.RandAugment(), same, 1, groups=4)
    assert [torch.equal(four[i], four[i // 4 * 4]) for i in range(16)] == [True] * 16
    assert len({bytes(four[i].flatten().tolist()) for i in (0, 4, 8, 12)}) > 1


def test_other_random_streams_are_untouched() -> None:
    before = torch.random.get_rng_state()
    augment_uint8(AugMix().transform(), images(), 2)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("name", list(POLICIES))
def test_method_augments_normalised_batches_from_seed_and_step(name: str) -> None:
    cls = METHODS.get(name)
    assert cls is POLICIES[name] and cls.order < 0  # before the mixing methods
    data = tiny_data(channels=3, size=8)
    x, y = data.normalize(data.train_x[:8]), data.train_y[:8]

    def run(step: int, seed: int = 0) -> torch.Tensor:
        state = build_state(recipe={"seed": seed}, data=data, step=step)
        m = cls()
        m.on_fit_start(state)
        out, y_out = m.on_batch(state, x, y)
        assert y_out is y and out.dtype == x.dtype
        return out

    out = run(3)
    assert torch.equal(out, run(3))  # what a resumed run redraws: no state needed
    assert not torch.equal(out, run(4)) and not torch.equal(out, run(3, seed=1))
    u8 = to_uint8(out, data.scale, data.shift)
    torch.testing.assert_close(out, data.normalize(u8), rtol=0, atol=1e-6)  # on the uint8 grid
    rank1 = build_state(recipe={"seed": 0}, data=SimpleNamespace(rank=1, world_size=2, scale=data.scale,
                                                                  shift=data.shift, normalize=data.normalize),
                        step=3)
    m = cls()
    m.on_fit_start(rank1)
    torch.testing.assert_close(m.on_batch(rank1, x[4:], y[4:])[0], out[4:], rtol=0, atol=0)


def test_channels_last_batches_stay_channels_last() -> None:
    data = tiny_data(channels=3, size=8)
    x = data.normalize(data.train_x[:4]).contiguous(memory_format=torch.channels_last)
    state = build_state(data=data)
    m = RandAugment()
    m.on_fit_start(state)
    assert m.on_batch(state, x, data.train_y[:4])[0].is_contiguous(memory_format=torch.channels_last)


def test_recipe_checks_name_the_field() -> None:
    def problems(sets: list[str]) -> str:
        with pytest.raises(RecipeError) as e:
            load_recipe(QUICKSTART, sets)
        return str(e.value)

    assert "methods.randaugment.magnitude: 31 is not one of the 31 magnitude bins" in problems(
        ["methods.randaugment.magnitude=31"])
    assert "methods.trivialaugment.num_magnitude_bins: must be >= 2" in problems(
        ["methods.trivialaugment.num_magnitude_bins=1"])
    assert "methods.augmix.chain_depth: 0 is not a depth" in problems(["methods.augmix.chain_depth=0"])
    assert "methods.augmix.severity: must be <= 10" in problems(["methods.augmix.severity=11"])
    assert "methods.randaugment.groups: must be >= 1" in problems(["methods.randaugment.groups=0"])
    r = load_recipe(QUICKSTART, ["methods.augmix={}", "methods.randaugment.groups=4"])
    assert r["methods"]["augmix"] == {"severity": 3, "mixture_width": 3, "chain_depth": -1,
                                      "alpha": 1.0, "all_ops": True, "groups": None}
    assert r["methods"]["randaugment"]["groups"] == 4
