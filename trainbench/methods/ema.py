"""Exponential moving average of the weights (EMA; Polyak & Juditsky 1992, "Acceleration of
stochastic approximation by averaging"; the update as timm's ``ModelEmaV3`` does it).

Keeps an evaluation-only copy of the model whose weights follow the trained ones::

    ema = decay * ema + (1 - decay) * model          (every ``every`` optimizer steps)

Floating-point buffers (BatchNorm running statistics) are averaged the same way; integer
buffers (``num_batches_tracked``) are copied. Each evaluation point also evaluates the
average, in the columns ``test_acc_ema``, ``test_loss_ema``, ``test_ece_ema``.

**Warmup.** A decay close to 1 keeps the random initial weights in the average for a long
time; a warmup starts with small decays. ``warmup`` picks the rule for the decay of the
update that follows ``n`` earlier EMA updates (:func:`ema_decay`):

- ``none`` (default): ``decay`` throughout.
- ``tf``: ``min(decay, (1 + n) / (10 + n))`` (0.1, 0.18, 0.25, ...): TensorFlow's
  ``tf.train.ExponentialMovingAverage`` with ``num_updates``.
- ``timm``: timm's ``ModelEmaV3(use_warmup=True)`` as its training script drives it
  (``update(model, step=num_updates)``, counting this update): 0 for the first update (the
  average becomes a copy of the model), then ``min(decay, 1 - (1 + n / warmup_gamma) **
  -warmup_power)``, with ModelEmaV3's defaults ``warmup_gamma: 1.0``, ``warmup_power: 2/3``
  (0.37, 0.52, 0.60, ...; 0.999 after about 31.6k updates).

``true`` / ``false`` are accepted as the earlier spelling of ``tf`` / ``none``.

The update is sync-free: the decay is a host float and the tensors are updated with
``torch._foreach_lerp_``/``_foreach_copy_``, so no device value is read on the host. (torch's
``AveragedModel.update_parameters`` does ``bool(self.n_averaged == 0)`` on every call, one
host-device synchronisation per step, which is why it is not used here.)

Recipe::

    methods:
      ema: {decay: 0.999, warmup: none, every: 1}
      ema: {decay: 0.9999, warmup: timm, warmup_power: 0.75}

Runs at order 10: after model surgery (its copy has the final architecture) and before
compilation (it copies the plain module). Methods that re-register parameters during
training (``torch.nn.utils.prune`` turns ``weight`` into ``weight_orig`` + a mask) leave
the average following the unmasked ``weight_orig``.

Data-parallel runs: every rank keeps its own copy, made from identical weights and updated
from the identical (all-reduced) weights at the same steps, so the copies are identical; only
floating-point buffers (BatchNorm running statistics, per rank without ``model.sync_bn``) may
differ, and evaluation takes rank 0's (the engine broadcasts the evaluated model's buffers),
which is also the copy checkpoints save.

Cyclic runs: the average depends on the step count, not on the fraction of training, so it
is well defined in a cyclic run. It is not reset at cycle restarts: at a cycle end it spans
the recent steps of that cycle and, with a decay close to 1 and short cycles, weights from
before the restart (its horizon is about ``every / (1 - decay)`` steps).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import torch
from torch import nn

from trainbench.methods.base import METHODS, Evaluate, Method, TrainState
from trainbench.registry import PosFloat, PosInt, Range

T = TypeVar("T")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind ``torch.compile``'s wrapper (``OptimizedModule``) and
    ``DistributedDataParallel``, in any nesting: what checkpoints and model.pt save."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, DistributedDataParallel):
            model = model.module
        else:
            return model


def copy_model(model: nn.Module, who: str,
               copier: Callable[[nn.Module], T] = copy.deepcopy) -> T:  # type: ignore[assignment]
    """``copier`` (default: a deep copy) applied to the plain ``model``, or an error that
    says why the model cannot be copied."""
    try:
        return copier(unwrap(model))
    except RuntimeError as e:  # e.g. a pruned model: its 'weight' is a non-leaf tensor
        raise RuntimeError(
            f"{who}: cannot copy the model ({e}). A method that reparametrises the model "
            "(torch.nn.utils.prune, weight_norm) before the averaged copy is made must "
            "remove its reparametrisation first, or run after this method.") from e


def model_tensors(model: nn.Module, names: Sequence[str]) -> list[torch.Tensor]:
    """The parameters and buffers of ``model`` called ``names`` (detached), in that order."""
    model = unwrap(model)
    found = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    missing = [n for n in names if n not in found]
    if missing:
        raise RuntimeError(f"the model no longer has {', '.join(missing[:5])}: a method changed "
                           "its parameters after the averaged copy was made.")
    return [found[n].detach() for n in names]


Warmup = Literal["none", "tf", "timm"]


def ema_decay(decay: float, n_updates: int, warmup: Warmup = "none", *, gamma: float = 1.0,
              power: float = 2 / 3) -> float:
    """The decay of the update that follows ``n_updates`` earlier updates (a host float),
    under the warmup rule ``warmup`` (see the module docstring)."""
    n = n_updates
    if warmup == "tf":
        return min(decay, (1 + n) / (10 + n))
    if warmup == "timm":  # ModelEmaV3.get_decay(step=n + 1) with use_warmup=True
        return 0.0 if n <= 0 else max(min(decay, 1 - (1 + n / gamma) ** -power), 0.0)
    if warmup == "none":
        return decay
    raise ValueError(f"unknown EMA warmup {warmup!r}; one of none, tf, timm")


@torch.no_grad()
def ema_update_(ema_tensors: Sequence[torch.Tensor], model_tensors: Sequence[torch.Tensor],
                decay: float) -> None:
    """In place, without a host sync: ``ema = decay * ema + (1 - decay) * model`` for
    floating-point tensors; other tensors (integer counters) are copied."""
    ema_f, model_f, ema_o, model_o = [], [], [], []
    for e, m in zip(ema_tensors, model_tensors, strict=True):
        if e.is_floating_point():
            ema_f.append(e)
            model_f.append(m)
        else:
            ema_o.append(e)
            model_o.append(m)
    if ema_f:
        torch._foreach_lerp_(ema_f, model_f, 1.0 - decay)
    if ema_o:
        torch._foreach_copy_(ema_o, model_o)


@METHODS.register("ema")
class EMA(Method):
    """Exponential moving average of the weights, evaluated at each point (Polyak averaging)."""

    columns: ClassVar[tuple[str, ...]] = ("test_acc_ema", "test_loss_ema", "test_ece_ema")
    order: ClassVar[int] = 10

    def __init__(self, *, decay: Annotated[float, Range(gt=0, lt=1)] = 0.999,
                 warmup: Warmup | bool = "none", warmup_gamma: PosFloat = 1.0,
                 warmup_power: PosFloat = 2 / 3, every: PosInt = 1) -> None:
        if isinstance(warmup, bool):  # the earlier spelling: true was TensorFlow's rule
            warmup = "tf" if warmup else "none"
        self.decay, self.warmup, self.every = decay, warmup, every
        self.gamma, self.power = warmup_gamma, warmup_power
        self.updates = 0
        self.ema: nn.Module | None = None

    def on_init(self, state: TrainState) -> None:
        self.ema = copy_model(state.model, "ema").eval().requires_grad_(False)

    def on_fit_start(self, state: TrainState) -> None:
        # The pairs are resolved once, by name, against the model being trained (compiled or
        # not); the step loop then only launches two foreach kernels.
        assert self.ema is not None
        names = [n for n, _ in self.ema.named_parameters()] + [n for n, _ in self.ema.named_buffers()]
        self._ema_tensors = model_tensors(self.ema, names)
        self._model_tensors = model_tensors(state.model, names)

    def after_step(self, state: TrainState) -> None:
        if state.step % self.every:
            return
        ema_update_(self._ema_tensors, self._model_tensors,
                    ema_decay(self.decay, self.updates, self.warmup, gamma=self.gamma, power=self.power))
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        assert self.ema is not None
        return {"ema": self.ema.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.ema is not None
        self.ema.load_state_dict(state["ema"])  # in place: the update's tensor lists stay valid
        self.updates = state["updates"]

    def on_eval(self, state: TrainState, evaluate: Evaluate) -> dict[str, float]:
        assert self.ema is not None
        r = evaluate(self.ema)
        return {"test_acc_ema": r["test_acc"], "test_loss_ema": r["test_loss"],
                "test_ece_ema": r["test_ece"]}
