"""Comparing recipes: which one wins, at which budget, with how much certainty.

Pure functions (no rich, no typer, no torch): the CLI's ``trainbench compare`` and the
comparison printed at the end of ``trainbench run`` both call :func:`compare` and render
its :class:`Comparison` with :func:`display_table`, :func:`to_markdown`, :func:`to_csv` or
:func:`to_json`, so every format carries the same numbers.

Definitions (the README's "Comparing recipes" repeats them):

- **Runs.** A run directory is a folder holding ``meta.json`` (see :mod:`trainbench.results`).
  A path given is a run directory or a folder searched recursively for them; the search does
  not descend into a run directory (its sub-folders are budget sub-runs, whose final points
  the parent's ``points.csv`` already holds), and a run whose meta names ``budget_of`` is
  skipped. Smoke runs are left out unless asked for. An unreadable or foreign directory
  becomes a *problem* message; the others are still compared.
- **Curve.** A run's curve is its ``points.csv`` rows with ``curve == 1`` (cycle ends,
  budget ends, the final point), in file order; a point's *index* is its position there.
  x is the cost column (``--x``: time = ``train_time_s``, epochs = ``epoch``, samples =
  ``samples``, sparsity = ``sparsity``), y the metric column (default ``test_acc``; a run
  without the metric column uses ``test_acc``, with a note). Runs are grouped by recipe
  name (seeds). When none of a recipe's runs has a curve point yet (all stopped before
  the first one), their evaluation rows stand in, and the recipe is marked.
- **Alignment.** A recipe's aggregate curve at index i is the mean of cost and accuracy
  over the seeds that have a point i (``n`` may vary along the curve, and is reported), with
  the sample standard deviation and the min/max of the accuracy.
- **final acc** = the aggregate curve's last point: mean over its n seeds, sample std
  (ddof=1), 95% interval mean ± t(0.975, n-1)·std/√n (Student's t; ``None`` when n = 1),
  clipped to [0, 1].
  **cost** = the mean cost there. **best acc** = the highest mean accuracy on the curve.
- **cost to target** (``--target``): walking the mean curve in order, the first point
  reaching the target; if it is the first point, its cost; otherwise linear interpolation
  in cost between it and the previous point. ``None`` (not reached) if no point reaches it.
- **speedup** (``--baseline``) = the baseline's cost to reach the recipe's final mean
  accuracy (the same interpolation, on the baseline's mean curve) / the recipe's final cost.
  Above 1: the recipe gets there faster. 1.0 for the baseline by definition. When the
  baseline's first point already reaches that accuracy its true cost is unknown (at most
  that point's), so the speedup is an upper bound, shown "≤"; likewise a cost to target
  reached at a recipe's first point. When the
  baseline never reaches that accuracy the speedup is ``None`` ("not reached") and
  ``speedup_lower_bound`` = baseline's final cost / the recipe's final cost.
- **AUC** = the mean accuracy over a common cost range on a log10 axis (linear for
  sparsity): the integral over log10(cost) of the mean curve, linearly interpolated in
  log10(cost) between its points (trapezoids), divided by log10(hi) - log10(lo). The range
  [lo, hi] is the same for every recipe so the numbers compare: the intersection of the
  cost ranges of all recipes with two or more points. ``None`` for a recipe with one point
  or when the ranges do not overlap.
- **Pareto frontier**: the mean curve points of all recipes that no other point dominates
  (dominates = costs no more and reaches at least as high an accuracy, better in one; for
  sparsity, higher sparsity is better). A recipe is *on the frontier* when at least one of
  its points is; ``pareto_points`` lists which (curve indices).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainbench.errors import InputError
from trainbench.results import STATUSES, curve_rows, parse_points
from trainbench.runlock import is_locked

X_COLUMNS = {"time": "train_time_s", "epochs": "epoch", "samples": "samples", "sparsity": "sparsity"}
X_NAMES = {"time": "time (s)", "epochs": "epochs", "samples": "samples", "sparsity": "sparsity"}
DEFAULT_METRIC = "test_acc"

# Student's t quantile t(0.975, df) for df = 1..30; beyond, a Cornish-Fisher expansion
# (error < 1e-5 for df > 30). Hard-coded so comparing needs no scipy.
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
         2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
         2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
         2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
_Z975 = 1.959963984540054


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError("t975 needs df >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


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


# --- one run on disk ---


@dataclass
class Run:
    path: Path
    name: str
    seed: int | None
    status: str
    smoke: bool
    device: str | None
    versions: dict[str, str]
    points: list[dict[str, float]]  # every row of points.csv (a torn last line skipped)
    columns: list[str]  # points.csv header
    torn: bool = False  # points.csv ended mid-row (the writer died): that row was skipped
    curve_mode: str | None = None
    message: str = ""
    budget_of: str | None = None  # set in a budgets-mode run's sub-runs
    orphaned: bool = False  # status 'running' but no process holds its lock: killed

    @property
    def state(self) -> str:
        return "running, no process (killed?)" if self.orphaned else self.status

    @property
    def label(self) -> str:
        return self.state + (" (half-written)" if self.torn else "")



def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Run directories under ``paths`` (each a run directory or a folder searched
    recursively, not descending into run directories), in order, without duplicates; and a
    problem message for each path that is missing, a file, or holds no run directory."""
    found: list[Path] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_file() and p.name == "meta.json":
            p = p.parent
        if not p.exists():
            problems.append(f"{p}: no such file or directory.")
            continue
        if not p.is_dir():
            problems.append(f"{p}: not a directory; give a run directory (it holds meta.json) "
                            "or a folder holding run directories.")
            continue
        if (p / "meta.json").exists():
            candidates = [p]
        else:
            candidates = []

            def onerror(e: OSError) -> None:
                problems.append(f"{e.filename}: cannot be read ({e.strerror}); skipped.")

            for root, dirs, files in os.walk(p, onerror=onerror):
                dirs.sort()
                if "meta.json" in files:
                    candidates.append(Path(root))
                    dirs[:] = []  # a run's sub-folders are budget sub-runs
        if not candidates:
            problems.append(f"{p}: no run directories in it (a run directory holds meta.json).")
        for c in candidates:
            key = c.resolve()
            if key not in seen:
                seen.add(key)
                found.append(c)
    return found, problems


