"""Does the cheap curve tell the truth? The paper's fidelity metrics, over seeds and methods.

For each recipe (a baseline and any number of methods), each seed gives the curve points
of a cyclic run (one run, a point at each cycle end) and of the matching budgets run (one
separate run per budget), aligned by position on the curve. Per recipe:

1. per point: the mean over seeds and the 95% t-interval (scipy's Student t) of the
   reference accuracy, the cyclic accuracy, and the gap, reference minus cyclic (paired by
   seed: each seed ran both ways);
2. the mean gap: the average gap over the points, the first excluded as in Portes et al.
   (2022) (it is misaligned: warmup dominates it), with its interval over seeds;
3. the cost ratio: training time of all the separate runs / the cyclic run's (mean over seeds).

With a baseline, per method and point: the gain over the baseline on the reference curve
(mean reference accuracy of the method minus the baseline's) and on the cyclic curve (the
same with the cyclic means); the Pearson correlation of the two gains over every method
and point (the paper's scatter plot), with a 95% percentile bootstrap interval over those
(method, point) pairs (:func:`trainbench.compare.significance.pearson_interval`), and each
method's own correlation. Seeds are aligned by position; each recipe's points are cut to
those every one of its seeds has (noted), and a method's to those the baseline has.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainbench.compare.metrics import DEFAULT_METRIC
from trainbench.results import curve_rows

Points = list[dict[str, float]]
SeedRuns = Mapping[int, tuple[Points, Points]]  # seed -> (cyclic points, reference points)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
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


def _interval(values: Sequence[float]) -> list[float] | None:
    from trainbench.compare.statistics import seed_stats

    s = seed_stats(values)
    return None if s.ci_low is None else [s.ci_low, s.ci_high]  # type: ignore[list-item]


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


@dataclass
class FidelityRow:
    point: int  # 1-based position on the curve
    epoch: float
    ref_acc: float  # means over the seeds
    cyclic_acc: float
    gap: float  # reference minus cyclic
    ref_time_s: float
    cyclic_time_s: float
    ref_gain: float | None = None  # method minus baseline, reference curve
    cyclic_gain: float | None = None  # method minus baseline, cyclic curve
    n: int = 1  # seeds
    ref_ci: list[float] | None = None  # 95% t-intervals over the seeds; None with one seed
    cyclic_ci: list[float] | None = None
    gap_ci: list[float] | None = None


@dataclass
class FidelityReport:
    """One recipe over its seeds."""

    recipe: str
    baseline: str | None
    rows: list[FidelityRow]
    avg_gap: float  # over the points, the first excluded when there are two or more
    cost_ratio: float  # separate runs' training time / the cyclic run's, mean over seeds
    gain_correlation: float | None = None  # this method's gains alone
    notes: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    avg_gap_ci: list[float] | None = None  # over the seeds' mean gaps
    metric: str = DEFAULT_METRIC  # the points.csv column this recipe's accuracy is read from

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


@dataclass
class FidelityStudy:
    """A baseline and methods: each recipe's report, and the gains' correlation over all."""

    baseline: str | None
    reports: list[FidelityReport]  # the baseline's first
    gain_correlation: float | None = None  # over every method x point
    gain_correlation_ci: list[float] | None = None  # 95% bootstrap interval
    resamples: int = 0
    pairs: int = 0  # (method, point) gain pairs
    cost_ratio: float = math.nan  # all the separate runs / all the cyclic runs (mean over seeds)
    notes: list[str] = field(default_factory=list)

    @property
    def methods(self) -> list[FidelityReport]:
        return [r for r in self.reports if r.recipe != self.baseline]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def _align(cyclic: Points, ref: Points, what: str, notes: list[str]) -> tuple[Points, Points]:
    c, r = curve_rows(cyclic), curve_rows(ref)
    if len(c) != len(r):
        notes.append(f"{what}: {len(c)} cyclic points vs {len(r)} reference points; "
                     f"compared the first {min(len(c), len(r))}.")
    n = min(len(c), len(r))
    return c[:n], r[:n]


def _aligned_seeds(name: str, runs: SeedRuns, notes: list[str]) -> dict[int, tuple[Points, Points]]:
    """Each seed's (cyclic, reference) curve points, all cut to the points every seed has."""
    several = len(runs) > 1
    out = {s: _align(c, r, f"{name} seed {s}" if several else name, notes) for s, (c, r) in runs.items()}
    n = min((len(c) for c, _ in out.values()), default=0)
    if any(len(c) != n for c, _ in out.values()):
        notes.append(f"{name}: its seeds have different numbers of points; compared the first {n}.")
    return {s: (c[:n], r[:n]) for s, (c, r) in out.items()}


