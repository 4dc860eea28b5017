"""Cutout (DeVries and Taylor, "Improved Regularization of Convolutional Neural Networks with
Cutout", 2017).

Erases one square of side ``length`` pixels in each training image. As in the paper (and its
reference code, uoguelph-mlrg/Cutout), the square's centre is a uniformly random *pixel* of
the image, so the square may hang over the border and is clipped there (the paper found this
matters: the erased area is then sometimes smaller, sometimes none of the object); the erased
pixels are set to 0 of the normalised image, i.e. the training set's per-channel mean. Rows
``cy - length // 2`` up to ``cy - length // 2 + length`` (exclusive) are erased, and the same
for columns: a full ``length x length`` square when it lies inside, as in the reference code
for the even lengths the paper used (16 on CIFAR-10, 8 on CIFAR-100, 20 on SVHN).

``prob``: each image is erased with this probability (the paper: 1).

Randomness: per image (its own centre and coin), drawn on the device from the method
generator (``state.generator``, from the recipe's seed) in one call per batch: no host sync,
no Python loop over images. Under DDP every rank draws the centres of the whole global batch
from the shared stream and keeps its slice (:func:`trainbench.methods.draws.batch_span`), so
an image gets the same square whatever the number of processes.

Runs at order -1, before the mixing methods (order 0) in ``on_batch``: it erases parts of
real images, and mixup/CutMix then mix the erased images, as a data-augmentation pipeline
would. It never changes the input batch in place.

Recipe::

    methods:
      cutout: {length: 16, prob: 1.0}

Cyclic runs: does not depend on the fraction of training, so it is well defined in cyclic runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.methods.draws import batch_span
from trainbench.registry import Fraction, PosInt


def cutout_mask(cy: torch.Tensor, cx: torch.Tensor, h: int, w: int, length: int) -> torch.Tensor:
    """``[B, H, W]`` bool, True where image ``i``'s square (centre pixel ``(cy[i], cx[i])``,
    side ``length``, clipped at the border) lies."""
    top, left = cy - length // 2, cx - length // 2
    rows = torch.arange(h, device=cy.device)
    cols = torch.arange(w, device=cx.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + length)  # [B, H]
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + length)  # [B, W]
    return in_rows[:, :, None] & in_cols[:, None, :]


def cutout_batch(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, length: int,
                 apply: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` (``[B, C, H, W]``, normalised) with each image's square set to 0 (every channel),
    where ``apply`` (``[B]`` bool, default all) is True. A new tensor; ``x`` is unchanged."""
    mask = cutout_mask(cy, cx, x.shape[-2], x.shape[-1], length)
    if apply is not None:
        mask &= apply[:, None, None]
    return x.masked_fill(mask[:, None], 0)


@METHODS.register("cutout")
class Cutout(Method):
    """Erase a random square per image, centre anywhere, clipped (DeVries & Taylor 2017)."""

    order: ClassVar[int] = -1  # on_batch before mixing (order 0)

    def __init__(self, *, length: PosInt = 16, prob: Fraction = 1.0) -> None:
        self.length = length
        self.prob = prob

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        offset, n = batch_span(state, b)
        g, dev = state.generator, x.device
        cy = torch.randint(0, h, (n,), device=dev, generator=g)[offset:offset + b]
        cx = torch.randint(0, w, (n,), device=dev, generator=g)[offset:offset + b]
        apply = None
        if self.prob < 1:
            apply = (torch.rand(n, device=dev, generator=g) < self.prob)[offset:offset + b]
        return cutout_batch(x, cy, cx, self.length, apply), y

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        from trainbench.data import dataset_shape

        length = recipe["methods"]["cutout"]["length"]
        side = dataset_shape(recipe["data"]["dataset"], recipe["data"]).size  # no files read
        if length > side:
            yield ("methods", "cutout", "length"), (
                f"{length} is larger than the {recipe['data']['dataset']} images ({side}x{side}): "
                f"every image would be erased whole. Use at most {side}, e.g. about half the side "
                f"({max(side // 2, 1)}); the paper used 16 on 32x32 CIFAR-10.")
