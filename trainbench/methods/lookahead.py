"""Lookahead (Zhang, Lucas, Hinton and Ba, "Lookahead Optimizer: k steps forward, 1 step back",
NeurIPS 2019).

Keeps a second, "slow" copy of the weights. The base optimizer takes ``k`` fast steps; then
the slow weights move ``alpha`` of the way to the fast ones, ``slow += alpha * (fast - slow)``,
and the fast weights restart from there. airbench uses it for its fastest CIFAR-10 runs.

Wraps ``state.optimizer`` in ``on_fit_start`` with timm's ``timm.optim.Lookahead``, which
shares ``param_groups`` with the base optimizer: the engine's LambdaLR (built over the base
optimizer) and momentum cycling keep working. One change to timm: timm creates the slow
weights lazily at the first sync, from the fast weights after k steps, so its first sync
does nothing and the first real interpolation happens at step 2k. Here, as in the paper
(and airbench), the slow weights start as the initial weights. They live in the wrapper's
own ``state`` (not the base optimizer's, where an entry would stop Adam from initialising
its moments), so they are not part of ``state_dict()``.

Recipe::

    methods:
      lookahead: {alpha: 0.5, k: 6}

Data-parallel runs: each rank wraps its own optimizer; the fast weights are identical on every
rank (DDP all-reduces the gradients before the step) and so are the slow weights, which
start from the identical initial weights and interpolate at the same steps.

Does not depend on the fraction of training, so it is well defined in cyclic runs. Evaluation
points see the current (fast) weights, which equal the slow ones when the step is a
multiple of ``k``: pick ``k`` dividing the steps between cycle ends for exact slow-weight points.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.optim import Lookahead as TimmLookahead

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.registry import Fraction, PosInt


class Lookahead(TimmLookahead):
    """timm's Lookahead with slow weights starting at the initial weights (as in the paper)."""

    def __init__(self, base_optimizer: torch.optim.Optimizer, alpha: float = 0.5, k: int = 6) -> None:
        super().__init__(base_optimizer, alpha=alpha, k=k)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p]["lookahead_slow_buff"] = p.detach().clone()

    @torch.no_grad()
    def update_slow(self, group: dict[str, Any]) -> None:
        fast = group["params"]
        if not fast:
            return
        slow = [self.state[p]["lookahead_slow_buff"] for p in fast]
        torch._foreach_lerp_(slow, fast, group["lookahead_alpha"])  # slow += alpha * (fast - slow)
        torch._foreach_copy_(fast, slow)


@METHODS.register("lookahead")
class LookaheadMethod(Method):
    """k fast steps, then slow weights move alpha of the way (Zhang et al. 2019)."""

    def __init__(self, *, alpha: Fraction = 0.5, k: PosInt = 6) -> None:
        self.alpha = alpha
        self.k = k

    def on_fit_start(self, state: TrainState) -> None:
        assert state.optimizer is not None
        # The wrapper shares the base optimizer's param_groups.
        state.optimizer = self.wrapper = Lookahead(state.optimizer, alpha=self.alpha, k=self.k)

    def _slow(self) -> list[torch.Tensor]:
        return [self.wrapper.state[p]["lookahead_slow_buff"]
                for group in self.wrapper.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        # The slow weights are not in the optimizer's state_dict (see the module docstring).
        return {"slow": self._slow()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self._slow(), list(state["slow"]))  # copy_ moves across devices
