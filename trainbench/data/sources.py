"""Where a streamed dataset's encoded images come from, one sample at a time.

A :class:`Source` is a random-access list of encoded images (JPEG, PNG, ...) and their
labels: files in class folders (:class:`FileSource`), or members of WebDataset tar shards
located by a one-time index of the shards' headers (:class:`TarSource`). Random access is
what makes the stream a function of (seed, epoch) alone, whatever the number of workers,
and lets a resumed run restart at any batch. Decoding is torchvision's
(:func:`torchvision.io.decode_image`, to uint8 RGB).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

# torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec (not a
# dependency here); they work and are what stream mode decodes with, once per image.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of "
                        "TorchVision are deprecated", category=DeprecationWarning)

if TYPE_CHECKING:
    from trainbench.data.base import ImageData


class UnreadableImage(RuntimeError):
    """An image file that cannot be read or decoded; the message names the file."""


@dataclass
class FileSource:
    """Image files with their labels (``(path, label)`` pairs, as torchvision's ImageFolder
    lists them)."""

    samples: Sequence[tuple[str, int]]

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self, i: int) -> str:
        return self.samples[i][0]

    def read(self, i: int) -> bytes:
        with open(self.samples[i][0], "rb") as f:
            return f.read()

    def subset(self, idx: torch.Tensor) -> FileSource:
        return FileSource([self.samples[i] for i in idx.tolist()])


@dataclass
class TarMember:
    shard: str  # local path of the tar file
    offset: int  # of the member's data in the file
    size: int
    name: str  # the member's name in the tar


@dataclass
class TarSource:
    """Images stored as members of tar files (WebDataset shards), read by offset."""

    members: Sequence[TarMember]
    label_list: Sequence[int] = field(default_factory=list)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor(list(self.label_list), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.members)

    def describe(self, i: int) -> str:
        m = self.members[i]
        return f"{m.shard}:{m.name}"

    def read(self, i: int) -> bytes:
        m = self.members[i]
        with open(m.shard, "rb") as f:
            f.seek(m.offset)
            data = f.read(m.size)
        if len(data) != m.size:
            raise OSError(f"the shard ends after {len(data)} of the member's {m.size} bytes")
        return data

    def subset(self, idx: torch.Tensor) -> TarSource:
        ids = idx.tolist()
        return TarSource([self.members[i] for i in ids], [self.label_list[i] for i in ids])


Source = FileSource | TarSource


def decode(source: Source, i: int) -> torch.Tensor:
    """Sample ``i`` decoded to uint8 RGB [3, H, W]; UnreadableImage naming the file if it
    cannot be read or decoded."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        data = torch.frombuffer(bytearray(source.read(i)), dtype=torch.uint8)
        return decode_image(data, mode=ImageReadMode.RGB)
    except (OSError, RuntimeError, ValueError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UnreadableImage(f"cannot read image {source.describe(i)}: {reason}. Remove or "
                              "replace the file, or set data.skip_corrupt: true to skip "
                              "unreadable images.") from None


def resize_center_crop(img: torch.Tensor, resize: int, size: int) -> torch.Tensor:
    """Shorter side to ``resize`` (antialiased), then the central ``size`` square."""
    from torchvision.transforms.v2 import functional as F

    return F.center_crop(F.resize(img, [resize], antialias=True), [size])


def decode_all(source: Source, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``source`` resized and center-cropped to ``size`` (threads decode: the
    decoders release the GIL), and the labels: for holding a small source on the device."""
    x = torch.empty(len(source), 3, size, size, dtype=torch.uint8)

    def one(i: int) -> None:
        x[i] = resize_center_crop(decode(source, i), size, size)

    with ThreadPoolExecutor() as pool:
        list(pool.map(one, range(len(source))))
    return x, source.labels


def image_data(train: Source, test: Source, size: int, num_classes: int) -> ImageData:
    from trainbench.data.base import ImageData

    return ImageData(*decode_all(train, size), *decode_all(test, size),
                     num_classes=num_classes)