def load_run(path: Path) -> Run:
    """Read one run directory; raises ``ValueError`` with a message if it is unreadable or
    not a trainbench run."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: meta.json cannot be read ({type(e).__name__}: {e}); skipped.") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) \
            or meta.get("status") not in STATUSES:
        raise ValueError(f"{path}: not a trainbench run directory (its meta.json has no recipe "
                         "'name' or no known 'status'); skipped.")
    try:
        header, points, torn = parse_points(path / "points.csv")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: points.csv cannot be read ({type(e).__name__}: {e}); skipped.") from None
    versions = dict(meta.get("versions") or {})
    if meta.get("torch_build"):
        versions["torch_build"] = str(meta["torch_build"])
    seed = meta.get("seed")
    return Run(path=path, name=meta["name"], seed=seed if isinstance(seed, int) else None,
               status=meta["status"], smoke=bool(meta.get("smoke", False)),
               device=meta.get("device"), versions={k: str(v) for k, v in versions.items()},
               points=points, columns=header, torn=torn,
               curve_mode=meta.get("curve_mode"), message=str(meta.get("message") or ""),
               budget_of=meta.get("budget_of") or None,
               orphaned=meta["status"] == "running" and not is_locked(path))


def load_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[str]]:
    """Discover and read runs; a directory that cannot be used (unreadable, foreign, a
    budget sub-run) is a problem message and the others are still read."""
    dirs, problems = discover(paths)
    runs = []
    for d in dirs:
        try:
            run = load_run(d)
        except ValueError as e:
            problems.append(str(e))
            continue
        if run.budget_of:
            problems.append(f"{d}: a budget sub-run of {run.budget_of} (the parent run directory's "
                            "points.csv holds its final point); skipped.")
            continue
        runs.append(run)
    return runs, problems


# --- curves ---


@dataclass(frozen=True)
class CurvePoint:
    """A recipe's aggregate curve at one index: means over the ``n`` seeds that have it."""

    index: int  # position on the curve, 0-based
    cost: float  # mean over the seeds
    stats: Stats  # of the accuracy over the seeds
    acc_min: float
    acc_max: float

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
    """Seeds' curves (lists of (cost, acc) in curve order) -> the aggregate curve: index i
    averages the seeds having a point i with finite cost and accuracy. An index no seed has
    a finite value for is left out (indices keep their numbers)."""
    out = []
    for i in range(max((len(c) for c in curves), default=0)):
        vals = [c[i] for c in curves if i < len(c) and math.isfinite(c[i][0]) and math.isfinite(c[i][1])]
        if not vals:
            continue
        accs = [v[1] for v in vals]
        out.append(CurvePoint(i, math.fsum(v[0] for v in vals) / len(vals), seed_stats(accs),
                              min(accs), max(accs)))
    return out


