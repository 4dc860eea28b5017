"""The comparison itself: runs -> one :class:`RecipeResult` per recipe, with the numbers
the package docstring defines."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trainbench.compare import cost_axes
from trainbench.compare.discovery import Run, load_runs
from trainbench.compare.grouping import Group, group_runs
from trainbench.compare.metrics import DEFAULT_METRIC, Metric, metric_spec, normalize_target
from trainbench.compare.significance import TESTS, TestResult, holm, interpolate, two_sample
from trainbench.compare.statistics import (
    CurvePoint,
    Stats,
    align,
    auc,
    auc_span,
    best,
    cost_to_reach,
    pareto,
    reaches,
    speedup,
)
from trainbench.errors import InputError
from trainbench.results import STATUSES, curve_rows

X_COLUMNS = {"time": "train_time_s", "epochs": "epoch", "samples": "samples", "sparsity": "sparsity",
             **cost_axes.COLUMNS}
X_NAMES = {"time": "time (s)", "epochs": "epochs", "samples": "samples", "sparsity": "sparsity",
           "device_time": "device time (s)", "energy": "energy (J)", "cost": "cost ($)"}


@dataclass
class RecipeResult:
    name: str  # the recipe name
    runs: list[Run]
    curve: list[CurvePoint]
    status: str  # "3 completed" or "2 completed, 1 diverged"
    complete: bool  # every run completed, none half-written
    devices: list[str]
    final: Stats | None = None
    cost: float | None = None  # mean cost at the final point
    best_acc: float | None = None  # the best mean curve point (lowest for a loss)
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
    # The row's name: the recipe name, plus the fields telling it apart from other recipes
    # run under the same name ("digits (optimizer.lr=0.2)"); see grouping.
    label: str = ""
    differs: dict[str, str] = field(default_factory=dict)
    seed_curves: list[list[tuple[float, float]]] = field(default_factory=list)  # per run, (cost, value)
    # --test: against the baseline at the final point, and at the recipe's final cost
    # (the baseline's seeds interpolated there); p-values Holm-adjusted across recipes.
    test_final: TestResult | None = None
    test_final_holm: float | None = None
    test_equal_cost: TestResult | None = None
    test_equal_cost_holm: float | None = None

    def __post_init__(self) -> None:
        self.label = self.label or self.name

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
    baseline: str | None  # the baseline row's label
    recipes: list[RecipeResult]
    frontier: list[tuple[str, int, float, float]]  # (recipe label, index, cost, value), by cost
    span: tuple[float, float] | None  # the AUC cost range
    warnings: list[str] = field(default_factory=list)  # comparability: devices, versions
    notes: list[str] = field(default_factory=list)  # marked runs, smoke runs left out
    problems: list[str] = field(default_factory=list)  # directories that could not be used
    smoke_left_out: int = 0
    test: str | None = None  # --test: welch | bootstrap

    @property
    def x_column(self) -> str:
        return X_COLUMNS[self.x]

    @property
    def log_x(self) -> bool:
        return self.x != "sparsity"

    @property
    def spec(self) -> Metric:
        return metric_spec(self.metric)

    @property
    def lower_is_better(self) -> bool:
        return self.spec.lower_is_better


def _status_summary(runs: Sequence[Run]) -> str:
    """'2 completed, 1 diverged': completed first, then in the order of STATUSES."""
    counts = Counter(r.label for r in runs)
    order = {r.label: (r.status != "completed", STATUSES.index(r.status), r.label) for r in runs}
    return ", ".join(f"{counts[k]} {k}" for k in sorted(counts, key=order.__getitem__))


def _value(row: dict[str, float], col: str) -> float:
    """A points.csv cell as a float; NaN when missing. Integer columns (samples, step) read
    back as int; a bool is no measurement."""
    v = row.get(col, math.nan)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def compare(paths: Iterable[str | Path], *, baseline: str | None = None, target: float | None = None,
            x: str = "time", metric: str = DEFAULT_METRIC, include_smoke: bool = False,
            test: str | None = None, price_per_device_hour: float | None = None) -> Comparison:
    """Find, read and compare the runs under ``paths``. Raises InputError (exit 2) when no
    run is left to compare, or for a bad baseline, target, axis, price, metric or test."""
    if x not in X_COLUMNS:
        raise InputError(f"--x {x}: choose one of {', '.join(X_COLUMNS)}.")
    _check_test(test, baseline)
    runs, problems = load_runs(paths)
    return compare_runs(runs, problems, baseline=baseline, target=target, x=x, metric=metric,
                        include_smoke=include_smoke, test=test,
                        price_per_device_hour=price_per_device_hour)


def _check_test(test: str | None, baseline: str | None) -> None:
    if test is not None and test not in TESTS:
        raise InputError(f"--test {test}: choose one of {', '.join(TESTS)}.")
    if test is not None and baseline is None:
        raise InputError(f"--test {test} tests each recipe against the baseline: name it with "
                         "--baseline NAME.")


def compare_runs(runs: Sequence[Run], problems: Sequence[str] = (), *, baseline: str | None = None,
                 target: float | None = None, x: str = "time", metric: str = DEFAULT_METRIC,
                 include_smoke: bool = False, test: str | None = None,
                 price_per_device_hour: float | None = None) -> Comparison:
    """Compare in-memory runs. ``target`` is a value of the metric (0.98 or 98 for an
    accuracy, see :func:`normalize_target`); ``baseline`` a recipe name or a row's label;
    ``test`` (welch | bootstrap, needs ``baseline``) tests each recipe against it;
    ``price_per_device_hour`` the price for ``x="cost"`` (:mod:`.cost_axes`)."""
    _check_test(test, baseline)
    cost_axes.check_price(x, price_per_device_hour)
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
    runs = cost_axes.with_cost_column(runs, x, price_per_device_hour, notes, problems)
    if note := cost_axes.world_size_note(runs, x):
        notes.append(note)
    if not any(metric in r.columns for r in runs):
        from trainbench.registry import suggest

        cols = sorted({c for r in runs for c in r.columns})
        raise InputError(f"--metric {metric}: no run has that column in points.csv." + suggest(metric, cols)
                         + f" Columns: {', '.join(cols)}.")
    spec = metric_spec(metric)
    target = normalize_target(target, spec)

    groups = group_runs(runs)
    if baseline is not None:
        base_group = _find_baseline(baseline, groups)
        baseline = base_group.label
        groups = [base_group, *(g for g in groups if g is not base_group)]  # the baseline's row first

    warnings = _comparability(runs, x)
    for name in dict.fromkeys(g.name for g in groups):
        same = [g for g in groups if g.name == name]
        if len(same) > 1:
            fields = sorted({k for g in same for k in g.differs})
            warnings.append(f"{name}: runs of {len(same)} different recipes share the name (they differ in "
                            f"{', '.join(fields) or 'recipe.yaml'}); each recipe is a row of its own, not "
                            "averaged with the others.")
    results = [_recipe(g, xcol, spec, notes, warnings) for g in groups]

    # Pareto frontier over every recipe's mean curve points.
    flat = [(res, p) for res in results for p in res.curve]
    keep = pareto([(p.cost, p.acc) for _, p in flat], higher_cost_better=x == "sparsity",
                  lower_is_better=spec.lower_is_better)
    frontier = []
    for (res, p), on in zip(flat, keep, strict=True):
        if on:
            res.pareto_points.append(p.index)
            frontier.append((res.label, p.index, p.cost, p.acc))
    frontier.sort(key=lambda f: (f[2], f[3]))

    log = x != "sparsity"
    lower = spec.lower_is_better
    span = auc_span((res.points for res in results), log=log)
    base = next((res for res in results if res.label == baseline), None)
    if base is not None and not base.curve:
        warnings.append(f"baseline {baseline} has no curve points: no speedups.")
    for res in results:
        if not res.curve:
            continue
        last = res.curve[-1]
        if span is not None:
            res.auc = auc(res.points, *span, log=log)
        if target is not None and x != "sparsity":
            res.target_cost = cost_to_reach(res.points, target, lower)
            # Reached at the first point already: somewhere before it, so at most that cost.
            res.target_cost_upper_bound = (res.target_cost is not None
                                           and reaches(res.curve[0].acc, target, lower))
        if base is not None and base.curve and x != "sparsity":
            if res is base:
                res.speedup = 1.0
            else:
                res.speedup = speedup(base.points, last.acc, last.cost, lower)
                res.speedup_upper_bound = (res.speedup is not None
                                           and reaches(base.curve[0].acc, last.acc, lower))
                if res.speedup is None and last.cost > 0:
                    res.speedup_lower_bound = base.curve[-1].cost / last.cost
    if test is not None and base is not None and base.curve:
        _test_against(base, [res for res in results if res is not base and res.curve], test)
    if x == "sparsity" and (target is not None or baseline is not None):
        notes.append("--target and speedups are defined on cost axes (time, epochs, samples), "
                     "not for --x sparsity.")
    return Comparison(x=x, metric=metric, target=target, baseline=baseline, recipes=results,
                      frontier=frontier, span=span, warnings=warnings, notes=notes,
                      problems=problems, smoke_left_out=0 if include_smoke else len(smoke), test=test)


def _test_against(base: RecipeResult, others: Sequence[RecipeResult], test: str) -> None:
    """Each recipe's seeds against the baseline's: at the final point (both final points),
    and at equal cost (the baseline's seeds interpolated at the recipe's mean final cost,
    linear in cost; seeds whose curve does not reach that cost are left out); then Holm's
    correction across the recipes, separately for the two families of tests."""
    base_final = list(base.curve[-1].values)
    for res in others:
        last = list(res.curve[-1].values)
        res.test_final = two_sample(test, last, base_final)
        at = [interpolate(c, res.cost) for c in base.seed_curves] if res.cost is not None else []
        reached = [v for v in at if v is not None]
        res.test_equal_cost = two_sample(test, last, reached)
        if len(reached) < 2:  # say why: the baseline's curves do not span the recipe's cost
            res.test_equal_cost = dataclasses.replace(res.test_equal_cost, why=(
                f"{len(reached)} of {base.label}'s {len(at)} seed curves span this cost; needs 2+"))
    for p_attr, holm_attr in (("test_final", "test_final_holm"), ("test_equal_cost", "test_equal_cost_holm")):
        adjusted = holm([getattr(r, p_attr).p for r in others])
        for r, q in zip(others, adjusted, strict=True):
            setattr(r, holm_attr, q)


def _find_baseline(baseline: str, groups: Sequence[Group]) -> Group:
    """The group ``--baseline`` names: a row's label, or a recipe name only one recipe has."""
    by_label = [g for g in groups if g.label == baseline]
    if by_label:
        return by_label[0]
    by_name = [g for g in groups if g.name == baseline]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise InputError(f"--baseline {baseline}: {len(by_name)} different recipes were run under that "
                         "name; give the row's full label, one of: "
                         + "; ".join(repr(g.label) for g in by_name) + ".")
    from trainbench.registry import suggest

    names = list(dict.fromkeys(g.name for g in groups))
    raise InputError(f"--baseline {baseline}: no recipe of that name among the runs; they are: "
                     f"{', '.join(names)}." + suggest(baseline, names))


