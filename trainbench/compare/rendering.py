"""Rendering a :class:`Comparison`: the table cells (rich table, markdown), csv and json,
every format from the same numbers. A fraction metric (accuracy, ECE) is shown in % with
its std in percentage points; a loss as it is."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from trainbench.compare.comparison import X_NAMES, Comparison
from trainbench.compare.metrics import DEFAULT_METRIC, Metric
from trainbench.compare.significance import ALPHA, RESAMPLES, TestResult


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def fmt_value(v: float | None, spec: Metric) -> str:
    """A metric value (or a std) as the table shows it: % for a fraction, 4 decimals otherwise."""
    if v is None:
        return "-"
    return _pct(v) if spec.fraction else f"{v:.4f}"


def _unit(spec: Metric) -> str:
    return " %" if spec.fraction else ""


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


def _target_value(c: Comparison) -> str:
    t = c.target or 0.0
    return f"{100 * t:g}%" if c.spec.fraction else f"{t:g}"


def target_header(c: Comparison) -> str:
    """'time to 98%' for an accuracy; 'time to test_loss ≤ 0.3' when lower is better."""
    if not c.lower_is_better:
        return f"{c.x} to {_target_value(c)}"
    return f"{c.x} to {c.metric} ≤ {_target_value(c)}"


def display_table(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the comparison, as the rich table and the markdown show them:
    accuracies (and ECE) in %, std in percentage points, a loss as it is, costs in the --x
    unit. Columns that depend on an option (cost to target, speedup) appear only when it is
    given."""
    spec, u = c.spec, _unit(c.spec)
    show_target = c.target is not None and c.x != "sparsity"
    show_speedup = c.baseline is not None and c.x != "sparsity"
    headers = ["recipe", "runs", "device", "n", f"final{u}", "± std", "95% CI", f"best{u}", X_NAMES[c.x]]
    if show_target:
        headers.append(target_header(c))
    if show_speedup:
        headers.append(f"speedup vs {c.baseline}")
    headers += [f"AUC{u}", "Pareto"]
    if c.test:
        headers += [f"vs {c.baseline}: final", f"vs {c.baseline}: equal {c.x}"]
    rows = []
    for r in c.recipes:
        f = r.final
        row = [r.label, r.status, "; ".join(r.devices), str(f.n) if f else "0",
               fmt_value(f.mean if f else None, spec), fmt_value(f.std if f else None, spec),
               "-" if f is None or f.ci_low is None or f.ci_high is None
               else f"{fmt_value(f.ci_low, spec)}-{fmt_value(f.ci_high, spec)}",
               fmt_value(r.best_acc, spec), fmt_cost(r.cost, c.x)]
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
        row.append(fmt_value(r.auc, spec))
        row.append("-" if not r.curve else
                   f"yes ({len(r.pareto_points)}/{len(r.curve)})" if r.pareto_points else "no")
        if c.test:
            row += [_test_cell(r.test_final, r.test_final_holm, spec),
                    _test_cell(r.test_equal_cost, r.test_equal_cost_holm, spec)]
        rows.append(row)
    return headers, rows


def _test_cell(t: TestResult | None, p_holm: float | None, spec: Metric) -> str:
    """'+1.20 (p=0.004)' (the difference in the metric's unit, Holm-adjusted p), or 'not
    distinguishable (p=0.31)', or why there is no test."""
    if t is None:
        return "-"
    if t.p is None or p_holm is None:
        return f"no test: {t.why}"
    if p_holm >= ALPHA:
        return f"not distinguishable (p={p_holm:.2g})"
    diff = f"{100 * t.diff:+.2f} pp" if spec.fraction else f"{t.diff:+.4f}"
    return f"{diff} (p={p_holm:.2g})"