def cost_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The cost at which a curve of (cost, acc) points, in curve order, first reaches
    ``target``: the first point's cost if it already does; otherwise linear interpolation in
    cost between the first point reaching it and the one before. None if none reaches it."""
    for i, (c, a) in enumerate(curve):
        if a >= target:
            if i == 0:
                return c
            c0, a0 = curve[i - 1]
            return c0 + (target - a0) * (c - c0) / (a - a0)
    return None


def speedup(baseline: Sequence[tuple[float, float]], acc: float, cost: float) -> float | None:
    """The baseline's cost to reach ``acc`` / ``cost``; None if the baseline never reaches it."""
    t = cost_to_reach(baseline, acc)
    return None if t is None or cost <= 0 else t / cost


def auc(curve: Sequence[tuple[float, float]], lo: float, hi: float, log: bool = True) -> float | None:
    """Mean accuracy over [lo, hi] on a log10 (or linear) cost axis: the trapezoid integral
    of the curve, linear in log10(cost) between its points (sorted by cost), over the range,
    divided by its width. None if the curve does not cover [lo, hi] or the range is empty."""
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


def pareto(points: Sequence[tuple[float, float]], higher_cost_better: bool = False) -> list[bool]:
    """For each (cost, acc) point: True when no other point dominates it (costs no more,
    accuracy no lower, strictly better in one). With ``higher_cost_better`` (sparsity) a
    higher x is the better one. Equal points do not dominate each other."""
    sign = -1.0 if higher_cost_better else 1.0
    pts = [(sign * c, a) for c, a in points]
    out = []
    for c, a in pts:
        dominated = any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in pts)
        out.append(not dominated and math.isfinite(c) and math.isfinite(a))
    return out


# --- the comparison ---


@dataclass
class RecipeResult:
    name: str
    runs: list[Run]
    curve: list[CurvePoint]
    status: str  # "3 completed" or "2 completed, 1 diverged"
    complete: bool  # every run completed, none half-written
    devices: list[str]
    final: Stats | None = None
    cost: float | None = None  # mean cost at the final point
    best_acc: float | None = None
    target_cost: float | None = None
    speedup: float | None = None
    speedup_lower_bound: float | None = None  # when the baseline never reaches final acc
    # The baseline's (or this recipe's) first point already reaches the accuracy: the true
    # crossing is earlier, so the speedup (the cost to target) is at most the value given.
    speedup_upper_bound: bool = False
    target_cost_upper_bound: bool = False
    auc: float | None = None
    pareto_points: list[int] = field(default_factory=list)  # curve indices on the frontier
    from_evaluations: bool = False  # no curve point yet: evaluation rows stand in

    @property
    def points(self) -> list[tuple[float, float]]:
        return [(p.cost, p.acc) for p in self.curve]

    @property
    def on_frontier(self) -> bool:
        return bool(self.pareto_points)


@dataclass
class Comparison:
    x: str
    metric: str
    target: float | None
    baseline: str | None
    recipes: list[RecipeResult]
    frontier: list[tuple[str, int, float, float]]  # (recipe, index, cost, acc), by cost
    span: tuple[float, float] | None  # the AUC cost range
    warnings: list[str] = field(default_factory=list)  # comparability: devices, versions
    notes: list[str] = field(default_factory=list)  # marked runs, smoke runs left out
    problems: list[str] = field(default_factory=list)  # directories that could not be used
    smoke_left_out: int = 0

    @property
    def x_column(self) -> str:
        return X_COLUMNS[self.x]

    @property
    def log_x(self) -> bool:
        return self.x != "sparsity"


def _status_summary(runs: Sequence[Run]) -> str:
    """'2 completed, 1 diverged': completed first, then in the order of STATUSES."""
    counts = Counter(r.label for r in runs)
    order = {r.label: (r.status != "completed", STATUSES.index(r.status), r.label) for r in runs}
    return ", ".join(f"{counts[k]} {k}" for k in sorted(counts, key=order.__getitem__))


