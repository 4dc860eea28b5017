"""Model construction: builtin nets, the CIFAR ResNet-18 stem, timm and torchvision adapters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainbench.models import build_model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def logits(model: nn.Module, in_chans: int, size: int, batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, in_chans, size, size))


@pytest.mark.parametrize("name", ["small_cnn", "resnet9"])
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", [8, 32])
def test_small_builtins_give_logits(name: str, in_chans: int, size: int) -> None:
    model = build_model({"name": name, "width": 4}, in_chans, 7)
    out = logits(model, in_chans, size, batch=3)
    assert out.shape == (3, 7)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_resnet18_cifar_stem_keeps_resolution_rgb() -> None:
    model = build_model({"name": "resnet18_cifar"}, 3, 10)
    conv1 = model.conv1
    assert isinstance(conv1, nn.Conv2d)
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and conv1.padding == (1, 1)
    assert conv1.in_channels == 3 and conv1.out_channels == 64 and conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity)

    seen: dict[str, tuple[int, ...]] = {}
    model.maxpool.register_forward_hook(lambda m, i, o: seen.__setitem__("stem", tuple(o.shape)))
    model.layer1.register_forward_hook(lambda m, i, o: seen.__setitem__("layer1", tuple(o.shape)))
    assert logits(model, 3, 32).shape == (2, 10)
    assert seen["stem"] == (2, 64, 32, 32)
    assert seen["layer1"] == (2, 64, 32, 32)


def test_resnet18_cifar_grey() -> None:
    model = build_model({"name": "resnet18_cifar"}, 1, 5)
    assert model.conv1.weight.shape == (64, 1, 3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert logits(model, 1, 32).shape == (2, 5)


def small_cnn_count(c: int, w: int, k: int) -> int:
    # conv_bn(c,w) + conv_bn(w,2w) + conv_bn(2w,4w) + Linear(4w,k) with bias; BN has 2 params/ch.
    return (9 * c * w + 2 * w) + (9 * w * 2 * w + 4 * w) + (9 * 2 * w * 4 * w + 8 * w) + 4 * w * k + k


def resnet9_count(c: int, w: int, k: int) -> int:
    def cb(i: int, o: int) -> int:
        return 9 * i * o + 2 * o

    return (cb(c, w) + cb(w, 2 * w) + 2 * cb(2 * w, 2 * w) + cb(2 * w, 4 * w) + cb(4 * w, 8 * w)
            + 2 * cb(8 * w, 8 * w) + 8 * w * k)  # final Linear has no bias


@pytest.mark.parametrize("width", [4, 8, 16])
def test_width_sets_parameter_count(width: int) -> None:
    cnn = build_model({"name": "small_cnn", "width": width}, 3, 10)
    assert n_params(cnn) == small_cnn_count(3, width, 10)
    assert n_params(build_model({"name": "resnet9", "width": width}, 1, 10)) == resnet9_count(1, width, 10)


def test_width_defaults() -> None:
    assert n_params(build_model({"name": "small_cnn"}, 1, 10)) == small_cnn_count(1, 32, 10) == 94_186
    assert n_params(build_model({"name": "resnet9"}, 3, 10)) == resnet9_count(3, 64, 10)
    assert resnet9_count(3, 64, 10) == 6_573_120


def test_timm_model_with_kwargs() -> None:
    model = build_model({"name": "timm:resnet18", "kwargs": {"drop_rate": 0.25}}, 1, 6)
    assert model.drop_rate == 0.25
    assert model.conv1.in_channels == 1  # timm adapts the stem itself
    assert model.fc.out_features == 6
    assert logits(model, 1, 32).shape == (2, 6)


def test_torchvision_model_rgb() -> None:
    model = build_model({"name": "torchvision:resnet18", "kwargs": {}}, 3, 4)
    assert type(model).__name__ == "ResNet" and model.conv1.in_channels == 3  # no wrapper for RGB
    assert logits(model, 3, 32).shape == (2, 4)


def test_torchvision_kwargs_are_passed() -> None:
    model = build_model({"name": "torchvision:resnet18", "kwargs": {"zero_init_residual": True}}, 3, 4)
    blocks = [*model.layer1, *model.layer4]
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)
    assert torch.count_nonzero(model.bn1.weight) == 64  # only the residual branches are zeroed


def test_torchvision_grey_input_repeats_channel() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "torchvision:resnet18", "kwargs": {}}, 1, 4).eval()
    inner = model.model
    assert inner.conv1.in_channels == 3
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
        expected = inner(torch.cat([x, x, x], dim=1))
    assert out.shape == (2, 4)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("section", [{"name": "small_cnn", "width": 8}, {"name": "resnet9", "width": 4},
                                     {"name": "resnet18_cifar"}])
def test_seed_gives_identical_init(section: dict) -> None:
    def state(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_model(section, 3, 10).state_dict()

    a, b, c = state(0), state(0), state(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if k.endswith("weight") and a[k].ndim > 1]
    assert weights and all(not torch.equal(a[k], c[k]) for k in weights)
