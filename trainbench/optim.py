"""Optimizers (recipe ``optimizer:``), thin factories over ``torch.optim``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from trainbench.registry import Fraction, NonNegFloat, PosFloat, Registry, instantiate

ParamGroups = list[dict[str, Any]]
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def sgd(params: ParamGroups, *, lr: PosFloat = 0.1, momentum: Fraction = 0.9,
        nesterov: bool = False, weight_decay: NonNegFloat = 5e-4) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum and L2 weight decay (torch.optim.SGD)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov,
                           weight_decay=weight_decay)


def _check_sgd(recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
    opt = recipe["optimizer"]
    if opt["nesterov"] and opt["momentum"] == 0:
        yield ("optimizer", "nesterov"), "Nesterov needs momentum > 0; set optimizer.momentum."


sgd.check_recipe = _check_sgd  # type: ignore[attr-defined]


@OPTIMIZERS.register("adam")
def adam(params: ParamGroups, *, lr: PosFloat = 1e-3, betas: list[Fraction] = [0.9, 0.999],  # noqa: B006
         eps: PosFloat = 1e-8, weight_decay: NonNegFloat = 0.0) -> torch.optim.Optimizer:
    """Adam with L2 weight decay added to the gradient (torch.optim.Adam)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params: ParamGroups, *, lr: PosFloat = 1e-3, betas: list[Fraction] = [0.9, 0.999],  # noqa: B006
          eps: PosFloat = 1e-8, weight_decay: NonNegFloat = 0.01) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter; torch.optim.AdamW)."""
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


def param_groups(model: nn.Module, exempt_norm_bias: bool) -> ParamGroups:
    """One group, or two when norm weights and biases (1-d tensors) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not exempt_norm_bias:
        return [{"params": params}]
    return [
        {"params": [p for p in params if p.ndim > 1]},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, section: dict[str, Any]) -> torch.optim.Optimizer:
    groups = param_groups(model, section["exempt_norm_bias"])
    return instantiate(OPTIMIZERS.get(section["name"]), section, groups)
