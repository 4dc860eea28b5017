"""``trainbench report``: one self-contained HTML page for sharing benchmark results.

Everything comes from a :class:`~trainbench.compare.Comparison` (the comparison table holds
the cells of ``compare``'s table, from :func:`~trainbench.compare.display_table`; the page
also embeds ``compare --format json``'s document) and the run directories it read:

- the comparison table, its column definitions, warnings and notes;
- interactive tradeoff curves (plotly): mean curve, seed band, each seed; hover, click a
  recipe to hide it, log/linear cost axis; the Pareto frontier (also as a table);
- each recipe's LR schedule with its curve points (rebuilt from recipe.yaml);
- fidelity results (``fidelity.json`` files under the given paths), where present;
- the environment: devices, precision, library versions, smoke and synthetic-data flags, per run.

plotly.js is inlined once (about 5 MB), so the page opens offline, from a file or a mail.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from trainbench.compare import Comparison, display_table, legend, to_json
from trainbench.compare.rendering import fmt_cost
from trainbench.results import atomic_write_text

PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "toImageButtonOptions": {"format": "png", "scale": 2}}


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], table_id: str,
          numeric_from: int = 1) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class='{'num' if j >= numeric_from else ''}'>{esc(v)}</td>"
                                    for j, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(fig: Any, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def environment(c: Comparison) -> tuple[str, list[str]]:
    """The runs' environment as a table (one row per run) and summary lines."""
    headers = ["recipe", "seed", "status", "device", "precision", "smoke", "synthetic data",
               "trainbench", "torch", "python", "started", "run directory"]
    rows, devices, versions = [], Counter(), {}
    smoke = synthetic = 0
    for res in c.recipes:
        for run in res.runs:
            meta = _read_meta(run.path)
            prec = meta.get("precision")
            used = prec.get("used", "") if isinstance(prec, dict) else (prec or "")
            if isinstance(prec, dict) and prec.get("why"):
                used += f" ({prec['why']})"
            v = run.versions
            rows.append([res.label, run.seed, run.label, run.device or "unknown", used or "-",
                         "yes" if run.smoke else "no", "yes" if meta.get("synthetic_data") else "no",
                         v.get("trainbench", "-"), v.get("torch_build", v.get("torch", "-")),
                         v.get("python", "-"), meta.get("start_time", "-"), str(run.path)])
            devices[run.device or "unknown"] += 1
            for k, val in v.items():
                versions.setdefault(k, Counter())[val] += 1
            smoke += run.smoke
            synthetic += bool(meta.get("synthetic_data"))
    lines = ["devices: " + "; ".join(f"{d} ({n} run{'s' if n > 1 else ''})" for d, n in devices.items()),
             "versions: " + "; ".join(f"{k} " + ", ".join(f"{val}" + (f" ({n})" if len(cnt) > 1 else "")
                                                          for val, n in cnt.items())
                                      for k, cnt in sorted(versions.items())),
             f"smoke runs: {smoke}; runs on synthetic stand-in data: {synthetic}"
             + (f"; smoke runs left out: {c.smoke_left_out}" if c.smoke_left_out else "")]
    return table(headers, rows, "environment", numeric_from=99), lines


