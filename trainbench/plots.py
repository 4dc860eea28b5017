"""Matplotlib figures (imported lazily: matplotlib is slow to import)."""

from __future__ import annotations

from pathlib import Path


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
