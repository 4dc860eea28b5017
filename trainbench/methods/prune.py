"""Unstructured magnitude pruning: iterative magnitude pruning (IMP) with budgeted retraining
(Zimmer, Spiegel and Pokutta, "How I Learned to Stop Worrying and Love Retraining", ICLR 2023;
ZIB-IOL/BIMP) and gradual pruning on the cubic schedule of Zhu and Gupta ("To prune, or not
to prune", 2017). Metrics as ShrinkBench reports them (Blalock et al., "What is the State of
Neural Network Pruning?", MLSys 2020): sparsity, nonzero parameters, FLOPs, nonzero FLOPs.

**What is pruned.** The weights of every convolution and linear layer, except the ones
named in ``exclude`` (module names as in ``model.named_modules()``, or ``fnmatch`` patterns
such as ``"layer4.*"``). ``exclude: null`` (the default) excludes the classifier only, as
ShrinkBench does by default (its ``VisionPruning.can_prune`` skips the module marked
``is_classifier``; the first convolution is pruned). The classifier is the layer that
produces the logits, found by running the model once on a zero image (:func:`find_classifier_and_first_conv`):
the last conv/linear layer *to execute* whose output has the logits' width, so a final
1x1 convolution before global pooling counts, and the order in which modules were
registered does not. ``exclude_first_conv: true`` also leaves the first convolution (the
first to execute) dense, as many pruning papers do. ``exclude: []`` prunes every layer. A
name or pattern that matches no prunable layer stops the run at start-up with the list of
layer names. Biases and normalisation layers are never pruned.

**How.** In ``on_init`` every pruned layer is reparametrised with
``torch.nn.utils.prune.identity``: its parameter becomes ``weight_orig``, a ``weight_mask``
buffer appears and a forward pre-hook computes ``weight = weight_orig * weight_mask``. This
happens before the optimizer is built (it holds ``weight_orig``) and the state-dict keys
never change during the run, so a checkpoint restores masks with the model. Pruning then
only rewrites the masks in place: the magnitude criterion (the top-k rule of
``torch.nn.utils.prune.l1_unstructured``) restricted to the weights still unpruned, over
all pruned layers at once (``scope: global``) or per layer (``scope: layer``, each layer to
the same sparsity). Counts are rounded against the cumulative target, so after pruning to
sparsity ``s`` exactly ``round(s * n)`` of the ``n`` weights are zero (per layer with
``scope: layer``), whatever happened in earlier rounds. Masks are ``bool``: an averaged copy
(EMA, SWA) copies them instead of averaging them, so its weights are pruned exactly as the
model's.

**Pruned weights stay exactly zero.** At each pruning, and after every optimizer step, the
pruned entries of ``weight_orig`` and of every optimizer state tensor of its shape
(momentum buffer, Adam's moments, Lookahead's slow weights) are zeroed with
``torch._foreach_mul_``: no host sync in the step loop. (Their gradient is zero through the
mask; without masking the momentum, weight decay and stale momentum would move them.)

**Schedules.**

- ``schedule: imp``: an optional dense phase of length ``dense``, then ``phases`` rounds of
  "prune, retrain for ``retrain``". Round ``k`` prunes ``1 - (1 - goal)^(1/phases)`` of the
  remaining weights, so sparsity after it is ``1 - (1 - goal)^(k/phases)`` and the last
  round reaches ``goal``. Pruning happens at the start of a round, so the end of the dense
  phase (sparsity 0) and the end of each round are curve points, each a fully trained
  model. ``dense: null`` means: the recipe as written *is* the dense run, its ``duration``
  the dense phase. The run's length is ``dense + phases * retrain`` (give both in the same
  unit, 'ep', 'ba' or 'sp'); it is derived when the recipe is resolved (``trainbench show``
  prints it, and the resolved recipe states ``dense`` and ``duration`` explicitly, so it
  re-runs as is); an explicit ``dense`` with a different explicit ``duration`` is refused.
  ``dense: 0ep`` prunes the initial weights.

  LR: during the dense phase the recipe's own ``schedule`` runs as it would in a run of
  length ``dense``; each retraining round follows ``retrain_schedule``, as the reference
  code (ZIB-IOL/BIMP, ``define_retrain_schedule``) defines it. Notation: R = the round's
  steps, j = 0..R-1 its updates; eta(t) the dense phase's schedule over its D steps;
  maxLR = max eta, minLR = min eta after the dense warmup; slr, clr, llr and allr first
  warm up for W = floor(0.1 R) steps from 0 to their start A on a half cosine,
  A (1 - cos(pi j / W)) / 2, then run over the other R - W steps (k = j - W):

  ====== ===================================================================================
  ft     constant minLR (fine-tuning; no warmup)
  lrw    LR rewinding (Renda et al. 2020): the dense phase's last R LRs, eta(D - R + j)
  slr    scaled LR restarting (Le & Hua 2021): A = maxLR, then the dense schedule, its own
         warmup replaced by maxLR, compressed into R - W: eta(floor(k * D / (R - W)))
  clr    cosine from A = maxLR to minLR (Le & Hua's cyclic LR restarting)
  llr    linear from A = maxLR to 0: A (1 - k / (R - W)) (the default; recommended by Zimmer
         et al.: linear schedules make short retraining budgets work)
  allr   adaptive linear: as llr from A = clip(d / sqrt(p) * maxLR, [min(R / D, 1) * maxLR,
         maxLR]) with d = ||weights pruned now||_2 / ||all the model's parameters before||_2
         and p the fraction pruned per round (one host read per round)
  ====== ===================================================================================

  Where we differ from the reference, and why: everything is counted in optimizer steps
  (BIMP counts epochs for B/T and iterations for the rest; the same when both are whole
  epochs); W and the warmup switch-over follow the formula above rather than the exact
  off-by-one of BIMP's ``SequentialSchedulers`` milestone; lrw with R > D clamps at the
  dense phase's first LR (BIMP would index out of range); with no dense phase (``dense: 0``)
  maxLR is ``optimizer.lr``, minLR 0 and ALLR's lower bound maxLR.

  ft, lrw and slr need a dense phase. The LR is set on the optimizer before every update
  (host floats, after the engine's scheduler has written its own), and the ``lr`` column
  of points.csv is overridden with it (``on_eval`` returns ``lr``). Momentum cycling
  (``cycle_momentum``), SWA's own LR (``swa.lr``) and budgets mode are refused with IMP.

- ``schedule: gradual``: sparsity follows Zhu & Gupta's cubic ramp
  ``s(t) = goal + (initial - goal) * (1 - (t - start) / (end - start))^3`` from ``start``
  to ``end``, pruning every ``every`` (and at ``end``); the recipe's schedule drives the LR
  throughout. Only the run's end is a curve point (before it the model is still being
  pruned). ``end`` must come before the run's end, so the final sparsity gets trained.

**Points.** Every evaluation row gets ``sparsity`` (zeros counted in the pruned layers'
weights / their size), ``nonzero_params`` (nonzero entries of all the model's parameters,
pruned weights as ``weight_orig * weight_mask``), ``flops`` and ``nonzero_flops``
(:mod:`trainbench.flops`: conv + linear multiply-accumulates for one image, ShrinkBench's
definition). ``trainbench compare DIR --x sparsity`` plots accuracy against sparsity.

**Order 5**: after model surgery (BlurPool, channels-last), before the averaging copies
(EMA, SWA, order 10) and compile (100). ``copy.deepcopy`` of a module pruned with
``torch.nn.utils.prune`` fails once a forward pass has made ``weight`` a non-leaf tensor;
here the copies are made in ``on_init`` when ``weight`` is still a plain tensor, so EMA and
SWA copy the reparametrised model and their averages are masked by the live masks. In
``on_end`` the masks are made permanent (``prune.remove``): the model ends as a plain model
with ``weight`` parameters holding exact zeros (:func:`make_permanent`).

**Data-parallel runs.** The reparametrisation happens in ``on_init``, before DDP wraps the
model, so DDP sees ``weight_orig`` as the parameter and the forward pre-hooks run inside each
rank's forward; the masks are boolean buffers, never broadcast (evaluation broadcasts floating
buffers only). The magnitude ranking runs on every rank on identical weights (DDP keeps them
identical) with the same deterministic top-k, so every rank computes the same masks; the
pruning steps are the same on every rank (host integers).

Recipe::

    methods:
      prune: {schedule: imp, goal: 0.9, phases: 3, retrain: 10ep, retrain_schedule: llr}
      prune: {schedule: gradual, goal: 0.9, start: 0.1dur, end: 0.75dur, every: 1ep}

Cyclic runs: refused. A self-timed ``cyclic``/``sgdr`` schedule defines the run's length
and its LR, which IMP's phases and retraining schedules also do; gradual pruning's fraction
of training is ill-defined across cycles. Prune with a non-cyclic schedule.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from trainbench.errors import InputError
from trainbench.flops import COUNTED, effective_weight, layer_flops, nonzero_flops
from trainbench.methods.base import METHODS, Evaluate, Method, TrainState
from trainbench.methods.ema import unwrap
from trainbench.recipe import self_timed
from trainbench.registry import Fraction, PosInt, Range
from trainbench.timeunits import Time

FIELD = ("methods", "prune")
PRUNABLE = COUNTED  # conv and linear weights: the layers ShrinkBench counts and prunes
RETRAIN_SCHEDULES = ("ft", "lrw", "slr", "clr", "llr", "allr")

# --- the schedules (pure functions) ---


def phase_amount(goal: float, phases: int) -> float:
    """The fraction of the *remaining* weights each IMP round prunes."""
    return 1 - (1 - goal) ** (1 / phases)


def imp_sparsity(goal: float, phases: int, k: int) -> float:
    """Sparsity after IMP round ``k`` (0 = dense) of ``phases``."""
    return 1 - (1 - goal) ** (k / phases)


def gradual_sparsity(step: int, start: int, end: int, goal: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's cubic schedule: ``initial`` up to ``start``, ``goal`` from ``end`` on."""
    if step <= start:
        return initial if step == start else 0.0
    if step >= end:
        return goal
    return goal + (initial - goal) * (1 - (step - start) / (end - start)) ** 3


