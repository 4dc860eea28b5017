"""Class-stratified subsets (``data.train_subset`` / ``data.test_subset``, smoke mode).

Taking the first N images of a dataset stored grouped by class (``imagefolder``, in
torchvision's order) keeps only the first classes. :func:`stratified_subset` keeps every
class's share instead:

- **quotas**: class ``c`` with ``n_c`` of the ``N`` images gets ``n * n_c / N`` images,
  rounded down, and the images left over go one each to the classes with the largest
  remainders (Hamilton's largest-remainder rule; ties broken by a seeded draw, not by class
  index, so that with more classes than images no class is favoured for coming first);
- **selection**: within each class, a seeded uniform sample of its quota;
- **order**: the chosen indices in increasing order, i.e. the dataset's stored order (the
  training loop shuffles anyway; ``n >= N`` returns every index, the dataset unchanged).

The subset is part of the *task*, not of the run: it uses a fixed seed (:data:`SUBSET_SEED`),
independent of the recipe's ``seed``, so every seed and every recipe on the same
``train_subset`` trains (and is evaluated) on the same images and their curves compare the
methods, not the draw of images. The same labels, ``n`` and seed always give the same subset.
"""

from __future__ import annotations

import numpy as np
import torch

SUBSET_SEED = 0  # fixed: the subset belongs to the task, so all seeds/recipes share it


def class_quotas(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per class, how many of ``n`` images to take, proportional to ``counts`` (largest
    remainder; remainder ties broken by ``rng``). Sums to ``min(n, counts.sum())``."""
    total = int(counts.sum())
    if n >= total:
        return counts.copy()
    exact = counts * n / total
    quotas = np.floor(exact).astype(np.int64)
    left = n - int(quotas.sum())
    # Largest remainder first; a random key breaks ties (lexsort: last key is primary).
    order = np.lexsort((rng.random(len(counts)), -(exact - quotas)))
    quotas[order[:left]] += 1
    return quotas


def stratified_subset(labels: torch.Tensor, n: int, seed: int = SUBSET_SEED) -> torch.Tensor:
    """Indices (int64, increasing) of a class-stratified subset of ``n`` of the images
    with these ``labels``; every index when ``n`` is at least their number. Deterministic:
    the same labels, ``n`` and ``seed`` give the same indices."""
    y = labels.cpu().numpy()
    if n >= len(y):
        return torch.arange(len(y), dtype=torch.int64)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    quotas = class_quotas(counts, n, rng)
    chosen = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        chosen.append(rng.choice(members, size=int(quotas[c]), replace=False))
    return torch.from_numpy(np.sort(np.concatenate(chosen))).to(torch.int64)


def subset_split(x: torch.Tensor, y: torch.Tensor, n: int | None,
                 seed: int = SUBSET_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` restricted to :func:`stratified_subset` of ``n`` (``None``: all of them)."""
    if n is None or n >= len(y):
        return x, y
    idx = stratified_subset(y, n, seed)
    return x[idx], y[idx]
