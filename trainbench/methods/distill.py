"""Knowledge distillation (Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural
Network", 2015).

The student (the recipe's model) learns from a trained teacher's softened outputs as well as
from the labels:

    loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

with ``s``, ``t`` the student's and teacher's logits for the same batch, ``T`` the
``temperature`` and ``CE`` the run's own loss (``state.loss_fn``: plain cross-entropy, or
label smoothing's, on class indices or mixed soft targets). The ``T^2`` keeps the soft term's
gradients at the same scale whatever ``T`` (the paper's section 2). KL rather than the
paper's cross-entropy to the soft targets: they differ by the teacher's entropy, a constant,
so the gradients are the same, and KL is 0 when the student matches the teacher. Defaults
``temperature: 4``, ``alpha: 0.9`` (the paper: T from 2 to 20 on MNIST; "a considerably lower
weight on the second objective" worked best).

**The teacher is a run directory** (``OUT/<name>/seed<S>``, written by ``trainbench run``),
a path relative to the working directory (like ``data.root``): its ``recipe.yaml`` builds the
architecture (with the model surgery of its methods, such as BlurPool, applied the same way),
its ``model.pt`` holds the weights, loaded with ``torch.load(weights_only=True)``. It must
have been trained on images of the same shape and number of classes. It runs in eval mode,
without gradients, on the batch the student trains on (after augmentation and mixing: this
method runs at order 1, after them), inside the run's autocast, so in the run's precision.
The teacher costs one forward pass per step; nothing of it is checkpointed (a resumed run
loads it again).

A missing, incomplete or mismatched teacher is bad input (exit 2, naming
``methods.distill.teacher``): found at validation when the directory exists, and when the run
starts otherwise (so that one command may train the teacher and then the student). In a
smoke run (``--smoke``) an absent directory is replaced by a freshly initialised model of the
student's architecture (seeded from the recipe's seed), with a warning, so that shipped
recipes smoke without a trained teacher: the loss and its plumbing are exercised, not the
teacher's knowledge.

Recipe::

    methods:
      distill: {teacher: runs/digits-baseline/seed0, temperature: 4.0, alpha: 0.9}

Cyclic runs: the loss does not depend on the fraction of training, so it is well defined in
cyclic runs (the teacher is the same at every cycle).

Under DDP each rank runs the teacher on its slice; the loss is a mean over the rank's
images, so the averaged gradients equal one process's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainbench.errors import InputError
from trainbench.methods.base import METHODS, LossFn, Method, TrainState
from trainbench.registry import Fraction, PosFloat

FIELD = "methods.distill.teacher"
DISTILL_STREAM = 9  # a smoke run's stand-in teacher is initialised from seed * 1000 + 9


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor,
                 hard_loss: LossFn, temperature: float, alpha: float) -> torch.Tensor:
    """``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) *
    hard_loss(student, targets)``, the KL averaged over the batch, in fp32."""
    t = temperature
    log_p_student = F.log_softmax(student.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher.float() / t, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return alpha * t * t * kl + (1 - alpha) * hard_loss(student, targets)


def teacher_problems(path: Path, shape: tuple[int, int, int]) -> list[str]:
    """What is wrong with an existing teacher directory for a student whose images have
    ``shape`` (channels, size, classes); empty when it is usable (the weights themselves are
    checked when loaded)."""
    from trainbench.data import dataset_shape
    from trainbench.recipe import load_recipe

    if not path.is_dir():
        return [f"{path} is not a directory; give a run directory (OUT/<name>/seed<S>)."]
    missing = [f for f in ("recipe.yaml", "model.pt") if not (path / f).is_file()]
    if missing:
        return [f"{path} has no {' or '.join(missing)}: it is not a completed run (model.pt is "
                "written when a run completes); finish the teacher's run, or give another."]
    try:
        t = load_recipe(path / "recipe.yaml")
    except InputError as e:
        return [f"{path / 'recipe.yaml'} is not a valid recipe: {e}"]
    ts = dataset_shape(t["data"]["dataset"], t["data"])
    if (ts.channels, ts.size, ts.num_classes) != shape:
        return [f"the teacher {path} was trained on {t['data']['dataset']} ({ts.channels}x{ts.size}"
                f"x{ts.size} images, {ts.num_classes} classes), the student's images are "
                f"{shape[0]}x{shape[1]}x{shape[1]} with {shape[2]} classes; give a teacher of the "
                "same data shape."]
    return []


def build_teacher(recipe: dict[str, Any], in_chans: int, num_classes: int, state: TrainState) -> nn.Module:
    """The architecture ``recipe`` (a teacher's resolved recipe) trains: its model, with its
    methods' model surgery (``order < 0`` events, e.g. BlurPool) applied, on the host. Method
    randomness and the global RNGs are left untouched."""
    from trainbench.methods import build_methods
    from trainbench.models import build_model

    with torch.random.fork_rng(devices=[]):
        model = build_model(recipe["model"], in_chans, num_classes)
    surgery = [m for m in build_methods(recipe["methods"]).values() if m.order < 0]
    if surgery:
        throwaway = dataclasses.replace(state, recipe=recipe, model=model, loss_fn=nn.CrossEntropyLoss(),
                                        generator=torch.Generator(state.device).manual_seed(0),
                                        host_rng=np.random.default_rng(0))
        for m in surgery:
            m.on_init(throwaway)
        model = throwaway.model
    return model


def load_teacher(path: Path, state: TrainState) -> nn.Module:
    """The teacher of run directory ``path`` with its trained weights, on the run's device,
    in eval mode without gradients. Raises InputError naming the field."""
    from trainbench.recipe import load_recipe

    channels, size = state.data.shape[0], state.data.shape[-1]
    problems = teacher_problems(path, (channels, size, state.num_classes))
    if problems:
        raise InputError(f"{FIELD}: {problems[0]}")
    recipe = load_recipe(path / "recipe.yaml").data
    model = build_teacher(recipe, channels, state.num_classes, state)
    try:
        weights = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
    except Exception as e:  # unpicklable, truncated, or another architecture's weights
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{FIELD}: {path / 'model.pt'} does not hold weights for the model its "
                         f"recipe.yaml builds ({recipe['model']['name']}): {first_line}") from None
    return model.to(state.device).eval().requires_grad_(False)


@METHODS.register("distill")
class Distill(Method):
    """Knowledge distillation from a trained run's model: T^2-scaled KL + CE (Hinton et al. 2015)."""

    order: ClassVar[int] = 1  # on_batch after augmentation and mixing (order <= 0)

    def __init__(self, *, teacher: str, temperature: PosFloat = 4.0, alpha: Fraction = 0.9) -> None:
        self.teacher_dir = Path(teacher).expanduser()
        self.temperature, self.alpha = temperature, alpha
        self._x: torch.Tensor | None = None

    def on_init(self, state: TrainState) -> None:
        if state.smoke and not self.teacher_dir.exists():
            from trainbench.precision import warn_once

            warn_once(f"smoke run: {FIELD} {self.teacher_dir} does not exist; distilling from a "
                      f"freshly initialised {state.recipe['model']['name']} (the student's "
                      "architecture) instead: the loss is exercised, not a trained teacher.")
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(state.recipe.get("seed", 0) * 1000 + DISTILL_STREAM)
                fresh = build_teacher(state.recipe, state.data.shape[0], state.num_classes, state)
            self.teacher = fresh.to(state.device).eval().requires_grad_(False)
        elif not self.teacher_dir.exists():
            raise InputError(f"{FIELD}: {self.teacher_dir} does not exist. Train the teacher first "
                             f"(trainbench run <its recipe>: it writes OUT/<name>/seed<S>), or set "
                             f"--set {FIELD}=<run directory>.")
        else:
            self.teacher = load_teacher(self.teacher_dir, state)

    def on_fit_start(self, state: TrainState) -> None:
        # Wrap the run's loss as the methods left it in on_init (e.g. label smoothing's).
        self.hard_loss = state.loss_fn
        state.loss_fn = self.loss

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._x = x  # the teacher sees it in loss(), inside the run's autocast
        return x, y

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x, self._x = self._x, None
        if x is None or x.shape[0] != logits.shape[0]:
            raise RuntimeError("distill: the loss was called without the batch the student saw "
                               "(a method after distill changed the batch)")
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        return distill_loss(logits, teacher_logits, targets, self.hard_loss, self.temperature, self.alpha)

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        from trainbench.data import dataset_shape

        teacher = recipe["methods"]["distill"]["teacher"]
        field = ("methods", "distill", "teacher")
        if not isinstance(teacher, str) or not teacher.strip():
            yield field, ("give the teacher's run directory (OUT/<name>/seed<S>), e.g. "
                          "runs/digits-baseline/seed0.")
            return
        path = Path(teacher).expanduser()
        if path.exists():  # absent: refused when the run starts (unless a smoke run)
            s = dataset_shape(recipe["data"]["dataset"], recipe["data"])
            for problem in teacher_problems(path, (s.channels, s.size, s.num_classes)):
                yield field, problem