def gradual_steps(start: int, end: int, every: int) -> list[int]:
    """The steps after which gradual pruning prunes: ``start``, ``start + every``, ... and ``end``."""
    return sorted({*range(start, end, max(every, 1)), end})


@dataclass(frozen=True)
class DenseLRs:
    """What the retraining schedules read from the dense phase's LR schedule, as multiples
    of the peak LR (``optimizer.lr``). BIMP's ``maxLR`` is :attr:`max`, its ``minLR``
    :attr:`min` (the smallest LR after the dense warmup)."""

    factor: Callable[[int], float]  # eta(t) / peak for dense update t (0-based)
    steps: int  # D
    warmup: int  # the dense schedule's warmup steps
    end: float  # after the last dense update, eta(D)
    max: float
    min: float

    @classmethod
    def of(cls, schedule: Any, steps: int) -> DenseLRs:
        """From a schedule bound to the dense phase's ``steps`` (one pass over its factors)."""
        if steps == 0:  # no dense phase (ft, lrw and slr are refused then): peak to 0
            return cls(lambda t: 1.0, 0, 0, 1.0, 1.0, 0.0)
        values = [schedule.factor(t) for t in range(steps)]
        warmup = min(getattr(schedule, "warmup_steps", 0), steps - 1)
        return cls(schedule.factor, steps, warmup, schedule.end_factor(steps), max(values),
                   min(values[warmup:]))


