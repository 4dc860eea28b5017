"""Builtin models: a CPU-fast CNN, the CIFAR ResNet-9 and timm's ResNet-18 with a CIFAR stem."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from trainbench.registry import PosInt, Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def conv_bn(c_in: int, c_out: int, norm: bool = True) -> nn.Sequential:
    if not norm:  # no BatchNorm: the convolution keeps its bias
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True))
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


@MODELS.register("small_cnn")
def small_cnn(in_chans: int, num_classes: int, *, width: PosInt = 32,
              norm: Literal["batch", "none"] = "batch") -> nn.Module:
    """Three conv-BN-ReLU layers, one max-pool, global average pool: fast on a CPU. ``norm:
    none`` drops BatchNorm: a model whose training does not depend on how a batch is split
    across processes."""
    bn = norm == "batch"
    return nn.Sequential(
        conv_bn(in_chans, width, bn),
        conv_bn(width, 2 * width, bn),
        nn.MaxPool2d(2),
        conv_bn(2 * width, 4 * width, bn),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


class Residual(nn.Module):
    """``x + drop_path(body(x))``; ``drop_path`` is the identity unless the stochastic_depth
    method sets it (timm's attribute name, so the method finds timm's blocks the same way)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))
        self.drop_path: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.body(x))


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


@MODELS.register("resnet9")
def resnet9(in_chans: int, num_classes: int, *, width: PosInt = 64) -> nn.Module:
    """CIFAR ResNet-9 (Myrtle.ai / DAWNBench): 8 conv layers, 2 residual blocks."""
    w = width
    return nn.Sequential(
        conv_bn(in_chans, w),
        conv_bn(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w),
        conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
        conv_bn(4 * w, 8 * w), nn.MaxPool2d(2), Residual(8 * w),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(8 * w, num_classes, bias=False),
        Scale(0.125),  # keeps initial logits small, as in the original
    )


@MODELS.register("resnet18_cifar")
def resnet18_cifar(in_chans: int, num_classes: int) -> nn.Module:
    """timm's ResNet-18 with a 3x3 stride-1 stem and no max-pool, for 32x32 images."""
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes,
                              in_chans=in_chans)
    # timm's ImageNet stem (7x7 stride 2 + max-pool) would shrink 32x32 inputs to 8x8 at once.
    model.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as timm
    model.maxpool = nn.Identity()
    return model