def metric_of(runs: SeedRuns, metrics: Sequence[str]) -> str:
    """The first of ``metrics`` that every curve point of ``runs`` (both curves, every seed)
    holds, else test_acc: a SWA recipe is judged by test_acc_swa, its baseline by test_acc."""
    points = [p for c, r in runs.values() for p in (*curve_rows(c), *curve_rows(r))]
    for m in metrics:
        if points and all(math.isfinite(p.get(m, math.nan)) for p in points):
            return m
    return DEFAULT_METRIC


def measure(name: str, runs: SeedRuns, baseline: str | None = None,
            base_runs: SeedRuns | None = None, metric: str = DEFAULT_METRIC,
            base_metric: str = DEFAULT_METRIC) -> FidelityReport:
    """One recipe's fidelity over its seeds (its accuracy read from ``metric``), with gains
    over the baseline (read from ``base_metric``) when given."""
    notes: list[str] = []
    seeds = _aligned_seeds(name, runs, notes)
    n = min((len(c) for c, _ in seeds.values()), default=0)
    base = None
    if baseline is not None and base_runs is not None:
        base = _aligned_seeds(str(baseline), base_runs, notes)
        nb = min((len(c) for c, _ in base.values()), default=0)
        if nb != n:
            notes.append(f"{baseline}: {nb} points vs {n} for {name}; compared the first {min(n, nb)}.")
        n = min(n, nb)
    if n == 0:
        raise ValueError(f"{name}: no curve points to compare")
    order = sorted(seeds)
    rows = []
    for i in range(n):
        ref = [seeds[s][1][i][metric] for s in order]
        cyc = [seeds[s][0][i][metric] for s in order]
        gaps = [r - c for r, c in zip(ref, cyc, strict=True)]
        row = FidelityRow(i + 1, seeds[order[0]][0][i]["epoch"], _mean(ref), _mean(cyc), _mean(gaps),
                          _mean([seeds[s][1][i]["train_time_s"] for s in order]),
                          _mean([seeds[s][0][i]["train_time_s"] for s in order]),
                          n=len(order), ref_ci=_interval(ref), cyclic_ci=_interval(cyc),
                          gap_ci=_interval(gaps))
        if base is not None:
            row.ref_gain = row.ref_acc - _mean([r[i][base_metric] for _, r in base.values()])
            row.cyclic_gain = row.cyclic_acc - _mean([c[i][base_metric] for c, _ in base.values()])
        rows.append(row)
    # Per seed: the mean gap over the points (the first excluded) and the cost ratio.
    per_seed_gap = []
    for s in order:
        g = [seeds[s][1][i][metric] - seeds[s][0][i][metric] for i in range(n)]
        per_seed_gap.append(_mean(g[1:]) if n > 1 else g[0])
    cost_ratio = _mean([math.fsum(p["train_time_s"] for p in seeds[s][1][:n])
                        / seeds[s][0][n - 1]["train_time_s"] for s in order])
    corr = None
    if base is not None:
        corr = pearson([r.ref_gain for r in rows], [r.cyclic_gain for r in rows])  # type: ignore[misc]
        if corr is None and name != baseline:
            notes.append("gain correlation undefined: needs 3+ points with varying gains.")
    return FidelityReport(name, baseline, rows, _mean(per_seed_gap), cost_ratio, corr, notes,
                          order, _interval(per_seed_gap), metric)


def fidelity(name: str, cyclic: Points, ref: Points, baseline: str | None = None,
             base_cyclic: Points | None = None, base_ref: Points | None = None) -> FidelityReport:
    """One seed of one recipe (and of the baseline)."""
    base = {0: (base_cyclic, base_ref)} if base_cyclic is not None and base_ref is not None else None
    return measure(name, {0: (cyclic, ref)}, baseline, base)  # type: ignore[arg-type]


