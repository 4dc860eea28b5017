"""Which metrics can be compared, and which way is better.

A ranking needs a direction: "best", the cost to a target, speedups and the Pareto frontier
all depend on it. trainbench knows the direction of the metrics it writes, by family (a
method's variant of a column, e.g. ``test_acc_swa`` or ``test_loss_ema``, belongs to the
family of its prefix and falls back to it in runs without the method); any other column
(``lr``, ``sparsity``, a FLOP count) is refused rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainbench.errors import InputError

DEFAULT_METRIC = "test_acc"


@dataclass(frozen=True)
class Metric:
    name: str  # the points.csv column compared
    family: str  # the known column it varies (test_acc for test_acc_swa); runs without name use it
    lower_is_better: bool
    fraction: bool  # a value in [0, 1], shown in % (accuracy, ECE); otherwise shown as is (loss)

    @property
    def bounds(self) -> tuple[float, float]:
        """Where the metric's values lie: a 95% interval is clipped to them."""
        return (0.0, 1.0) if self.fraction else (0.0, math.inf)

    @property
    def is_accuracy(self) -> bool:
        return self.family == DEFAULT_METRIC


# family -> (lower is better, a fraction shown in %)
FAMILIES: dict[str, tuple[bool, bool]] = {
    "test_acc": (False, True),
    "test_loss": (True, False),
    "train_loss": (True, False),
    "test_ece": (True, True),
}


def metric_spec(name: str) -> Metric:
    """The metric ``name`` (a points.csv column) with its direction. InputError for a
    column whose direction trainbench does not know."""
    for family, (lower, fraction) in FAMILIES.items():
        if name == family or name.startswith(family + "_"):
            return Metric(name, family, lower, fraction)
    raise InputError(
        f"--metric {name}: trainbench does not know whether a higher or a lower {name} is better, "
        "so it cannot rank recipes by it. Compare one of the metric families: test_acc (higher is "
        "better; also test_acc_swa, test_acc_ema, ...), test_loss, train_loss, test_ece (lower is "
        "better; also their _swa/_ema variants). For accuracy against sparsity use --x sparsity.")


def normalize_target(target: float | None, metric: Metric | str = DEFAULT_METRIC) -> float | None:
    """The target as a value of the metric. For a fraction (accuracy, ECE) 0.98 and 98 both
    mean 98% (values above 1 are read as percent); a loss target is taken as it is."""
    if target is None:
        return None
    m = metric_spec(metric) if isinstance(metric, str) else metric
    if m.fraction:
        if not math.isfinite(target) or target <= 0 or target > 100:
            what = "an accuracy" if m.is_accuracy else f"a {m.name}"
            raise InputError(f"--target {target}: give {what} in (0, 1], e.g. 0.98, or a percent, e.g. 98.")
        return target / 100 if target > 1 else target
    if not math.isfinite(target) or target <= 0:
        raise InputError(f"--target {target}: give the {m.name} to get down to, a number above 0 "
                         "(e.g. 0.3); it is not a percent.")
    return target