def legend(c: Comparison) -> list[str]:
    """The columns' definitions, one line each."""
    noun = c.x
    unit = {"time": " (training seconds)", "epochs": "", "samples": " (training samples seen)",
            "sparsity": "", "device_time": " (training seconds x devices)",
            "energy": " (joules the training devices drew)", "cost": " (device hours x the price)"}[c.x]
    axis = "log10" if c.log_x else "linear"
    u, lower = _unit(c.spec), c.lower_is_better
    what = "accuracy" if c.metric == DEFAULT_METRIC else c.metric
    spread = "sample std (pp)" if c.spec.fraction else "sample std"
    lines = [
        f"final{u}: {c.metric} at the last curve point, mean over the n seeds that have it; ± std: "
        f"{spread}; 95% CI: mean ± t(0.975, n-1)·std/√n. best{u}: "
        f"{'lowest' if lower else 'highest'} mean curve point"
        f"{f' (lower {c.metric} is better)' if lower else ''}. "
        f"{X_NAMES[c.x]}: mean {noun}{unit} at the last point.",
    ]
    if c.target is not None and c.x != "sparsity":
        crossing = f"gets down to {_target_value(c)}" if lower else f"reaches {_target_value(c)}"
        lines.append(f"{target_header(c)}: where the mean curve first {crossing}, "
                     f"linear in {noun} between curve points; ≤: reached by the first point already.")
    if c.baseline is not None and c.x != "sparsity":
        final = f"final{u}" if u else "final value"
        lines.append(f"speedup: the {noun} {c.baseline} needs to reach the recipe's {final} (interpolated "
                     f"on its mean curve) / the recipe's {noun}; above 1 = faster than {c.baseline}; "
                     f"≤: {c.baseline}'s first point already reaches it, so this is an upper bound.")
    if c.span is None:
        auc_def = (f"AUC{u}: the mean {what} over the {noun} range all multi-point curves share; "
                   "here they share none, so '-'.")
    else:
        auc_def = (f"AUC{u}: mean {what} over {noun} {fmt_cost(c.span[0], c.x)} to "
                   f"{fmt_cost(c.span[1], c.x)} on a {axis} axis (trapezoids; the range all "
                   f"multi-point curves cover{'; lower is better' if lower else ''}).")
    if c.test:
        how = ("Welch's t-test (scipy.stats.ttest_ind, equal_var=False)" if c.test == "welch" else
               f"a bootstrap test of equal means ({RESAMPLES} resamples, seed 0; Efron & Tibshirani 16.1)")
        lines.append(f"vs {c.baseline}: the recipe's seeds against {c.baseline}'s, by {how}, two-sided; "
                     f"final: at both final points; equal {noun}: {c.baseline}'s seeds interpolated "
                     f"(linear in {noun}) at the recipe's final {noun}. Difference recipe - {c.baseline}; "
                     f"p Holm-adjusted across the recipes; p >= {ALPHA:g}: not distinguishable.")
    lines.append(auc_def + " Pareto: yes (k/m) = k of the recipe's m mean curve points are on the "
                 f"{what}-vs-cost frontier of all recipes.")
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
               "pareto", "pareto_points", "curve_points", "metric", "lower_is_better", "name",
               # --test (empty without it): recipe - baseline, p-values raw and Holm-adjusted
               "test", "diff_final", "p_final", "p_final_holm", "diff_equal_cost", "p_equal_cost",
               "p_equal_cost_holm")


def records(c: Comparison) -> list[dict[str, Any]]:
    """One flat record per recipe, full precision (accuracy as a fraction, cost in the --x
    unit); csv and json both use these. ``recipe`` is the row's label (the name, plus the
    fields that tell apart recipes run under one name), ``name`` the recipe name; the
    ``*_acc`` fields hold the --metric's values (``lower_is_better`` says which way is better)."""
    out = []
    for r in c.recipes:
        f = r.final
        out.append({
            "recipe": r.label, "runs": len(r.runs), "status": r.status, "complete": r.complete,
            "devices": "; ".join(r.devices), "n": f.n if f else 0,
            "final_acc": f.mean if f else None, "final_acc_std": f.std if f else None,
            "final_acc_ci_low": f.ci_low if f else None, "final_acc_ci_high": f.ci_high if f else None,
            "best_acc": r.best_acc, "x": c.x, "cost": r.cost, "target": c.target,
            "target_cost": r.target_cost, "target_cost_upper_bound": r.target_cost_upper_bound,
            "baseline": c.baseline, "speedup": r.speedup, "speedup_upper_bound": r.speedup_upper_bound,
            "speedup_lower_bound": r.speedup_lower_bound, "auc": r.auc,
            "auc_lo": c.span[0] if c.span else None, "auc_hi": c.span[1] if c.span else None,
            "pareto": r.on_frontier, "pareto_points": " ".join(str(i + 1) for i in r.pareto_points),
            "curve_points": len(r.curve), "metric": c.metric, "lower_is_better": c.lower_is_better,
            "name": r.name, "test": c.test,
            **_test_fields("final", r.test_final, r.test_final_holm),
            **_test_fields("equal_cost", r.test_equal_cost, r.test_equal_cost_holm),
        })
    return out


def _test_fields(which: str, t: TestResult | None, p_holm: float | None) -> dict[str, Any]:
    return {f"diff_{which}": t.diff if t else None, f"p_{which}": t.p if t else None,
            f"p_{which}_holm": p_holm}


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
            "differs": r.differs,
            "curve": [{"point": p.index + 1, "n": p.n, "cost": p.cost, "acc": p.acc, "acc_std": p.acc_std,
                       "acc_min": p.acc_min, "acc_max": p.acc_max} for p in r.curve],
            "run_dirs": [{"path": str(run.path), "seed": run.seed, "status": run.status,
                          "no_process": run.orphaned,
                          "half_written": run.torn, "device": run.device} for run in r.runs],
        })
    doc = {"x": c.x, "x_column": c.x_column, "metric": c.metric,
           "lower_is_better": c.lower_is_better, "target": c.target,
           "baseline": c.baseline, "auc_span": list(c.span) if c.span else None,
           "recipes": recipes,
           "frontier": [{"recipe": n, "point": i + 1, "cost": x, "acc": a} for n, i, x, a in c.frontier],
           "warnings": c.warnings, "notes": c.notes, "problems": c.problems,
           "smoke_left_out": c.smoke_left_out, "test": c.test}
    return json.dumps(doc, indent=2) + "\n"
