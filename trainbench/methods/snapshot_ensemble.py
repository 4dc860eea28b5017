"""Ensembles from one cyclic run: snapshot ensembles (Huang, Li, Pleiss, Liu, Hopcroft,
Weinberger, "Snapshot Ensembles: Train 1, get M for free", ICLR 2017) and fast geometric
ensembling (Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, "Loss Surfaces, Mode
Connectivity, and Fast Ensembling of DNNs", NeurIPS 2018).

Both take the model at the end of each LR cycle (an LR minimum) and predict with the average
of the snapshots' softmax outputs. Snapshot ensembles use cosine cycles with warm restarts
(the ``cyclic``/``sgdr`` schedules); FGE uses short ``triangular`` cycles. Here a snapshot is
taken at each of the schedule's own curve points (its cycle ends), and every evaluation point
from the first snapshot on reports the ensemble of the snapshots taken so far, in the columns
``test_acc_ens`` and ``test_ece_ens`` (15-bin ECE of the averaged probabilities); blank
before the first snapshot. At the first cycle end the ensemble is the model alone.

``max_snapshots`` bounds the ensemble: the most recent ones are kept (Huang et al. ensemble
the last ``m`` snapshots; their CIFAR runs have 6), the oldest is dropped when a new one
comes. Snapshots live on the host (a CPU copy of the model's ``state_dict``, taken at the
evaluation point, where a device sync is allowed), so the device holds only one extra model,
into which each snapshot is loaded once to compute its test-set probabilities; those are
cached on the device (test images x classes floats per snapshot), so each evaluation point
costs one test-set pass per *new* snapshot and an average. Taking the snapshot is training
work (``before_eval``, on the training clock; one device-to-host copy of the weights per
cycle), evaluating the ensemble is not (``on_eval``). The snapshots are part of a checkpoint
(``state_dict``), which grows by up to ``max_snapshots`` models; a resumed run reports the
same ensembles as an uninterrupted one.

Evaluation in fp32 without autocast (the columns are comparable across precisions; with one
snapshot, ``test_acc_ens`` equals an fp32 evaluation of the model).

Recipe (needs a schedule with several cycles, in one run)::

    schedule: {name: cyclic, warmup: 1ep, t0: 1ep, t_mult: 2, cycles: 5}
    methods:
      snapshot_ensemble: {max_snapshots: 6}

Cyclic runs are what it is for: the point at cycle ``k`` is the ensemble of cycles ``1..k``
(at most ``max_snapshots`` of them). So, unlike the plain curve, the ensemble curve is not
"what a separate run of that length gives" but "what one run up to there gives, ensembled".
In ``curve.mode: budgets`` each budget run has one cycle, so it is refused there.

Under DDP every rank holds the same weights and so the same snapshots; each evaluates them
over the test batches its loader serves, as the engine evaluates the model.

Runs at order 10 (with the averaging methods): after model surgery, so the scratch copy has
the final architecture, and before compilation (it copies the plain module).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from trainbench.calibration import expected_calibration_error, predict
from trainbench.errors import InputError
from trainbench.methods.base import METHODS, Evaluate, Method, TrainState
from trainbench.methods.ema import copy_model, unwrap
from trainbench.recipe import self_timed
from trainbench.registry import PosInt

FIELD = ("methods", "snapshot_ensemble")
StateDict = dict[str, torch.Tensor]


def host_copy(model: nn.Module) -> StateDict:
    """A CPU copy of ``model``'s state_dict (the plain module's, behind a compile wrapper)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def ensemble_metrics(probs: list[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and ECE of the ensemble whose members gave class probabilities ``probs``
    (each ``[N, K]``): their plain average. Device scalars."""
    mean = torch.stack(probs).mean(0)
    acc = (mean.argmax(1) == labels).float().mean()
    return acc, expected_calibration_error(mean, labels)


@METHODS.register("snapshot_ensemble")
class SnapshotEnsemble(Method):
    """Ensemble of the models at the cycle ends of one cyclic run (Huang et al. 2017; FGE)."""

    columns: ClassVar[tuple[str, ...]] = ("test_acc_ens", "test_ece_ens")
    order: ClassVar[int] = 10

    def __init__(self, *, max_snapshots: PosInt = 6) -> None:
        self.max_snapshots = max_snapshots
        self.steps: list[int] = []  # the steps the kept snapshots were taken after
        self.snapshots: list[StateDict] = []
        self._probs: dict[int, torch.Tensor] = {}  # step -> test probabilities (a cache)
        self._cached: tuple[tuple[int, ...], dict[str, float]] | None = None

    def on_init(self, state: TrainState) -> None:
        self.scratch = copy_model(state.model, "snapshot_ensemble").eval().requires_grad_(False)

    def on_fit_start(self, state: TrainState) -> None:
        ends = list(state.schedule.curve_points())
        if len(ends) < 2:
            raise InputError(f"methods.snapshot_ensemble: the schedule has {len(ends)} cycle end in "
                             "this run, so the ensemble would be the model alone; use a schedule "
                             "with several cycles (cyclic, sgdr with cycles >= 2, triangular).")
        self.snapshot_steps = set(ends)

    def before_eval(self, state: TrainState) -> None:
        # Every cycle end is an evaluation point; the host copy may sync there.
        if state.step in self.snapshot_steps and state.step not in self.steps:
            self.steps.append(state.step)
            self.snapshots.append(host_copy(state.model))
            if len(self.steps) > self.max_snapshots:
                self._probs.pop(self.steps.pop(0), None)
                self.snapshots.pop(0)

    def _member_probs(self, state: TrainState, step: int, weights: StateDict) -> torch.Tensor:
        if step not in self._probs:
            self.scratch.load_state_dict(weights)
            logits, self._labels = predict(self.scratch, state.data.test_batches())
            self._probs[step] = logits.softmax(1)
        return self._probs[step]

    def on_eval(self, state: TrainState, evaluate: Evaluate) -> dict[str, float]:
        if not self.steps:
            return {}
        key = tuple(self.steps)
        if self._cached is None or self._cached[0] != key:
            probs = [self._member_probs(state, s, w) for s, w in zip(self.steps, self.snapshots, strict=True)]
            acc, ece = torch.stack(ensemble_metrics(probs, self._labels)).tolist()
            self._cached = (key, {"test_acc_ens": acc, "test_ece_ens": ece})
        return dict(self._cached[1])

    def state_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "snapshots": list(self.snapshots)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = list(state["steps"])
        self.snapshots = [dict(s) for s in state["snapshots"]]
        self._probs, self._cached = {}, None  # recomputed from the snapshots, identically

    @classmethod
    def check_recipe(cls, recipe: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
        from trainbench.schedules import SCHEDULES, Schedule

        sched = recipe["schedule"]
        if recipe["curve"]["mode"] == "budgets":
            yield FIELD, ("ensembles the cycle ends of one run, but in curve.mode: budgets each "
                          "budget run has a single cycle; use curve.mode: cyclic.")
        elif self_timed(sched["name"]):
            if sched["cycles"] < 2:
                yield ("schedule", "cycles"), (f"snapshot_ensemble needs several cycles to ensemble "
                                               f"(got {sched['cycles']}); e.g. cycles: 5.")
        elif SCHEDULES.get(sched["name"]).curve_points is Schedule.curve_points:
            yield FIELD, (f"the '{sched['name']}' schedule has no cycles (its only snapshot would "
                          "be the final model); use cyclic, sgdr (snapshot ensembles) or "
                          "triangular (FGE).")
