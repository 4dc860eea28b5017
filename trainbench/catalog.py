"""What exists, for ``trainbench list``: names, one line of help, parameters with defaults."""

from __future__ import annotations

from typing import Any

import yaml

from trainbench.recipe import yamlable
from trainbench.registry import REQUIRED, Registry, params_of


def _registry(kind: str) -> Registry[Any]:
    if kind == "datasets":
        from trainbench.data import DATASETS as reg
    elif kind == "models":
        from trainbench.models import MODELS as reg
    elif kind == "optimizers":
        from trainbench.optim import OPTIMIZERS as reg
    elif kind == "schedules":
        from trainbench.schedules import SCHEDULES as reg
    else:
        from trainbench.methods import METHODS as reg
    return reg


def yaml_value(value: Any) -> str:
    """``value`` on one line as a recipe would write it: null, false, [0.5dur, 0.75dur], {}."""
    text = yaml.safe_dump(yamlable(value), default_flow_style=True, width=10**9)
    return text.removesuffix("\n").removesuffix("\n...")  # a lone scalar ends its document


def _fmt_param(name: str, default: Any) -> str:
    if default is REQUIRED:
        return f"{name} (required)"
    return f"{name}={yaml_value(default)}"


def catalog(kind: str) -> list[tuple[str, str, str]]:
    rows = []
    for e in _registry(kind):
        params = ", ".join(_fmt_param(s.name, s.default) for s in params_of(e.factory).values())
        rows.append((e.name, e.help, params or "-"))
    if kind == "models":
        rows.append(("timm:<name>", "any timm model, e.g. timm:resnet50 (random init)", "kwargs={}"))
        rows.append(("torchvision:<name>", "any torchvision model, e.g. torchvision:resnet18",
                     "kwargs={}"))
    return rows
