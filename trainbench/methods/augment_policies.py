"""Augmentation policies from torchvision's v2 transforms, on the device, on uint8 images:

- ``randaugment``: RandAugment (Cubuk, Zoph, Shlens, Le, "RandAugment: Practical automated
  data augmentation with a reduced search space", NeurIPS 2020): ``num_ops`` operations drawn
  uniformly from 14, all at one ``magnitude`` (of ``num_magnitude_bins``), random sign.
- ``trivialaugment``: TrivialAugment Wide (Mueller and Hutter, "TrivialAugment: Tuning-free
  Yet State-of-the-Art Data Augmentation", ICCV 2021): one operation, uniformly random
  magnitude.
- ``augmix``: AugMix (Hendrycks, Mu, Cubuk, Zoph, Gilmer, Lakshminarayanan, "AugMix: A Simple
  Data Processing Method to Improve Robustness and Uncertainty", ICLR 2020): ``mixture_width``
  chains of 1-3 (or ``chain_depth``) operations at ``severity``, mixed with Dirichlet(``alpha``)
  weights, then with the original by a Beta(``alpha``, ``alpha``) weight. The augmentation only
  (torchvision's ``AugMix``): the paper's Jensen-Shannon consistency loss, which needs three
  forward passes per image, is not part of it.

The parameters and defaults are torchvision's (``v2.RandAugment``, ``v2.TrivialAugmentWide``,
``v2.AugMix``), which follow the papers; the transforms themselves do the work. They run on
the batch the loader serves, on its device: the normalised floats are mapped back to the
dataset's uint8 pixels exactly (the loader computed ``x = u8 * scale + shift``; rounding
inverts it; random_crop's reflect padding and hflip only move pixels), augmented as uint8
(the dtype the policies' magnitudes are defined for: posterize bits, solarize thresholds,
equalize histograms) and normalised again.

**Randomness: per image, or per group.** torchvision draws a policy's operations once per
call, so a call on a whole batch gives every image the *same* operations (and, for AugMix, the
same chains; only its mixing weights are per image). The papers draw per image. ``groups``:

- ``null`` (the default): per image, as in the papers. Each image is one transform call, with
  its draws seeded from (recipe seed, step, the image's position in the global batch). Costly:
  one call per image (tens of small kernels each); see the README for the measured cost.
- ``k``: the global batch is split into ``k`` contiguous groups of near-equal size, one call
  (one draw) per group, seeded from (seed, step, group). ``1`` is per-batch randomness: the
  cheapest, but every image of a step gets the same distortion.

The draws use torch's global CPU generator (the only one torchvision's transforms take),
seeded per call inside ``torch.random.fork_rng``, so they are host-side (no device sync),
leave every other random stream untouched, and depend on nothing but the recipe's seed, the
step and the image's (group's) position: a resumed run repeats them with no state to save,
and under DDP rank ``r`` reproduces the draws of its slice of the global batch
(:func:`trainbench.methods.draws.batch_span`), so an image is augmented the same way whatever
the number of processes (per image: exactly; with groups, a group split across two ranks is
drawn once per rank piece: the same operations, but AugMix's per-image mixing weights then
differ). AugMix's Dirichlet/Beta weights are drawn on the host too and copied to the device.

Runs at order -1, before the mixing methods (order 0) in ``on_batch``, so that it sees real
images and mixup/CutMix mix augmented ones; cutout (also -1) goes before or after it in recipe
order. Never changes the input batch in place; keeps channels-last batches channels-last.

Recipe::

    methods:
      randaugment: {num_ops: 2, magnitude: 9, num_magnitude_bins: 31, groups: null}
      trivialaugment: {num_magnitude_bins: 31, groups: null}
      augmix: {severity: 3, mixture_width: 3, chain_depth: -1, alpha: 1.0, all_ops: true, groups: null}

Cyclic runs: does not depend on the fraction of training, so it is well defined in cyclic runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, ClassVar

import torch
from torchvision.transforms import v2

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.methods.draws import batch_span, mix_seed
from trainbench.registry import NonNegInt, PosFloat, PosInt, Range

POLICY_STREAM = 6  # seeds are mixed from (seed * 1000 + 6, policy, step, image or group)
Bins = Annotated[int, Range(ge=2)]  # magnitudes are linspace(.., bins); posterize divides by bins - 1


class _HostAugMix(v2.AugMix):
    """torchvision's AugMix with its Dirichlet/Beta weights drawn on the host (torch's CPU
    generator, like every other draw of the policies) and copied to the images' device: the
    same draws on every device, and only one generator to seed."""

    def _sample_dirichlet(self, params: torch.Tensor) -> torch.Tensor:
        return torch._sample_dirichlet(params.cpu()).to(params.device)


def to_uint8(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The uint8 pixels behind a batch normalised as ``x = u8 * scale + shift`` (exact for
    unmixed images: the error of the float round trip is far below 0.5)."""
    return ((x - shift) / scale).round_().clamp_(0, 255).to(torch.uint8)