def retrain_warmup(kind: str, length: int) -> int:
    """BIMP's warmup for a retraining round of ``length`` steps: 10% (rounded down) for
    slr, clr, llr and allr; none for ft and lrw."""
    return 0 if kind in ("ft", "lrw") else int(0.1 * length)


def allr_start(rel_norm_drop: float, prune_per_phase: float, length: int, dense_steps: int,
               max_factor: float = 1.0) -> float:
    """ALLR's LR after warmup (BIMP): ``rel_norm_drop / sqrt(prune_per_phase) * maxLR``
    clipped to ``[min(B / T, 1) * maxLR, maxLR]`` with B the round's and T the dense phase's
    steps (``maxLR`` itself when there is no dense phase)."""
    low = min(length / dense_steps, 1.0) * max_factor if dense_steps else max_factor
    return min(max(rel_norm_drop / math.sqrt(prune_per_phase) * max_factor, low), max_factor)


def retrain_factor(kind: str, j: int, length: int, dense: DenseLRs, start: float | None = None) -> float:
    """LR multiplier (of the peak LR) for update ``j`` (0-based) of a retraining round of
    ``length`` steps, as BIMP's ``define_retrain_schedule``; ``j == length`` gives the value
    the round ends at (the ``lr`` column). ``start``: ALLR's start (:func:`allr_start`).

    slr/clr/llr/allr first warm up over :func:`retrain_warmup` steps W from 0 to their start
    A on a half cosine, ``A (1 - cos(pi j / W)) / 2`` (BIMP's ``CosineAnnealingLR`` warmup),
    then run their main part over the remaining ``R - W`` steps, ``k = j - W``."""
    if kind not in RETRAIN_SCHEDULES:
        raise ValueError(f"unknown retrain schedule {kind!r}; one of {', '.join(RETRAIN_SCHEDULES)}")
    if kind == "ft":
        return dense.min
    if kind == "lrw":
        return dense.end if j >= length else dense.factor(max(dense.steps - length + j, 0))
    peak = (dense.max if start is None else start) if kind == "allr" else dense.max
    w = retrain_warmup(kind, length)
    if j < w:
        return peak * (1 - math.cos(math.pi * j / w)) / 2
    k, n = j - w, length - w
    if kind in ("llr", "allr"):
        return peak * (1 - k / n)
    if kind == "clr":
        return dense.min + (peak - dense.min) * (1 + math.cos(math.pi * k / n)) / 2
    # slr: the dense schedule with its warmup at the peak, compressed into the n steps
    if k >= n:
        return dense.end
    t = k * dense.steps // n
    return peak if t < dense.warmup else dense.factor(t)


