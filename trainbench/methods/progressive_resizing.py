"""Progressive resizing (fast.ai's progressive resizing, with Composer's schedule:
mosaicml/composer ``ProgressiveResizing``; Touvron et al. 2019 on the train/test size gap).

Trains on smaller images early and grows them to full size. The scale after a fraction ``f``
of training (Composer's rule)::

    f <  delay_fraction                      initial_scale
    then, linearly                           initial_scale -> 1 over the fraction
                                             1 - finetune_fraction - delay_fraction
    f >= 1 - finetune_fraction               1 (full size: fine-tuning)

and each side becomes ``round(side * scale / size_increment) * size_increment`` (at least
``size_increment``, at most the full side), so the model sees few distinct sizes (cuDNN and
``torch.compile`` specialise per shape). ``mode: resize`` interpolates the (normalised,
augmented) batch bilinearly with antialiasing; ``mode: crop`` takes one random crop of that
size per batch (offset drawn on the host from the method RNG: no device sync). Evaluation is
always at full size (the engine's evaluation does not pass through ``on_batch``); models must
accept several sizes (global pooling, as every builtin model has).

Runs at order -1: before mixing (CutMix draws its box on the resized batch).

Recipe::

    methods:
      progressive_resizing: {initial_scale: 0.5, delay_fraction: 0.5, finetune_fraction: 0.2,
                             size_increment: 4, mode: resize}      # Composer's defaults

Cyclic runs (a self-timed schedule with several cycles): the schedule restarts at every cycle
(:mod:`.cycles`): ``f`` is the fraction of the current cycle, so each cycle starts small and
ends at full size, and each cycle end's point is what a run of that length would do.
DDP: the size depends on the step only, so every rank resizes its slice alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.methods.cycles import cycle_ends, cycle_fraction
from trainbench.registry import Fraction, PosInt, Range

FIELD = ("methods", "progressive_resizing")


def resize_scale(fraction: float, initial_scale: float, delay_fraction: float,
                 finetune_fraction: float) -> float:
    """Composer's scale factor after ``fraction`` of training (see the module docstring)."""
    if fraction < delay_fraction:
        return initial_scale
    ramp = 1 - finetune_fraction - delay_fraction
    done = 1.0 if ramp <= 0 else min((fraction - delay_fraction) / ramp, 1.0)
    return initial_scale + (1 - initial_scale) * done


def pinned_size(side: int, scale: float, size_increment: int) -> int:
    """``side * scale`` rounded to a multiple of ``size_increment``, within
    ``[min(size_increment, side), side]``."""
    size = round(side * scale / size_increment) * size_increment
    return max(min(size, side), min(size_increment, side))


def resize_batch(x: torch.Tensor, size: tuple[int, int], mode: str = "resize",
                 offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``x`` (N, C, H, W) at ``size``: bilinear with antialiasing, or the crop at ``offset``."""
    if tuple(x.shape[2:]) == size:
        return x
    if mode == "crop":
        top, left = offset
        return x[:, :, top:top + size[0], left:left + size[1]]
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


@METHODS.register("progressive_resizing")
class ProgressiveResizing(Method):
    """Train on smaller images early, full size at the end; Composer's schedule, per cycle."""

    order: ClassVar[int] = -1

    def __init__(self, *, initial_scale: Annotated[float, Range(gt=0, le=1)] = 0.5,
                 delay_fraction: Fraction = 0.5, finetune_fraction: Fraction = 0.2,
                 size_increment: PosInt = 4, mode: Literal["resize", "crop"] = "resize") -> None:
        self.initial_scale, self.delay_fraction = initial_scale, delay_fraction
        self.finetune_fraction, self.size_increment, self.mode = finetune_fraction, size_increment, mode

    def on_fit_start(self, state: TrainState) -> None:
        self.ends = cycle_ends(state)

    def size_at(self, done: int, full: tuple[int, int]) -> tuple[int, int]:
        """The training image size for the step after ``done`` completed steps."""
        scale = resize_scale(cycle_fraction(self.ends, done), self.initial_scale,
                             self.delay_fraction, self.finetune_fraction)
        return (pinned_size(full[0], scale, self.size_increment),
                pinned_size(full[1], scale, self.size_increment))

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = (x.shape[2], x.shape[3])
        size = self.size_at(state.step, full)
        if size == full:
            return x, y
        offset = (0, 0)
        if self.mode == "crop":
            offset = (int(state.host_rng.integers(0, full[0] - size[0] + 1)),
                      int(state.host_rng.integers(0, full[1] - size[1] + 1)))
        return resize_batch(x, size, self.mode, offset), y

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        p = recipe["methods"]["progressive_resizing"]
        if p["delay_fraction"] + p["finetune_fraction"] > 1:
            yield (*FIELD, "finetune_fraction"), (
                f"delay_fraction ({p['delay_fraction']}) + finetune_fraction "
                f"({p['finetune_fraction']}) must be at most 1: the fine-tuning at full size starts "
                f"after the delay at initial_scale. Lower one of them (Composer's defaults: 0.5 and 0.2).")
        if problem := _smallest_size_problem(recipe):
            yield (*FIELD, "initial_scale"), problem


def _smallest_size_problem(recipe: dict[str, Any]) -> str | None:
    """Whether the model takes the smallest training images: a forward pass on the meta
    device (shapes only, no memory, no compute), as the run would build the model."""
    from trainbench.data import dataset_shape
    from trainbench.models import build_model

    p = recipe["methods"]["progressive_resizing"]
    shape = dataset_shape(recipe["data"]["dataset"], recipe["data"])
    side = pinned_size(shape.size, p["initial_scale"], p["size_increment"])
    if side == shape.size:
        return None
    try:
        with torch.device("meta"):
            model = build_model(recipe["model"], shape.channels, shape.num_classes)
            model(torch.empty(2, shape.channels, side, side))
    except RuntimeError as e:
        return (f"the first training images are {side}x{side} ({shape.size}x{shape.size} at "
                f"initial_scale {p['initial_scale']}, size_increment {p['size_increment']}), too "
                f"small for model {recipe['model']['name']} ({e}). Raise initial_scale.")
    except Exception:  # a model the meta device cannot run: left to the run
        return None
    return None
