"""Matplotlib figures (imported lazily: matplotlib is slow to import)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainbench.recipe import Recipe


def plot_run_curve(points: list[dict[str, float]], path: Path, title: str) -> None:
    """Test accuracy against training time; curve points (cycle/budget ends) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    t = [p["train_time_s"] for p in points]
    acc = [100 * p["test_acc"] for p in points]
    ax.plot(t, acc, "-", color="tab:blue", alpha=0.5, label="evaluations")
    cur = [(p["train_time_s"], 100 * p["test_acc"]) for p in points if p.get("curve") == 1]
    if cur:
        ax.plot(*zip(*cur, strict=True), "o-", color="tab:blue", label="tradeoff curve")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_lr_schedule(recipe: Recipe, path: Path) -> int:
    """The LR of every step of the recipe's run, curve points marked; returns the steps."""
    import dataclasses

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainbench.data import dataset_shape
    from trainbench.engine import make_clock
    from trainbench.schedules import build_schedule

    data = recipe["data"]
    train_size = dataset_shape(data["dataset"], data).train_size
    if data["train_subset"]:
        train_size = min(train_size, data["train_subset"])
    clock = make_clock(recipe, train_size, smoke=False)
    lr = recipe["optimizer"]["lr"]
    sched = build_schedule(recipe["schedule"]).bind(clock, lr)
    clock = dataclasses.replace(clock, total_steps=sched.total)
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.plot([clock.epoch(s) for s in range(sched.total)], [lr * sched.factor(s) for s in range(sched.total)],
            color="tab:blue", lw=1.2, label="LR per step")
    pts = sched.curve_points()
    ax.plot([clock.epoch(s) for s in pts], [lr * sched.end_factor(s) for s in pts], "o", color="tab:red",
            label="curve points")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{recipe.name}: {recipe['schedule']['name']} schedule, {sched.total} steps")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return sched.total