# --- the model (pure functions) ---


def prunable_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, PRUNABLE) and n]


@torch.no_grad()
def find_classifier_and_first_conv(model: nn.Module, input_shape: Sequence[int],
                                   device: torch.device | str = "cpu") -> tuple[str | None, str | None]:
    """By execution, not registration order, on one forward pass of a zero image (eval
    mode): the classifier -- the last conv/linear layer to run whose output has the logits'
    width in dimension 1 (a final ``Linear``, or a 1x1 conv before global pooling) -- and
    the first convolution to run. ``None`` where there is none."""
    ran: list[tuple[str, torch.Size]] = []
    handles = []
    for name, module in model.named_modules():
        if name and isinstance(module, PRUNABLE):
            def hook(_m: nn.Module, _i: object, out: torch.Tensor, name: str = name) -> None:
                ran.append((name, out.shape))
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        logits = model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    width = logits.shape[1] if logits.dim() > 1 else None
    classifier = next((n for n, shape in reversed(ran) if len(shape) > 1 and shape[1] == width),
                      ran[-1][0] if ran else None)
    modules = dict(model.named_modules())
    first_conv = next((n for n, _ in ran if isinstance(modules[n], nn.modules.conv._ConvNd)), None)
    return classifier, first_conv


def default_exclude(model: nn.Module, input_shape: Sequence[int], device: torch.device | str = "cpu",
                    first_conv: bool = False) -> list[str]:
    """ShrinkBench's default: the classifier (the layer producing the logits, found by
    :func:`find_classifier_and_first_conv`); with ``first_conv`` also the first convolution."""
    classifier, conv = find_classifier_and_first_conv(model, input_shape, device)
    return [n for n in (conv if first_conv else None, classifier) if n is not None]


def select_modules(model: nn.Module, exclude: Sequence[str]) -> dict[str, nn.Module]:
    """The layers to prune, by name: every conv/linear layer not matched by ``exclude``.
    Raises InputError for a pattern that matches no prunable layer, or when nothing is left."""
    names = prunable_names(model)
    unmatched = [p for p in exclude if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        raise InputError(f"methods.prune.exclude: {', '.join(map(repr, unmatched))} match no prunable "
                         f"(conv/linear) layer of this model. Its layers: {', '.join(names)}.")
    keep = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exclude)]
    if not keep:
        raise InputError(f"methods.prune.exclude: {list(exclude)} leaves no layer to prune "
                         f"(layers: {', '.join(names)}).")
    mods = dict(model.named_modules())
    return {n: mods[n] for n in keep}


@torch.no_grad()
def reparametrise(modules: Iterable[nn.Module]) -> None:
    """``torch.nn.utils.prune.identity`` on each module's weight, with a bool mask, and
    ``weight`` left as a plain tensor so the model can still be deep-copied."""
    for m in modules:
        if not torch_prune.is_pruned(m):
            torch_prune.identity(m, "weight")
        m.weight_mask = torch.ones_like(m.weight_orig, dtype=torch.bool)
        m.weight = m.weight_orig.detach() * m.weight_mask


@torch.no_grad()
def magnitude_mask(weight: torch.Tensor, mask: torch.Tensor, n_pruned: int) -> torch.Tensor:
    """A new mask with the ``n_pruned`` smallest-magnitude entries off: the entries already
    off first (they stay off while ``n_pruned`` is at least their number), then the
    smallest ``|weight|`` among the others. Sync-free (top-k, as ``l1_unstructured``)."""
    new = torch.ones_like(mask)
    if n_pruned > 0:
        score = torch.where(mask, weight.abs(), -1.0).reshape(-1)
        new.view(-1)[torch.topk(score, n_pruned, largest=False).indices] = False
    return new


