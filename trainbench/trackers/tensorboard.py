"""TensorBoard: event files in the run directory's ``tb/`` (``tensorboard --logdir OUT``).

Written with torch's ``SummaryWriter``: every points.csv column (but ``step``, the x axis) as
a scalar at the point's step, under the column's name; the LR the optimizer used, sampled
every ``max(1, total_steps // 1000)`` steps, as ``lr_per_step``; the resolved recipe as text
(``recipe``, step 0); ``curve.png`` as an image (``curve``) at the run's end.

A resumed run continues in the same folder with ``purge_step`` set past its checkpoint:
TensorBoard's reader then drops what the interrupted attempt logged after the checkpoint
(points.csv drops those rows too), so the scalars stay equal to points.csv.
"""

from __future__ import annotations

from typing import Any

from trainbench.trackers.base import RunInfo, Tracker, scalars

DIRNAME = "tb"
LR_TAG = "lr_per_step"


def recipe_text(recipe_yaml: str) -> str:
    """The recipe as TensorBoard's text plugin shows it: markdown, so a code block."""
    return "\n".join("    " + line for line in recipe_yaml.splitlines())


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self) -> None:
        self.writer: Any = None
        self.info: RunInfo | None = None
        self.last_step = 0

    def start(self, info: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.info = info
        purge = (info.from_step or 0) + 1 if info.resumed else None
        self.writer = SummaryWriter(log_dir=str(info.run.path / DIRNAME), purge_step=purge)
        if not info.resumed:
            self.writer.add_text("recipe", recipe_text(info.run.recipe_path.read_text()), 0)

    def point(self, row: dict[str, float]) -> None:
        step = int(row["step"])
        for k, v in scalars(row).items():
            self.writer.add_scalar(k, v, step)
        self.last_step = step
        self.writer.flush()  # points are rare: a TensorBoard watching the run sees each at once

    def lrs(self, samples: list[tuple[int, float]]) -> None:
        for step, lr in samples:
            self.writer.add_scalar(LR_TAG, lr, step)

    def end(self, status: str) -> None:
        assert self.info is not None
        curve = self.info.run.curve_path
        if curve.exists():
            import numpy as np
            from PIL import Image

            with Image.open(curve) as im:
                self.writer.add_image("curve", np.asarray(im.convert("RGB")), self.last_step,
                                      dataformats="HWC")
        self.writer.add_text("status", status, self.last_step)
        self.close()

    def discard(self) -> None:
        self.close()  # the folder goes with the discarded attempt's files

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