def find_fidelity(paths: Iterable[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """``fidelity.json`` files (written by ``trainbench fidelity``) under the given paths."""
    found, seen = [], set()
    for p in map(Path, paths):
        if not p.is_dir():
            continue
        for f in sorted(p.rglob("fidelity.json")):
            key = f.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("rows"), list) and doc["rows"]:
                found.append((f, doc))
    return found


def fidelity_section(found: list[tuple[Path, dict[str, Any]]]) -> str:
    from trainbench.report.figures import fidelity

    if not found:
        return ("<p class='dim'>No fidelity results under the given paths (<code>trainbench fidelity"
                "</code> writes them).</p>")
    parts = []
    for k, (path, doc) in enumerate(found, 1):
        base = doc.get("baseline")
        headers = ["point", "epoch", "reference %", "cyclic %", "gap (pp)", "ref time (s)",
                   "cyclic time (s)"]
        if base:
            headers += [f"ref gain vs {base} (pp)", "cyclic gain (pp)"]
        rows = []
        for r in doc["rows"]:
            row = [r["point"], f"{r['epoch']:g}", f"{100 * r['ref_acc']:.2f}",
                   f"{100 * r['cyclic_acc']:.2f}", f"{100 * r['gap']:+.2f}",
                   fmt_cost(r["ref_time_s"], "time"), fmt_cost(r["cyclic_time_s"], "time")]
            if base:
                row += ["-" if r.get("ref_gain") is None else f"{100 * r['ref_gain']:+.2f}",
                        "-" if r.get("cyclic_gain") is None else f"{100 * r['cyclic_gain']:+.2f}"]
            rows.append(row)
        corr = doc.get("gain_correlation")
        summary = (f"average gap (reference − cyclic, first point excluded): {100 * doc['avg_gap']:+.2f} pp; "
                   f"cost ratio (separate runs / cyclic run): {doc['cost_ratio']:.2f}x"
                   + (f"; gain correlation: {'n/a' if corr is None else f'{corr:.3f}'}" if base else ""))
        title = doc["recipe"] + (f" vs {base}" if base else "")
        parts.append(f"<h3>{esc(title)}</h3><p>{esc(summary)}</p>"
                     + "".join(f"<p class='note'>{esc(n)}</p>" for n in doc.get("notes", []))
                     + table(headers, rows, f"fidelity-table-{k}")
                     + figure_html(fidelity(doc), f"fidelity-{k}")
                     + f"<p class='dim'>{esc(path)}</p>")
    return "".join(parts)


def lr_section(c: Comparison) -> str:
    from trainbench.report.figures import lr_schedules
    from trainbench.report.lr import lr_trace

    traces, missing = [], []
    for i, res in enumerate(c.recipes):
        t = next((t for run in res.runs if (t := lr_trace(run.path, smoke=run.smoke)) is not None), None)
        if t is None:
            missing.append(res.label)
        else:
            traces.append((res.label, i, t))
    out = figure_html(lr_schedules(traces), "lr-schedules") if traces else ""
    if missing:
        out += ("<p class='dim'>No schedule drawn for " + esc(", ".join(missing)) + ": a budgets run (one "
                "schedule per budget) or a recipe.yaml that does not rebuild here.</p>")
    return out


def frontier_table(c: Comparison) -> str:
    scale = 100.0 if c.spec.fraction else 1.0
    rows = [[label, i + 1, fmt_cost(x, c.x), f"{scale * v:.2f}" if c.spec.fraction else f"{v:.4f}"]
            for label, i, x, v in c.frontier]
    metric = "accuracy %" if c.metric == "test_acc" else c.metric + (" %" if c.spec.fraction else "")
    return table(["recipe", "curve point", c.x, metric], rows, "frontier")


def render(c: Comparison, paths: Sequence[str | Path], title: str | None = None) -> str:
    """The page's HTML."""
    from plotly.offline import get_plotlyjs

    from trainbench.report.figures import tradeoff

    headers, rows = display_table(c)
    env_table, env_lines = environment(c)
    metric = "accuracy" if c.metric == "test_acc" else c.metric
    title = title or f"trainbench report: {metric} vs {c.x}"
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data = to_json(c).replace("</", "<\\/")  # no '</script>' inside the JSON block
    lists = "".join(f"<p class='warn'>warning: {esc(w)}</p>" for w in c.warnings)
    lists += "".join(f"<p class='note'>note: {esc(n)}</p>" for n in c.notes)
    lists += "".join(f"<p class='dim'>skipped: {esc(p)}</p>" for p in c.problems)
    sections = [
        ("comparison-section", "Comparison", table(headers, rows, "comparison", numeric_from=3)
         + "".join(f"<p class='dim'>{esc(line)}</p>" for line in legend(c)) + lists),
        ("tradeoff-section", "Tradeoff curves", figure_html(tradeoff(c), "tradeoff")),
        ("frontier-section", "Pareto frontier", frontier_table(c)),
        ("lr-section", "LR schedules", lr_section(c)),
        ("fidelity-section", "Fidelity: the cyclic curve against separate runs",
         fidelity_section(find_fidelity(paths))),
        ("environment-section", "Environment",
         "".join(f"<p>{esc(line)}</p>" for line in env_lines) + env_table),
    ]
    nav = " · ".join(f"<a href='#{sid}'>{esc(name)}</a>" for sid, name, _ in sections)
    body = "".join(f"<section id='{sid}'><h2>{esc(name)}</h2>{content}</section>"
                   for sid, name, content in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="trainbench report">
<title>{esc(title)}</title>
<style>{CSS}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<header><h1>{esc(title)}</h1>
<p class="dim">Generated {esc(generated)} from {esc(", ".join(map(str, paths)))}. Numbers as
<code>trainbench compare</code> computes them; the comparison's JSON is embedded (element
<code>#comparison-data</code>).</p><nav>{nav}</nav></header>
{body}
<script type="application/json" id="comparison-data">{data}</script>
</body></html>
"""


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1300px;
padding:0 24px 48px;color:#222}
h1{font-size:1.6em;margin:24px 0 4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;font-size:0.88em;margin:8px 0 12px;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;white-space:nowrap}
th{background:#f4f6f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
.dim{color:#666;font-size:0.85em}.warn{color:#a15c00}.note{color:#555}
nav a{margin-right:4px}code{background:#f4f6f8;padding:0 3px}
"""


def write_report(c: Comparison, output: Path, paths: Sequence[str | Path], title: str | None = None) -> int:
    """Write the page atomically; returns its size in bytes."""
    text = render(c, paths, title)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, text)
    return output.stat().st_size
