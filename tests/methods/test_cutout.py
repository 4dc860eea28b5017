"""Cutout: the exact erased square (inside, clipped at borders, odd sides), per-image draws
from the method generator, the DDP slice of the global draw, recipe checks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import build_state

from trainbench.methods import METHODS
from trainbench.methods.cutout import Cutout, cutout_batch, cutout_mask
from trainbench.recipe import RecipeError, load_recipe

QUICKSTART = Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml"


def test_the_erased_square_inside_at_a_border_and_odd() -> None:
    cy, cx = torch.tensor([3, 0, 5, 3]), torch.tensor([3, 0, 4, 3])
    m = cutout_mask(cy, cx, 6, 6, 4)
    want = torch.zeros(4, 6, 6, dtype=torch.bool)
    want[0, 1:5, 1:5] = True  # centre (3, 3): rows/cols 3-2 .. 3-2+4
    want[1, 0:2, 0:2] = True  # centre (0, 0): -2..2 clipped to 0..2 (area 4, not 16)
    want[2, 3:6, 2:6] = True  # centre (5, 4): rows 3..7 clipped to 3..6
    want[3, 1:5, 1:5] = True
    assert torch.equal(m, want)
    assert m.sum((1, 2)).tolist() == [16, 4, 12, 16]
    odd = cutout_mask(torch.tensor([2]), torch.tensor([2]), 5, 5, 3)
    assert odd.sum() == 9 and torch.equal(odd[0, 1:4, 1:4], torch.ones(3, 3, dtype=torch.bool))


def test_cutout_batch_zeroes_every_channel_of_the_square_only() -> None:
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    before = x.clone()
    out = cutout_batch(x, torch.tensor([3, 0]), torch.tensor([3, 0]), 4,
                       apply=torch.tensor([True, False]))
    assert torch.equal(x, before)  # not in place
    assert (out[0, :, 1:5, 1:5] == 0).all() and (out[0] != 0).sum() == 3 * (36 - 16)
    assert torch.equal(out[1], x[1])  # not applied to image 1
    assert torch.equal(out[0][out[0] != 0], x[0][out[0] != 0])


def test_method_draws_per_image_from_the_method_generator() -> None:
    assert METHODS.get("cutout") is Cutout and Cutout.order < 0  # before the mixing methods
    state = build_state()
    x = torch.ones(64, 1, 8, 8)
    out, y = Cutout(length=4).on_batch(state, x, torch.zeros(64, dtype=torch.long))
    erased = (out == 0).flatten(1)
    assert erased.sum(1).min() >= 4 and erased.sum(1).max() == 16  # corners clip, centres do not
    assert len({tuple(e.tolist()) for e in erased}) > 20  # different squares per image
    again, _ = Cutout(length=4).on_batch(build_state(), x, y)
    assert torch.equal(out, again)  # from the seed alone
    with_prob, _ = Cutout(length=4, prob=0.5).on_batch(build_state(), x, y)
    untouched = (with_prob != 0).flatten(1).all(1)
    assert 10 < untouched.sum() < 54  # about half the images left whole


def test_under_ddp_a_rank_gets_its_slice_of_the_global_draw() -> None:
    x = torch.ones(8, 1, 8, 8)
    y = torch.zeros(8, dtype=torch.long)
    whole, _ = Cutout(length=3).on_batch(build_state(), x, y)
    rank1 = build_state(data=SimpleNamespace(rank=1, world_size=2))
    half, _ = Cutout(length=3).on_batch(rank1, x[4:], y[4:])
    assert torch.equal(half, whole[4:])


def test_check_recipe_refuses_a_square_larger_than_the_images() -> None:
    with pytest.raises(RecipeError) as e:
        load_recipe(QUICKSTART, ["methods.cutout.length=9"])
    assert "methods.cutout.length: 9 is larger than the digits images (8x8)" in str(e.value)
    with pytest.raises(RecipeError, match=r"methods\.cutout\.length: must be >= 1"):
        load_recipe(QUICKSTART, ["methods.cutout.length=0"])
    assert load_recipe(QUICKSTART, ["methods.cutout.length=8"])["methods"]["cutout"] == {
        "length": 8, "prob": 1.0}
