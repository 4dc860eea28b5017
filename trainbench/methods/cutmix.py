"""CutMix (Yun, Han, Oh, Chun, Choe, Yoo, "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features", ICCV 2019).

Pastes a rectangle from another image of the batch (``x[perm]``, a random permutation) into
each image, and mixes the labels by area: the original label keeps the weight
``lam = 1 - box_area / (H * W)`` of the pixels it still owns, the pasted one gets ``1 - lam``.
The box follows ``timm``'s ``rand_bbox``: a side ratio ``sqrt(1 - lam0)`` with
``lam0 ~ Beta(alpha, alpha)``, a uniformly random centre, clipped at the image border; the
label weight is always recomputed from the clipped box (timm's ``correct_lam``), so it matches
the pasted area exactly. With ``minmax: [min, max]`` (timm's ``cutmix_minmax``) ``alpha`` is
not used: each box side is a uniform fraction in ``[min, max]`` of the image side (in whole
pixels, rounded down) and the box lies wholly inside the image.

Host-side draws (``lam0``, box, switch) use ``state.host_rng``, the permutation is drawn on the
device with ``state.generator``: no device sync, and one seed reproduces the run.

Recipe::

    methods:
      cutmix: {alpha: 1.0, prob: 1.0}          # prob: the probability that a batch is mixed
      # or: cutmix: {minmax: [0.3, 0.7]}       # box side ratio uniform in [0.3, 0.7]

With mixup: when the recipe has both ``cutmix`` and ``mixup``, exactly one of them is applied
to each batch, never both. This method handles both: per batch it draws CutMix with
probability ``switch_prob`` and mixup otherwise, then applies the chosen method with that
method's own ``prob`` and ``alpha`` (mixup's parameters read from ``recipe["methods"]["mixup"]``),
so a fraction ``switch_prob * prob`` of batches get CutMix and ``(1 - switch_prob) * mixup.prob``
get mixup. The Mixup method then does nothing (it decides so in ``on_fit_start``); the engine is
unchanged by this rule. ``switch_prob`` is unused without mixup. Example::

    methods:
      mixup: {alpha: 0.2}
      cutmix: {alpha: 1.0, switch_prob: 0.5}

Like mixup: labels are never smoothed here (use the ``label_smoothing`` method, which smooths
the soft targets once in the loss); pairs come from a permutation, so any batch size works
(odd, or 1: the identity, batch unchanged) and no even batch size is needed; the input batch is
not modified in place (timm's Mixup pastes into it).

Data-parallel runs: ``lam``, the box and the CutMix/mixup switch are host draws from
``state.host_rng`` (seeded alike on every rank, drawn as often), so every rank pastes the same
box; the permutation pairs images within the rank's own slice of the global batch.

Cyclic runs: does not depend on the fraction of training, so it is well defined in cyclic runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.methods.mixup import Mixup, batch_permutation, mix_targets
from trainbench.registry import Fraction, PosFloat, instantiate

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1): rows y0:y1, columns x0:x1


def cutmix_box(h: int, w: int, lam: float, rng: np.random.Generator,
               minmax: Sequence[float] | None = None) -> Box:
    """A random box ``(y0, y1, x0, x1)`` in an ``h x w`` image, as plain ints.

    Without ``minmax`` (timm's ``rand_bbox``): sides ``int(h * sqrt(1 - lam))`` and
    ``int(w * sqrt(1 - lam))`` around a uniformly random centre pixel, extending half a side
    (rounded down) each way, clipped to the image; so the box may be smaller than asked at the
    borders, or empty. With ``minmax = (lo, hi)`` ``lam`` is ignored: each side is
    ``int(side * u)`` with ``u`` uniform in ``[lo, hi]``, drawn separately for height and
    width, placed uniformly wholly inside the image."""
    if minmax is not None:
        lo, hi = minmax
        if not 0 < lo < hi <= 1:
            raise ValueError(f"cutmix minmax must satisfy 0 < min < max <= 1, got {list(minmax)}")
        cut_h, cut_w = int(h * rng.uniform(lo, hi)), int(w * rng.uniform(lo, hi))
        y0 = int(rng.integers(0, h - cut_h, endpoint=True))
        x0 = int(rng.integers(0, w - cut_w, endpoint=True))
        return y0, y0 + cut_h, x0, x0 + cut_w
    ratio = math.sqrt(1 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    y0, y1 = min(max(cy - cut_h // 2, 0), h), min(max(cy + cut_h // 2, 0), h)
    x0, x1 = min(max(cx - cut_w // 2, 0), w), min(max(cx + cut_w // 2, 0), w)
    return y0, y1, x0, x1


def cutmix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, box: Box,
                 perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste ``x[perm]``'s ``box`` into each image of ``x`` (``[B, C, H, W]``).

    Returns the new images, soft targets (:func:`mix_targets`) and ``lam``, the weight of the
    original label: ``1 - box_area / (H * W)``, exactly the share of pixels left unchanged."""
    y0, y1, x0, x1 = box
    h, w = x.shape[-2:]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    # Clone then paste, never paste into x: a caller may keep a reference to the batch (a
    # method holding clean images, a test comparing before and after, a view into a dataset
    # kept on the device), and an in-place paste (as in timm's Mixup) would alter it silently.
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return out, mix_targets(y, num_classes, lam, perm), lam


@METHODS.register("cutmix")
class CutMix(Method):
    """Paste a box from another image; labels mixed by area (Yun et al. 2019)."""

    def __init__(self, *, alpha: PosFloat = 1.0, minmax: list[Fraction] | None = None,
                 prob: Fraction = 1.0, switch_prob: Fraction = 0.5) -> None:
        self.alpha = alpha
        self.minmax = minmax
        self.prob = prob
        self.switch_prob = switch_prob
        self.mixup: Mixup | None = None  # set in on_fit_start when the recipe also has mixup

    def on_fit_start(self, state: TrainState) -> None:
        # Coordination rule: with mixup in the recipe, this method applies mixup too (and the
        # Mixup method stands aside), so that one batch is never mixed twice.
        methods = state.recipe.get("methods", {})
        self.mixup = instantiate(Mixup, methods["mixup"] or {}) if "mixup" in methods else None

    def mix(self, state: TrainState, x: torch.Tensor,
            y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CutMix one batch with probability ``prob`` (host draws only; no device sync)."""
        rng = state.host_rng
        if not rng.random() < self.prob:
            return x, y
        lam = 1.0 if self.minmax is not None else float(rng.beta(self.alpha, self.alpha))  # 1.0: unused
        box = cutmix_box(x.shape[-2], x.shape[-1], lam, rng, self.minmax)
        out, soft, _ = cutmix_batch(x, y, state.num_classes, box, batch_permutation(state, x))
        return out, soft

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mixup is not None and not state.host_rng.random() < self.switch_prob:
            return self.mixup.mix(state, x, y)
        return self.mix(state, x, y)

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        minmax = recipe["methods"]["cutmix"].get("minmax")
        if minmax is not None and not (len(minmax) == 2 and 0 < minmax[0] < minmax[1] <= 1):
            return [(("methods", "cutmix", "minmax"),
                     f"expected two increasing box side ratios [min, max] with 0 < min < max <= 1 "
                     f"(e.g. [0.3, 0.7]), got {minmax}.")]
        return []
