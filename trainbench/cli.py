"""The ``trainbench`` command line. Parses and prints; the work happens elsewhere.

torch is imported only inside commands that need it, so ``trainbench --help`` stays fast.
Exit codes: 0 ok, 1 a run failed or diverged, 2 bad input (recipe, usage, missing data),
130 interrupted.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainbench.errors import InputError

if TYPE_CHECKING:
    from trainbench.recipe import Recipe
    from trainbench.results import RunDir
    from trainbench.runner import PlannedRun
    from trainbench.timeunits import Clock

    SummaryRow = tuple[Recipe, str, dict[str, Any], RunDir]

CommandFn = TypeVar("CommandFn", bound=Callable[..., Any])

class ProseTyper(typer.Typer):
    """A Typer app whose commands' help reads as prose at any terminal width.

    Typer shows a docstring's single line breaks as they are in some places (the command list
    of ``trainbench --help``, the later paragraphs of ``trainbench run --help``; which ones
    depends on its version and markup mode), so a sentence broken for the source's line
    length would break mid-sentence on the terminal. Each paragraph (blank-line separated)
    of a command's docstring is joined into one line here and rich wraps it to the terminal.
    """

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[CommandFn], CommandFn]:
        def register(f: CommandFn) -> CommandFn:
            help_ = kwargs.pop("help", None) or prose(f.__doc__ or "")
            return super(ProseTyper, self).command(name, help=help_, **kwargs)(f)
        return register


def prose(doc: str) -> str:
    """Each paragraph of ``doc`` on one line, paragraphs separated by a blank line."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