def _value(row: dict[str, float], col: str) -> float:
    v = row.get(col, math.nan)
    return v if isinstance(v, float) else math.nan


def normalize_target(target: float | None) -> float | None:
    """0.98 and 98 both mean 98%: values above 1 are read as percent."""
    if target is None:
        return None
    if not math.isfinite(target) or target <= 0 or target > 100:
        raise InputError(f"--target {target}: give an accuracy in (0, 1], e.g. 0.98, or a percent, e.g. 98.")
    return target / 100 if target > 1 else target


def compare(paths: Iterable[str | Path], *, baseline: str | None = None, target: float | None = None,
            x: str = "time", metric: str = DEFAULT_METRIC, include_smoke: bool = False) -> Comparison:
    """Find, read and compare the runs under ``paths``. Raises InputError (exit 2) when no
    run is left to compare, or for a bad baseline, target, axis or metric."""
    if x not in X_COLUMNS:
        raise InputError(f"--x {x}: choose one of {', '.join(X_COLUMNS)}.")
    target = normalize_target(target)
    runs, problems = load_runs(paths)
    return compare_runs(runs, problems, baseline=baseline, target=target, x=x, metric=metric,
                        include_smoke=include_smoke)


def compare_runs(runs: Sequence[Run], problems: Sequence[str] = (), *, baseline: str | None = None,
                 target: float | None = None, x: str = "time", metric: str = DEFAULT_METRIC,
                 include_smoke: bool = False) -> Comparison:
    problems = list(problems)
    notes: list[str] = []
    smoke = [r for r in runs if r.smoke]
    if not include_smoke:
        runs = [r for r in runs if not r.smoke]
        if smoke:
            notes.append(f"left out {len(smoke)} smoke run{'s' if len(smoke) > 1 else ''} "
                         "(--include-smoke to include them).")
    if not runs:
        raise InputError("no runs to compare" + (
            f": all {len(smoke)} runs found are smoke runs (--include-smoke to compare them)."
            if smoke and not include_smoke else ".") + "".join(f"\n  {p}" for p in problems))
    xcol = X_COLUMNS[x]
    if x == "sparsity":
        having = [r for r in runs if "sparsity" in r.columns]
        if not having:
            raise InputError(f"--x sparsity needs a 'sparsity' column in points.csv (pruning runs); "
                             f"none of the {len(runs)} runs has one. Use --x time, epochs or samples.")
        for r in runs:
            if r not in having:
                problems.append(f"{r.path}: no 'sparsity' column in points.csv; left out of --x sparsity.")
        runs = having
    if not any(metric in r.columns for r in runs):
        from trainbench.registry import suggest

        cols = sorted({c for r in runs for c in r.columns})
        raise InputError(f"--metric {metric}: no run has that column in points.csv." + suggest(metric, cols)
                         + f" Columns: {', '.join(cols)}.")

    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.name, []).append(r)
    if baseline is not None and baseline not in groups:
        from trainbench.registry import suggest

        raise InputError(f"--baseline {baseline}: no recipe of that name among the runs; they are: "
                         f"{', '.join(groups)}." + suggest(baseline, groups))
    if baseline is not None:  # the baseline's row comes first
        groups = {baseline: groups[baseline], **{k: v for k, v in groups.items() if k != baseline}}

    warnings = _comparability(runs, x)
    results = [_recipe(name, rs, xcol, metric, notes, warnings) for name, rs in groups.items()]

    # Pareto frontier over every recipe's mean curve points.
    flat = [(res, p) for res in results for p in res.curve]
    keep = pareto([(p.cost, p.acc) for _, p in flat], higher_cost_better=x == "sparsity")
    frontier = []
    for (res, p), on in zip(flat, keep, strict=True):
        if on:
            res.pareto_points.append(p.index)
            frontier.append((res.name, p.index, p.cost, p.acc))
    frontier.sort(key=lambda f: (f[2], f[3]))

    log = x != "sparsity"
    span = auc_span((res.points for res in results), log=log)
    base = next((res for res in results if res.name == baseline), None)
    if base is not None and not base.curve:
        warnings.append(f"baseline {baseline} has no curve points: no speedups.")
    for res in results:
        if not res.curve:
            continue
        last = res.curve[-1]
        if span is not None:
            res.auc = auc(res.points, *span, log=log)
        if target is not None and x != "sparsity":
            res.target_cost = cost_to_reach(res.points, target)
            # Reached at the first point already: somewhere before it, so at most that cost.
            res.target_cost_upper_bound = res.target_cost is not None and res.curve[0].acc >= target
        if base is not None and base.curve and x != "sparsity":
            if res is base:
                res.speedup = 1.0
            else:
                res.speedup = speedup(base.points, last.acc, last.cost)
                res.speedup_upper_bound = res.speedup is not None and base.curve[0].acc >= last.acc
                if res.speedup is None and last.cost > 0:
                    res.speedup_lower_bound = base.curve[-1].cost / last.cost
    if x == "sparsity" and (target is not None or baseline is not None):
        notes.append("--target and speedups are defined on cost axes (time, epochs, samples), "
                     "not for --x sparsity.")
    return Comparison(x=x, metric=metric, target=target, baseline=baseline, recipes=results,
                      frontier=frontier, span=span, warnings=warnings, notes=notes,
                      problems=problems, smoke_left_out=0 if include_smoke else len(smoke))


