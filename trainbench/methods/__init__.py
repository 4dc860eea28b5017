"""Training methods (recipe ``methods:``), one module each; see :mod:`.base` for events."""

from trainbench.methods import label_smoothing  # noqa: F401  (registers)
from trainbench.methods.base import METHODS, Method, TrainState

__all__ = ["METHODS", "Method", "TrainState"]
