"""Does the cheap curve tell the truth? The paper's two fidelity metrics.

Given the curve points of a cyclic run (one run, a point at each cycle end) and of the
matching budgets run (one separate run per budget), aligned by position on the curve:

1. the accuracy gap per point, reference minus cyclic, and its average over the points,
   the first excluded as in Portes et al. (2022) (it is misaligned: warmup dominates it);
2. with a baseline recipe run both ways too, the Pearson correlation across budgets between
   the method's gain over the baseline on the reference curve and on the cyclic curve.

Plus the cost ratio: total training time of the separate runs / the cyclic run's.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainbench.results import curve_rows

Points = list[dict[str, float]]




def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson correlation, or None when undefined (fewer than 3 points or no variance)."""
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy)


@dataclass
class FidelityRow:
    point: int  # 1-based position on the curve
    epoch: float
    ref_acc: float
    cyclic_acc: float
    gap: float  # reference minus cyclic
    ref_time_s: float
    cyclic_time_s: float
    ref_gain: float | None = None  # method minus baseline, reference curve
    cyclic_gain: float | None = None  # method minus baseline, cyclic curve


@dataclass
class FidelityReport:
    recipe: str
    baseline: str | None
    rows: list[FidelityRow]
    avg_gap: float  # over the points, the first excluded when there are two or more
    cost_ratio: float  # sum of the separate runs' training times / the cyclic run's
    gain_correlation: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def _align(cyclic: Points, ref: Points, what: str, notes: list[str]) -> tuple[Points, Points]:
    c, r = curve_rows(cyclic), curve_rows(ref)
    if len(c) != len(r):
        notes.append(f"{what}: {len(c)} cyclic points vs {len(r)} reference points; "
                     f"compared the first {min(len(c), len(r))}.")
    n = min(len(c), len(r))
    return c[:n], r[:n]


def fidelity(name: str, cyclic: Points, ref: Points, baseline: str | None = None,
             base_cyclic: Points | None = None, base_ref: Points | None = None) -> FidelityReport:
    notes: list[str] = []
    c, r = _align(cyclic, ref, name, notes)
    with_base = baseline is not None and base_cyclic is not None and base_ref is not None
    if with_base:
        # Every metric covers the same points: those the method and the baseline both have.
        bc, br = _align(base_cyclic or [], base_ref or [], str(baseline), notes)
        if len(bc) != len(c):
            notes.append(f"{baseline}: {len(bc)} points vs {len(c)} for {name}; "
                         f"compared the first {min(len(c), len(bc))}.")
        n = min(len(c), len(bc))
        c, r, bc, br = c[:n], r[:n], bc[:n], br[:n]
    if not c:
        raise ValueError(f"{name}: no curve points to compare")
    rows = [FidelityRow(i + 1, cp["epoch"], rp["test_acc"], cp["test_acc"],
                        rp["test_acc"] - cp["test_acc"], rp["train_time_s"], cp["train_time_s"])
            for i, (cp, rp) in enumerate(zip(c, r, strict=True))]
    gaps = [row.gap for row in rows]
    avg_gap = sum(gaps[1:]) / (len(gaps) - 1) if len(gaps) > 1 else gaps[0]
    cost_ratio = sum(row.ref_time_s for row in rows) / rows[-1].cyclic_time_s
    corr = None
    if with_base:
        for row, b_c, b_r in zip(rows, bc, br, strict=True):
            row.ref_gain = row.ref_acc - b_r["test_acc"]
            row.cyclic_gain = row.cyclic_acc - b_c["test_acc"]
        corr = pearson([row.ref_gain for row in rows], [row.cyclic_gain for row in rows])  # type: ignore[misc]
        if corr is None:
            notes.append("gain correlation undefined: needs 3+ points with varying gains.")
    return FidelityReport(name, baseline, rows, avg_gap, cost_ratio, corr, notes)


def write_report(report: FidelityReport, out: Path) -> list[Path]:
    """fidelity.json, fidelity.csv (one row per point) and fidelity.png (both curves)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(report.to_json())
    with (out / "fidelity.csv").open("w", newline="") as f:
        cols = list(asdict(report.rows[0]))
        w = csv.writer(f)
        w.writerow(cols)
        for row in report.rows:
            w.writerow(["" if v is None else v for v in asdict(row).values()])
    _plot(report, out / "fidelity.png")
    return [out / "fidelity.json", out / "fidelity.csv", out / "fidelity.png"]


def _plot(report: FidelityReport, path: Path) -> None:
    from trainbench.plots import legend_outside, log_x_axis, new_figure, save_figure

    fig, ax = new_figure(figsize=(8.5, 4.2))
    ref_t = [r.ref_time_s for r in report.rows]
    ax.plot(ref_t, [100 * r.ref_acc for r in report.rows], "s--", label="reference (separate runs)")
    ax.plot([r.cyclic_time_s for r in report.rows], [100 * r.cyclic_acc for r in report.rows], "o-",
            label="cyclic (one run)")
    log_x_axis(ax)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{report.recipe}: gap {100 * report.avg_gap:+.2f} pp, cost ratio {report.cost_ratio:.2f}x")
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax)
    fig.tight_layout()
    save_figure(fig, path)