def study(recipes: Mapping[str, SeedRuns], baseline: str | None = None,
          metrics: Sequence[str] = ()) -> FidelityStudy:
    """Every recipe's report (the baseline's first) and the correlation of all methods'
    gains, reference vs cyclic, with its bootstrap interval. Each recipe's accuracy is the
    first of ``metrics`` its runs hold (:func:`metric_of`), else test_acc."""
    from trainbench.compare.significance import RESAMPLES, pearson_interval

    base_runs = recipes[baseline] if baseline is not None else None
    names = ([baseline] if baseline is not None else []) + [n for n in recipes if n != baseline]
    chosen = {n: metric_of(recipes[n], metrics) for n in names}
    base_metric = chosen[baseline] if baseline is not None else DEFAULT_METRIC
    reports = [measure(n, recipes[n], baseline, base_runs, chosen[n], base_metric) for n in names]
    out = FidelityStudy(baseline, reports)
    for r in reports:
        out.notes += [f"{note}" for note in r.notes if note not in out.notes]
    times = [(sum(row.ref_time_s for row in r.rows), r.rows[-1].cyclic_time_s) for r in reports]
    out.cost_ratio = math.fsum(t for t, _ in times) / math.fsum(c for _, c in times)
    if baseline is not None:
        pairs = [(row.ref_gain, row.cyclic_gain) for r in out.methods for row in r.rows]
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        out.pairs = len(pairs)
        out.gain_correlation = pearson(xs, ys)  # type: ignore[arg-type]
        if out.gain_correlation is not None:
            out.gain_correlation_ci = list(pearson_interval(xs, ys) or []) or None  # type: ignore[arg-type]
            out.resamples = RESAMPLES
        elif out.methods:
            out.notes.append("gain correlation undefined: needs 3+ (method, point) pairs with varying gains.")
    return out


# --- outputs ---

CSV_COLUMNS = ("recipe", "metric", "point", "epoch", "n", "ref_acc", "ref_ci_low", "ref_ci_high",
               "cyclic_acc", "cyclic_ci_low", "cyclic_ci_high", "gap", "gap_ci_low", "gap_ci_high",
               "ref_time_s", "cyclic_time_s", "ref_gain", "cyclic_gain")


def to_csv(s: FidelityStudy) -> str:
    """One row per recipe and curve point; accuracies as fractions, times in seconds."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in s.reports:
        for row in r.rows:
            d = asdict(row)
            for k in ("ref", "cyclic", "gap"):
                ci = d.pop(f"{k}_ci")
                d[f"{k}_ci_low"], d[f"{k}_ci_high"] = ci if ci else (None, None)
            d["recipe"], d["metric"] = r.recipe, r.metric
            w.writerow(["" if d[c] is None else d[c] for c in CSV_COLUMNS])
    return buf.getvalue()


def _pp(v: float | None, sign: bool = True) -> str:
    return "-" if v is None else f"{100 * v:{'+' if sign else ''}.2f}"


def _pp_ci(ci: Sequence[float] | None) -> str:
    return "" if not ci else f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"


def summary_rows(s: FidelityStudy) -> tuple[list[str], list[list[str]]]:
    """Per recipe: seeds, mean gap (pp) with its interval, cost ratio, gain correlation."""
    headers = ["recipe", "seeds", "points", "mean gap (pp) [95% CI]", "cost ratio"]
    if s.baseline is not None:
        headers += [f"mean gain vs {s.baseline}: ref / cyclic (pp)", "gain correlation"]
    rows = []
    for r in s.reports:
        label = r.recipe + (f" [{r.metric}]" if r.metric != DEFAULT_METRIC else "")
        row = [label + (" (baseline)" if r.recipe == s.baseline else ""), str(len(r.seeds)),
               str(len(r.rows)), _pp(r.avg_gap) + _pp_ci(r.avg_gap_ci), f"{r.cost_ratio:.2f}x"]
        if s.baseline is not None:
            if r.recipe == s.baseline:
                row += ["-", "-"]
            else:
                gains = [(x.ref_gain or 0.0, x.cyclic_gain or 0.0) for x in r.rows]
                row += [f"{_pp(_mean([g[0] for g in gains]))} / {_pp(_mean([g[1] for g in gains]))}",
                        "n/a" if r.gain_correlation is None else f"{r.gain_correlation:.3f}"]
        rows.append(row)
    return headers, rows


def point_rows(r: FidelityReport) -> tuple[list[str], list[list[str]]]:
    headers = ["point", "epoch", "reference acc %", "cyclic acc %", "gap (pp)", "ref time", "cyclic time"]
    if r.baseline is not None and r.recipe != r.baseline:
        headers += ["ref gain (pp)", "cyclic gain (pp)"]
    rows = []
    for row in r.rows:
        cells = [str(row.point), f"{row.epoch:g}",
                 _pp(row.ref_acc, False) + _pp_ci(row.ref_ci).replace("+", ""),
                 _pp(row.cyclic_acc, False) + _pp_ci(row.cyclic_ci).replace("+", ""),
                 _pp(row.gap) + _pp_ci(row.gap_ci), f"{row.ref_time_s:.1f}s", f"{row.cyclic_time_s:.1f}s"]
        if len(headers) > 7:
            cells += [_pp(row.ref_gain), _pp(row.cyclic_gain)]
        rows.append(cells)
    return headers, rows


def headline(s: FidelityStudy) -> str:
    line = f"cost ratio (all separate runs / all cyclic runs): {s.cost_ratio:.2f}x"
    if s.baseline is not None:
        corr = "n/a" if s.gain_correlation is None else f"{s.gain_correlation:.3f}"
        ci = "" if not s.gain_correlation_ci else (f" [95% CI {s.gain_correlation_ci[0]:.3f}, "
                                                   f"{s.gain_correlation_ci[1]:.3f}; bootstrap, "
                                                   f"{s.resamples} resamples of the {s.pairs} pairs]")
        line = f"gain correlation over every method and point: {corr}{ci}   " + line
    return line


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[c.replace("|", "\\|") for c in r] for r in [headers, *rows]]
    return (["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in headers) + "|"]
            + ["| " + " | ".join(r) + " |" for r in esc[1:]])


def to_markdown(s: FidelityStudy) -> str:
    lines = ["# Fidelity: one cyclic run vs separate runs", "", *_md_table(*summary_rows(s)), "",
             headline(s), ""]
    for r in s.reports:
        lines += [f"## {r.recipe}", "", *_md_table(*point_rows(r)), ""]
    lines += [f"Note: {n}" for n in s.notes]
    lines += ["", "Accuracies: mean over the seeds [95% t-interval]; gap = reference - cyclic (paired by "
              "seed); mean gap: over the points, the first excluded (Portes et al. 2022); gains: the "
              "method's mean minus the baseline's, on each curve."]
    return "\n".join(lines) + "\n"


def write_study(s: FidelityStudy, out: Path) -> list[Path]:
    """fidelity.json, .csv, .md, fidelity.png (both curves of every recipe) and, with a
    baseline, gains.png (gain on separate runs vs gain on the cyclic curve)."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "fidelity.json", out / "fidelity.csv", out / "fidelity.md", out / "fidelity.png"]
    files[0].write_text(s.to_json())
    files[1].write_text(to_csv(s))
    files[2].write_text(to_markdown(s))
    _plot_curves(s, files[3])
    if s.baseline is not None and s.methods:
        files.append(out / "gains.png")
        _plot_gains(s, files[4])
    return files


