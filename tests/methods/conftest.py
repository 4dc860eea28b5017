"""Helpers for method tests: a minimal TrainState, and a tiny in-memory dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from trainbench.data import ImageData
from trainbench.data.loader import DeviceData
from trainbench.methods import TrainState
from trainbench.timeunits import Clock


def tiny_data(n: int = 32, channels: int = 1, size: int = 4, classes: int = 3) -> DeviceData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    y = torch.randint(0, classes, (n,), generator=g)
    return DeviceData(ImageData(x, y, x.clone(), y.clone(), classes), torch.device("cpu"),
                      batch_size=8, eval_batch_size=16, augment=[], crop_padding=0,
                      normalize=True, seed=0)


def build_state(model: nn.Module | None = None, recipe: dict[str, Any] | None = None,
                **kw: Any) -> TrainState:
    defaults: dict[str, Any] = dict(
        recipe=recipe or {}, model=model or nn.Linear(4, 3), device=torch.device("cpu"),
        clock=Clock(10, 8, 100), num_classes=3, generator=torch.Generator().manual_seed(0),
        data=None, scaler=torch.amp.GradScaler("cpu", enabled=False),
        host_rng=np.random.default_rng(0))
    defaults.update(kw)
    return TrainState(**defaults)


def record_forwards(monkeypatch: Any) -> list[tuple[bool, tuple[int, ...]]]:
    """Make the engine's model record ``(training, input shape)`` for every forward pass."""
    from trainbench import engine

    seen: list[tuple[bool, tuple[int, ...]]] = []
    build = engine.build_model

    def recording(*args: Any, **kw: Any) -> nn.Module:
        model = build(*args, **kw)
        model.register_forward_pre_hook(lambda m, inp: seen.append((m.training, tuple(inp[0].shape))))
        return model

    monkeypatch.setattr(engine, "build_model", recording)
    return seen


# A trained run directory (recipe.yaml + model.pt) for the distillation tests: a few steps of
# the quickstart on a small slice, small model. Session-scoped: trained once.
TEACHER_SETS = ["data.train_subset=256", "duration=2ep", "model.width=8", "eval.every=1ep"]


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainbench.engine import run_recipe
    from trainbench.recipe import load_recipe
    from trainbench.results import RunDir

    path = tmp_path_factory.mktemp("teacher") / "quickstart" / "seed0"
    recipe = load_recipe(Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml", TEACHER_SETS)
    assert run_recipe(recipe, RunDir(path)).status == "completed"
    return path
