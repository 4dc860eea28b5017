"""A dataset held as uint8 tensors on the run's device, served as normalised float batches.

Small datasets fit on the device; keeping them there (uint8, 4x smaller than float) and
normalising/augmenting whole batches there removes the CPU data loader from the step loop
entirely (airbench's approach).

Data parallelism (``rank`` of ``world_size`` processes, :mod:`trainbench.distributed`): every
process holds the whole dataset and draws the same seeded permutation; batch ``i`` of a pass is
``order[i*B:(i+1)*B]`` (``B`` = ``batch_size``, the *global* batch) and rank ``r`` serves the
contiguous slice ``[r*B/W:(r+1)*B/W]`` of it, augmented with the draws a single process would
make for those rows. The union of the ranks' batches, in rank order, is the single-process
batch: the sample stream does not depend on the number of processes. Evaluation is sharded:
rank ``r`` serves the contiguous ``r``-th of ``W`` near-equal parts of the test set
(``test_batches``), whose sums the caller all-reduces.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trainbench.data import augment as aug
from trainbench.data.base import ImageData

Batch = tuple[torch.Tensor, torch.Tensor]


class DeviceData:
    def __init__(self, data: ImageData, device: torch.device, *, batch_size: int,
                 eval_batch_size: int, augment: list[str], crop_padding: int, normalize: bool,
                 seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.rank, self.world_size = rank, world_size
        self.num_classes = data.num_classes
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.augment, self.crop_padding = list(augment), crop_padding
        self.train_x = data.train_x.to(device)
        self.train_y = data.train_y.to(device)
        self.test_x = data.test_x.to(device)
        self.test_y = data.test_y.to(device)
        c = data.train_x.shape[1]
        if normalize:  # per-channel statistics of the training images, in [0, 1] units
            flat = data.train_x.transpose(0, 1).reshape(c, -1).double() / 255
            mean, std = flat.mean(1), flat.std(1).clamp_min(1e-6)
        else:
            mean, std = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
        # x_norm = x_uint8 * scale + shift, in one fused multiply-add per batch
        self.scale = (1 / (255 * std)).float().view(1, c, 1, 1).to(device)
        self.shift = (-mean / std).float().view(1, c, 1, 1).to(device)
        # Separate streams so adding an augmentation does not change the data order.
        self.order_gen = torch.Generator(device).manual_seed(seed * 1000 + 1)
        self.aug_gen = torch.Generator(device).manual_seed(seed * 1000 + 2)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def train_size(self) -> int:
        return self.train_x.shape[0]

    @property
    def local_batch_size(self) -> int:
        """This process's share of each global batch."""
        return self.batch_size // self.world_size

    @property
    def test_size(self) -> int:
        """The whole test set (every rank's shard together)."""
        return self.test_x.shape[0]

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per pass over the training set (the last partial batch is dropped)."""
        return self.train_size // self.batch_size

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x.float(), self.scale)

    def augmented(self, x: torch.Tensor) -> torch.Tensor:
        """Augment this rank's slice of a global batch (the draws of the whole batch, sliced)."""
        within = (self.rank * x.shape[0], self.batch_size) if self.world_size > 1 else None
        return aug.on_device(x, self.augment, self.crop_padding, self.aug_gen, within)

    def train_batches(self) -> Iterator[Batch]:
        """Endless shuffled, augmented training batches (this rank's slice of each global
        batch); reshuffled at each pass. Resumes from :meth:`load_state_dict`'s position if
        one was loaded."""
        n, bs = self.train_size, self.batch_size
        mine = slice(self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size)
        while True:
            self._pass_start = self.order_gen.get_state()
            order = torch.randperm(n, device=self.train_x.device, generator=self.order_gen)
            for i in range(self._pos, self.steps_per_epoch):
                self._pos = i + 1
                idx = order[i * bs:(i + 1) * bs][mine]
                yield self.augmented(self.normalize(self.train_x[idx])), self.train_y[idx]
            self._pos = 0

    # The position in the data order: the order generator's state when the current pass was
    # drawn, and how many of its batches have been served. With the augmentation generator's
    # state, this replays the data stream exactly.
    _pos = 0
    _pass_start: torch.Tensor | None = None

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        # Before the first batch, or after a pass's last one, the next pass is drawn from
        # the order generator's current state.
        at_boundary = self._pass_start is None or self._pos == self.steps_per_epoch
        return {"order_gen": self.order_gen.get_state() if at_boundary else self._pass_start,
                "pos": 0 if at_boundary else self._pos, "aug_gen": self.aug_gen.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Continue from ``state``; call before :meth:`train_batches`."""
        self.order_gen.set_state(state["order_gen"])
        self.aug_gen.set_state(state["aug_gen"])
        self._pos = int(state["pos"])
        self._pass_start = state["order_gen"] if self._pos else None  # state_dict() round-trips

    def clean_train_batches(self, batch_size: int | None = None, *,
                            seed: int | None = None) -> Iterator[Batch]:
        """One pass over the training set, normalised, without augmentation: in stored order
        in slices of ``batch_size`` (default ``eval_batch_size``); or, with ``seed``, in a
        seeded random order split into the fewest near-equal batches of at most
        ``batch_size`` (sizes differ by at most one: no short last batch). The order comes
        from a CPU generator, so it is the same on every device and needs no state."""
        bs = batch_size or self.eval_batch_size
        if seed is None:
            yield from self._sequential(self.train_x, self.train_y, bs)
            return
        n = self.train_size
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        for idx in order.to(self.train_x.device).tensor_split(-(-n // bs)):
            yield self.normalize(self.train_x[idx]), self.train_y[idx]

    def test_batches(self) -> Iterator[Batch]:
        """This rank's shard of the test set (all of it in a single process), in order."""
        part = self.test_shard()
        yield from self._sequential(self.test_x[part], self.test_y[part], self.eval_batch_size)

    def test_shard(self) -> slice:
        """Rank ``r``'s contiguous part of the test set: the ``r``-th of ``world_size``
        near-equal parts (sizes differ by at most one), so every image is evaluated once."""
        n, w, r = self.test_size, self.world_size, self.rank
        return slice(r * n // w, (r + 1) * n // w)

    def _sequential(self, x: torch.Tensor, y: torch.Tensor, bs: int) -> Iterator[Batch]:
        for i in range(0, x.shape[0], bs):
            yield self.normalize(x[i:i + bs]), y[i:i + bs]
