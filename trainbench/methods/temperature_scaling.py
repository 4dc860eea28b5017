"""Temperature scaling (Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017): post-hoc calibration by one scalar ``T`` dividing the logits, fitted to
minimise the negative log-likelihood on held-out data. Accuracy is unchanged (argmax is), the
confidences are not.

At every evaluation point, ``T`` is fitted on a held-out slice of the training set and the
model's test logits are scaled by it: columns ``test_ece_ts`` (15-bin ECE of
``softmax(logits / T)``, comparable with ``test_ece``), ``test_loss_ts`` (its NLL) and
``temperature``. Fitting and scaling are evaluation, off the training clock.

**The held-out slice** is a fixed class-stratified fraction ``holdout`` of the training set
(:func:`trainbench.data.subset.stratified_subset` with its own fixed seed: the same images for
every seed and recipe), *removed from training* when the run starts. Why not fit on images the
model trains on: a network fits its training images far more confidently than unseen ones
(on digits it reaches ~100% training accuracy), so the NLL there is minimised by sharpening
(``T < 1``) whereas the test set needs softening; Guo et al. fit on a validation set for this
reason. Why not a slice of the test set: the test set is what every run is scored on, and a
run's curve must not depend on which of its images a method borrowed. The cost is that the
model trains on ``1 - holdout`` of the images (``test_acc`` may move slightly against a run
without this method; ``test_ece`` and ``test_ece_ts`` of the same run compare exactly).
An epoch stays the full training set's length in steps (the run's clock is set before the
methods), so the run takes as many steps as without the method.
With ``data.label_noise`` the held-out slice carries the noisy labels (the noise is applied to
the training set before the slice is taken), so ``T`` calibrates to the noisy label
distribution, not to the clean test set: on recipes/digits_hard (40% symmetric noise) it made
the test ECE worse, 9.1% -> 24.5% (3 seeds). Calibrating for clean labels needs clean held-out
labels, which a noisy training set does not have.

**The fit**: the NLL of ``softmax(z / T)`` is convex in ``1 / T`` (a log-sum-exp of linear
functions minus a linear one), so scipy's bounded scalar minimiser
(``scipy.optimize.minimize_scalar``, ``method="bounded"``) finds its global minimum on
``T`` in [0.01, 100], in float64 on the host from the held-out logits (one host read per
evaluation point). The logits are the model's in fp32, eval mode, no autocast.
When the model classifies every held-out image correctly, the NLL keeps falling as ``T``
shrinks and the fit ends at the bound ``T = 0.01`` (one-hot confidences: ``test_ece_ts`` is
then ``1 - test_acc``); a larger ``holdout`` makes that less likely. On digits (143 held-out
images, ~99% accuracy) this is what happens.

Recipe::

    methods:
      temperature_scaling: {holdout: 0.1}

Cyclic runs: the fit is per evaluation point, from that point's model, so every curve point
gets its own temperature; nothing depends on the fraction of training. Budgets mode: each
budget run holds out the same images.

Under DDP the held-out images are removed from the global training set (every rank removes
the same ones before its slicing) and every rank fits the same temperature.

The last fitted temperature is in ``state_dict`` (the fit itself needs no state: a resumed
run refits at each point from the same model and gets the same values).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from trainbench.calibration import expected_calibration_error, predict
from trainbench.data.subset import stratified_subset
from trainbench.errors import InputError
from trainbench.methods.base import METHODS, Evaluate, Method, TrainState
from trainbench.registry import Range

HOLDOUT_SEED = 1  # fixed, like data.subset's: the held-out images belong to the task
T_MIN, T_MAX = 0.01, 100.0


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)``, in float64."""
    z = logits.astype(np.float64) / temperature
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in [T_MIN, T_MAX] that minimises :func:`nll` on ``(logits, labels)``: a
    bounded search over ``1 / T``, in which the NLL is convex."""
    res = minimize_scalar(lambda beta: nll(logits, labels, 1 / beta), bounds=(1 / T_MAX, 1 / T_MIN),
                          method="bounded", options={"xatol": 1e-10})
    return float(1 / res.x)


def split_holdout(labels: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept, held_out)`` index tensors of a training set with these ``labels``: a fixed
    class-stratified ``fraction`` of it (at least one image) held out, the rest kept, both in
    stored order."""
    n = len(labels)
    held = stratified_subset(labels, max(1, round(fraction * n)), seed=HOLDOUT_SEED)
    keep = torch.ones(n, dtype=torch.bool)
    keep[held] = False
    return keep.nonzero().squeeze(1), held


@METHODS.register("temperature_scaling")
class TemperatureScaling(Method):
    """Post-hoc temperature fitted per evaluation on held-out training images (Guo et al. 2017)."""

    columns: ClassVar[tuple[str, ...]] = ("test_ece_ts", "test_loss_ts", "temperature")

    def __init__(self, *, holdout: Annotated[float, Range(gt=0, lt=1)] = 0.1) -> None:
        self.holdout = holdout
        self.temperature: float | None = None

    def on_init(self, state: TrainState) -> None:
        data = state.data
        if not hasattr(data, "train_x"):
            raise InputError("methods.temperature_scaling holds training images out, which needs "
                             "the dataset on the device (the in-memory loader).")
        keep, held = split_holdout(data.train_y, self.holdout)
        if len(keep) < data.batch_size:
            raise InputError(f"methods.temperature_scaling.holdout: holding out {len(held)} of "
                             f"{len(data.train_y)} training images leaves {len(keep)}, fewer than a "
                             f"batch ({data.batch_size}); lower holdout or data.batch_size.")
        dev = data.train_x.device
        self.held_x, self.held_y = data.train_x[held.to(dev)], data.train_y[held.to(dev)]
        data.train_x, data.train_y = data.train_x[keep.to(dev)], data.train_y[keep.to(dev)]

    def _held_batches(self, state: TrainState) -> Any:
        bs = state.data.eval_batch_size
        for i in range(0, len(self.held_y), bs):
            yield state.data.normalize(self.held_x[i:i + bs]), self.held_y[i:i + bs]

    def on_eval(self, state: TrainState, evaluate: Evaluate) -> dict[str, float]:
        held_logits, held_y = predict(state.model, self._held_batches(state))
        t = fit_temperature(held_logits.double().cpu().numpy(), held_y.cpu().numpy())
        logits, labels = predict(state.model, state.data.test_batches())
        scaled = logits / t
        loss = torch.nn.functional.cross_entropy(scaled, labels)
        ece, loss = torch.stack([expected_calibration_error(scaled.softmax(1), labels), loss]).tolist()
        self.temperature = t
        return {"test_ece_ts": ece, "test_loss_ts": loss, "temperature": t}

    def state_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.temperature = state["temperature"]
