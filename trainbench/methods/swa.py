"""Stochastic weight averaging (Izmailov, Podoprikhin, Garipov, Vetrov and Wilson, "Averaging
Weights Leads to Wider Optima and Better Generalization", UAI 2018).

From ``start`` on, the weights are averaged (equal weights) every ``every``, counted back
from the end of the run so the final weights are always in the average: in a 30-epoch run
with ``start: 0.75dur`` and ``every: 1ep`` the snapshots are those after epochs 23, 24, ...,
30. Built on ``torch.optim.swa_utils``: the average is an ``AveragedModel``. Each evaluation
point also evaluates the average, in the columns ``test_acc_swa``, ``test_loss_swa``,
``test_ece_swa``; they are blank while the average is empty.

**BatchNorm statistics.** Before each evaluation at which the average has new snapshots
(only if the model has BatchNorm), its running statistics are recomputed by one pass over
the clean training images (normalised, no augmentation, no mixing, no autocast), as
``update_bn`` does, with two differences (:func:`update_bn_weighted`): the images come in a
seeded random order (from the recipe's seed, the same at every recomputation and after a
resume), split into near-equal batches of at most ``data.eval_batch_size``; and each
batch's statistics are weighted by its size. ``update_bn`` averages per-batch statistics
with equal weights over the data in stored order: on class-sorted data (``imagefolder``)
each batch then holds one class and the recomputed variance is the within-class variance
(0.02 instead of 1.0 on a tiny sorted folder), and a short last batch weighs as much as a
full one. Now the running mean is exactly the training set's mean of the layer's input, and
the running variance the size-weighted mean of random batches' (unbiased) variances.

**Timing.** That pass is training work (the average is not a usable model without it), so it
runs in the ``before_eval`` event, on the training clock: it counts in ``train_time_s``.
Evaluating the average (``on_eval``) does not.

With ``lr`` set, ``SWALR`` is created at ``start`` and anneals the LR (``anneal_strategy``
cos or linear) from the schedule's value there to ``lr`` over ``anneal`` steps, then holds
it. It is stepped after the engine's schedule on every optimizer step, so it wins, and the
``lr`` column of points.csv shows its LR from then on.

The averaging update itself is sync-free (the snapshot count is kept on the host), unlike
``AveragedModel.update_parameters``, which reads ``n_averaged`` on the host at each call.

Recipe::

    methods:
      swa: {start: 0.75dur, every: 1ep}                  # with the recipe's own schedule
      swa: {start: 0.75dur, lr: 0.01, anneal: 2ep}       # SWALR: constant LR 0.01 after 2ep

Data-parallel runs: every rank averages the identical (all-reduced) weights at the same
steps, so the averages are identical. The BatchNorm recomputation is a full pass over the
whole training set on every rank (not sharded): each rank computes exactly the same
statistics, at the cost of one pass per rank (as long as a single process's). With
``model.sync_bn`` the pass goes through SyncBatchNorm, whose all-reduced statistics over
identical inputs are the same again.

Runs at order 10: after model surgery (the copy has the final architecture), before
compilation (it copies the plain module).

Cyclic runs (a self-timed ``cyclic``/``sgdr`` schedule with more than one cycle): the run
holds a whole curve, so "75% of training" is anchored per cycle. ``start`` must be in 'dur'
and is the fraction into *each* cycle (the first cycle counts from step 0, warmup included,
so the first point is exactly the matching budget run's); the average is reset at each
cycle's start, so the point at each cycle end reports the SWA of that cycle's last part,
and points between a cycle start and its averaging window are blank. ``lr`` must be null
there: the cyclic schedule governs the LR. In budgets mode each budget run is a single
cycle and SWA behaves as in any single run.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel

from trainbench.errors import InputError
from trainbench.methods.base import METHODS, Evaluate, Method, TrainState
from trainbench.methods.ema import copy_model, model_tensors
from trainbench.recipe import self_timed
from trainbench.registry import PosFloat
from trainbench.timeunits import Time

FIELD = ("methods", "swa")
BN_ORDER_STREAM = 5  # the BN pass's order is seeded with seed * 1000 + 5 (the engine uses 1..4)


def swa_steps(start_step: int, end_step: int, every: int) -> list[int]:
    """The steps after which a snapshot is averaged: ``end_step``, ``end_step - every``, ...
    down to ``start_step`` (steps below 1 excluded), in increasing order."""
    return list(range(end_step, max(start_step, 1) - 1, -every))[::-1]


def cycle_windows(cycle_ends: Sequence[int], start: float) -> list[tuple[int, int]]:
    """Per cycle, ``(first, end)``: averaging may happen at steps ``first..end``. Cycle k
    spans the steps after ``cycle_ends[k-1]`` (0 for the first cycle) up to ``cycle_ends[k]``,
    and its window starts the fraction ``start`` into it (at least one step in)."""
    out, prev = [], 0
    for end in cycle_ends:
        out.append((max(prev + round(start * (end - prev)), prev + 1), end))
        prev = end
    return out


@torch.no_grad()
def swa_update_(averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor],
                n_averaged: int) -> None:
    """In place: the running equal-weight mean after adding ``current`` to an average of
    ``n_averaged`` snapshots (a copy when ``n_averaged`` is 0). No host sync."""
    if n_averaged == 0:
        torch._foreach_copy_(list(averaged), list(current))
    else:
        torch._foreach_lerp_(list(averaged), list(current), 1.0 / (n_averaged + 1))


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def update_bn_weighted(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], model: nn.Module) -> None:
    """Recompute ``model``'s BatchNorm running statistics from one pass over ``batches``
    (``(images, labels)``; labels unused), each batch's statistics weighted by its size.

    Like ``torch.optim.swa_utils.update_bn`` (statistics reset, train mode, momentum
    restored after), but where ``update_bn`` (momentum ``None``) takes the plain mean of the
    per-batch statistics, here batch ``k`` of ``b_k`` images gets momentum
    ``b_k / (b_1 + ... + b_k)``: the running values end as ``sum(b_k * stat_k) / sum(b_k)``.
    Sync-free: batch sizes are host integers."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
    model.train()
    seen = 0
    for x, _ in batches:
        seen += x.shape[0]
        for bn in bns:
            bn.momentum = x.shape[0] / seen
        model(x)
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    model.train(was_training)


