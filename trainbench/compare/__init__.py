"""Comparing recipes: which one wins, at which budget, with how much certainty.

Pure functions (no rich, no typer, no torch): the CLI's ``trainbench compare`` and the
comparison printed at the end of ``trainbench run`` both call :func:`compare` and render
its :class:`Comparison` with :func:`display_table`, :func:`to_markdown`, :func:`to_csv` or
:func:`to_json`, so every format carries the same numbers.

By concern: :mod:`.discovery` finds and reads run directories, :mod:`.grouping` says which
runs are seeds of one recipe, :mod:`.metrics` which metrics rank which way,
:mod:`.statistics` holds the numbers (seed statistics, alignment, cost to target, speedup,
AUC, Pareto), :mod:`.comparison` puts them together, :mod:`.rendering` writes them out.

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
  without a method's column, e.g. ``test_acc_swa``, uses its family's, ``test_acc``, with a
  note). Runs are grouped by recipe name and resolved recipe (:mod:`.grouping`): the seeds
  of one recipe; recipes run under one name are separate rows. When none of a recipe's
  runs has a curve point yet (all stopped before the first one), their evaluation rows
  stand in, and the recipe is marked.
- **Direction** (:mod:`.metrics`): accuracies are better higher, losses and ECE lower;
  "best", "reaches", speedups and the Pareto frontier follow the metric's direction (below,
  "reaches a" means >= a for an accuracy, <= a for a loss). A metric whose direction is not
  known is refused.
- **Alignment.** A recipe's aggregate curve at index i is the mean of cost and accuracy
  over the seeds that have a point i (``n`` may vary along the curve, and is reported), with
  the sample standard deviation and the min/max of the accuracy.
- **final acc** = the aggregate curve's last point: mean over its n seeds, sample std
  (ddof=1), 95% interval mean ± t(0.975, n-1)·std/√n (Student's t; ``None`` when n = 1),
  clipped to [0, 1] (a loss: to >= 0).
  **cost** = the mean cost there. **best acc** = the best mean value on the curve (the
  highest accuracy, the lowest loss).
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
- **AUC** = the mean value (accuracy, or loss: then lower is better) over a common cost
  range on a log10 axis (linear for sparsity): the integral over log10(cost) of the mean
  curve, linearly interpolated in log10(cost) between its points (trapezoids), divided by
  log10(hi) - log10(lo). The range [lo, hi] is the same for every recipe so the numbers
  compare: the intersection of the cost ranges of all recipes with two or more points.
  ``None`` for a recipe with one point or when the ranges do not overlap.
- **Pareto frontier**: the mean curve points of all recipes that no other point dominates
  (dominates = costs no more and has a value at least as good, better in one; for
  sparsity, higher sparsity is better). A recipe is *on the frontier* when at least one of
  its points is; ``pareto_points`` lists which (curve indices).
- **Tests** (``--test welch|bootstrap``, with a baseline; :mod:`.significance`): each
  recipe's seeds against the baseline's at the final point and at equal cost (the
  baseline's seeds interpolated linearly at the recipe's mean final cost), two-sided
  p-values Holm-corrected across the recipes; "not distinguishable" when p >= 0.05.
"""


from trainbench.compare.comparison import (
    X_COLUMNS,
    X_NAMES,
    Comparison,
    RecipeResult,
    compare,
    compare_runs,
)
from trainbench.compare.discovery import Run, discover, load_run, load_runs
from trainbench.compare.grouping import Group, group_runs
from trainbench.compare.metrics import DEFAULT_METRIC, FAMILIES, Metric, metric_spec, normalize_target
from trainbench.compare.rendering import (
    CSV_COLUMNS,
    display_table,
    fmt_cost,
    fmt_value,
    legend,
    records,
    target_header,
    to_csv,
    to_json,
    to_markdown,
)
from trainbench.compare.statistics import (
    CurvePoint,
    Stats,
    align,
    auc,
    auc_span,
    cost_to_reach,
    pareto,
    seed_stats,
    speedup,
    t975,
)

__all__ = [
    "CSV_COLUMNS", "DEFAULT_METRIC", "FAMILIES", "X_COLUMNS", "X_NAMES", "Comparison", "CurvePoint",
    "Group", "Metric", "RecipeResult", "Run", "Stats", "align", "auc", "auc_span", "compare",
    "compare_runs", "cost_to_reach", "discover", "display_table", "fmt_cost", "fmt_value",
    "group_runs", "legend", "load_run", "load_runs", "metric_spec", "normalize_target", "pareto",
    "records", "seed_stats", "speedup", "t975", "target_header", "to_csv", "to_json", "to_markdown",
]
