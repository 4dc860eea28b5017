"""BlurPool: which layers are replaced, shapes kept, the binomial filter, and no-op cases."""

from __future__ import annotations

import warnings
from math import comb
from pathlib import Path

import pytest
import torch
from conftest import build_state
from timm.layers import BlurPool2d
from torch import nn

from trainbench.engine import run_recipe
from trainbench.errors import InputError
from trainbench.methods import METHODS
from trainbench.methods.blurpool import BlurConv2d, BlurMaxPool2d, BlurPool, apply_blurpool, blur_layer
from trainbench.models import build_model
from trainbench.recipe import load_recipe
from trainbench.results import RunDir

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"


def model(name: str, **kw: int) -> nn.Module:
    torch.manual_seed(0)
    return build_model({"name": name, **kw}, 3, 10)


def count(m: nn.Module, cls: type) -> int:
    return sum(isinstance(x, cls) for x in m.modules())


@pytest.mark.parametrize(("name", "n_pools"), [("resnet9", 3), ("small_cnn", 1)])
def test_builtin_models_keep_shapes(name: str, n_pools: int) -> None:
    m = model(name, width=8)
    x = torch.randn(2, 3, 32, 32)
    before = m(x).shape
    assert apply_blurpool(m) == n_pools  # their convs all have stride 1
    assert count(m, BlurMaxPool2d) == n_pools and count(m, BlurConv2d) == 0
    assert not any(type(x) is nn.MaxPool2d and x.stride != 1 for x in m.modules())
    assert m(x).shape == before == (2, 10)


def test_strided_convs_of_resnet18_cifar() -> None:
    m = model("resnet18_cifar")
    strided = {n: c for n, c in m.named_modules() if isinstance(c, nn.Conv2d) and c.stride == (2, 2)}
    assert len(strided) == 6  # conv1 and the 1x1 downsample of layer2..4's first block
    x = torch.randn(1, 3, 32, 32)
    assert apply_blurpool(m, replace_convs=False) == 0  # its max-pool is an Identity
    assert apply_blurpool(m) == 6
    for name, conv in strided.items():
        new = m.get_submodule(name)
        assert isinstance(new, BlurConv2d) and new.conv is conv  # same weights, no copy
        assert new.blur.stride == (1, 1) and new.blur.filt.shape[0] == conv.in_channels
    assert m(x).shape == (1, 10)
    assert apply_blurpool(m) == 0  # already blurred: idempotent


def test_min_channels_and_switches() -> None:
    def net() -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.MaxPool2d(2),
                             nn.Conv2d(16, 16, 3, stride=2, padding=1))

    assert apply_blurpool(net()) == 2  # the 3-channel stem is skipped, as in Composer
    assert apply_blurpool(net(), min_channels=0) == 3
    assert apply_blurpool(net(), replace_convs=False) == 1
    assert apply_blurpool(net(), replace_maxpools=False) == 1
    assert apply_blurpool(net(), replace_convs=False, replace_maxpools=False) == 0


@pytest.mark.parametrize("filt_size", [2, 3, 4, 5, 6, 7])
def test_filter_is_normalised_binomial(filt_size: int) -> None:
    blur = blur_layer(4, filt_size, 2)
    assert isinstance(blur, BlurPool2d)
    row = torch.tensor([comb(filt_size - 1, k) for k in range(filt_size)], dtype=torch.float32)
    row /= 2 ** (filt_size - 1)
    expected = (row[:, None] * row[None, :]).expand(4, 1, filt_size, filt_size)
    torch.testing.assert_close(blur.filt, expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(blur.filt.sum((1, 2, 3)), torch.ones(4), rtol=0, atol=1e-6)
    if filt_size == 3:
        by_hand = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
        torch.testing.assert_close(blur.filt[0, 0], by_hand, rtol=0, atol=1e-7)
    # a constant image stays constant away from the (zero-padded) border
    out = blur_layer(None, filt_size, 1)(torch.full((1, 2, 12, 12), 3.0))
    torch.testing.assert_close(out[..., 3:-3, 3:-3], torch.full_like(out[..., 3:-3, 3:-3], 3.0))


@pytest.mark.parametrize("filt_size", [2, 3, 4, 5, 7])
def test_output_shapes_match_for_any_size(filt_size: int) -> None:
    layers = [nn.MaxPool2d(2), nn.MaxPool2d(3, 2, padding=1), nn.MaxPool2d((2, 3), (2, 3)),
              nn.Conv2d(16, 8, 3, stride=2, padding=1), nn.Conv2d(16, 8, 1, stride=2),
              nn.Conv2d(16, 8, 4, stride=(2, 1))]
    checked = 0
    for layer in layers:
        for s in (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 32):
            x = torch.randn(1, 16, s, s + 1)
            try:
                want = layer(x).shape
            except RuntimeError:
                continue  # too small for the layer itself
            blurred = nn.Sequential(layer)
            assert apply_blurpool(blurred, filt_size=filt_size) == 1
            assert blurred(x).shape == want, (layer, s)
            checked += 1
    assert checked > 50


def test_nothing_to_replace_is_a_silent_no_op() -> None:
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten())
    before = {k: v.clone() for k, v in m.state_dict().items()}
    kinds = [type(x) for x in m.modules()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply_blurpool(m) == 0
    assert [type(x) for x in m.modules()] == kinds
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())


def test_new_filters_follow_the_model_dtype() -> None:
    m = model("small_cnn", width=4).double()
    assert apply_blurpool(m) == 1
    blur = next(x for x in m.modules() if isinstance(x, BlurPool2d))
    assert blur.filt.dtype == torch.float64
    assert m(torch.randn(1, 3, 8, 8, dtype=torch.float64)).dtype == torch.float64
    assert not any(True for _ in blur.parameters())  # a fixed filter, nothing to train
    assert "filt" not in str(list(m.state_dict()))  # non-persistent: checkpoints unchanged


def test_method_and_recipe_bounds(tmp_path: Path) -> None:
    assert METHODS.get("blurpool") is BlurPool
    assert BlurPool.order == -10
    state = build_state(model=model("resnet9", width=8))
    method = BlurPool(filt_size=5)
    method.on_init(state)
    assert method.replaced == 3
    assert all(b.filt_size == 5 for b in state.model.modules() if isinstance(b, BlurPool2d))
    with pytest.raises(InputError, match="filt_size"):
        load_recipe(QUICKSTART, ["methods.blurpool={filt_size: 8}"])
    with pytest.raises(ValueError, match="filt_size"):
        apply_blurpool(nn.Sequential(), filt_size=1)


def test_end_to_end(tmp_path: Path) -> None:
    recipe = load_recipe(QUICKSTART, ["duration=10ba", "schedule.warmup=0ba",
                                      "eval.every=null", "methods.blurpool={}"])
    assert run_recipe(recipe, RunDir(tmp_path / "r")).status == "completed"
