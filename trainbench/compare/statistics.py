"""The numbers of a comparison, as pure functions on (cost, value) curves: statistics over
seeds, the aggregate curve, cost to reach a value, speedup, AUC and the Pareto frontier.
Quantiles and tests come from scipy.stats; the tests between recipes are in :mod:`.significance`.

``lower_is_better`` (losses, ECE) flips what "reaches" and "dominates" mean; costs are
always better lower, except on the sparsity axis (``higher_cost_better``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (df >= 1), from
    scipy.stats (imported here: the CLI does not pay for scipy before comparing)."""
    if df < 1:
        raise ValueError("t975 needs df >= 1")
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


@dataclass(frozen=True)
class Stats:
    """Mean over seeds, sample std (ddof=1) and the 95% t-interval; std/ci None when n = 1."""

    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None


def seed_stats(values: Sequence[float]) -> Stats:
    n = len(values)
    if n == 0:
        raise ValueError("seed_stats needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return Stats(1, mean, None, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class CurvePoint:
    """A recipe's aggregate curve at one index: means over the ``n`` seeds that have it.
    ``acc`` is the compared metric's mean (an accuracy unless ``--metric`` says otherwise)."""

    index: int  # position on the curve, 0-based
    cost: float  # mean over the seeds
    stats: Stats  # of the metric over the seeds
    acc_min: float
    acc_max: float
    values: tuple[float, ...] = ()  # the seeds' values, in the order of the runs having the point

    @property
    def n(self) -> int:
        return self.stats.n

    @property
    def acc(self) -> float:
        return self.stats.mean

    @property
    def acc_std(self) -> float | None:
        return self.stats.std


def align(curves: Sequence[Sequence[tuple[float, float]]]) -> list[CurvePoint]:
    """Seeds' curves (lists of (cost, value) in curve order) -> the aggregate curve: index i
    averages the seeds having a point i with finite cost and value. An index no seed has
    a finite value for is left out (indices keep their numbers)."""
    out = []
    for i in range(max((len(c) for c in curves), default=0)):
        vals = [c[i] for c in curves if i < len(c) and math.isfinite(c[i][0]) and math.isfinite(c[i][1])]
        if not vals:
            continue
        accs = [v[1] for v in vals]
        out.append(CurvePoint(i, math.fsum(v[0] for v in vals) / len(vals), seed_stats(accs),
                              min(accs), max(accs), tuple(accs)))
    return out


def reaches(value: float, target: float, lower_is_better: bool = False) -> bool:
    """Whether ``value`` is at least as good as ``target``."""
    return value <= target if lower_is_better else value >= target


def best(values: Iterable[float], lower_is_better: bool = False) -> float:
    return min(values) if lower_is_better else max(values)


def cost_to_reach(curve: Sequence[tuple[float, float]], target: float,
                  lower_is_better: bool = False) -> float | None:
    """The cost at which a curve of (cost, value) points, in curve order, first reaches
    ``target`` (value >= target; <= when lower is better): the first point's cost if it
    already does; otherwise linear interpolation in cost between the first point reaching it
    and the one before. None if none reaches it."""
    for i, (c, a) in enumerate(curve):
        if reaches(a, target, lower_is_better):
            if i == 0:
                return c
            c0, a0 = curve[i - 1]
            # The previous point did not reach it, so a != a0 and the fraction is in (0, 1]
            # whichever the direction.
            return c0 + (target - a0) * (c - c0) / (a - a0)
    return None


def speedup(baseline: Sequence[tuple[float, float]], acc: float, cost: float,
            lower_is_better: bool = False) -> float | None:
    """The baseline's cost to reach ``acc`` / ``cost``; None if the baseline never reaches it."""
    t = cost_to_reach(baseline, acc, lower_is_better)
    return None if t is None or cost <= 0 else t / cost


def auc(curve: Sequence[tuple[float, float]], lo: float, hi: float, log: bool = True) -> float | None:
    """Mean value over [lo, hi] on a log10 (or linear) cost axis: the trapezoid integral
    of the curve, linear in log10(cost) between its points (sorted by cost), over the range,
    divided by its width. None if the curve does not cover [lo, hi] or the range is empty.
    (A mean: the metric's direction says whether higher or lower is better.)"""
    f = (lambda v: math.log10(v)) if log else (lambda v: v)
    if lo >= hi or (log and lo <= 0):
        return None
    pts = sorted((f(c), a) for c, a in curve if (c > 0 or not log) and math.isfinite(a))
    u_lo, u_hi = f(lo), f(hi)
    if len(pts) < 2 or pts[0][0] > u_lo + 1e-12 or pts[-1][0] < u_hi - 1e-12:
        return None
    area = 0.0
    for (u0, a0), (u1, a1) in itertools.pairwise(pts):
        s, e = max(u0, u_lo), min(u1, u_hi)
        if e <= s or u1 <= u0:
            continue
        a_s = a0 + (a1 - a0) * (s - u0) / (u1 - u0)
        a_e = a0 + (a1 - a0) * (e - u0) / (u1 - u0)
        area += (a_s + a_e) / 2 * (e - s)
    return area / (u_hi - u_lo)


def auc_span(curves: Iterable[Sequence[tuple[float, float]]], log: bool = True) -> tuple[float, float] | None:
    """The common cost range of all curves with two or more points at distinct costs (> 0 on
    a log axis): (largest first cost, smallest last cost); None if they do not overlap."""
    ranges = []
    for c in curves:
        xs = [x for x, _ in c if math.isfinite(x) and (x > 0 or not log)]
        if len(xs) >= 2 and min(xs) < max(xs):
            ranges.append((min(xs), max(xs)))
    if not ranges:
        return None
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    return (lo, hi) if lo < hi else None


def pareto(points: Sequence[tuple[float, float]], higher_cost_better: bool = False,
           lower_is_better: bool = False) -> list[bool]:
    """For each (cost, value) point: True when no other point dominates it (costs no more,
    value no worse, strictly better in one). With ``higher_cost_better`` (sparsity) a
    higher x is the better one; with ``lower_is_better`` (loss, ECE) a lower value is.
    Equal points do not dominate each other."""
    xs = -1.0 if higher_cost_better else 1.0
    ys = -1.0 if lower_is_better else 1.0
    pts = [(xs * c, ys * a) for c, a in points]
    out = []
    for c, a in pts:
        dominated = any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in pts)
        out.append(not dominated and math.isfinite(c) and math.isfinite(a))
    return out