def _multi_cycle(recipe: dict[str, Any]) -> bool:
    sched = recipe["schedule"]
    return recipe["curve"]["mode"] == "cyclic" and self_timed(sched["name"]) and sched.get("cycles", 1) > 1


@METHODS.register("swa")
class SWA(Method):
    """Stochastic weight averaging with BN recomputation and optional SWALR (Izmailov et al. 2018)."""

    columns: ClassVar[tuple[str, ...]] = ("test_acc_swa", "test_loss_swa", "test_ece_swa")
    order: ClassVar[int] = 10

    def __init__(self, *, start: Time = Time(0.75, "dur"), lr: PosFloat | None = None,
                 anneal: Time = Time(0, "ep"), anneal_strategy: Literal["cos", "linear"] = "cos",
                 every: Time = Time(1, "ep")) -> None:
        self.start, self.lr, self.anneal = start, lr, anneal
        self.anneal_strategy, self.every = anneal_strategy, every
        self.swa: AveragedModel | None = None
        self.swalr: SWALR | None = None
        self.n = 0  # snapshots in the average (host copy of swa.n_averaged)
        self.avg_cycle = -1  # the cycle whose snapshots the average holds
        self.fresh = False  # new snapshots since the last evaluation of the average
        self.bn_stale = False  # new snapshots since the last BatchNorm recomputation
        self.cached: dict[str, float] = {}

    # --- set-up ---

    def on_init(self, state: TrainState) -> None:
        self.swa = copy_model(state.model, "swa", AveragedModel)  # deep-copies the plain module
        self.swa.requires_grad_(False)
        self.has_bn = has_batchnorm(self.swa.module)
        self.param_names = [n for n, _ in self.swa.module.named_parameters()]
        self.buffer_names = [n for n, _ in self.swa.module.named_buffers()]

    def on_fit_start(self, state: TrainState) -> None:
        sched, clock = state.schedule, state.clock
        total = clock.total_steps
        self.every_steps = clock.steps(self.every, at_least_one=True)
        ends = list(sched.curve_points())
        if sched.self_timed and len(ends) > 1:
            if self.start.unit != "dur" or self.lr is not None:
                raise InputError("methods.swa: in a cyclic run 'start' must be in 'dur' and 'lr' "
                                 f"null (got start {self.start}, lr {self.lr}).")
            self.cycle_ends = ends
            self.windows = cycle_windows(ends, self.start.value)
        else:
            first = clock.steps(self.start)
            if first > total:
                raise InputError(f"methods.swa.start: {self.start} is step {first}, after the run's "
                                 f"last step {total}; no weights would be averaged. Lower it.")
            self.cycle_ends = [total]
            self.windows = [(max(first, 1), total)]
        self.snapshots = {s for first, end in self.windows for s in swa_steps(first, end, self.every_steps)}
        self.start_step = clock.steps(self.start)
        self.anneal_steps = clock.steps(self.anneal)
        self.optimizer = state.optimizer

    # --- per step ---

    def cycle_of(self, step: int) -> int:
        """Index of the cycle holding ``step`` (a cycle end belongs to the cycle it ends)."""
        return bisect.bisect_left(self.cycle_ends, step)

    def is_swa_step(self, step: int) -> bool:
        return step in self.snapshots

    def after_step(self, state: TrainState) -> None:
        s = state.step
        if self.lr is not None and s >= self.start_step:
            self._step_swalr(state.optimizer)
        if self.is_swa_step(s):
            k = self.cycle_of(s)
            if k != self.avg_cycle:  # a new cycle: the next snapshot starts a new average
                self.n, self.avg_cycle = 0, k
            self._average(state.model)

    def _step_swalr(self, optimizer: torch.optim.Optimizer) -> None:
        if self.swalr is None:
            self.swalr = SWALR(optimizer, swa_lr=self.lr, anneal_epochs=self.anneal_steps,
                               anneal_strategy=self.anneal_strategy)
        else:
            # The engine's LambdaLR has just overwritten the LR with the schedule's; SWALR
            # interpolates from the LR it set itself, so give it that back first.
            self._restore_swalr_lr(optimizer)
            self.swalr.step()

    def _restore_swalr_lr(self, optimizer: torch.optim.Optimizer) -> None:
        assert self.swalr is not None
        for group, lr in zip(optimizer.param_groups, self.swalr.get_last_lr(), strict=True):
            group["lr"] = lr

    def _average(self, model: nn.Module) -> None:
        assert self.swa is not None
        module = self.swa.module
        swa_update_(model_tensors(module, self.param_names), model_tensors(model, self.param_names),
                    self.n)
        if self.buffer_names:  # buffers follow the model, as AveragedModel(use_buffers=False)
            torch._foreach_copy_(model_tensors(module, self.buffer_names),
                                 model_tensors(model, self.buffer_names))
        self.n += 1
        self.swa.n_averaged.fill_(self.n)
        self.fresh = self.bn_stale = True

    # --- checkpoints ---

    def state_dict(self) -> dict[str, Any]:
        assert self.swa is not None
        return {"swa": self.swa.state_dict(), "n": self.n, "avg_cycle": self.avg_cycle,
                "fresh": self.fresh, "bn_stale": self.bn_stale, "cached": dict(self.cached),
                "swalr": None if self.swalr is None else self.swalr.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.swa is not None
        self.swa.load_state_dict(state["swa"])
        self.n, self.avg_cycle, self.fresh = state["n"], state["avg_cycle"], state["fresh"]
        self.bn_stale = state.get("bn_stale", self.fresh)  # older checkpoints: recompute if fresh
        self.cached = dict(state["cached"])
        if state["swalr"] is not None:
            # SWALR's constructor takes a step that rewrites the LR: rebuild it, restore its
            # position (its last LRs included), then the LR it had set.
            self._step_swalr(self.optimizer)
            self.swalr.load_state_dict(state["swalr"])
            self._restore_swalr_lr(self.optimizer)

    # --- evaluation ---

    def recompute_bn(self, state: TrainState) -> None:
        """BatchNorm statistics of the average from one pass over the clean training images,
        in a seeded random order (see the module docstring)."""
        assert self.swa is not None
        seed = state.recipe.get("seed", 0) * 1000 + BN_ORDER_STREAM
        with torch.autocast(state.device.type, enabled=False):
            update_bn_weighted(state.data.clean_train_batches(seed=seed), self.swa.module)
        self.bn_stale = False

    def _shows_average(self, state: TrainState) -> bool:
        """Whether this evaluation point reports the average (not empty, this cycle's)."""
        return self.n > 0 and self.cycle_of(state.step) == self.avg_cycle

    def before_eval(self, state: TrainState) -> None:
        # Training work, on the training clock: the average's BN statistics.
        if self.has_bn and self.bn_stale and self._shows_average(state):
            self.recompute_bn(state)

    def on_eval(self, state: TrainState, evaluate: Evaluate) -> dict[str, float]:
        # Once SWALR governs the LR, the lr column shows its LR (the one the next step uses,
        # as the column does for the schedule), not the overridden schedule's.
        lr = {} if self.swalr is None else {"lr": self.optimizer.param_groups[0]["lr"]}
        return {**self._evaluate_average(state, evaluate), **lr}

    def _evaluate_average(self, state: TrainState, evaluate: Evaluate) -> dict[str, float]:
        if not self._shows_average(state):
            return {}  # empty, or holding an earlier cycle's average: blank
        if self.fresh:
            assert self.swa is not None
            self.before_eval(state)  # a no-op when the engine has fired it (it always does)
            r = evaluate(self.swa.module)
            self.cached = {"test_acc_swa": r["test_acc"], "test_loss_swa": r["test_loss"],
                           "test_ece_swa": r["test_ece"]}
            self.fresh = False
        return dict(self.cached)

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        p = recipe["methods"]["swa"]
        start, every, anneal = Time.parse(p["start"]), Time.parse(p["every"]), Time.parse(p["anneal"])
        dur = Time.parse(recipe["duration"])
        same = start.unit == dur.unit
        at_end = start.value >= 1 if start.unit == "dur" else same and start.value >= dur.value
        if at_end:
            yield (*FIELD, "start"), (f"start {start} is not before the end of the run ({dur}), so "
                                      "no weights would be averaged; lower it, e.g. start: 0.75dur.")
        if every.value == 0:
            yield (*FIELD, "every"), "every must be greater than 0 (e.g. every: 1ep)."
        if _multi_cycle(recipe):
            cycles = recipe["schedule"]["cycles"]
            what = f"a cyclic run ('{recipe['schedule']['name']}' schedule, {cycles} cycles)"
            if start.unit != "dur":
                yield (*FIELD, "start"), (f"in {what} 'start' is the fraction into each cycle, so it "
                                          f"must be in 'dur' (got {start}); e.g. start: 0.75dur "
                                          "averages the last quarter of every cycle.")
            if p["lr"] is not None:
                yield (*FIELD, "lr"), (f"in {what} the cyclic schedule governs the LR; set lr: null "
                                       "(SWALR's constant LR would replace the cycles).")
            if every.unit == "dur":
                yield (*FIELD, "every"), (f"in {what} 'every' must be in 'ep', 'ba' or 'sp' "
                                          f"(got {every}), e.g. every: 1ep.")
        if p["lr"] is None and anneal.value > 0:
            yield (*FIELD, "anneal"), (f"anneal {anneal} has no effect without lr (the SWA LR); "
                                       "set lr, or remove anneal.")
