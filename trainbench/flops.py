"""FLOP counting as ShrinkBench does it (Blalock, Gonzalez Ortiz, Frankle and Guttag, "What is
the State of Neural Network Pruning?", MLSys 2020; JJGO/shrinkbench ``metrics/flops.py``).

Only convolutions and linear layers count, in multiply-accumulates (MACs) for one input
image, biases and everything else (BatchNorm, activations, pooling) left out:

- convolution: ``Cout * (Cin / groups) * kh * kw * Hout * Wout`` (``* Dout`` for 3-d), with
  the output size measured, so stride, padding and dilation are exact;
- linear: ``in_features * out_features`` (times the positions it is applied to, when the
  input has extra dimensions).

``nonzero_flops`` scales each layer's count by the fraction of its weights that are nonzero
(``flops * nnz(weight) / numel(weight)``), ShrinkBench's "theoretical speedup" numerator: a
pruned weight saves its multiply-accumulates wherever it is applied. A pruned layer's
weight is ``weight_orig * weight_mask`` (``torch.nn.utils.prune``); zeros are counted, so
weights that are zero for any reason count as pruned.

The shapes come from forward hooks on one forward pass of a single zero image of the
dataset's shape (eval mode, no gradients); :func:`layer_flops` does it once per run, and
:func:`nonzero_flops` re-weights the stored counts at every evaluation without a forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

COUNTED = (nn.modules.conv._ConvNd, nn.Linear)


def module_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one call of a conv or linear ``module`` that produced ``output`` (batch of 1)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        per_position = module.out_channels * (module.in_channels // module.groups) * math.prod(
            module.kernel_size)
        return per_position * math.prod(output.shape[2:])
    assert isinstance(module, nn.Linear)
    positions = math.prod(output.shape[1:-1])  # tokens etc.; 1 for (batch, features)
    return module.in_features * module.out_features * positions


@torch.no_grad()
def layer_flops(model: nn.Module, input_shape: Sequence[int],
                device: torch.device | str = "cpu") -> dict[str, int]:
    """Dense MACs of every conv/linear module of ``model`` (by module name) for one input of
    ``input_shape`` (channels, height, width), measured with forward hooks. A module that
    runs several times in one forward pass counts every time."""
    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, COUNTED):
            def hook(mod: nn.Module, _inp: object, out: torch.Tensor, name: str = name) -> None:
                counts[name] = counts.get(name, 0) + module_macs(mod, out)
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counts


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The weight a module computes with: ``weight_orig * weight_mask`` while pruned."""
    if hasattr(module, "weight_mask") and hasattr(module, "weight_orig"):
        return module.weight_orig * module.weight_mask
    return module.weight


@torch.no_grad()
def nonzero_flops(model: nn.Module, flops: dict[str, int]) -> float:
    """ShrinkBench's nonzero FLOPs: each counted layer's MACs times its fraction of nonzero
    weights. One host read for the whole model."""
    modules = dict(model.named_modules())
    names = [n for n in flops if n in modules]
    if not names:
        return 0.0
    weights = [effective_weight(modules[n]) for n in names]
    nnz = torch.stack([torch.count_nonzero(w) for w in weights]).tolist()
    return float(sum(flops[n] * k / w.numel() for n, k, w in zip(names, nnz, weights, strict=True)))


def count_flops(model: nn.Module, input_shape: Sequence[int],
                device: torch.device | str = "cpu") -> tuple[int, float]:
    """``(flops, nonzero_flops)`` of ``model`` for one input of ``input_shape``."""
    per_layer = layer_flops(model, input_shape, device)
    return sum(per_layer.values()), nonzero_flops(model, per_layer)