def _recipe(name: str, runs: list[Run], xcol: str, metric: str, notes: list[str],
            warnings: list[str]) -> RecipeResult:
    res = RecipeResult(name=name, runs=runs, curve=[], status=_status_summary(runs),
                       complete=all(r.status == "completed" and not r.torn for r in runs),
                       devices=list(dict.fromkeys(r.device or "unknown" for r in runs)))
    rows = {id(r): curve_rows(r.points) for r in runs}
    if not any(rows.values()):
        rows = {id(r): r.points for r in runs}
        res.from_evaluations = any(rows.values())
        if res.from_evaluations:
            notes.append(f"{name}: no run has reached its first curve point; its evaluation points "
                         "stand in for the curve.")
    curves = []
    lacking = [r for r in runs if metric not in r.columns and rows[id(r)]]
    if lacking and metric != DEFAULT_METRIC:
        notes.append(f"{name}: {len(lacking)} run(s) have no '{metric}' column; their "
                     f"{DEFAULT_METRIC} is used.")
    for r in runs:
        col = metric if metric in r.columns else DEFAULT_METRIC
        curves.append([(_value(p, xcol), _value(p, col)) for p in rows[id(r)]])
    res.curve = align(curves)
    for r, c in zip(runs, curves, strict=True):
        if r.status != "completed" or r.torn:
            what = r.state + (", half-written (its torn last line skipped)" if r.torn else "")
            why = f": {r.message}" if r.message and r.status != "running" else ""
            notes.append(f"{name} seed {r.seed}: {what}{why}; {len(c)} of its points used ({r.path}).")
    _check_alignment(name, runs, rows, warnings)
    seeds = Counter(r.seed for r in runs)
    for s, k in seeds.items():
        if k > 1:
            dirs = ", ".join(str(r.path) for r in runs if r.seed == s)
            warnings.append(f"{name}: seed {s} appears in {k} run directories ({dirs}); "
                            "each counts as a seed.")
    if res.curve:
        last = res.curve[-1]
        res.final = last.stats
        if res.final.ci_low is not None and res.final.ci_high is not None:  # an accuracy stays in [0, 1]
            res.final = dataclasses.replace(res.final, ci_low=max(res.final.ci_low, 0.0),
                                            ci_high=min(res.final.ci_high, 1.0))
        res.cost = last.cost
        res.best_acc = max(p.acc for p in res.curve)
    return res


def _check_alignment(name: str, runs: Sequence[Run], rows: dict[int, list[dict[str, float]]],
                     warnings: list[str]) -> None:
    """Index alignment assumes the seeds ran the same recipe: warn when their curve points
    fall at different epochs, or their curve modes differ."""
    modes = {r.curve_mode or "cyclic" for r in runs}
    if len(modes) > 1:
        warnings.append(f"{name}: runs of different curve modes ({', '.join(sorted(modes))}) share "
                        "the name; their curves are averaged point by point all the same.")
    n = max((len(v) for v in rows.values()), default=0)
    for i in range(n):
        eps = {round(v[i]["epoch"], 6) for v in rows.values() if i < len(v) and "epoch" in v[i]
               and math.isfinite(v[i]["epoch"])}
        if len(eps) > 1:
            warnings.append(f"{name}: seeds disagree on the epoch of curve point {i + 1} "
                            f"({', '.join(f'{e:g}' for e in sorted(eps))}): different recipes under "
                            "one name? They are averaged by position all the same.")
            return


