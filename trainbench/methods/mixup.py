"""Mixup (Zhang, Cisse, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk Minimization", ICLR 2018).

Trains on convex combinations of pairs of examples and of their labels: for a batch ``x`` with
labels ``y``, a random permutation ``perm`` of the batch and ``lam ~ Beta(alpha, alpha)``,

    x_mixed = lam * x + (1 - lam) * x[perm]
    target  = lam * onehot(y) + (1 - lam) * onehot(y[perm])

and ``state.loss_fn`` (cross-entropy, which accepts class probabilities) is applied to the soft
targets. One ``lam`` per batch, drawn on the host with ``state.host_rng`` (no device sync); the
permutation is drawn on the device with ``state.generator``. Both come from the recipe's seed,
so a run is reproducible.

Recipe::

    methods:
      mixup: {alpha: 0.2, prob: 1.0}   # prob: the probability that a batch is mixed

Differences from ``timm.data.Mixup``: no label smoothing here, ever (timm smooths by 0.1 by default).
Label smoothing is its own method (``label_smoothing``), done by
``nn.CrossEntropyLoss(label_smoothing=e)``, which smooths these soft targets exactly once;
smoothing here as well would smooth twice. Pairs come from a random permutation rather than
from flipping the batch, so any batch size works (odd sizes, and 1, where the permutation is
the identity and the batch is unchanged up to rounding); no even batch size or ``drop_last``
is needed, so there is no batch-size check.
Inputs are never modified in place.

With CutMix: when the recipe has both ``mixup`` and ``cutmix``, exactly one of them is applied
to each batch. The CutMix method handles both: per batch it picks CutMix with probability
``cutmix.switch_prob`` and mixup otherwise, then applies the chosen one with that method's own
``prob`` and ``alpha`` (mixup's read from ``recipe["methods"]["mixup"]``). This method then
does nothing (it decides so in ``on_fit_start``). The engine is unchanged by this rule.

Data-parallel runs (several processes, :mod:`trainbench.distributed`): ``lam`` and the
"mix this batch?" draw come from ``state.host_rng``, seeded alike on every rank and drawn as
often, so every rank mixes with the same ``lam``; the permutation (``state.generator``, also
seeded alike) pairs images within the rank's own slice of the global batch. The global batch
is therefore mixed with one ``lam`` as in a single process, but pairs never cross slices.

Cyclic runs: does not depend on the fraction of training, so it is well defined in cyclic runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.registry import Fraction, PosFloat


def mix_targets(y: torch.Tensor, num_classes: int, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``lam * onehot(y) + (1 - lam) * onehot(y[perm])`` as float class probabilities.

    ``y`` holds class indices (shape ``[B]``) or is already soft (``[B, num_classes]``, e.g.
    from an earlier mix); soft targets are mixed as they are. No smoothing is applied."""
    probs = F.one_hot(y, num_classes).float() if y.dim() == 1 else y.float()
    return probs * lam + probs[perm] * (1 - lam)


def mixup_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, lam: float,
                perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed images ``lam * x + (1 - lam) * x[perm]`` (a new tensor; ``x`` is not changed)
    and their soft targets (:func:`mix_targets`)."""
    return x * lam + x[perm] * (1 - lam), mix_targets(y, num_classes, lam, perm)


def batch_permutation(state: TrainState, x: torch.Tensor) -> torch.Tensor:
    """A random permutation of the batch, drawn on x's device from the method generator."""
    return torch.randperm(x.shape[0], device=x.device, generator=state.generator)


@METHODS.register("mixup")
class Mixup(Method):
    """Convex combinations of image pairs and their labels (Zhang et al. 2018)."""

    def __init__(self, *, alpha: PosFloat = 0.2, prob: Fraction = 1.0) -> None:
        self.alpha = alpha
        self.prob = prob
        self.active = True  # False when CutMix in the same recipe does the mixing

    def on_fit_start(self, state: TrainState) -> None:
        # Coordination rule: with cutmix in the recipe, the CutMix method applies mixup too.
        self.active = "cutmix" not in state.recipe.get("methods", {})

    def mix(self, state: TrainState, x: torch.Tensor,
            y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix one batch with probability ``prob`` (host draws only; no device sync)."""
        if not state.host_rng.random() < self.prob:
            return x, y
        lam = float(state.host_rng.beta(self.alpha, self.alpha))
        return mixup_batch(x, y, state.num_classes, lam, batch_permutation(state, x))

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mix(state, x, y) if self.active else (x, y)
