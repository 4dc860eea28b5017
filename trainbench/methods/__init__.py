"""Training methods (recipe ``methods:``), one module each; see :mod:`.base` for events.

Every module of this package is imported here, so a new method is one new module whose
class is decorated with ``@METHODS.register("name")``.
"""

import importlib
import pkgutil

from trainbench.methods.base import METHODS, Method, TrainState

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "Method", "TrainState"]
