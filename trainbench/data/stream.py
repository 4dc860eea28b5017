"""Stream mode (``data.loader: stream``): datasets larger than the device, read from disk.

Same interface as :class:`~trainbench.data.loader.DeviceData` (``train_batches``,
``test_batches``, ``clean_train_batches``, ``state_dict``/``load_state_dict``, ``shape``,
``num_classes``, ``steps_per_epoch``), so the engine does not know which one it has.

How a batch is made: torch ``DataLoader`` worker processes (``data.workers``, each
``data.prefetch`` batches ahead, persistent across epochs) read each image's bytes, decode
them to uint8 with ``torchvision.io.decode_image`` and apply the per-image augmentation with
``torchvision.transforms.v2`` (``random_resized_crop``; otherwise resize + center crop to
``image_size``); the batch comes back through pinned memory and is copied to the device
without blocking. Normalisation and the batch augmentations (``random_crop``, ``hflip``)
then run on the device exactly as in device mode (:mod:`trainbench.data.augment`), as does
mixing (a method). Evaluation: shorter side to ``data.eval_resize`` (default ``image_size``,
or ``image_size / 0.875`` with ``random_resized_crop``, the usual 256 -> 224), center crop.

Determinism: pass ``e``'s sample order is a permutation made from (seed, e) alone
(:func:`epoch_order`: on a CPU the same as device mode's, so the two modes train on the
same batches there); batch ``i`` is ``order[i*B:(i+1)*B]`` and rank ``r`` of ``W`` takes the contiguous slice
``[r*B/W:(r+1)*B/W]`` of it. Each image's augmentation draws from the torch RNG seeded
from (seed, e, sample index) alone (:func:`sample_seed`), in whichever process decodes it,
and the device augmentations from one generator in the main process, so the stream is
the same for any ``data.workers`` (0 included). The position (pass, batches served, the
device generator) is the state a checkpoint saves; a resumed run restarts the workers at
that batch.

Faults: an unreadable image stops the run with an error naming the file (the run is
``failed`` and resumable once the file is fixed); with ``data.skip_corrupt: true`` it is
replaced by the next readable image in the dataset's stored order (its label too), so
batches keep their size and the substitute depends only on the dataset, never on timing;
the skipped files are counted in meta.json. A worker process that dies ends the run
``failed`` with the DataLoader's error, and one that hangs for ``WORKER_TIMEOUT_S``
likewise, instead of a silent hang.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trainbench.data import augment as aug
from trainbench.data.sources import Source, UnreadableImage, decode, resize_center_crop
from trainbench.data.subset import stratified_subset

Batch = tuple[torch.Tensor, torch.Tensor]
WORKER_TIMEOUT_S = 300.0  # a worker silent this long is hung (a dead one is noticed at once)
NORM_SAMPLE = 2048  # training images whose pixels estimate the normalisation statistics
EVAL_CROP_FRACTION = 0.875  # image_size / eval_resize with random_resized_crop (224 of 256)
MAX_SKIPPED_NAMED = 20
EXACT_STATS_BYTES = 64 * 2**20  # sampled pixels up to this: reduced exactly as DeviceData does


@dataclass
class StreamSplits:
    """What a streamable dataset's ``stream`` registry extra returns for its parameters."""

    train: Source
    test: Source
    num_classes: int
    image_size: int
    # Per-channel mean and std in [0, 1] units when the dataset has standard ones
    # (ImageNet's); otherwise they are estimated from NORM_SAMPLE training images.
    mean_std: tuple[Sequence[float], Sequence[float]] | None = None


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 64-bit seed for one sample's augmentation in one pass (numpy's SeedSequence mixes
    the triple, so nearby triples give unrelated streams)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0])


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The sample order of pass ``epoch``, a function of (seed, epoch) only: the
    ``epoch``-th permutation drawn from a CPU generator seeded as DeviceData seeds its order
    generator, so on a CPU stream mode serves the very batches device mode does. Replaying
    the earlier passes' draws costs one ``randperm`` per pass (~15 ms for ImageNet)."""
    g = torch.Generator().manual_seed(seed * 1000 + 1)
    for _ in range(epoch):
        torch.randperm(n, generator=g)
    return torch.randperm(n, generator=g)


class ImageTransform:
    """Decoded uint8 image -> uint8 ``[3, size, size]``: a random resized crop (scale, ratio
    as torchvision's), or a resize of the shorter side to ``resize`` and a center crop."""

    def __init__(self, size: int, *, random_resized_crop: bool = False,
                 scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (0.75, 4 / 3),
                 resize: int | None = None) -> None:
        self.size, self.resize = size, resize or size
        self.rrc = None
        if random_resized_crop:
            from torchvision.transforms import v2

            self.rrc = v2.RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio),
                                            antialias=True)

    def __call__(self, img: torch.Tensor, seed: int) -> torch.Tensor:
        if self.rrc is None:
            return resize_center_crop(img, self.resize, self.size)
        # v2 transforms draw from torch's global RNG: fork it (no effect on the caller's
        # stream when workers=0) and seed it for this sample alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.rrc(img)


