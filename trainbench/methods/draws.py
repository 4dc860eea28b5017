"""Per-image random draws that do not depend on how a batch is split across processes.

Augmentation methods draw per image. To give an image the same draw whether the global batch
is trained by one process or sliced across several (DDP: rank ``r`` of ``W`` takes the
contiguous slice ``[r*B/W:(r+1)*B/W]`` of each global batch of ``B``), they either draw for
the whole global batch from a stream every rank shares and keep their slice (cutout), or seed
each image's draws from its position in the global batch (the augmentation policies).
"""

from __future__ import annotations

from trainbench.methods.base import TrainState

_MASK = (1 << 64) - 1


def batch_span(state: TrainState, local_batch: int) -> tuple[int, int]:
    """``(offset, global_batch)``: where this process's ``local_batch`` images sit in the
    global batch. One process: ``(0, local_batch)``; under DDP the loader says its
    ``rank`` and ``world_size`` (the loaders' shared signature), absent meaning one process."""
    rank = getattr(state.data, "rank", 0)
    world = getattr(state.data, "world_size", 1)
    return rank * local_batch, world * local_batch


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def mix_seed(*parts: int) -> int:
    """A 64-bit seed from integers (SplitMix64, chained): nearby tuples such as (seed, step,
    image) and (seed, step, image + 1) give unrelated seeds, and every bit of the result
    (torch's CPU generator keeps the low 32) depends on every part. Pure host arithmetic."""
    h = 0
    for p in parts:
        h = _splitmix64(h ^ (p & _MASK))
    return h
