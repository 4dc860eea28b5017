"""BlurPool anti-aliasing (Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019).

Puts a fixed low-pass (binomial) filter in front of every spatial downsampling, following
Composer's ``apply_blurpool`` (``blur_first=True``), which Portes et al. (2022) benchmarked:

- a ``Conv2d`` with stride > 1 and at least ``min_channels`` input channels becomes
  blur (stride 1) then the same strided convolution (its weights are kept, not copied);
- a ``MaxPool2d`` with stride > 1 becomes max (same window, stride 1) then a blur with the
  pool's stride (the paper's MaxBlurPool).

The blur is timm's ``timm.layers.BlurPool2d`` (filter: outer product of the binomial
coefficients C(n-1, k) / 2^(n-1), summing to 1) with zero ("same") padding, as Composer
does, split so that every output shape equals the replaced layer's for any input size
(even filter sizes pad one more pixel on the bottom/right). Zero padding, rather than timm's
default reflect padding, also works on the 1x1 feature maps small images reach.
Left alone: max-pools with ``ceil_mode`` or ``return_indices``, subclasses of ``MaxPool2d``
(e.g. timm's dynamic "same" padding), layers already blurred, and the root module itself.
A model with nothing to replace is left unchanged, silently (0 layers replaced).

Recipe::

    methods:
      blurpool: {replace_convs: true, replace_maxpools: true, filt_size: 3}

Changes the architecture only, so it is well defined in cyclic runs (the paper found its
gap within about 0.1 pp). Runs at order -10, with model surgery, before the optimizer is
built.
"""

from __future__ import annotations

from typing import Annotated

import torch
from timm.layers import BlurPool2d
from torch import nn

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.registry import NonNegInt, Range


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def blur_layer(channels: int | None, filt_size: int, stride: int | tuple[int, int] = 1, *,
               device: torch.device | None = None, dtype: torch.dtype | None = None) -> BlurPool2d:
    """timm's BlurPool2d with zero "same" padding: output size ceil(size / stride) per axis."""
    blur = BlurPool2d(channels, filt_size=filt_size, stride=1, pad_mode="constant",
                      device=device, dtype=dtype)
    blur.stride = _pair(stride)
    before = (filt_size - 1) // 2
    after = filt_size - 1 - before
    blur.padding = [before, after, before, after]  # F.pad order: left, right, top, bottom
    return blur


class BlurConv2d(nn.Sequential):
    """Blur (stride 1) then the original strided convolution (Composer's blur_first)."""

    def __init__(self, conv: nn.Conv2d, filt_size: int) -> None:
        w = conv.weight
        super().__init__()
        # a (C, 1, k, k) filter is contiguous in both NCHW and channels-last: no conversion needed
        self.blur = blur_layer(conv.in_channels, filt_size, 1, device=w.device, dtype=w.dtype)
        self.conv = conv


class BlurMaxPool2d(nn.Sequential):
    """Max over the same window at stride 1, then a blur with the pool's stride (MaxBlurPool)."""

    def __init__(self, pool: nn.MaxPool2d, filt_size: int, *, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.max = nn.MaxPool2d(pool.kernel_size, stride=1, padding=pool.padding,
                                dilation=pool.dilation)
        self.blur = blur_layer(None, filt_size, _pair(pool.stride), device=device, dtype=dtype)


def apply_blurpool(model: nn.Module, *, replace_convs: bool = True, replace_maxpools: bool = True,
                   filt_size: int = 3, min_channels: int = 16) -> int:
    """Add blur filters before the strided convolutions and max-pools of ``model``, in place.

    Returns the number of layers replaced (0: the model is unchanged). New filters are put on
    the device and in the floating dtype of the model's first parameter (CPU float32 if none).
    """
    if not 2 <= filt_size <= 7:
        raise ValueError(f"filt_size must be 2..7, got {filt_size}")
    ref = next(model.parameters(), None)
    device = ref.device if ref is not None else None
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else None

    targets: list[tuple[nn.Module, str, nn.Module]] = []

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, BlurConv2d | BlurMaxPool2d):
                continue  # already anti-aliased: applying twice changes nothing
            if replace_convs and isinstance(child, nn.Conv2d):
                if max(child.stride) > 1 and child.in_channels >= min_channels:
                    targets.append((parent, name, BlurConv2d(child, filt_size)))
            elif replace_maxpools and type(child) is nn.MaxPool2d:  # not subclasses (dynamic pads)
                stride = _pair(child.stride)
                if max(stride) > 1 and not child.ceil_mode and not child.return_indices:
                    targets.append((parent, name, BlurMaxPool2d(child, filt_size, device=device,
                                                                dtype=dtype)))
            else:
                visit(child)

    visit(model)
    for parent, name, new in targets:
        setattr(parent, name, new)
    return len(targets)


@METHODS.register("blurpool")
class BlurPool(Method):
    """Blur before strided convolutions and max-pools (Zhang 2019), as in Composer."""

    order = -10

    def __init__(self, *, replace_convs: bool = True, replace_maxpools: bool = True,
                 filt_size: Annotated[int, Range(ge=2, le=7)] = 3,
                 min_channels: NonNegInt = 16) -> None:
        self.replace_convs = replace_convs
        self.replace_maxpools = replace_maxpools
        self.filt_size = filt_size
        self.min_channels = min_channels
        self.replaced = 0

    def on_init(self, state: TrainState) -> None:
        self.replaced = apply_blurpool(state.model, replace_convs=self.replace_convs,
                                       replace_maxpools=self.replace_maxpools,
                                       filt_size=self.filt_size, min_channels=self.min_channels)
