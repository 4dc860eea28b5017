"""Is a recipe different from the baseline? Two-sample tests over seeds, Holm's correction
across recipes, and a bootstrap interval for a correlation. Pure functions on floats.

- **Welch**: Welch's unequal-variance t-test of the two means (``scipy.stats.ttest_ind``
  with ``equal_var=False``), two-sided.
- **Bootstrap**: the two-sample bootstrap test of equal means of Efron & Tibshirani (1993,
  *An Introduction to the Bootstrap*, algorithm 16.1): both samples are shifted to the
  pooled mean (so the null hypothesis holds), each is resampled with replacement
  ``resamples`` times from a ``numpy.random.default_rng(seed)`` generator, and the p-value
  is the share of resampled mean differences at least as far from 0 as the observed one,
  counted as (1 + k) / (1 + resamples) (Davison & Hinkley 1997, eq. 4.11: a Monte Carlo
  p-value is never 0). Fixed seed: the same numbers give the same p-value.
- **Holm** (1979): the step-down correction of m p-values; the i-th smallest becomes
  max over j <= i of min(1, (m - j + 1) p_(j)). It controls the family-wise error rate
  without assuming independence (scipy's ``false_discovery_control`` is Benjamini-Hochberg,
  a different error rate).

A test needs two or more values on each side and some spread; otherwise its p-value is None.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TESTS = ("welch", "bootstrap")
RESAMPLES = 10_000  # bootstrap resamples (the test and the correlation interval)
BOOTSTRAP_SEED = 0
ALPHA = 0.05  # a Holm-adjusted p-value at or above this is "not distinguishable"


@dataclass(frozen=True)
class TestResult:
    diff: float  # mean(a) - mean(b)
    p: float | None  # two-sided; None when the test is undefined (see ``why``)
    n_a: int
    n_b: int
    why: str = ""


def _undefined(a: Sequence[float], b: Sequence[float]) -> str:
    if len(a) < 2 or len(b) < 2:
        return f"needs 2+ seeds on each side (has {len(a)} and {len(b)})"
    if np.var(a) == 0 and np.var(b) == 0:
        return "no spread among the seeds on either side"
    return ""


def welch(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Welch's t-test of mean(a) == mean(b), two-sided."""
    diff = float(np.mean(a) - np.mean(b)) if a and b else math.nan
    why = _undefined(a, b)
    if why:
        return TestResult(diff, None, len(a), len(b), why)
    from scipy import stats

    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return TestResult(diff, p, len(a), len(b))


def bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> TestResult:
    """The bootstrap test of mean(a) == mean(b) (module docstring), two-sided."""
    diff = float(np.mean(a) - np.mean(b)) if a and b else math.nan
    why = _undefined(a, b)
    if why:
        return TestResult(diff, None, len(a), len(b), why)
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = np.concatenate([x, y]).mean()
    x0, y0 = x - x.mean() + pooled, y - y.mean() + pooled  # the null: equal means
    rng = np.random.default_rng(seed)
    xs = x0[rng.integers(0, len(x0), size=(resamples, len(x0)))].mean(axis=1)
    ys = y0[rng.integers(0, len(y0), size=(resamples, len(y0)))].mean(axis=1)
    # A relative tolerance keeps resamples equal to the observed difference counted as equal.
    k = int(np.count_nonzero(np.abs(xs - ys) >= abs(diff) * (1 - 1e-9)))
    return TestResult(diff, (1 + k) / (1 + resamples), len(a), len(b))


def two_sample(test: str, a: Sequence[float], b: Sequence[float]) -> TestResult:
    if test == "welch":
        return welch(a, b)
    if test == "bootstrap":
        return bootstrap(a, b)
    raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the given order; None entries stay None and do not count
    among the m hypotheses."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])  # type: ignore[arg-type,return-value]
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))  # type: ignore[operator]
        out[i] = running
    return out


def pearson_interval(xs: Sequence[float], ys: Sequence[float], resamples: int = RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the Pearson correlation of the pairs (x, y):
    the pairs resampled with replacement ``resamples`` times (numpy generator, fixed seed);
    resamples without spread in x or y are left out. None with fewer than 3 pairs."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(x) < 3:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(resamples, len(x)))
    rx, ry = x[idx], y[idx]
    dx, dy = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    ok = den > 0
    if not ok.any():
        return None
    r = (dx * dy).sum(axis=1)[ok] / den[ok]
    lo, hi = np.percentile(r, [2.5, 97.5])
    return float(lo), float(hi)


def interpolate(curve: Sequence[tuple[float, float]], cost: float) -> float | None:
    """The value of a (cost, value) curve, in curve order, at ``cost``: linear in cost
    between the two points around it; None outside the curve's cost range."""
    for (c0, v0), (c1, v1) in itertools.pairwise(curve):
        if min(c0, c1) <= cost <= max(c0, c1):
            return v0 if c1 == c0 else v0 + (v1 - v0) * (cost - c0) / (c1 - c0)
    if curve and curve[-1][0] == cost:  # a one-point curve
        return curve[-1][1]
    return None
