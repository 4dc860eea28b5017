"""WebDataset tar shards (``dataset: webdataset``): images as tar members, for object stores
and clusters. Needs the ``webdataset`` library (``pip install "trainbench[stream]"``).

``data.train_shards`` / ``data.test_shards``: local paths or URLs (http(s)://, gs://, s3://
via the shell tools the ``webdataset`` library drives, ``pipe:CMD``), with brace expansion
(``shards/train-{000000..000146}.tar``) and ``::`` between several patterns, as
``webdataset.WebDataset`` takes them. A sample is the tar members sharing a key (the name up
to the first dot of the basename, WebDataset's convention): one image (``.jpg``, ``.jpeg``,
``.png``, ``.webp``, ...) and its integer label in ``.cls``. ``data.num_classes`` is
required (labels must lie in 0..num_classes-1).

Remote shards are fetched once into ``data.cache_dir`` (by ``webdataset.gopen``; the
folder needs room for them). Every shard is then indexed once (tar headers: each image's
offset and size) so that samples are read by random access: the sample order is a
permutation of all samples drawn from (seed, epoch), not a shard shuffle with a buffer,
and does not depend on the number of workers (see :mod:`trainbench.data.stream`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from functools import cache
from typing import Any

from trainbench.data.base import DATASETS, ImageData, Shape
from trainbench.data.sources import TarMember, TarSource, image_data
from trainbench.data.stream import StreamSplits
from trainbench.errors import DataMissingError, InputError
from trainbench.registry import REQUIRED, PosInt, params_of

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "bmp", "tif", "tiff")
DEFAULT_CACHE = os.path.join("~", ".cache", "trainbench", "webdataset")
EXTRA = 'pip install "trainbench[stream]"'


def _params(params: dict[str, Any]) -> dict[str, Any]:
    specs = params_of(webdataset).values()
    return {s.name: None if s.default is REQUIRED else s.default for s in specs} | {
        k: v for k, v in params.items() if k in {s.name for s in specs}}


def _expand(pattern: str | None, what: str) -> list[str]:
    try:
        from webdataset.shardlists import expand_urls
    except ImportError:
        raise InputError(f"dataset webdataset needs the webdataset library: {EXTRA}.") from None
    if not pattern:
        raise DataMissingError(f"webdataset: 'data.{what}' is not set: give the shards' paths or "
                               "URLs, e.g. --set data.train_shards='shards/train-{000..009}.tar'.")
    return expand_urls(pattern)


def _is_remote(url: str) -> bool:
    return "://" in url or url.startswith("pipe:")


def _cached(url: str, cache_dir: str) -> str:
    name = hashlib.sha1(url.encode()).hexdigest()[:16] + "-" + os.path.basename(url.rstrip("/"))
    return os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), name)


def _local(url: str, cache_dir: str, fetch: bool) -> str | None:
    """The local file holding shard ``url`` (fetched into the cache if ``fetch``), or None."""
    if not _is_remote(url):
        return os.path.abspath(os.path.expanduser(url))
    path = _cached(url, cache_dir)
    if os.path.isfile(path) or not fetch:
        return path if os.path.isfile(path) else None
    from webdataset import gopen

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.part"
    try:
        with gopen(url, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, path)
    except Exception as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise DataMissingError(f"webdataset: cannot fetch shard {url}: {e}") from None
    return path


@cache
def _index(path: str) -> tuple[tuple[TarMember, ...], tuple[int, ...]]:
    """Each sample's image member (offset and size in the file) and label, in tar order."""
    images: dict[str, TarMember] = {}
    labels: dict[str, int] = {}
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                if not m.isfile():
                    continue
                folder, base = os.path.split(m.name)
                stem, _, suffix = base.partition(".")
                key = os.path.join(folder, stem)
                if suffix.lower() in IMAGE_SUFFIXES:
                    images[key] = TarMember(path, m.offset_data, m.size, m.name)
                elif suffix == "cls":
                    f = tar.extractfile(m)
                    labels[key] = int(f.read().decode().strip()) if f else -1
    except (OSError, tarfile.TarError, ValueError) as e:
        raise InputError(f"webdataset: cannot index shard {path}: {e}. Check that it is an "
                         "uncompressed tar of <key>.jpg/<key>.cls members.") from None
    keys = [k for k in images if k in labels]
    if not keys:
        raise InputError(f"webdataset: shard {path} holds no sample with both an image "
                         f"({', '.join('.' + s for s in IMAGE_SUFFIXES[:4])}, ...) and a .cls label.")
    return tuple(images[k] for k in keys), tuple(labels[k] for k in keys)


def _source(pattern: str | None, what: str, p: dict[str, Any], fetch: bool) -> TarSource | None:
    members: list[TarMember] = []
    labels: list[int] = []
    for url in _expand(pattern, what):
        path = _local(url, p["cache_dir"], fetch)
        if path is None:
            return None
        if not os.path.isfile(path):
            raise DataMissingError(f"webdataset: shard {path} (from data.{what}) does not exist.")
        m, y = _index(path)
        members += m
        labels += y
    bad = [y for y in labels if not 0 <= y < p["num_classes"]]
    if bad:
        raise InputError(f"webdataset: label {bad[0]} in data.{what} lies outside 0..{p['num_classes'] - 1}; "
                         "set data.num_classes to the number of classes.")
    return TarSource(members, labels)


def _check(params: dict[str, Any]) -> None:
    p = _params(params)
    for what in ("train_shards", "test_shards"):
        for url in _expand(p[what], what):
            if not _is_remote(url) and not os.path.isfile(os.path.expanduser(url)):
                raise DataMissingError(f"webdataset: shard {url} (from data.{what}) does not exist. "
                                       "Give existing local paths or URLs, with brace expansion "
                                       "(shards/train-{000..009}.tar).")


def _shape(params: dict[str, Any]) -> Shape:
    """Sizes from the shards' index when they are all on this machine; 0 (unknown) else."""
    p = _params(params)
    sizes = []
    for what in ("train_shards", "test_shards"):
        try:
            src = _source(p[what], what, p, fetch=False) if p[what] else None
        except (InputError, DataMissingError):
            src = None
        sizes.append(0 if src is None else len(src))
    return Shape(3, p["image_size"], p["num_classes"] or 1, *sizes)


def stream_splits(params: dict[str, Any]) -> StreamSplits:
    p = _params(params)
    train = _source(p["train_shards"], "train_shards", p, fetch=True)
    test = _source(p["test_shards"], "test_shards", p, fetch=True)
    assert train is not None and test is not None  # fetched
    return StreamSplits(train, test, num_classes=p["num_classes"], image_size=p["image_size"])


@DATASETS.register("webdataset", shape=_shape, check=_check, stream=stream_splits)
def webdataset(*, train_shards: str, test_shards: str, num_classes: PosInt, image_size: PosInt = 224,
               cache_dir: str = DEFAULT_CACHE) -> ImageData:
    """WebDataset tar shards (local or URLs, brace expansion); streams. Extra: stream."""
    s = stream_splits({"train_shards": train_shards, "test_shards": test_shards,
                       "num_classes": num_classes, "image_size": image_size, "cache_dir": cache_dir})
    return image_data(s.train, s.test, image_size, num_classes)
