"""Training methods (recipe ``methods:``), one module each; see :mod:`.base` for events.

Every module of this package is imported here, so a new method is one new module whose
class is decorated with ``@METHODS.register("name")``.
"""

import importlib
import pkgutil
from typing import Any

from trainbench.methods.base import METHODS, Method, TrainState
from trainbench.registry import instantiate

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")


def build_methods(section: dict[str, dict[str, Any]]) -> dict[str, Method]:
    """A resolved ``methods:`` section as instances by name, in event order: each class's
    ``order`` (model surgery first, compile last), recipe order among equals."""
    methods = ((name, instantiate(METHODS.get(name), params)) for name, params in section.items())
    return dict(sorted(methods, key=lambda item: item[1].order))


__all__ = ["METHODS", "Method", "TrainState", "build_methods"]