def _comparability(runs: Sequence[Run], x: str) -> list[str]:
    out = []
    devices = Counter(r.device for r in runs if r.device)
    if len(devices) > 1:
        listing = "; ".join(f"{d} ({k} run{'s' if k > 1 else ''})" for d, k in devices.items())
        if x == "time":
            out.append(f"runs were made on different devices: {listing}. Training times are not "
                       "comparable across devices; --x epochs compares them by work done.")
        else:
            out.append(f"runs were made on different devices: {listing} (the {x} axis does not "
                       "depend on the device; accuracy may, slightly).")
    keys = sorted({k for r in runs for k in r.versions})
    diffs = []
    for k in keys:
        vals = Counter(r.versions.get(k, "unknown") for r in runs)
        if len(vals) > 1:
            diffs.append(f"{k} " + ", ".join(f"{v} ({n})" for v, n in vals.items()))
    if diffs:
        out.append("runs were made with different versions: " + "; ".join(diffs)
                   + ". Times (and accuracies) may not be comparable.")
    return out


# --- rendering: every format from the same numbers ---


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def fmt_cost(v: float | None, x: str) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    if x == "samples":
        return f"{v:,.0f}"
    if x == "sparsity":
        return f"{v:.3f}"
    if x == "epochs":
        return f"{v:.4g}"
    return f"{v:#.3g}".rstrip(".") if abs(v) < 99.5 else f"{v:.0f}"


def target_header(c: Comparison) -> str:
    return f"{c.x} to {100 * (c.target or 0):g}%"


def display_table(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the comparison, as the rich table and the markdown show them:
    accuracies in %, std in percentage points, costs in the --x unit. Columns that depend on
    an option (cost to target, speedup) appear only when it is given."""
    show_target = c.target is not None and c.x != "sparsity"
    show_speedup = c.baseline is not None and c.x != "sparsity"
    headers = ["recipe", "runs", "device", "n", "final %", "± std", "95% CI", "best %", X_NAMES[c.x]]
    if show_target:
        headers.append(target_header(c))
    if show_speedup:
        headers.append(f"speedup vs {c.baseline}")
    headers += ["AUC %", "Pareto"]
    rows = []
    for r in c.recipes:
        f = r.final
        row = [r.name, r.status, "; ".join(r.devices), str(f.n) if f else "0", _pct(f.mean if f else None),
               "-" if f is None or f.std is None else f"{100 * f.std:.2f}",
               "-" if f is None or f.ci_low is None or f.ci_high is None
               else f"{100 * f.ci_low:.2f}-{100 * f.ci_high:.2f}",
               _pct(r.best_acc), fmt_cost(r.cost, c.x)]
        if show_target:
            row.append("-" if not r.curve else "not reached" if r.target_cost is None
                       else ("≤" if r.target_cost_upper_bound else "") + fmt_cost(r.target_cost, c.x))
        if show_speedup:
            if not r.curve or (r.speedup is None and r.speedup_lower_bound is None):
                row.append("-")
            elif r.speedup is None:
                row.append(f"not reached (>{r.speedup_lower_bound:.2f}x)")
            else:
                row.append(f"{'≤' if r.speedup_upper_bound else ''}{r.speedup:.2f}x")
        row.append(_pct(r.auc))
        row.append("-" if not r.curve else
                   f"yes ({len(r.pareto_points)}/{len(r.curve)})" if r.pareto_points else "no")
        rows.append(row)
    return headers, rows


def legend(c: Comparison) -> list[str]:
    """The columns' definitions, one line each."""
    noun = c.x
    unit = {"time": " (training seconds)", "epochs": "", "samples": " (training samples seen)",
            "sparsity": ""}[c.x]
    axis = "log10" if c.log_x else "linear"
    lines = [
        f"final %: {c.metric} at the last curve point, mean over the n seeds that have it; ± std: "
        "sample std (pp); 95% CI: mean ± t(0.975, n-1)·std/√n. best %: highest mean curve point. "
        f"{X_NAMES[c.x]}: mean {noun}{unit} at the last point.",
    ]
    if c.target is not None and c.x != "sparsity":
        lines.append(f"{target_header(c)}: where the mean curve first reaches {100 * c.target:g}%, "
                     f"linear in {noun} between curve points; ≤: reached by the first point already.")
    if c.baseline is not None and c.x != "sparsity":
        lines.append(f"speedup: the {noun} {c.baseline} needs to reach the recipe's final % (interpolated "
                     f"on its mean curve) / the recipe's {noun}; above 1 = faster than {c.baseline}; "
                     f"≤: {c.baseline}'s first point already reaches it, so this is an upper bound.")
    if c.span is None:
        auc_def = (f"AUC %: the mean accuracy over the {noun} range all multi-point curves share; "
                   "here they share none, so '-'.")
    else:
        auc_def = (f"AUC %: mean accuracy over {noun} {fmt_cost(c.span[0], c.x)} to "
                   f"{fmt_cost(c.span[1], c.x)} on a {axis} axis (trapezoids; the range all "
                   "multi-point curves cover).")
    lines.append(auc_def + " Pareto: yes (k/m) = k of the recipe's m mean curve points are on the "
                 "accuracy-vs-cost frontier of all recipes.")
    return lines


def to_markdown(c: Comparison) -> str:
    """A GitHub table with the table's cells."""
    headers, rows = display_table(c)

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    right = {h for h in headers if h not in ("recipe", "runs", "device")}
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---:" if h in right else "---" for h in headers) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("recipe", "runs", "status", "complete", "devices", "n", "final_acc", "final_acc_std",
               "final_acc_ci_low", "final_acc_ci_high", "best_acc", "x", "cost", "target",
               "target_cost", "target_cost_upper_bound", "baseline", "speedup", "speedup_upper_bound",
               "speedup_lower_bound", "auc", "auc_lo", "auc_hi",
               "pareto", "pareto_points", "curve_points", "metric")