def _recipe(group: Group, xcol: str, spec: Metric, notes: list[str], warnings: list[str]) -> RecipeResult:
    runs, name = group.runs, group.label
    res = RecipeResult(name=group.name, label=group.label, differs=group.differs, runs=runs, curve=[],
                       status=_status_summary(runs),
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
    lacking = [r for r in runs if spec.name not in r.columns and rows[id(r)]]
    if lacking and spec.name != spec.family:
        notes.append(f"{name}: {len(lacking)} run(s) have no '{spec.name}' column; their "
                     f"{spec.family} is used.")
    for r in runs:
        col = spec.name if spec.name in r.columns else spec.family
        curves.append([(_value(p, xcol), _value(p, col)) for p in rows[id(r)]])
    res.curve = align(curves)
    res.seed_curves = curves
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
        lo, hi = spec.bounds  # an accuracy stays in [0, 1], a loss above 0
        if res.final.ci_low is not None and res.final.ci_high is not None:
            res.final = dataclasses.replace(res.final, ci_low=max(res.final.ci_low, lo),
                                            ci_high=min(res.final.ci_high, hi))
        res.cost = last.cost
        res.best_acc = best((p.acc for p in res.curve), spec.lower_is_better)
    return res


def _check_alignment(name: str, runs: Sequence[Run], rows: dict[int, list[dict[str, float]]],
                     warnings: list[str]) -> None:
    """Index alignment assumes the seeds ran the same recipe: warn when their curve points
    fall at different epochs, or their curve modes differ (runs without recipe.yaml, or a
    recipe whose data differs between machines)."""
    modes = {r.curve_mode or "cyclic" for r in runs}
    if len(modes) > 1:
        warnings.append(f"{name}: runs of different curve modes ({', '.join(sorted(modes))}) share "
                        "the name; their curves are averaged point by point all the same.")
    n = max((len(v) for v in rows.values()), default=0)
    for i in range(n):
        eps = {round(_value(v[i], "epoch"), 6) for v in rows.values()
               if i < len(v) and math.isfinite(_value(v[i], "epoch"))}
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
        if x in ("time", "device_time", "cost"):
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
