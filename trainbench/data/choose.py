"""``data.loader``: hold the dataset on the device (:class:`~trainbench.data.loader.DeviceData`)
or stream it from disk (:class:`~trainbench.data.stream.StreamData`).

``auto`` (the default) picks ``device`` when the dataset's uint8 images (train + test,
``N x C x size x size`` bytes, known from the dataset's shape without decoding) fit in
``AUTO_FRACTION`` of the memory free where they would live -- on a GPU what
``torch.cuda.mem_get_info`` reports free, on a CPU the kernel's ``MemAvailable`` -- and
``stream`` otherwise; half, because the model, its activations and the optimizer need the
rest. Only datasets read from files (``imagefolder``, ``imagenet``, ``webdataset``) can
stream; the others are always held on the device. The choice and its reason go to meta.json.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainbench.data.base import DATASETS, dataset_shape

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from trainbench.data.stream import StreamData

AUTO_FRACTION = 0.5
MAX_DEFAULT_WORKERS = 8  # beyond this, decoding rarely pays for the extra processes' memory


@dataclass(frozen=True)
class LoaderChoice:
    mode: str  # device | stream
    reason: str


def can_stream(dataset: str) -> bool:
    return "stream" in DATASETS.entry(dataset).extra


def default_workers() -> int:
    """Every CPU this process may run on, capped at MAX_DEFAULT_WORKERS."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_WORKERS))


def loader_problems(section: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str]]:
    """Recipe problems of the loader fields (paths relative to ``data``)."""
    if section.get("loader") == "stream" and not can_stream(section["dataset"]):
        streamable = ", ".join(e.name for e in DATASETS if "stream" in e.extra)
        yield ("loader",), (f"dataset '{section['dataset']}' is held in memory and cannot stream; "
                            f"use loader: device or auto (datasets that stream: {streamable}).")
    if section.get("loader") == "stream" and section.get("label_noise"):
        yield ("label_noise",), ("label noise is applied to labels held in memory; with loader: "
                                 "stream it would be ignored. Use loader: device, or remove it.")
    for key, lo, hi in (("crop_scale", 0.0, 1.0), ("crop_ratio", 0.0, None)):
        v = section.get(key)
        if v is None:
            continue
        if len(v) != 2 or not (lo < v[0] <= v[1]) or (hi is not None and v[1] > hi):
            upper = f" <= {hi:g}" if hi is not None else ""
            yield (key,), (f"expected [low, high] with {lo:g} < low <= high{upper}, got {v}.")
    if "random_resized_crop" in section.get("augment", []) and not can_stream(section["dataset"]):
        yield ("augment",), ("random_resized_crop crops each image from its full-size file; "
                             f"dataset '{section['dataset']}' has no files to crop from. Use "
                             "random_crop, or a dataset read from files (imagefolder, imagenet, "
                             "webdataset).")


def free_memory(dev: torch.device) -> int:
    """Bytes free where the dataset would be held: the GPU's free memory, or the host's
    available memory (``MemAvailable`` in /proc/meminfo: free plus reclaimable caches)."""
    import torch

    if dev.type == "cuda":
        return torch.cuda.mem_get_info(dev)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return (os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def choose_loader(section: dict[str, Any], dev: torch.device, smoke: bool,
                  started_with: dict[str, Any] | None = None) -> LoaderChoice:
    """Where the run's data lives, and why (see the module docstring). ``started_with``:
    a resumed run's earlier ``data_loader`` meta; ``auto`` keeps that mode, so the
    checkpoint's data position (which differs between the modes) still applies."""
    mode = section.get("loader", "auto")
    if mode == "auto" and not smoke and started_with and started_with.get("mode") in ("device", "stream"):
        return LoaderChoice(started_with["mode"], "resumed run: the mode it started with "
                                                  f"({started_with.get('reason', '')})")
    if smoke:
        return LoaderChoice("device", "smoke run: a small class-stratified subset, held on the "
                                      "device")
    if not can_stream(section["dataset"]):
        return LoaderChoice("device", f"dataset '{section['dataset']}' is held in memory "
                                      "(it has no streaming reader)")
    if mode != "auto":
        return LoaderChoice(mode, f"data.loader: {mode} in the recipe")
    shape = dataset_shape(section["dataset"], section)
    if shape.train_size == 0:
        return LoaderChoice("stream", "auto: the dataset's size is unknown before its files are "
                                      "fetched (remote shards)")
    n = (section.get("train_subset") or shape.train_size) + (section.get("test_subset")
                                                              or shape.test_size)
    need = n * shape.channels * shape.size ** 2
    free = free_memory(dev)
    where = "GPU memory" if dev.type == "cuda" else "available host memory"
    verdict = "fits in" if need <= AUTO_FRACTION * free else "exceeds"
    reason = (f"auto: the uint8 dataset ({n} images, {need / 2**30:.2f} GiB) {verdict} "
              f"{AUTO_FRACTION:.0%} of the free {where} ({free / 2**30:.2f} GiB)")
    return LoaderChoice("device" if need <= AUTO_FRACTION * free else "stream", reason)


def stream_data(section: dict[str, Any], dev: torch.device, *, batch_size: int, seed: int,
                report: Callable[..., None] | None = None, rank: int = 0,
                world_size: int = 1) -> StreamData:
    """The recipe's dataset as a :class:`~trainbench.data.stream.StreamData`
    (``data.train_subset`` / ``test_subset`` applied, class-stratified as in device mode)."""
    from trainbench.data.stream import StreamData
    from trainbench.data.subset import stratified_subset

    splits = DATASETS.entry(section["dataset"]).extra["stream"](section)
    for split, n in (("train", section.get("train_subset")), ("test", section.get("test_subset"))):
        if n is not None:
            src = getattr(splits, split)
            setattr(splits, split, src.subset(stratified_subset(src.labels, n)))
    workers = section.get("workers")
    return StreamData(
        splits, dev, batch_size=batch_size, eval_batch_size=section["eval_batch_size"],
        augment=section["augment"], crop_padding=section["crop_padding"],
        normalize=section["normalize"], seed=seed,
        workers=default_workers() if workers is None else workers,
        prefetch=section["prefetch"], skip_corrupt=section["skip_corrupt"],
        crop_scale=section["crop_scale"], crop_ratio=section["crop_ratio"],
        eval_resize=section["eval_resize"], rank=rank, world_size=world_size, report=report)


def loader_meta(choice: LoaderChoice, data: Any) -> dict[str, Any]:
    """meta.json's ``data_loader``: the mode, why, and the stream's settings."""
    meta: dict[str, Any] = {"mode": choice.mode, "reason": choice.reason}
    if choice.mode == "stream":
        meta |= {"workers": data.workers, "prefetch": data.prefetch,
                 "eval_resize": data.eval_resize}
    return meta
