"""Stochastic depth (Huang, Sun, Liu, Sedra and Weinberger, "Deep Networks with Stochastic
Depth", ECCV 2016).

During training each residual branch is dropped at random (the block becomes the identity)
and the surviving branches are scaled by ``1 / survival`` so that evaluation uses the plain
network (identity at eval; the paper instead scales by the survival probability at test
time, which is the same in expectation). The drop probability decays linearly with depth
(the paper's linear-decay rule): block ``l`` of ``L`` drops with probability
``l / L * drop_rate``, i.e. survives with ``p_l = 1 - l / L * (1 - p_L)``, ``p_L = 1 - drop_rate``
(the paper's default ``p_L = 0.5`` for its 110-layer ResNets; smaller nets want less).

- Builtin residual models (``resnet9``, ``resnet18_cifar``): every residual block (a module
  with a ``drop_path`` attribute: the builtin ``Residual`` and timm's ResNet blocks) gets
  ``torchvision.ops.StochasticDepth(l / L * drop_rate, mode)`` on its branch, blocks counted
  in module order. ``mode: row`` drops per sample (timm's and torchvision's convention),
  ``mode: batch`` drops the branch for the whole batch (the paper's).
- ``timm:<name>`` models: timm's own ``drop_path_rate`` (per-sample DropPath with timm's
  linear rule, which for ResNets is ``drop_rate * i / (L - 1)`` for blocks ``i = 0..L-1``):
  the model is rebuilt with it at ``on_init`` and given the original initial weights (with
  the global RNG untouched), so the run starts from the same weights as without the method.
  ``mode: batch`` is refused there, and so is ``drop_path_rate`` in ``model.kwargs``.
- Other models (``small_cnn``, ``torchvision:<name>``) are refused at validation.

The random draws use the global torch RNG (seeded from the recipe's seed and checkpointed),
like dropout; no host sync. Runs at order -30: the first model surgery, so channels-last,
BlurPool, the averaged copies (EMA, SWA) and compilation all see the final model.

Recipe::

    methods:
      stochastic_depth: {drop_rate: 0.5, mode: row}

Does not depend on the fraction of training, so it is well defined in cyclic runs.
DDP: each rank draws its own per-sample masks for its slice (as dropout does).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal

import torch
from torch import nn
from torchvision.ops import StochasticDepth as TorchvisionStochasticDepth

from trainbench.errors import InputError
from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.methods.ema import unwrap
from trainbench.registry import Range

FIELD = ("methods", "stochastic_depth")
DropRate = Annotated[float, Range(ge=0, lt=1)]


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """The residual blocks of a builtin model, in module (depth) order: modules with a
    ``drop_path`` attribute (the builtin ``Residual``; timm's ResNet blocks)."""
    return [m for m in unwrap(model).modules() if hasattr(m, "drop_path")]


def drop_rates(num_blocks: int, drop_rate: float) -> list[float]:
    """The paper's linear-decay rule: block ``l = 1..L`` drops with ``l / L * drop_rate``."""
    return [k / num_blocks * drop_rate for k in range(1, num_blocks + 1)]


def apply_stochastic_depth(model: nn.Module, drop_rate: float, mode: str = "row") -> list[float]:
    """Put ``StochasticDepth`` on every residual branch of ``model`` (in place), by the
    linear-decay rule; returns the blocks' drop probabilities."""
    blocks = residual_blocks(model)
    rates = drop_rates(len(blocks), drop_rate)
    for block, p in zip(blocks, rates, strict=True):
        block.drop_path = TorchvisionStochasticDepth(p, mode)
    return rates


def is_timm(model_name: str) -> bool:
    return model_name.startswith("timm:")


def with_drop_path_rate(section: dict[str, Any], drop_rate: float) -> dict[str, Any]:
    return {**section, "kwargs": {**section.get("kwargs", {}), "drop_path_rate": drop_rate}}


@METHODS.register("stochastic_depth")
class StochasticDepth(Method):
    """Drop residual branches at random, linear decay with depth (Huang et al. 2016)."""

    order: ClassVar[int] = -30

    def __init__(self, *, drop_rate: DropRate = 0.5, mode: Literal["row", "batch"] = "row") -> None:
        self.drop_rate = drop_rate
        self.mode = mode

    def on_init(self, state: TrainState) -> None:
        section = state.recipe["model"]
        if not is_timm(section["name"]):
            if not apply_stochastic_depth(state.model, self.drop_rate, self.mode):
                raise InputError(f"methods.stochastic_depth: model {section['name']} has no residual "
                                 "blocks to drop.")
            return
        from trainbench.models import build_model

        old = unwrap(state.model)
        with torch.random.fork_rng(devices=[]):  # the rest of the run draws as without the method
            new = build_model(with_drop_path_rate(section, self.drop_rate), state.data.shape[0],
                              state.num_classes)
        new.load_state_dict(old.state_dict())
        state.model = new.to(state.device)

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        p, model = recipe["methods"]["stochastic_depth"], recipe["model"]
        name: str = model["name"]
        if name.startswith("torchvision:"):
            yield (*FIELD,), (f"works with the builtin residual models (resnet9, resnet18_cifar) and "
                              f"timm models (timm's drop_path_rate), not {name}; use one of those.")
            return
        if is_timm(name):
            if "drop_path_rate" in model.get("kwargs", {}):
                yield ("model", "kwargs", "drop_path_rate"), (
                    "is set by methods.stochastic_depth.drop_rate; remove it from model.kwargs "
                    "(or drop the method and keep timm's own setting).")
                return
            if p["mode"] != "row":
                yield (*FIELD, "mode"), (f"timm models drop paths per sample (timm's DropPath); "
                                         f"set mode: row for {name}.")
            problem = _timm_refuses_drop_path_rate(recipe)
            if problem:
                yield (*FIELD,), f"{name} does not take timm's drop_path_rate ({problem}); " \
                                 "pick a timm model with residual blocks (resnet, convnext, vit, ...)."
            return
        if not _builtin_has_blocks(recipe):
            yield (*FIELD,), (f"model {name} has no residual blocks to drop; use resnet9, "
                              "resnet18_cifar or a timm model.")


def _shape(recipe: dict[str, Any]) -> tuple[int, int]:
    from trainbench.data import dataset_shape

    shape = dataset_shape(recipe["data"]["dataset"], recipe["data"])
    return shape.channels, shape.num_classes


def _builtin_has_blocks(recipe: dict[str, Any]) -> bool:
    """Built on the meta device (no memory, no weights computed), as the run would build it."""
    from trainbench.models import build_model

    with torch.device("meta"):
        return bool(residual_blocks(build_model(recipe["model"], *_shape(recipe))))


def _timm_refuses_drop_path_rate(recipe: dict[str, Any]) -> str | None:
    from trainbench.models import _meta_build_error

    section = with_drop_path_rate(recipe["model"], 0.1)
    return _meta_build_error(section["name"], json.dumps(section["kwargs"], sort_keys=True),
                             *_shape(recipe))