def records(c: Comparison) -> list[dict[str, Any]]:
    """One flat record per recipe, full precision (accuracy as a fraction, cost in the --x
    unit); csv and json both use these."""
    out = []
    for r in c.recipes:
        f = r.final
        out.append({
            "recipe": r.name, "runs": len(r.runs), "status": r.status, "complete": r.complete,
            "devices": "; ".join(r.devices), "n": f.n if f else 0,
            "final_acc": f.mean if f else None, "final_acc_std": f.std if f else None,
            "final_acc_ci_low": f.ci_low if f else None, "final_acc_ci_high": f.ci_high if f else None,
            "best_acc": r.best_acc, "x": c.x, "cost": r.cost, "target": c.target,
            "target_cost": r.target_cost, "target_cost_upper_bound": r.target_cost_upper_bound,
            "baseline": c.baseline, "speedup": r.speedup, "speedup_upper_bound": r.speedup_upper_bound,
            "speedup_lower_bound": r.speedup_lower_bound, "auc": r.auc,
            "auc_lo": c.span[0] if c.span else None, "auc_hi": c.span[1] if c.span else None,
            "pareto": r.on_frontier, "pareto_points": " ".join(str(i + 1) for i in r.pareto_points),
            "curve_points": len(r.curve), "metric": c.metric,
        })
    return out


def to_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for rec in records(c):
        w.writerow({k: "" if v is None else v for k, v in rec.items()})
    return buf.getvalue()


def to_json(c: Comparison) -> str:
    recipes = []
    for rec, r in zip(records(c), c.recipes, strict=True):
        recipes.append({
            **rec,
            "pareto_points": [i + 1 for i in r.pareto_points],
            "from_evaluations": r.from_evaluations,
            "curve": [{"point": p.index + 1, "n": p.n, "cost": p.cost, "acc": p.acc, "acc_std": p.acc_std,
                       "acc_min": p.acc_min, "acc_max": p.acc_max} for p in r.curve],
            "run_dirs": [{"path": str(run.path), "seed": run.seed, "status": run.status,
                          "no_process": run.orphaned,
                          "half_written": run.torn, "device": run.device} for run in r.runs],
        })
    doc = {"x": c.x, "x_column": c.x_column, "metric": c.metric, "target": c.target,
           "baseline": c.baseline, "auc_span": list(c.span) if c.span else None,
           "recipes": recipes,
           "frontier": [{"recipe": n, "point": i + 1, "cost": x, "acc": a} for n, i, x, a in c.frontier],
           "warnings": c.warnings, "notes": c.notes, "problems": c.problems,
           "smoke_left_out": c.smoke_left_out}
    return json.dumps(doc, indent=2) + "\n"