@torch.no_grad()
def prune_to_(modules: Sequence[nn.Module], sparsity: float,
              scope: Literal["global", "layer"] = "global") -> tuple[torch.Tensor, torch.Tensor]:
    """Raise the modules' masks (in place) to ``sparsity`` by weight magnitude, over all of
    them (``global``) or per module (``layer``), and zero the newly pruned ``weight_orig``
    entries. Returns (norm of the weights removed now, norm of the weights before), as
    device scalars."""
    weights = [m.weight_orig for m in modules]
    masks = [m.weight_mask for m in modules]
    before = torch.stack([(w * k).norm() for w, k in zip(weights, masks, strict=True)]).norm()
    if scope == "layer":
        new = [magnitude_mask(w, k, round(sparsity * k.numel())) for w, k in zip(weights, masks, strict=True)]
    else:
        flat = magnitude_mask(torch.cat([w.reshape(-1) for w in weights]),
                              torch.cat([k.reshape(-1) for k in masks]),
                              round(sparsity * sum(k.numel() for k in masks)))
        new = [part.view_as(k) for part, k in zip(flat.split([k.numel() for k in masks]), masks, strict=True)]
    for k, n in zip(masks, new, strict=True):
        k.copy_(n)
    torch._foreach_mul_([w.detach() for w in weights], masks)
    after = torch.stack([(w * k).norm() for w, k in zip(weights, masks, strict=True)]).norm()
    removed = (before.square() - after.square()).clamp_min(0).sqrt()
    return removed, before