app = ProseTyper(
    name="trainbench",
    rich_markup_mode="rich",  # the same rendering whatever typer's version defaults to
    help="Accuracy-versus-training-time tradeoff curves for training recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (CI logs) gets a wide fixed width instead of rich's 80-column fallback. No
# emoji codes: ':x:' in a name or path is text. Markup is ours only: every user-supplied
# string (paths, names, values, messages) goes through escape() before printing.
console = Console(width=None if sys.stdout.isatty() else 140, emoji=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140, emoji=False)

RecipesArg = Annotated[list[Path], typer.Argument(help="Recipe YAML file(s).", show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a field: --set optimizer.lr=0.2 (VALUE is YAML). Repeatable.")]


def _print_error(e: InputError) -> None:
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)


def _fail(e: InputError) -> typer.Exit:
    _print_error(e)
    return typer.Exit(2)


def _load(paths: list[Path], overrides: list[str] | None) -> list[Recipe]:
    """Load every recipe, reporting the problems of all of them before exiting."""
    from trainbench.recipe import load_recipe

    recipes, errors = [], []
    for p in paths:
        try:
            recipes.append(load_recipe(p, overrides or ()))
        except InputError as e:
            errors.append(_problems_of(p, e))
    if errors:
        raise InputError("\n".join(errors))
    return recipes


def _problems_of(path: Path, e: InputError) -> str:
    """A recipe's error block headed by the file given and, once known, the recipe's name:
    with several recipes (and extends) the lines inside may all name other files."""
    name = getattr(e, "recipe_name", None)
    msg = str(e)
    if name is None and msg.startswith((f"{path}:", f"{path.resolve()}:")):
        return msg  # already headed by the file
    return f"{path}{f' ({name})' if name else ''}: {msg}"


def _check_plot_name(option: str, path: Path | None) -> None:
    if path is not None and path.suffix.lower() not in (".png", ".svg"):
        raise _fail(InputError(f"{option} {path}: give a .png or .svg file name."))


T = TypeVar("T")


def _write_plot(option: str, path: Path, draw: Callable[[Path], T]) -> T:
    """``draw(path)``; a path that cannot be written is bad input (exit 2), not a traceback."""
    try:
        return draw(path)
    except OSError as e:
        raise _fail(InputError(f"{option} {path}: cannot write it ({e.strerror or e}).")) from None


def _overrides(set_: list[str] | None, device: str | None) -> list[str]:
    """--set items, and --device as one more, so recipe.yaml records where the run ran."""
    return [*(set_ or []), *([f"device={json.dumps(device)}"] if device else [])]


class RichProgress:
    """Progress bar for one run: epoch, step, last loss and accuracy, ETA."""

    def __init__(self) -> None:
        self.bar: Any = None

    def start(self, total_steps: int, clock: Clock, label: str, first_step: int = 0) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.clock = clock
        self.bar = Progress(
            # The label holds the recipe's name: plain text (markup would also turn :x: into emoji).
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
            TextColumn("ep {task.fields[epoch]}"), TextColumn("step"), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}"),
            TimeRemainingColumn(), console=console, transient=False)
        self.task = self.bar.add_task(label, total=total_steps, completed=first_step,
                                      epoch=f"{clock.epoch(first_step):.1f}", loss="-", acc="-")
        self.bar.start()

    def update(self, step: int, loss: float | None = None, acc: float | None = None) -> None:
        fields: dict[str, str] = {"epoch": f"{self.clock.epoch(step):.1f}"}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if acc is not None:
            fields["acc"] = f"{100 * acc:.2f}%"
        self.bar.update(self.task, completed=step, **fields)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@app.command()
def run(
    recipes: RecipesArg,
    set_: SetOpt = None,
    seeds: Annotated[int | None, typer.Option(
        min=1, help="Run N seeds: S, S+1, ... (S = --seed or the recipe's seed).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override the recipe's seed.")] = None,
    out: Annotated[Path, typer.Option(help="Where run directories go: OUT/<name>/seed<S>.")] = Path("runs"),
    device: Annotated[str | None, typer.Option(
        help="auto | cpu | cuda | cuda:N (overrides the recipe).")] = None,
    smoke: Annotated[bool, typer.Option(
        "--smoke", help="Shrink every recipe to seconds on a CPU (CI).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run runs that already exist.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue unfinished runs (interrupted, killed, failed) from their last "
                         "checkpoint; start the others.")] = False,
    nproc_per_node: Annotated[int | None, typer.Option(
        "--nproc-per-node", min=1, help="Train each run on N processes of this machine (one per GPU; "
        "N gloo processes on a CPU) started by torch's launcher; data.batch_size is the global "
        "batch. (Several machines: start `torchrun ... -m trainbench run` on each.)")] = None,
) -> None:
    """Train recipe(s) and write one run directory per recipe x seed. Ctrl-C (or SIGTERM)
    stops after the current step with a checkpoint; --resume continues from it."""
    import os

    ranked = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1  # started by torchrun, one of several
    if ranked and int(os.environ.get("RANK", "0")):
        console.quiet = err.quiet = True  # rank 0 speaks for the job
    try:
        if ranked and nproc_per_node is not None:
            raise InputError("--nproc-per-node: this process was started by torchrun (WORLD_SIZE is "
                             "set), which already chose the processes; drop --nproc-per-node.")
        # --device is an override like any other, so recipe.yaml records where it ran.
        loaded = _load(recipes, _overrides(set_, device))
        if nproc_per_node is not None and nproc_per_node > 1:
            from trainbench.distributed import job_problems, launch

            job_problems(loaded, nproc_per_node, nproc_per_node)
    except InputError as e:
        raise _fail(e) from None
    if nproc_per_node is not None and nproc_per_node > 1:  # this same command, on N processes
        argv = _run_argv(recipes, set_, seeds, seed, out, device, smoke, force, resume)
        raise typer.Exit(launch(nproc_per_node, argv))
    if ranked:
        from trainbench import distributed

        try:
            w = distributed.setup(distributed.device_type_of(loaded))
            distributed.job_problems(loaded, w.size, w.local_size)
        except InputError as e:
            distributed.teardown()
            raise _fail(e) from None
    try:
        _run_planned(loaded, out=out, seeds=seeds, seed=seed, smoke=smoke, force=force, resume=resume)
    finally:
        if ranked:
            distributed.teardown()


def _run_planned(loaded: list[Recipe], *, out: Path, seeds: int | None, seed: int | None,
                 smoke: bool, force: bool, resume: bool) -> None:
    from trainbench.runner import plan_job  # torch: a file that cannot be read is refused without it

    try:
        plans = plan_job(loaded, out=out, seeds=seeds, seed=seed, smoke=smoke, force=force,
                         resume=resume)
    except InputError as e:
        raise _fail(e) from None

    rows, code = _execute(plans, smoke)
    _print_summary(rows)
    if len(plans) > 1 and code < 128:  # not after an interrupt: the user wants out
        _compare_what_ran(plans, smoke)
    raise typer.Exit(code)


def _run_argv(recipes: list[Path], set_: list[str] | None, seeds: int | None, seed: int | None,
              out: Path, device: str | None, smoke: bool, force: bool, resume: bool) -> list[str]:
    """``run``'s arguments as given, for the processes torch's launcher starts."""
    argv = ["run", *map(str, recipes), "--out", str(out)]
    argv += [a for item in set_ or [] for a in ("--set", item)]
    for name, value in (("--seeds", seeds), ("--seed", seed), ("--device", device)):
        if value is not None:
            argv += [name, str(value)]
    return argv + [flag for flag, on in (("--smoke", smoke), ("--force", force),
                                        ("--resume", resume)) if on]


def _compare_what_ran(plans: list[PlannedRun], smoke: bool) -> None:
    """The comparison of a several-run call (table format), speedups against the first
    recipe given when there are several recipes."""
    from trainbench.compare import compare as build

    names = list(dict.fromkeys(p.recipe.name for p in plans))
    try:
        c = build([p.run.path for p in plans if p.run.exists()],
                  baseline=names[0] if len(names) > 1 else None, include_smoke=smoke)
    except InputError:
        return  # nothing was written to compare
    console.print()
    _print_comparison(c, "table")


def _execute(plans: list[PlannedRun], smoke: bool) -> tuple[list[SummaryRow], int]:
    """Run the plans in order; a failed run does not stop the others, an interrupt (Ctrl-C,
    SIGTERM) stops them all. Returns the summary rows and the exit code (2 bad input, 1 a run
    failed or diverged, 0 all completed). An interrupt exits with 128 + the signal's number."""
    from trainbench import distributed
    from trainbench.engine import run_recipe
    from trainbench.interrupts import StopSignal, exit_code
    from trainbench.runner import resume_note, summarize

    rows, code = [], 0
    several = distributed.world_size() > 1
    with StopSignal() as stop:
        for i, plan in enumerate(plans, 1):
            r = plan.recipe
            if plan.skip:
                console.print(f"[yellow]skip[/] {escape(r.name)} seed {r.seed}: {escape(plan.skip)}")
                rows.append((r, "skipped", summarize(plan.run.read_points()), plan.run))
                continue
            if distributed.stop_requested(stop):  # with several ranks: has any been signalled?
                rows.append((r, "not run", summarize([]), plan.run))
                plan.release()
                continue
            how = f" ({escape(resume_note(plan))})" if plan.resume else ""
            console.print(f"[bold]run {i}/{len(plans)}[/] {escape(r.name)} seed {r.seed}"
                          f"{' (smoke)' if smoke else ''}{how} -> {escape(str(plan.run.path))}")
            try:
                outcome = run_recipe(r, plan.run, smoke=smoke, resume=plan.resume, stop=stop,
                                     progress=RichProgress() if distributed.is_main() else None)
            except InputError as e:
                err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
                rows.append((r, "failed", summarize(plan.run.read_points()), plan.run))
                code = 2
                continue
            except KeyboardInterrupt as e:
                err.print(f"[yellow]interrupted[/]: {escape(str(plan.run.path))} keeps the points "
                          "measured so far; continue it with --resume.")
                raise typer.Exit(exit_code(e)) from None
            finally:
                plan.release()
            if outcome.status == "interrupted":
                err.print(f"[yellow]interrupted[/]: {escape(r.name)} seed {r.seed}: "
                          f"{escape(outcome.message)} ({escape(str(plan.run.path))}).", highlight=False)
                code = outcome.exit_code or stop.exit_code
            elif outcome.status != "completed":
                err.print(f"[bold red]{outcome.status}[/]: {escape(r.name)} seed {r.seed}: "
                          f"{escape(outcome.message)}", highlight=False)
                code = max(code, 1)
            rows.append((r, outcome.status, summarize(outcome.points), plan.run))
            if several and outcome.status == "failed":
                break  # a rank failed: the job's processes are no longer in step; end the job
        if stop.requested:
            code = stop.exit_code
    return rows, code


def _print_summary(rows: list[SummaryRow]) -> None:
    table = Table(title="trainbench run")
    for col in ("recipe", "seed", "status", "final acc", "best acc", "train time"):
        table.add_column(col, justify="left" if col in ("recipe", "status") else "right", no_wrap=True)
    table.add_column("run dir", overflow="fold")
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    for r, status, s, run in rows:
        t = "-" if s["train_time_s"] is None else f"{s['train_time_s']:.1f}s"
        color = {"completed": "green", "skipped": "yellow"}.get(status, "red")
        table.add_row(escape(r.name), str(r.seed), f"[{color}]{status}[/]", pct(s["final_acc"]),
                      pct(s["best_acc"]), t, escape(str(run.path)))
    console.print(table)
    console.print("Each run directory holds recipe.yaml, meta.json, points.csv, curve.png and (once "
                  "completed) model.pt.")


@app.command()
def validate(
    recipes: RecipesArg,
    set_: SetOpt = None,
    check_data: Annotated[bool, typer.Option(
        "--check-data", help="Also fail (exit 2) when a dataset's files are missing.")] = False,
) -> None:
    """Check recipe(s) fully without training; exit 2 on any problem."""
    from trainbench.recipe import load_recipe

    loaded, failed = [], False
    for p in recipes:  # each file judged alone: 'ok' or its own error block, in order
        try:
            r = load_recipe(p, set_ or ())
        except InputError as e:
            _print_error(InputError(_problems_of(p, e)))
            failed = True
            continue
        loaded.append(r)
        console.print(f"[green]ok[/] {escape(r.source)} ({escape(r.name)})", highlight=False)
    if not loaded:
        raise typer.Exit(2)
    from trainbench.runner import check_data as find_missing_data

    try:
        find_missing_data(loaded)
    except InputError as e:
        if check_data:
            raise _fail(e) from None
        err.print(f"[yellow]note:[/] {'also, ' if failed else 'the recipes are valid, but '}`run` "
                  f"would stop here: {escape(str(e))}", highlight=False)
    if failed:
        raise typer.Exit(2)


@app.command()
def show(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOpt = None,
    lr_plot: Annotated[Path | None, typer.Option(
        "--lr-plot", help="Also draw the LR over the run, curve points marked (PNG/SVG).")] = None,
) -> None:
    """Print the fully resolved recipe (every default filled in), as `run` would use it."""
    _check_plot_name("--lr-plot", lr_plot)
    try:
        (r,) = _load([recipe], set_)
    except InputError as e:
        raise _fail(e) from None
    print(r.to_yaml(), end="")
    if lr_plot is not None:
        from trainbench.plots import plot_lr_schedule

        steps = _write_plot("--lr-plot", lr_plot, lambda p: plot_lr_schedule(r, p))
        err.print(f"LR plot: {escape(str(lr_plot))} ({steps} steps)", highlight=False)


@app.command()
def fidelity(
    recipe: Annotated[Path, typer.Argument(help="Recipe with a cyclic or sgdr schedule.")],
    baseline: Annotated[Path | None, typer.Option(
        help="Baseline recipe: adds the correlation of gains over it (reference vs cyclic).")] = None,
    set_: SetOpt = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override the recipes' seed.")] = None,
    out: Annotated[Path, typer.Option(help="Run directories; the report goes to OUT/fidelity/.")] = Path(
        "runs"),
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N.")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="Shrunk runs, for CI.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run runs that already exist.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue unfinished runs.")] = False,
) -> None:
    """The cheap one-run cyclic curve against separate runs at the same budgets: accuracy gap
    per point, cost ratio and, with --baseline, the correlation of gains (Portes et al. 2022).
    Completed runs in OUT are reused."""
    from trainbench.fidelity import fidelity as measure
    from trainbench.fidelity import write_report
    from trainbench.recipe import load_recipe, self_timed
    from trainbench.runner import plan_runs

    sets = _overrides(set_, device)
    paths = [recipe] if baseline is None else [recipe, baseline]
    try:
        pairs = []
        for p, r in zip(paths, _load(paths, sets), strict=True):
            if r["curve"]["mode"] != "cyclic" or r["curve"]["budgets"] is not None \
                    or not self_timed(r["schedule"]["name"]):
                raise InputError(f"{p}: fidelity compares a cyclic run with separate runs at its "
                                 "cycle ends, so the recipe needs schedule.name cyclic or sgdr "
                                 f"(got '{r['schedule']['name']}') and the default curve section.")
            ref = load_recipe(p, [*sets, "curve.mode=budgets", f"name={json.dumps(r.name + '-budgets')}"])
            pairs.append((r, ref))
        plans = plan_runs([x for pair in pairs for x in pair], out=out, seed=seed, smoke=smoke,
                          force=force, resume=resume)
    except InputError as e:
        raise _fail(e) from None
    rows, code = _execute(plans, smoke)
    _print_summary(rows)
    if code:
        raise typer.Exit(code)
    pts = {pl.recipe.name: pl.run.read_points() for pl in plans}
    (m, m_ref), base = pairs[0], (pairs[1] if len(pairs) > 1 else None)
    report = measure(m.name, pts[m.name], pts[m_ref.name],
                     base[0].name if base else None,
                     pts[base[0].name] if base else None, pts[base[1].name] if base else None)
    name = m.name + (f"-vs-{base[0].name}" if base else "") + ("-smoke" if smoke else "")
    files = write_report(report, out / "fidelity" / name)
    _print_fidelity(report)
    console.print("Written: " + ", ".join(escape(str(f)) for f in files), highlight=False)


def _print_fidelity(report: Any) -> None:
    title = f"fidelity: {report.recipe}" + (f" vs {report.baseline}" if report.baseline else "")
    table = Table(title=escape(title))
    cols = ["point", "epoch", "reference acc", "cyclic acc", "gap (pp)", "ref time", "cyclic time"]
    if report.baseline:
        cols += ["ref gain (pp)", "cyclic gain (pp)"]
    for c in cols:
        table.add_column(c, justify="right")
    for row in report.rows:
        cells = [str(row.point), f"{row.epoch:g}", f"{100 * row.ref_acc:.2f}%",
                 f"{100 * row.cyclic_acc:.2f}%", f"{100 * row.gap:+.2f}",
                 f"{row.ref_time_s:.1f}s", f"{row.cyclic_time_s:.1f}s"]
        if report.baseline:
            cells += [f"{100 * row.ref_gain:+.2f}", f"{100 * row.cyclic_gain:+.2f}"]
        table.add_row(*cells)
    console.print(table)
    corr = "n/a" if report.gain_correlation is None else f"{report.gain_correlation:.3f}"
    console.print(f"average gap (reference - cyclic, first point excluded): "
                  f"{100 * report.avg_gap:+.2f} pp   cost ratio (separate runs / cyclic run): "
                  f"{report.cost_ratio:.2f}x" + (f"   gain correlation: {corr}" if report.baseline else ""))
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")


class XAxis(StrEnum):
    time = "time"
    epochs = "epochs"
    samples = "samples"
    sparsity = "sparsity"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


@app.command()
def compare(
    paths: Annotated[list[Path], typer.Argument(
        help="Run directories, or folders holding them (searched recursively).", show_default=False)],
    baseline: Annotated[str | None, typer.Option(
        help="Recipe name (or a row's full label) the speedups are measured against.")] = None,
    target: Annotated[float | None, typer.Option(
        help="Accuracy to reach (0.98 or 98), or for a loss metric the loss to get down to: adds the "
             "cost each recipe needs to get there.")] = None,
    x: Annotated[XAxis, typer.Option(
        "--x", help="Cost axis: time (training s), epochs (compares machines), samples, sparsity.")
    ] = XAxis.time,
    metric: Annotated[str, typer.Option(
        help="points.csv column compared: test_acc, test_acc_swa, ... (higher is better), test_loss, "
             "train_loss, test_ece, ... (lower is better); runs without a method's column (_swa, _ema) "
             "use the plain one.")] = "test_acc",
    plot: Annotated[Path | None, typer.Option(
        help="Also draw the curves, seed bands and Pareto frontier (PNG or SVG).")] = None,
    format_: Annotated[Format, typer.Option("--format", help="table, csv, json or markdown.")] = Format.table,
    include_smoke: Annotated[bool, typer.Option(
        "--include-smoke", help="Also compare smoke runs (left out by default).")] = False,
) -> None:
    """Compare runs: final accuracy over seeds (mean, std, 95% CI), time to a target,
    speedup over a baseline, AUC on a log-time axis and the Pareto frontier. Exit 2 when
    there is nothing to compare."""
    from trainbench.compare import compare as build

    _check_plot_name("--plot", plot)
    try:
        c = build(paths, baseline=baseline, target=target, x=x.value, metric=metric,
                  include_smoke=include_smoke)
    except InputError as e:
        raise _fail(e) from None
    _print_comparison(c, format_.value)
    sys.stdout.flush()
    if plot is not None:
        from trainbench.plots import plot_comparison

        _write_plot("--plot", plot, lambda p: plot_comparison(c, p))
        err.print(f"plot: {escape(str(plot))}", highlight=False)


def _print_comparison(c: Any, fmt: str) -> None:
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


LIST_KINDS = ("datasets", "models", "optimizers", "schedules", "methods")


@app.command("list")
def list_(what: Annotated[str, typer.Argument(
        help=f"One of: {', '.join(LIST_KINDS)}, all.")] = "all") -> None:
    """List what exists (datasets, models, optimizers, schedules, methods) with parameters."""
    from trainbench.registry import suggest

    if what not in (*LIST_KINDS, "all"):
        raise _fail(InputError(f"cannot list '{what}'; choose one of {', '.join(LIST_KINDS)} "
                               "or all." + suggest(what, LIST_KINDS)))
    from trainbench.catalog import catalog

    for kind in LIST_KINDS if what == "all" else (what,):
        table = Table(title=kind, show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("what it is")
        table.add_column("parameters (defaults)")
        for name, help_, params in catalog(kind):
            table.add_row(escape(name), escape(help_), escape(params))
        console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
