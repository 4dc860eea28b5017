"""Batched on-device augmentation: every sample gets its own random draw, in one kernel
launch or two per batch instead of a Python loop over images."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Reflect-pad each image by ``padding`` and crop it back at a random offset per sample
    (a random translation by up to ``padding`` pixels, as airbench does)."""
    if padding == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device, generator=gen)
    dx = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device, generator=gen)
    rows = (dy + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (dx + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    padded = padded.gather(2, rows.expand(b, x.shape[1], h, padded.shape[3]))
    return padded.gather(3, cols.expand(b, x.shape[1], h, w))


def hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def on_device(x: torch.Tensor, augment: list[str], crop_padding: int,
              gen: torch.Generator) -> torch.Tensor:
    """The batch augmentations a recipe lists, in their fixed order (crop, then flip)."""
    if "random_crop" in augment:
        x = random_crop(x, crop_padding, gen)
    if "hflip" in augment:
        x = hflip(x, gen)
    return x
