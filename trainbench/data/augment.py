"""Batched on-device augmentation: every sample gets its own random draw, in one kernel
launch or two per batch instead of a Python loop over images.

``within=(start, total)``: ``x`` holds rows ``start .. start + len(x)`` of a batch of ``total``
images (one process's slice of a data-parallel global batch). The random draws are made for
the whole batch and sliced, so each process applies exactly what a single process would to
those images: the augmented sample stream does not depend on the number of processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Within = tuple[int, int] | None  # (first row, rows in the whole batch); None: x is the batch


def _rows(b: int, within: Within) -> tuple[int, slice]:
    """How many draws to make, and which of them belong to ``x``'s ``b`` rows."""
    if within is None:
        return b, slice(0, b)
    start, total = within
    return total, slice(start, start + b)


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator,
                within: Within = None) -> torch.Tensor:
    """Reflect-pad each image by ``padding`` and crop it back at a random offset per sample
    (a random translation by up to ``padding`` pixels, as airbench does)."""
    if padding == 0:
        return x
    b, _, h, w = x.shape
    n, mine = _rows(b, within)
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device, generator=gen)[mine]
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device, generator=gen)[mine]
    rows = (dy + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (dx + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    padded = padded.gather(2, rows.expand(b, x.shape[1], h, padded.shape[3]))
    return padded.gather(3, cols.expand(b, x.shape[1], h, w))


def hflip(x: torch.Tensor, gen: torch.Generator, within: Within = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    n, mine = _rows(x.shape[0], within)
    flip = torch.rand(n, device=x.device, generator=gen)[mine] < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def on_device(x: torch.Tensor, augment: list[str], crop_padding: int,
              gen: torch.Generator, within: Within = None) -> torch.Tensor:
    """The batch augmentations a recipe lists, in their fixed order (crop, then flip);
    ``within``: this batch is a rank's slice of a global batch (draws made for all of it)."""
    if "random_crop" in augment:
        x = random_crop(x, crop_padding, gen, within)
    if "hflip" in augment:
        x = hflip(x, gen, within)
    return x
