"""FLOP counting (ShrinkBench's definition): exact multiply-accumulates of a small known net,
nonzero FLOPs after zeroing weights, pruned (reparametrised) layers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from trainbench.flops import count_flops, layer_flops, nonzero_flops


def known_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),                       # 8x8 -> 8x8
        nn.BatchNorm2d(8), nn.ReLU(),                        # not counted
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2),  # 8x8 -> 4x4, grouped
        nn.Conv2d(16, 4, 1, bias=False),                     # 1x1 on 4x4
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    )


def test_dense_flops_of_a_known_net_by_hand() -> None:
    net = known_net()
    per_layer = layer_flops(net, (3, 8, 8))
    # conv: Cout * (Cin / groups) * kh * kw * Hout * Wout; linear: in * out
    assert per_layer == {"0": 8 * 3 * 9 * 64, "3": 16 * 4 * 9 * 16, "4": 4 * 16 * 1 * 16, "6": 64 * 10}
    assert per_layer == {"0": 13824, "3": 9216, "4": 1024, "6": 640}
    assert count_flops(net, (3, 8, 8)) == (24704, 24704.0)
    assert net.training  # restored


def test_nonzero_flops_scale_each_layer_by_its_nonzero_fraction() -> None:
    net = known_net()
    with torch.no_grad():
        net[0].weight.view(-1)[: 8 * 3 * 9 // 4] = 0   # a quarter of conv 0
        net[6].weight[:5] = 0                           # half the classifier
    flops, nz = count_flops(net, (3, 8, 8))
    assert flops == 24704
    assert nz == 13824 * 0.75 + 9216 + 1024 + 640 * 0.5


def test_pruned_layers_count_their_mask_and_modules_called_twice_count_twice() -> None:
    net = known_net()
    prune.l1_unstructured(net[4], "weight", amount=16)  # 16 of 64 weights: a quarter
    per_layer = layer_flops(net, (3, 8, 8))
    assert nonzero_flops(net, per_layer) == 13824 + 9216 + 1024 * 0.75 + 640

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x.flatten(1)))

    assert layer_flops(Twice(), (1, 2, 3)) == {"fc": 72}
