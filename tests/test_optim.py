"""Optimizers from resolved recipe sections: hyper-parameters and weight-decay groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainbench.optim import OPTIMIZERS, build_optimizer


def model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=True),  # weight ndim 4, bias ndim 1
        nn.BatchNorm2d(4),  # weight, bias ndim 1
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 5),  # weight ndim 2, bias ndim 1
    )


def ids(params) -> set[int]:
    return {id(p) for p in params}


def split(m: nn.Sequential) -> tuple[set[int], set[int]]:
    conv, bn, _, lin = m
    return ids([conv.weight, lin.weight]), ids([conv.bias, bn.weight, bn.bias, lin.bias])


SGD = {"name": "sgd", "exempt_norm_bias": True, "lr": 0.1, "momentum": 0.9, "nesterov": True,
       "weight_decay": 5e-4}
ADAM = {"name": "adam", "exempt_norm_bias": True, "lr": 0.002, "betas": [0.8, 0.99], "eps": 1e-7,
        "weight_decay": 1e-4}
ADAMW = {"name": "adamw", "exempt_norm_bias": True, "lr": 0.003, "betas": [0.85, 0.95], "eps": 1e-6,
         "weight_decay": 0.05}


@pytest.mark.parametrize(("section", "cls"), [(SGD, torch.optim.SGD), (ADAM, torch.optim.Adam),
                                              (ADAMW, torch.optim.AdamW)])
def test_exempt_norm_bias_groups(section: dict, cls: type) -> None:
    m = model()
    opt = build_optimizer(m, section)
    assert type(opt) is cls
    decayed, exempt = split(m)
    assert len(opt.param_groups) == 2
    g_decay, g_exempt = opt.param_groups
    assert ids(g_decay["params"]) == decayed
    assert ids(g_exempt["params"]) == exempt
    assert g_decay["weight_decay"] == section["weight_decay"]
    assert g_exempt["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in g_decay["params"]) and all(p.ndim <= 1 for p in g_exempt["params"])
    # every parameter exactly once
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(m.parameters())) == 6
    assert g_decay["lr"] == g_exempt["lr"] == section["lr"]


@pytest.mark.parametrize("section", [SGD, ADAM, ADAMW])
def test_one_group_without_exemption(section: dict) -> None:
    m = model()
    opt = build_optimizer(m, {**section, "exempt_norm_bias": False})
    assert len(opt.param_groups) == 1
    assert ids(opt.param_groups[0]["params"]) == ids(m.parameters())
    assert opt.param_groups[0]["weight_decay"] == section["weight_decay"]


def test_sgd_hyperparameters() -> None:
    opt = build_optimizer(model(), SGD)
    d = opt.defaults
    assert (d["lr"], d["momentum"], d["nesterov"], d["weight_decay"]) == (0.1, 0.9, True, 5e-4)
    assert d["dampening"] == 0


@pytest.mark.parametrize(("section", "cls"), [(ADAM, torch.optim.Adam), (ADAMW, torch.optim.AdamW)])
def test_adam_hyperparameters(section: dict, cls: type) -> None:
    opt = build_optimizer(model(), section)
    d = opt.defaults
    assert type(opt) is cls
    assert d["lr"] == section["lr"]
    assert d["betas"] == tuple(section["betas"])  # list in YAML, tuple for torch
    assert d["eps"] == section["eps"]
    assert d["weight_decay"] == section["weight_decay"]


def test_factory_defaults() -> None:
    # what a recipe gets when it names the optimizer only
    m = model()
    sgd = build_optimizer(m, {"name": "sgd", "exempt_norm_bias": False}).defaults
    assert (sgd["lr"], sgd["momentum"], sgd["nesterov"], sgd["weight_decay"]) == (0.1, 0.9, False, 5e-4)
    adam = build_optimizer(m, {"name": "adam", "exempt_norm_bias": False}).defaults
    assert (adam["lr"], adam["betas"], adam["eps"], adam["weight_decay"]) == (1e-3, (0.9, 0.999), 1e-8, 0.0)
    adamw = build_optimizer(m, {"name": "adamw", "exempt_norm_bias": False}).defaults
    assert (adamw["lr"], adamw["betas"], adamw["eps"], adamw["weight_decay"]) == (
        1e-3, (0.9, 0.999), 1e-8, 0.01)


def test_frozen_parameters_are_left_out() -> None:
    m = model()
    m[0].weight.requires_grad_(False)
    opt = build_optimizer(m, SGD)
    all_ids = ids(p for g in opt.param_groups for p in g["params"])
    assert id(m[0].weight) not in all_ids and len(all_ids) == 5


def test_exempt_group_really_gets_no_decay() -> None:
    # with zero gradients, one SGD step changes only the decayed weights (by lr * wd * w)
    m = model()
    opt = build_optimizer(m, {**SGD, "momentum": 0.0, "nesterov": False})
    before = {id(p): p.detach().clone() for p in m.parameters()}
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    _, exempt = split(m)
    for p in m.parameters():
        if id(p) in exempt:
            assert torch.equal(p, before[id(p)])
        else:
            torch.testing.assert_close(p.detach(), before[id(p)] * (1 - 0.1 * 5e-4), rtol=1e-6, atol=0)


def test_unknown_optimizer() -> None:
    with pytest.raises(KeyError, match="unknown optimizer 'sdg'"):
        build_optimizer(model(), {"name": "sdg", "exempt_norm_bias": False})
    assert {"sgd", "adam", "adamw"} <= set(OPTIMIZERS.names())
