"""Weights & Biases: one wandb run per trainbench run, its files in the run directory's
``wandb/``.

Offline unless the user has logged in (``wandb login`` stores a key in ~/.netrc; or
``WANDB_API_KEY`` is set): nothing leaves the machine until ``wandb sync``. ``WANDB_MODE``
(online, offline, disabled) decides when set. Project: ``WANDB_PROJECT``, else the ``--out``
folder's name; run name ``<name>/seed<S>``; config: the resolved recipe flattened; every
points.csv column logged at its step, the sampled LR as ``lr_per_step``; points.csv,
curve.png, recipe.yaml and meta.json saved with the run at its end. The wandb run id is kept
in meta.json (``wandb.run_id``): ``--resume`` continues that run.
"""

from __future__ import annotations

import contextlib
import netrc
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trainbench.results import flatten
from trainbench.trackers.base import RunInfo, Tracker, scalars
from trainbench.trackers.mlflow import ARTIFACTS

LR_TAG = "lr_per_step"
EXIT_CODES = {"completed": 0, "interrupted": 255}  # wandb: 0 finished, 255 killed, else failed


def logged_in() -> bool:
    """Whether wandb has credentials here (no network call): WANDB_API_KEY, or the netrc entry
    ``wandb login`` writes for the wandb host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    with contextlib.suppress(OSError, netrc.NetrcParseError):
        return netrc.netrc(path).authenticators(host) is not None
    return False


def mode() -> str:
    return os.environ.get("WANDB_MODE") or ("online" if logged_in() else "offline")


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self) -> None:
        self.run: Any = None
        self.info: RunInfo | None = None

    def start(self, info: RunInfo) -> None:
        import wandb

        self.info = info
        meta = info.run.read_meta()
        previous = (meta.get("wandb") or {}).get("run_id") if info.resumed else None
        config = {k: v for k, v in flatten(info.recipe).items() if k != "log"}
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or info.out.name or "trainbench",
            name=info.label, dir=str(info.run.path), config=config, mode=mode(),  # type: ignore[arg-type]
            id=previous, resume="allow" if previous else None, reinit="create_new",
            tags=[info.name, f"seed{info.seed}"],
            settings=wandb.Settings(silent=True, console="off", save_code=False))
        if not info.backfill:
            info.run.update_meta(wandb={"run_id": self.run.id, "mode": mode()})

    def point(self, row: dict[str, float]) -> None:
        self.run.log(scalars(row), step=int(row["step"]))

    def lrs(self, samples: list[tuple[int, float]]) -> None:
        for step, lr in samples:
            self.run.log({LR_TAG: lr}, step=step)

    def end(self, status: str) -> None:
        assert self.info is not None
        self.run.summary["status"] = status
        for name in ARTIFACTS:  # files in the run's folder are saved with it (a copy: the final state)
            path = self.info.run.path / name
            if path.exists():
                shutil.copyfile(path, Path(self.run.dir) / name)
        self.close(EXIT_CODES.get(status, 1))

    def close(self, exit_code: int = 1) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=exit_code)
