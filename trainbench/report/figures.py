"""The report's interactive figures (plotly): tradeoff curves, LR schedules, fidelity.

Numbers come from :mod:`trainbench.compare` (mean curves, seed min/max, the Pareto frontier)
and from the run directories' own points (each seed's curve, read as compare reads it)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from trainbench.compare import X_NAMES, Comparison, RecipeResult
from trainbench.compare.comparison import _value
from trainbench.results import curve_rows

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from trainbench.report.lr import LRTrace

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")
FRONTIER = "Pareto frontier"


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def seed_curves(c: Comparison, res: RecipeResult) -> list[tuple[int | None, list[tuple[int, float, float]]]]:
    """Each run's (seed, [(curve index, cost, value)]), read exactly as compare reads it: the
    curve rows (the evaluation rows when the recipe has no curve point yet), the --x column,
    the metric column or its family's."""
    spec, xcol = c.spec, c.x_column
    out = []
    for run in res.runs:
        rows = run.points if res.from_evaluations else curve_rows(run.points)
        col = spec.name if spec.name in run.columns else spec.family
        pts = [(i, _value(p, xcol), _value(p, col)) for i, p in enumerate(rows)]
        out.append((run.seed, [p for p in pts if math.isfinite(p[1]) and math.isfinite(p[2])]))
    return out


def tradeoff(c: Comparison) -> go.Figure:
    """Per recipe: the mean curve over seeds (a legend entry; clicking it hides the recipe),
    a min-max band over seeds, each seed's curve (dotted); the Pareto frontier of the mean
    points; the target. Hover gives recipe, seed, point, value and cost. A log cost axis with
    a button to switch it to linear."""
    import plotly.graph_objects as go

    scale = 100.0 if c.spec.fraction else 1.0
    unit = "%" if c.spec.fraction else ""
    metric = "accuracy" if c.metric == "test_acc" else c.metric
    xname = X_NAMES[c.x]
    fig = go.Figure()
    for i, res in enumerate(c.recipes):
        if not res.curve:
            continue
        col, group = color(i), res.label
        xs = [p.cost for p in res.curve]
        if any(p.n > 1 for p in res.curve):
            fig.add_trace(go.Scatter(
                x=xs + xs[::-1], y=[scale * p.acc_max for p in res.curve] + [scale * p.acc_min
                                                                           for p in res.curve][::-1],
                fill="toself", fillcolor=_rgba(col, 0.15), line={"width": 0}, hoverinfo="skip",
                name=f"{res.label}: seed band", legendgroup=group, showlegend=False))
        for seed, pts in seed_curves(c, res):
            if not pts:
                continue
            fig.add_trace(go.Scatter(
                x=[p[1] for p in pts], y=[scale * p[2] for p in pts], mode="lines+markers",
                line={"color": col, "width": 1, "dash": "dot"}, marker={"size": 4, "color": col},
                opacity=0.6, name=f"{res.label}: seed {seed}", legendgroup=group, showlegend=False,
                customdata=[[res.label, seed, p[0] + 1] for p in pts],
                hovertemplate=(f"recipe: %{{customdata[0]}}<br>seed: %{{customdata[1]}}<br>point: "
                               f"%{{customdata[2]}}<br>{metric}: %{{y:.2f}}{unit}<br>{xname}: %{{x:.4g}}"
                               "<extra></extra>")))
        n = res.final.n if res.final else 0
        fig.add_trace(go.Scatter(
            x=xs, y=[scale * p.acc for p in res.curve], mode="lines+markers",
            line={"color": col, "width": 2.5}, marker={"size": 8, "color": col},
            # The seed spread also as bars: visible where a band cannot be (a one-point curve).
            error_y={"type": "data", "symmetric": False, "color": col, "thickness": 1, "width": 4,
                     "array": [scale * (p.acc_max - p.acc) for p in res.curve],
                     "arrayminus": [scale * (p.acc - p.acc_min) for p in res.curve]},
            name=f"{res.label} (n={n})" + ("" if res.complete else f" [{res.status}]"), legendgroup=group,
            customdata=[[res.label, f"mean of {p.n}", p.index + 1,
                         "" if p.acc_std is None else f" ± {scale * p.acc_std:.2f}"] for p in res.curve],
            hovertemplate=(f"recipe: %{{customdata[0]}}<br>seeds: %{{customdata[1]}}<br>point: "
                           f"%{{customdata[2]}}<br>{metric}: %{{y:.2f}}%{{customdata[3]}}{unit}<br>"
                           f"{xname}: %{{x:.4g}}<extra></extra>")))
    if c.frontier:
        fig.add_trace(go.Scatter(
            x=[f[2] for f in c.frontier], y=[scale * f[3] for f in c.frontier], mode="lines+markers",
            line={"color": "black", "width": 1.2, "dash": "dash",
                  "shape": "vh" if c.x == "sparsity" else "hv"},
            marker={"size": 13, "symbol": "circle-open", "color": "black"}, name=FRONTIER,
            customdata=[[f[0], f[1] + 1] for f in c.frontier],
            hovertemplate=(f"Pareto frontier<br>recipe: %{{customdata[0]}}<br>point: %{{customdata[1]}}<br>"
                           f"{metric}: %{{y:.2f}}{unit}<br>{xname}: %{{x:.4g}}<extra></extra>")))
    if c.target is not None:
        fig.add_hline(y=scale * c.target, line={"dash": "dot", "color": "grey"},
                      annotation_text=f"target {scale * c.target:g}{unit}")
    log = c.log_x
    fig.update_layout(
        title=f"{metric} vs {c.x}: mean over seeds (band: min to max), dotted: each seed",
        xaxis={"title": xname, "type": "log" if log else "linear"},
        yaxis={"title": f"{metric} ({unit})" if unit else metric},
        legend={"groupclick": "togglegroup", "title": "click: hide/show a recipe"},
        hovermode="closest", template="plotly_white", height=560, margin={"t": 60, "r": 20},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 1, "y": 1.1, "xanchor": "right",
                      "buttons": [{"label": "log x", "method": "relayout", "args": [{"xaxis.type": "log"}]},
                                  {"label": "linear x", "method": "relayout",
                                   "args": [{"xaxis.type": "linear"}]}]}])
    return fig