def group_bounds(n: int, groups: int | None) -> list[tuple[int, int]]:
    """``[start, end)`` of each group of a batch of ``n``: one per image (``None``), or
    ``groups`` contiguous near-equal ones (sizes differ by at most one; never empty)."""
    if groups is None:
        return [(i, i + 1) for i in range(n)]
    k = min(groups, n)
    return [(j * n // k, (j + 1) * n // k) for j in range(k)]


def augment_uint8(transform: v2.Transform, images: torch.Tensor, seed: int, *,
                  offset: int = 0, global_batch: int | None = None,
                  groups: int | None = None) -> torch.Tensor:
    """``transform`` applied to uint8 ``images`` (``[B, C, H, W]``, this process's slice
    ``[offset, offset + B)`` of a global batch), one call per group of the global batch that
    has images here (per image when ``groups`` is None), each call's draws seeded from
    ``mix_seed(seed, group index)`` on torch's CPU generator. Other random streams are left as
    they were. A new tensor."""
    b = images.shape[0]
    total = b if global_batch is None else global_batch
    out = torch.empty_like(images)
    with torch.random.fork_rng(devices=[]):
        for j, (start, end) in enumerate(group_bounds(total, groups)):
            lo, hi = max(start, offset) - offset, min(end, offset + b) - offset
            if lo >= hi:
                continue  # a group held by another process
            torch.default_generator.manual_seed(mix_seed(seed, j))
            out[lo:hi] = transform(images[lo:hi])
    return out


class _Policy(Method):
    """Shared event mapping: un-normalise to uint8, augment, normalise again."""

    order: ClassVar[int] = -1  # on_batch before mixing (order 0)
    policy_id: ClassVar[int]
    groups: int | None

    def transform(self) -> v2.Transform:
        raise NotImplementedError

    def on_fit_start(self, state: TrainState) -> None:
        self._transform = self.transform()
        self._seed = state.recipe.get("seed", 0) * 1000 + POLICY_STREAM

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        data = state.data
        offset, total = batch_span(state, x.shape[0])
        u8 = augment_uint8(self._transform, to_uint8(x, data.scale, data.shift),
                           mix_seed(self._seed, self.policy_id, state.step),
                           offset=offset, global_batch=total, groups=self.groups)
        # Element-wise ops and empty_like keep the batch's memory format: channels-last stays.
        return data.normalize(u8), y


@METHODS.register("randaugment")
class RandAugment(_Policy):
    """torchvision's RandAugment on device uint8 images, per image or group (Cubuk et al. 2020)."""

    policy_id = 1

    def __init__(self, *, num_ops: NonNegInt = 2, magnitude: NonNegInt = 9,
                 num_magnitude_bins: Bins = 31, groups: PosInt | None = None) -> None:
        self.num_ops, self.magnitude, self.num_magnitude_bins = num_ops, magnitude, num_magnitude_bins
        self.groups = groups

    def transform(self) -> v2.Transform:
        return v2.RandAugment(num_ops=self.num_ops, magnitude=self.magnitude,
                              num_magnitude_bins=self.num_magnitude_bins)

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        p = recipe["methods"]["randaugment"]
        if p["magnitude"] >= p["num_magnitude_bins"]:
            yield ("methods", "randaugment", "magnitude"), (
                f"{p['magnitude']} is not one of the {p['num_magnitude_bins']} magnitude bins "
                f"(0 to {p['num_magnitude_bins'] - 1}); lower it or raise num_magnitude_bins.")


@METHODS.register("trivialaugment")
class TrivialAugment(_Policy):
    """torchvision's TrivialAugmentWide on device uint8 images, per image or group (Mueller & Hutter 2021)."""

    policy_id = 2

    def __init__(self, *, num_magnitude_bins: Bins = 31, groups: PosInt | None = None) -> None:
        self.num_magnitude_bins = num_magnitude_bins
        self.groups = groups

    def transform(self) -> v2.Transform:
        return v2.TrivialAugmentWide(num_magnitude_bins=self.num_magnitude_bins)


ChainDepth = Annotated[int, Range(ge=-1, le=3)]


@METHODS.register("augmix")
class AugMix(_Policy):
    """torchvision's AugMix on device uint8 images, per image or group, no JSD (Hendrycks et al. 2020)."""

    policy_id = 3

    def __init__(self, *, severity: Annotated[int, Range(ge=1, le=10)] = 3, mixture_width: PosInt = 3,
                 chain_depth: ChainDepth = -1, alpha: PosFloat = 1.0, all_ops: bool = True,
                 groups: PosInt | None = None) -> None:
        self.severity, self.mixture_width, self.chain_depth = severity, mixture_width, chain_depth
        self.alpha, self.all_ops = alpha, all_ops
        self.groups = groups

    def transform(self) -> v2.Transform:
        return _HostAugMix(severity=self.severity, mixture_width=self.mixture_width,
                           chain_depth=self.chain_depth, alpha=self.alpha, all_ops=self.all_ops)

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        if recipe["methods"]["augmix"]["chain_depth"] == 0:
            yield ("methods", "augmix", "chain_depth"), (
                "0 is not a depth: give 1, 2 or 3 operations per chain, or -1 for a random "
                "depth of 1-3 per chain (the paper's).")
