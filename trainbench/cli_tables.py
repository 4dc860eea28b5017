"""The tables the command line prints: a run's summary, a fidelity study, a comparison.

Rendering only (rich on the terminal; markdown, csv or json for ``compare --format``); the
numbers come from :mod:`trainbench.compare`, :mod:`trainbench.fidelity` and the executors.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from trainbench.executors import SummaryRow

# Wide when piped (a file, CI's log), so that tables do not fold into unreadable columns.
console = Console(width=None if sys.stdout.isatty() else 140, emoji=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140, emoji=False)


def print_summary(rows: list[SummaryRow]) -> None:
    table = Table(title="trainbench run")
    for col in ("recipe", "seed", "status", "final acc", "best acc", "train time", "data wait"):
        table.add_column(col, justify="left" if col in ("recipe", "status") else "right", no_wrap=True)
    table.add_column("run dir", overflow="fold")
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    for r, status, s, run in rows:
        t = "-" if s["train_time_s"] is None else f"{s['train_time_s']:.1f}s"
        color = {"completed": "green", "skipped": "yellow"}.get(status, "red")
        wait = "-" if s.get("data_wait") is None else f"{s['data_wait']:.0%}"
        table.add_row(escape(r.name), str(r.seed), f"[{color}]{status}[/]", pct(s["final_acc"]),
                      pct(s["best_acc"]), t, wait, escape(str(run.path)))
    console.print(table)
    from trainbench.runner import data_wait_warning

    for r, _, s, _ in rows:  # after the table, where it is seen
        if warning := data_wait_warning(f"{r.name} seed {r.seed}", s.get("data_wait")):
            err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    console.print("Each run directory holds recipe.yaml, meta.json, points.csv, curve.png and (once "
                  "completed) model.pt.")


def print_fidelity(s: Any) -> None:
    from trainbench.fidelity import headline, point_rows, summary_rows

    for report in s.reports:
        headers, cells = point_rows(report)
        table = Table(title=escape(f"fidelity: {report.recipe} ({len(report.seeds)} seed"
                                   f"{'s' if len(report.seeds) > 1 else ''})"))
        for c in headers:
            table.add_column(escape(c), justify="right")
        for row in cells:
            table.add_row(*map(escape, row))
        console.print(table)
    headers, cells = summary_rows(s)
    table = Table(title="fidelity: summary (mean gap = reference - cyclic, first point excluded)")
    for c in headers:
        table.add_column(escape(c), justify="left" if c == "recipe" else "right")
    for row in cells:
        table.add_row(*map(escape, row))
    console.print(table)
    console.print(escape(headline(s)), highlight=False, soft_wrap=True)
    for note in s.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def print_comparison(c: Any, fmt: str) -> None:
    """The comparison in one format on stdout. table and markdown end with the columns'
    definitions, warnings and notes; csv keeps stdout pure (those go to stderr); json holds
    them. Problems (directories not compared) always go to stderr."""
    from trainbench import compare as cmp

    for p in c.problems:
        err.print(f"[yellow]skipped:[/] {escape(p)}", highlight=False)
    if fmt == "csv":
        print(cmp.to_csv(c), end="")
    elif fmt == "json":
        print(cmp.to_json(c), end="")
    elif fmt == "markdown":
        print(cmp.to_markdown(c))
        for line in cmp.legend(c):
            print(line + "  ")
        for w in c.warnings:
            print(f"\n**Warning:** {w}")
        for n in c.notes:
            print(f"\nNote: {n}")
    else:
        headers, rows = cmp.display_table(c)
        metric = "accuracy" if c.metric == cmp.DEFAULT_METRIC else c.metric
        table = Table(title=escape(f"trainbench compare: {metric} vs {c.x}"),
                      box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for h in headers:
            table.add_column(escape(h.replace(" vs ", "\nvs ")),
                             justify="left" if h in ("recipe", "runs", "device") else "right",
                             no_wrap=h == "n", overflow="fold")
        for r, row in zip(c.recipes, rows, strict=True):
            color = "green" if r.complete else "yellow" if any(x.status == "completed" for x in r.runs) \
                else "red"
            cells = [escape(v) for v in row]
            cells[1] = f"[{color}]{cells[1]}[/]"
            table.add_row(*cells)
        console.print(table)
        for line in cmp.legend(c):
            console.print(f"[dim]{escape(line)}[/]", highlight=False, soft_wrap=True)
    if fmt != "markdown":  # the table shows them below it; csv/json keep stdout pure
        out = console if fmt == "table" else err
        for w in c.warnings:
            out.print(f"[bold yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
        for n in c.notes:
            out.print(f"[yellow]note:[/] {escape(n)}", highlight=False, soft_wrap=True)