def lr_schedules(traces: list[tuple[str, int, LRTrace]]) -> go.Figure:
    """One panel per recipe: the LR of its schedule over epochs, its curve points marked."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(traces), cols=1, vertical_spacing=min(0.15, 0.45 / max(1, len(traces))),
                        subplot_titles=[f"{label} ({t.schedule})" for label, _, t in traces])
    for row, (label, i, t) in enumerate(traces, 1):
        fig.add_trace(go.Scatter(x=t.epochs, y=t.lrs, mode="lines", line={"color": color(i), "width": 1.5},
                                 name=f"{label}: LR", legendgroup=label,
                                 hovertemplate="epoch %{x:.3g}<br>LR %{y:.4g}<extra></extra>"),
                      row=row, col=1)
        fig.add_trace(go.Scatter(x=t.curve_epochs, y=t.curve_lrs, mode="markers",
                                 marker={"size": 9, "color": "#d62728", "symbol": "diamond"},
                                 name=f"{label}: curve points", legendgroup=label,
                                 customdata=[[k + 1, s] for k, s in enumerate(t.curve_steps)],
                                 hovertemplate=("curve point %{customdata[0]} (step %{customdata[1]})<br>"
                                                "epoch %{x:.3g}<br>LR %{y:.4g}<extra></extra>")),
                      row=row, col=1)
        fig.update_yaxes(title_text="LR", row=row, col=1)
    fig.update_xaxes(title_text="epoch", row=len(traces), col=1)
    fig.update_layout(template="plotly_white", height=max(320, 260 * len(traces)), showlegend=False,
                      margin={"t": 40, "r": 20}, hovermode="closest")
    return fig


def fidelity(report: dict[str, Any]) -> go.Figure:
    """Reference (separate runs) and cyclic (one run) accuracy against training time."""
    import plotly.graph_objects as go

    rows = report["rows"]
    fig = go.Figure()
    for key, time_key, name, dash in (("ref_acc", "ref_time_s", "reference (separate runs)", "dash"),
                                      ("cyclic_acc", "cyclic_time_s", "cyclic (one run)", "solid")):
        fig.add_trace(go.Scatter(
            x=[r[time_key] for r in rows], y=[100 * r[key] for r in rows], mode="lines+markers",
            name=name, line={"dash": dash}, customdata=[[r["point"], r["epoch"]] for r in rows],
            hovertemplate=(f"{name}<br>point %{{customdata[0]}} (epoch %{{customdata[1]:g}})<br>"
                           "accuracy %{y:.2f}%<br>time %{x:.3g} s<extra></extra>")))
    fig.update_layout(title=f"{report['recipe']}: average gap {100 * report['avg_gap']:+.2f} pp, cost ratio "
                            f"{report['cost_ratio']:.2f}x",
                      xaxis={"title": "training time (s)", "type": "log"},
                      yaxis={"title": "test accuracy (%)"}, template="plotly_white", height=420,
                      margin={"t": 60, "r": 20})
    return fig