def optimizer_state_tensors(optimizer: Any, params: Sequence[torch.Tensor],
                            masks: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(state tensors, their masks): every optimizer state tensor shaped like a pruned
    parameter (momentum, Adam moments, Lookahead's slow weights), for ``_foreach_mul_``."""
    tensors, tmasks = [], []
    optimizers = [o for o in (optimizer, getattr(optimizer, "_base_optimizer", None),
                              getattr(optimizer, "optimizer", None)) if o is not None]
    seen: set[int] = set()
    for opt in optimizers:
        state = getattr(opt, "state", {})
        for p, k in zip(params, masks, strict=True):
            for t in state.get(p, {}).values() if p in state else ():
                if isinstance(t, torch.Tensor) and t.shape == p.shape and id(t) not in seen:
                    seen.add(id(t))
                    tensors.append(t)
                    tmasks.append(k)
    return tensors, tmasks


@torch.no_grad()
def mask_(params: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], optimizer: Any = None) -> None:
    """Zero the pruned entries of ``params`` and of the optimizer's state for them. No host sync."""
    if not params:
        return
    torch._foreach_mul_([p.detach() for p in params], list(masks))
    if optimizer is not None:
        tensors, tmasks = optimizer_state_tensors(optimizer, params, masks)
        if tensors:
            torch._foreach_mul_(tensors, tmasks)


@torch.no_grad()
def sparsity_stats(model: nn.Module, modules: Sequence[nn.Module]) -> dict[str, float]:
    """``sparsity`` (zeros / size of the pruned layers' weights, counted) and
    ``nonzero_params`` (nonzero entries of all parameters, pruned weights masked). One host read."""
    pruned = [effective_weight(m) for m in modules]
    orig_ids = {id(m.weight_orig) for m in modules if hasattr(m, "weight_orig")}
    others = [p for p in unwrap(model).parameters() if id(p) not in orig_ids]
    counts = torch.stack([torch.count_nonzero(t) for t in pruned + others]).tolist()
    size = sum(t.numel() for t in pruned)
    nnz_pruned = sum(counts[:len(pruned)])
    return {"sparsity": (size - nnz_pruned) / size if size else 0.0, "nonzero_params": float(sum(counts))}


def make_permanent(model: nn.Module) -> None:
    """``torch.nn.utils.prune.remove`` on every pruned module: a plain model whose
    ``weight`` parameters hold the masked values (exact zeros)."""
    for m in unwrap(model).modules():
        if torch_prune.is_pruned(m) and hasattr(m, "weight_orig"):
            torch_prune.remove(m, "weight")


# --- the method ---


def _imp_total(dense: Time, retrain: Time, phases: int) -> Time:
    unit = retrain.unit if dense.value == 0 else dense.unit
    return Time(dense.value + phases * retrain.value, unit)


@METHODS.register("prune")
class Prune(Method):
    """Magnitude pruning: IMP with budgeted retraining, or gradual (Zimmer et al. 2023; Zhu & Gupta 2017)."""

    columns: ClassVar[tuple[str, ...]] = ("sparsity", "nonzero_params", "flops", "nonzero_flops")
    order: ClassVar[int] = 5

    def __init__(self, *, schedule: Literal["imp", "gradual"] = "imp",
                 goal: Annotated[float, Range(gt=0, lt=1)] = 0.9,
                 scope: Literal["global", "layer"] = "global",
                 exclude: list[str] | None = None,
                 exclude_first_conv: bool = False,
                 phases: PosInt = 3,
                 retrain: Time = Time(10, "ep"),
                 retrain_schedule: Literal["ft", "lrw", "slr", "clr", "llr", "allr"] = "llr",
                 dense: Time | None = None,
                 start: Time = Time(0.1, "dur"),
                 end: Time = Time(0.75, "dur"),
                 every: Time = Time(1, "ep"),
                 initial: Fraction = 0.0) -> None:
        self.schedule, self.goal, self.scope, self.exclude = schedule, goal, scope, exclude
        self.exclude_first_conv = exclude_first_conv
        self.phases, self.retrain, self.dense = phases, retrain, dense
        self.retrain_schedule = retrain_schedule
        self.start, self.end, self.every, self.initial = start, end, every, initial
        self.allr_start = 1.0
        self.prune_at: dict[int, float] = {}  # completed steps -> sparsity to prune to before the next
        self.bounds: list[int] = []  # IMP: dense end, then each round's end

    # --- set-up ---

    def on_init(self, state: TrainState) -> None:
        model = unwrap(state.model)
        shape = state.data.shape if state.data is not None else None
        self.modules = list(select_modules(model, self._exclude(model, shape, state.device)).values())
        reparametrise(self.modules)
        self.layer_flops = layer_flops(model, shape, state.device) if shape is not None else {}
        self.total_flops = sum(self.layer_flops.values())

    def _exclude(self, model: nn.Module, shape: Sequence[int] | None, device: torch.device) -> list[str]:
        """The names to leave dense: ``exclude`` (default: the classifier), plus the first
        convolution with ``exclude_first_conv``."""
        if shape is None:  # no data to run the model on (a bare TrainState): registration order
            names = prunable_names(model)
            classifier, first_conv = (names[-1] if names else None), next(
                (n for n in names if isinstance(model.get_submodule(n), nn.modules.conv._ConvNd)), None)
        else:
            classifier, first_conv = find_classifier_and_first_conv(model, shape, device)
        exclude = list(self.exclude) if self.exclude is not None else [n for n in [classifier] if n]
        if self.exclude_first_conv and first_conv is not None and first_conv not in exclude:
            exclude.insert(0, first_conv)
        return exclude

    def on_fit_start(self, state: TrainState) -> None:
        clock, total = state.clock, state.clock.total_steps
        if state.schedule is not None and getattr(state.schedule, "self_timed", False):
            raise InputError("methods.prune: cyclic (self-timed) schedules are refused; see "
                             "'trainbench list methods' and the prune docstring.")
        self.params = [m.weight_orig for m in self.modules]
        self.all_params = [p.detach() for p in unwrap(state.model).parameters()]  # ALLR's model norm
        self.masks = [m.weight_mask for m in self.modules]
        self.peak_lrs = [g.setdefault("initial_lr", g["lr"]) for g in state.optimizer.param_groups]
        if self.schedule == "gradual":
            start, end = clock.steps(self.start), clock.steps(self.end)
            every = clock.steps(self.every, at_least_one=True)
            if not 0 <= start < end < total:
                raise InputError(f"methods.prune: gradual pruning needs 0 <= start < end < the run's "
                                 f"end; got start {self.start} (step {start}), end {self.end} (step "
                                 f"{end}), {total} steps in all.")
            self.prune_at = {s: gradual_sparsity(s, start, end, self.goal, self.initial)
                             for s in gradual_steps(start, end, every)}
            self.prune_at = {s: v for s, v in self.prune_at.items() if v > 0}
            return
        dense = self.dense
        retrain_steps = clock.steps(self.retrain, at_least_one=True)
        if dense is None:
            d = total - self.phases * retrain_steps
            bounds = [d + k * retrain_steps for k in range(self.phases)]
        else:
            bounds = [clock.steps(_imp_total(dense, self.retrain, k)) for k in range(self.phases)]
        bounds.append(total)
        smoke = clock.batch_scale != 1.0  # time dilated: rounds may round to less than a step
        if smoke and total >= self.phases and any(b <= a for a, b in itertools.pairwise(bounds)):
            d = min(max(bounds[0], 0), total - self.phases)
            bounds = [d + round(k * (total - d) / self.phases) for k in range(self.phases + 1)]
        if bounds[0] < 0 or any(b <= a for a, b in itertools.pairwise(bounds)):
            raise InputError(f"methods.prune: the run ({total} steps) does not fit a dense phase of "
                             f"{self.dense} and {self.phases} rounds of {self.retrain} (phase ends at "
                             f"steps {bounds}); check duration, dense and retrain.")
        self.bounds = bounds
        self.prune_at = {b: imp_sparsity(self.goal, self.phases, k + 1) for k, b in enumerate(bounds[:-1])}
        d = bounds[0]
        if self.retrain_schedule in ("ft", "lrw", "slr") and d == 0:
            raise InputError(f"methods.prune.retrain_schedule: '{self.retrain_schedule}' replays the "
                             "dense phase's LRs, but there is no dense phase (dense: 0).")
        from trainbench.schedules import build_schedule

        sched = state.recipe.get("schedule") or {"name": "constant"}
        peak = state.recipe.get("optimizer", {}).get("lr", self.peak_lrs[0])
        dense_clock = dataclasses.replace(clock, total_steps=max(d, 1))
        self.dense_schedule = build_schedule(sched).bind(dense_clock, peak)
        self.dense_lrs = DenseLRs.of(self.dense_schedule, d)
        self._set_lr(state.optimizer, self.lr_factor(state.step))

    def curve_points(self, state: TrainState) -> Iterable[int]:
        return [b for b in self.bounds if b > 0]

    # --- LR (IMP) ---

    def lr_factor(self, i: int, *, end: bool = False) -> float:
        """The LR multiplier for update ``i`` (0-based), or with ``end`` the value reached
        after ``i`` updates (the ``lr`` column)."""
        b = self.bounds
        if i < b[0] or (end and i == b[0]):
            return self.dense_schedule.end_factor(i) if end else self.dense_schedule.factor(i)
        k = next(k for k in range(1, len(b)) if (i <= b[k] if end else i < b[k]))
        return retrain_factor(self.retrain_schedule, i - b[k - 1], b[k] - b[k - 1], self.dense_lrs,
                              start=self.allr_start)

    def _set_lr(self, optimizer: Any, factor: float) -> None:
        for g, peak in zip(optimizer.param_groups, self.peak_lrs, strict=True):
            g["lr"] = peak * factor

    # --- per step ---

    def on_batch(self, state: TrainState, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = state.step
        if s in self.prune_at:
            allr = self.retrain_schedule == "allr" and self.schedule == "imp"
            if allr:  # BIMP: the norm of the whole model (every weight and bias) before pruning
                model_norm = torch.stack(torch._foreach_norm(self.all_params)).norm()
            removed, _ = prune_to_(self.modules, self.prune_at[s], self.scope)
            mask_(self.params, self.masks, state.optimizer)
            if allr:
                r, n = torch.stack([removed, model_norm]).tolist()  # one host read per round
                k = self.bounds.index(s)
                self.allr_start = allr_start(r / n if n > 0 else 0.0, phase_amount(self.goal, self.phases),
                                             self.bounds[k + 1] - s, self.bounds[0], self.dense_lrs.max)
        if self.bounds:  # IMP governs the LR (after the engine's scheduler wrote its own)
            self._set_lr(state.optimizer, self.lr_factor(s))
        return x, y

    def after_step(self, state: TrainState) -> None:
        mask_(self.params, self.masks, state.optimizer)

    # --- evaluation, end, state ---

    def on_eval(self, state: TrainState, evaluate: Evaluate) -> dict[str, float]:
        row: dict[str, float] = {**sparsity_stats(state.model, self.modules),
                                 "flops": float(self.total_flops),
                                 "nonzero_flops": nonzero_flops(unwrap(state.model), self.layer_flops)}
        if self.bounds:
            row["lr"] = self.peak_lrs[0] * self.lr_factor(state.step, end=True)
        return row

    def on_end(self, state: TrainState) -> None:
        make_permanent(state.model)

    def state_dict(self) -> dict[str, Any]:
        return {"allr_start": self.allr_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.allr_start = float(state.get("allr_start", 1.0))

    # --- recipe ---

    @classmethod
    def resolve_duration(cls, recipe: dict[str, Any],
                         explicit_duration: Any) -> Iterable[tuple[tuple[str, ...], str]]:
        """IMP defines the run's length: ``dense + phases * retrain``. Called while the
        recipe is resolved; fills ``dense`` (null: the recipe's duration) and ``duration``."""
        p = recipe["methods"]["prune"]
        if p["schedule"] != "imp" or _self_timed(recipe):
            return
        retrain = Time.parse(p["retrain"])
        dense = Time.parse(p["dense"]) if p["dense"] is not None else Time.parse(recipe["duration"])
        for name, t in (("retrain", retrain), ("dense", dense)):
            if t.unit == "dur":
                yield (*FIELD, name), (f"{name} {t} cannot be in 'dur': IMP defines the run's length "
                                       "from it. Use 'ep', 'ba' or 'sp'.")
                return
        if dense.value > 0 and dense.unit != retrain.unit:
            yield (*FIELD, "dense"), (f"give dense ({dense}) and retrain ({retrain}) in the same unit: "
                                      "the run's length is dense + phases x retrain.")
            return
        total = _imp_total(dense, retrain, p["phases"])
        explicit = Time.parse(explicit_duration) if explicit_duration is not None else None
        if p["dense"] is not None and explicit is not None and explicit != total:
            yield ("duration",), (f"IMP pruning defines the run's length (dense {dense} + {p['phases']} x "
                                  f"retrain {retrain} = {total}); remove 'duration', set it to {total}, "
                                  "or set methods.prune.dense: null to make 'duration' the dense phase.")
            return
        p["dense"] = str(dense)
        recipe["duration"] = str(total)

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        p = recipe["methods"]["prune"]
        if _self_timed(recipe):
            yield FIELD, (f"pruning is refused with the self-timed '{recipe['schedule']['name']}' "
                          "schedule (a cyclic run): its cycles set the LR and the run's length, which "
                          "IMP's rounds and retraining schedules (or gradual pruning's ramp) also do. "
                          "Use a non-cyclic schedule such as cosine.")
            return
        if Time.parse(p["every"]).value == 0:
            yield (*FIELD, "every"), "every must be greater than 0 (e.g. every: 1ep)."
        if p["schedule"] == "gradual":
            start, end = Time.parse(p["start"]), Time.parse(p["end"])
            if start.unit == end.unit and start.value >= end.value:
                yield (*FIELD, "start"), f"gradual pruning needs start < end; got start {start}, end {end}."
            if p["initial"] >= p["goal"]:
                yield (*FIELD, "initial"), (f"initial sparsity {p['initial']} must be below goal "
                                            f"{p['goal']}.")
            dur = Time.parse(recipe["duration"])
            if (end.unit == "dur" and end.value >= 1) or (end.unit == dur.unit and end.value >= dur.value):
                yield (*FIELD, "end"), (f"end {end} is not before the run's end ({dur}): the final "
                                        "sparsity would get no training; lower it, e.g. end: 0.75dur.")
            return
        if Time.parse(p["retrain"]).value == 0:
            yield (*FIELD, "retrain"), "retrain must be greater than 0 (e.g. retrain: 10ep)."
        if p["dense"] is not None and Time.parse(p["dense"]).value == 0 and p["retrain_schedule"] in (
                "ft", "lrw", "slr"):
            yield (*FIELD, "retrain_schedule"), (
                f"'{p['retrain_schedule']}' replays the dense phase's LRs, but dense is 0; use llr, "
                "clr or allr, or give a dense phase.")
        if recipe["schedule"].get("cycle_momentum"):
            yield ("schedule", "cycle_momentum"), ("momentum cycling follows the whole run, not IMP's "
                                                   "phases; set cycle_momentum: false with IMP pruning.")
        swa = recipe["methods"].get("swa")
        if swa and swa.get("lr") is not None:
            yield ("methods", "swa", "lr"), ("IMP pruning governs the LR of every retraining round; "
                                             "set swa.lr: null (or use schedule: gradual).")
        if recipe["curve"]["mode"] == "budgets":
            yield ("curve", "mode"), ("IMP pruning defines the run's length itself; budgets mode "
                                      "(separate runs of other lengths) is refused with it.")


def _self_timed(recipe: dict[str, Any]) -> bool:
    return self_timed(recipe["schedule"]["name"])