def _plot_curves(s: FidelityStudy, path: Path) -> None:
    from trainbench.plots import legend_outside, log_x_axis, new_figure, save_figure

    fig, ax = new_figure(figsize=(9, 4.6))
    for k, r in enumerate(s.reports):
        color = f"C{k % 10}"
        for which, style, label in (("ref", "s--", "separate runs"), ("cyclic", "o-", "cyclic")):
            xs = [getattr(row, f"{which}_time_s") for row in r.rows]
            ys = [100 * getattr(row, f"{which}_acc") for row in r.rows]
            cis = [getattr(row, f"{which}_ci") for row in r.rows]
            err = None
            if all(c is not None for c in cis):  # error bars: the 95% intervals over seeds
                err = [[y - 100 * c[0] for y, c in zip(ys, cis, strict=True)],
                       [100 * c[1] - y for y, c in zip(ys, cis, strict=True)]]
            ax.errorbar(xs, ys, yerr=err, fmt=style, color=color, capsize=2, label=f"{r.recipe}: {label}")
    log_x_axis(ax)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"fidelity: cost ratio {s.cost_ratio:.2f}x" + (f", {len(s.reports[0].seeds)} seeds"
                                                                if s.reports else ""))
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_gains(s: FidelityStudy, path: Path) -> None:
    """The paper's scatter: each (method, point), gain on separate runs (x) vs gain on the
    cyclic curve (y), one colour per method, the diagonal y = x drawn."""
    from trainbench.plots import legend_outside, new_figure, save_figure

    fig, ax = new_figure(figsize=(6.8, 5))
    vals = []
    for k, r in enumerate(s.methods, 1):
        xs = [100 * (row.ref_gain or 0.0) for row in r.rows]
        ys = [100 * (row.cyclic_gain or 0.0) for row in r.rows]
        vals += xs + ys
        ax.scatter(xs, ys, color=f"C{k % 10}", label=r.recipe, zorder=3)
    lo, hi = (min(vals), max(vals)) if vals else (-1.0, 1.0)
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    ax.set_xlabel(f"gain over {s.baseline}, separate runs (pp)")
    ax.set_ylabel(f"gain over {s.baseline}, cyclic run (pp)")
    corr = "n/a" if s.gain_correlation is None else f"{s.gain_correlation:.3f}"
    ax.set_title(f"gains: Pearson r = {corr}")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fig.tight_layout()
    save_figure(fig, path)
