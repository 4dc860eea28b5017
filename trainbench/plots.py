"""Matplotlib figures (imported lazily: matplotlib is slow to import)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainbench.results import atomic_write, curve_rows

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from trainbench.compare import Comparison
    from trainbench.recipe import Recipe


def new_figure(figsize: tuple[float, float], dpi: int = 120) -> tuple[Figure, Axes]:
    """A figure on the non-interactive Agg backend (runs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, dpi=dpi)


def save_figure(fig: Figure, path: Path, **savefig_kw: Any) -> None:
    """Write ``fig`` atomically (a full disk or an interrupt never leaves half an image), in
    the format of ``path``'s suffix, and free it."""
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png",
                                                 **savefig_kw))
    finally:
        plt.close(fig)


def legend_outside(ax: Axes, **kw: Any) -> None:
    """The legend right of the axes, where it can never hide a line or a point (inside,
    any fixed corner covers data in some plot: a short LR schedule ends top right)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **kw)


def log_x_axis(ax: Axes) -> None:
    """A log x axis labelled in plain numbers (0.5, 2, 30) rather than 2x10^0."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2, 3, 5)))
    ticks = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(ticks)
    ax.xaxis.set_minor_formatter(ticks)
    ax.tick_params(axis="x", which="minor", labelsize=8)


def plot_run_curve(points: list[dict[str, float]], path: Path, title: str) -> None:
    """Test accuracy against training time; curve points (cycle/budget ends) marked."""
    fig, ax = new_figure(figsize=(7.5, 4))
    t = [p["train_time_s"] for p in points]
    acc = [100 * p["test_acc"] for p in points]
    ax.plot(t, acc, "-", color="tab:blue", alpha=0.5, label="evaluations")
    cur = [(p["train_time_s"], 100 * p["test_acc"]) for p in curve_rows(points)]
    if cur:
        ax.plot(*zip(*cur, strict=True), "o-", color="tab:blue", label="tradeoff curve")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fig.tight_layout()
    save_figure(fig, path)


def plot_lr_schedule(recipe: Recipe, path: Path) -> int:
    """The LR of every step of the recipe's run, curve points marked; returns the steps."""
    from trainbench.data import dataset_shape
    from trainbench.engine import bound_schedule

    data = recipe["data"]
    train_size = dataset_shape(data["dataset"], data).train_size
    if data["train_subset"]:
        train_size = min(train_size, data["train_subset"])
    clock, sched = bound_schedule(recipe, train_size, smoke=False)
    lr = recipe["optimizer"]["lr"]
    fig, ax = new_figure(figsize=(8.5, 3.5))
    ax.plot([clock.epoch(s) for s in range(sched.total)], [lr * sched.factor(s) for s in range(sched.total)],
            color="tab:blue", lw=1.2, label="LR per step")
    pts = sched.curve_points()
    ax.plot([clock.epoch(s) for s in pts], [lr * sched.end_factor(s) for s in pts], "o", color="tab:red",
            label="curve points")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{recipe.name}: {recipe['schedule']['name']} schedule, {sched.total} steps")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fig.tight_layout()
    save_figure(fig, path)
    return sched.total


def plot_comparison(c: Comparison, path: Path) -> None:
    """One line per recipe (the mean curve over seeds, a marker at each curve point) with a
    band from the lowest to the highest seed at each point, the Pareto frontier of all mean
    points as a dashed step line, the target as a dotted line; log cost axis (linear for
    sparsity); the legend outside the axes. PNG or SVG, from ``path``'s suffix. A fraction
    metric (accuracy, ECE) is drawn in %, a loss as it is."""
    from trainbench.compare import X_NAMES

    scale = 100.0 if c.spec.fraction else 1.0
    fig, ax = new_figure(figsize=(9, 5), dpi=130)
    markers = "osD^vP*Xph"
    for i, r in enumerate(c.recipes):
        if not r.curve:
            continue
        color = f"C{i % 10}"
        xs = [p.cost for p in r.curve]
        label = f"{r.label} (n={r.final.n if r.final else 0})"
        if not r.complete:
            label += f" [{r.status}]"
        ax.plot(xs, [scale * p.acc for p in r.curve], "-", marker=markers[i % len(markers)], ms=5,
                lw=1.6, color=color, label=label, mfc=color if r.complete else "white", zorder=3)
        if any(p.n > 1 for p in r.curve):
            ax.fill_between(xs, [scale * p.acc_min for p in r.curve], [scale * p.acc_max for p in r.curve],
                            color=color, alpha=0.18, lw=0, zorder=2)
    if c.frontier:
        fx = [f[2] for f in c.frontier]
        fy = [scale * f[3] for f in c.frontier]
        # Higher sparsity is better: that frontier falls to the right. (Sorted by x, a loss
        # frontier falls where an accuracy one rises: the step side depends on x alone.)
        ax.step(fx, fy, where="pre" if c.x == "sparsity" else "post", ls="--", lw=1.1, color="black",
                zorder=4, label="Pareto frontier")
        ax.plot(fx, fy, "o", ms=9, mfc="none", mec="black", mew=0.9, zorder=4)
    if c.target is not None:
        shown = f"{scale * c.target:g}{'%' if c.spec.fraction else ''}"
        ax.axhline(scale * c.target, ls=":", lw=1, color="grey", zorder=1, label=f"target {shown}")
    if c.log_x:
        log_x_axis(ax)
    metric = "test accuracy" if c.metric == "test_acc" else c.metric
    ax.set_xlabel(X_NAMES[c.x] + (", log scale" if c.log_x else ""))
    ax.set_ylabel(f"{metric} (%)" if c.spec.fraction else metric)
    better = " (lower is better)" if c.lower_is_better else ""
    ax.set_title(f"{metric} vs {c.x}{better}: mean over seeds, band = min to max")
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax, fontsize=8)
    save_figure(fig, path, bbox_inches="tight")