class ImageDataset(Dataset):
    """Items are ``(epoch, index)`` keys: the image ``index`` as pass ``epoch`` sees it, its
    label, and the files skipped to get it."""

    def __init__(self, source: Source, transform: ImageTransform, seed: int,
                 skip_corrupt: bool) -> None:
        self.source, self.transform, self.seed = source, transform, seed
        self.skip_corrupt = skip_corrupt
        self.labels = source.labels

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, list[str]]:
        epoch, index = key
        skipped: list[str] = []
        j = index
        while True:
            try:
                img = decode(self.source, j)
                break
            except UnreadableImage:
                if not self.skip_corrupt:
                    raise
                skipped.append(self.source.describe(j))
                j = (j + 1) % len(self.source)
                if len(skipped) == len(self.source):
                    raise UnreadableImage(f"no readable image among the {len(skipped)} of "
                                          f"{skipped[0]}'s dataset") from None
        return self.transform(img, sample_seed(self.seed, epoch, index)), int(self.labels[j]), skipped


def collate(items: list[tuple[torch.Tensor, int, list[str]]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    images, labels, skipped = zip(*items, strict=True)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64), [s for ss in skipped for s in ss]


class _TrainBatches(Sampler[list[tuple[int, int]]]):
    """This rank's slice of each remaining batch of the owner's current pass."""

    def __init__(self, owner: StreamData) -> None:
        self.owner = owner

    def __len__(self) -> int:
        return self.owner.steps_per_epoch - self.owner._pos

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        o = self.owner
        e, bs = o._epoch, o.batch_size
        order = epoch_order(o.seed, e, o.train_size).tolist()
        lo, hi = o.rank * bs // o.world_size, (o.rank + 1) * bs // o.world_size
        for i in range(o._pos, o.steps_per_epoch):
            yield [(e, k) for k in order[i * bs + lo:i * bs + hi]]


class StreamData:
    def __init__(self, splits: StreamSplits, device: torch.device, *, batch_size: int,
                 eval_batch_size: int, augment: list[str], crop_padding: int, normalize: bool,
                 seed: int, workers: int, prefetch: int = 2, skip_corrupt: bool = False,
                 crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (0.75, 4 / 3), eval_resize: int | None = None,
                 rank: int = 0, world_size: int = 1,
                 report: Callable[..., None] | None = None) -> None:
        self.device, self.seed = device, seed
        self.num_classes, self.image_size = splits.num_classes, splits.image_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.augment, self.crop_padding = list(augment), crop_padding
        self.rank, self.world_size = rank, world_size
        self.workers, self.prefetch = workers, prefetch
        self.report = report
        size = splits.image_size
        rrc = "random_resized_crop" in augment
        self.eval_resize = eval_resize or (round(size / EVAL_CROP_FRACTION) if rrc else size)
        train_tf = ImageTransform(size, random_resized_crop=rrc, scale=crop_scale, ratio=crop_ratio)
        self._train = ImageDataset(splits.train, train_tf, seed, skip_corrupt)
        self._clean = ImageDataset(splits.train, ImageTransform(size, resize=self.eval_resize),
                                   seed, skip_corrupt)
        self._test = ImageDataset(splits.test, ImageTransform(size, resize=self.eval_resize),
                                  seed, skip_corrupt)
        # The test labels on the device: evaluation counts its images from them (as DeviceData's).
        m = self.test_size = len(splits.test)  # the whole test set's, as DeviceData's
        self.test_y = splits.test.labels[rank * m // world_size:(rank + 1) * m // world_size].to(device)
        self.skipped: set[str] = set()
        mean, std = self._statistics(splits, normalize)
        c = 3
        self.scale = (1 / (255 * std)).float().view(1, c, 1, 1).to(device)
        self.shift = (-mean / std).float().view(1, c, 1, 1).to(device)
        self.aug_gen = torch.Generator(device).manual_seed(seed * 1000 + 2)  # as DeviceData's
        self._epoch = self._pos = 0
        self._train_loader = self._loader(self._train, _TrainBatches(self), persistent=True)
        self._test_loader: DataLoader | None = None  # made at the first evaluation

    # --- the DeviceData interface ---

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def train_size(self) -> int:
        return len(self._train)

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per pass over the training set (the last partial batch is dropped)."""
        return self.train_size // self.batch_size

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x.float(), self.scale)

    def train_batches(self) -> Iterator[Batch]:
        """Endless shuffled, augmented training batches from the current position."""
        while True:
            with _clean_errors():
                for x, y, skipped in self._train_loader:  # the sampler starts at (_epoch, _pos)
                    self._pos += 1
                    self._note_skipped(skipped)
                    # A rank's slice: the device draws are made for the global batch, as in
                    # DeviceData, so the stream equals a single process's.
                    within = (self.rank * x.shape[0], self.batch_size) if self.world_size > 1 else None
                    x = aug.on_device(self.normalize(self._to_device(x)), self.augment,
                                      self.crop_padding, self.aug_gen, within)
                    yield x, self._to_device(y)
            self._epoch, self._pos = self._epoch + 1, 0

    def test_batches(self) -> Iterator[Batch]:
        """This rank's contiguous share of the test set, in stored order, normalised."""
        if self._test_loader is None:  # persistent: no new worker processes at every evaluation
            m = len(self._test)
            lo, hi = self.rank * m // self.world_size, (self.rank + 1) * m // self.world_size
            keys = [(0, i) for i in range(lo, hi)]
            groups = [keys[i:i + self.eval_batch_size] for i in range(0, len(keys), self.eval_batch_size)]
            self._test_loader = self._loader(self._test, groups, persistent=True)
        yield from self._normalized(self._test_loader)

    def clean_train_batches(self, batch_size: int | None = None, *,
                            seed: int | None = None) -> Iterator[Batch]:
        """One pass over the training set without augmentation (evaluation transform), as
        DeviceData's: in stored order in slices of ``batch_size``, or in a seeded order
        split into the fewest near-equal batches of at most ``batch_size``."""
        bs = batch_size or self.eval_batch_size
        n = self.train_size
        if seed is None:
            groups = [list(range(i, min(i + bs, n))) for i in range(0, n, bs)]
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            groups = [t.tolist() for t in order.tensor_split(-(-n // bs))]
        yield from self._normalized(
            self._loader(self._clean, [[(0, i) for i in g] for g in groups], persistent=False))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "pos": self._pos, "aug_gen": self.aug_gen.get_state(),
                "skipped": sorted(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epoch, self._pos = int(state["epoch"]), int(state["pos"])
        self.aug_gen.set_state(state["aug_gen"])
        self.skipped = set(state.get("skipped", ()))

    # --- internals ---

    def _loader(self, dataset: ImageDataset, batches: Sampler | list, persistent: bool) -> DataLoader:
        w = self.workers
        # Its own generator: each iterator draws a worker base seed from it, which would
        # otherwise come from torch's global RNG (model init, dropout) and shift it.
        # Augmentation needs no worker seed: it is seeded per sample.
        return DataLoader(dataset, batch_sampler=batches, num_workers=w, collate_fn=collate,
                          generator=torch.Generator().manual_seed(self.seed),
                          pin_memory=self.device.type == "cuda",
                          persistent_workers=persistent and w > 0,
                          prefetch_factor=self.prefetch if w > 0 else None,
                          timeout=WORKER_TIMEOUT_S if w > 0 else 0)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True)

    def _normalized(self, loader: DataLoader) -> Iterator[Batch]:
        with _clean_errors():
            for x, y, skipped in loader:
                self._note_skipped(skipped)
                yield self.normalize(self._to_device(x)), self._to_device(y)

    def _note_skipped(self, skipped: list[str]) -> None:
        new = set(skipped) - self.skipped
        if not new:
            return
        self.skipped |= new
        if self.report is not None:  # rare: only when a new unreadable file turns up
            names = sorted(self.skipped)
            self.report(skipped_corrupt=len(names), skipped_files=names[:MAX_SKIPPED_NAMED])

    def _statistics(self, splits: StreamSplits,
                    normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std in [0, 1] units (float64): the dataset's standard ones,
        else estimated from a fixed class-stratified sample of NORM_SAMPLE training images
        (all of them when fewer) as DeviceData computes them from all; zeros and ones
        without normalisation."""
        if not normalize:
            return torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
        if splits.mean_std is not None:
            return tuple(torch.tensor(v, dtype=torch.float64) for v in splits.mean_std)  # type: ignore[return-value]
        idx = stratified_subset(self._train.labels, NORM_SAMPLE).tolist()
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        count = 0
        groups = [[(0, i) for i in idx[k:k + 256]] for k in range(0, len(idx), 256)]
        with _clean_errors():
            batches = list(self._loader(self._clean, groups, persistent=False))
        for _, _, skipped in batches:
            self._note_skipped(skipped)
        if sum(x.numel() for x, _, _ in batches) <= EXACT_STATS_BYTES:
            # DeviceData's own formula on the same pixels: the same float statistics, so a
            # small dataset trains identically in both modes
            flat = torch.cat([x for x, _, _ in batches]).transpose(0, 1).reshape(3, -1).double() / 255
            return flat.mean(1), flat.std(1).clamp_min(1e-6)
        for x, _, _ in batches:
            flat = x.transpose(0, 1).reshape(3, -1).double() / 255
            total += flat.sum(1)
            squares += flat.square().sum(1)
            count += flat.shape[1]
        mean = total / count
        var = (squares - count * mean.square()) / max(count - 1, 1)
        return mean, var.clamp_min(0).sqrt().clamp_min(1e-6)


@contextlib.contextmanager
def _clean_errors() -> Iterator[None]:
    """An unreadable image reported by a worker: the DataLoader re-raises it with the
    worker's whole traceback in the message; keep the error's own line (it names the file)."""
    try:
        yield
    except UnreadableImage as e:
        text = str(e)
        if "Original Traceback" not in text:
            raise
        last = [line for line in text.splitlines() if line.strip()][-1]
        raise UnreadableImage(last.split(": ", 1)[-1]) from None
