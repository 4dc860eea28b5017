"""The ``trainbench`` command line. Parses and prints; the work happens elsewhere.

torch is imported only inside commands that need it, so ``trainbench --help`` stays fast.
Exit codes: 0 ok, 1 a run failed or diverged, 2 bad input (recipe, usage, missing data),
130 interrupted.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from trainbench.cli_tables import console, err, print_comparison, print_fidelity, print_summary
from trainbench.errors import InputError

if TYPE_CHECKING:
    from trainbench.executors import ExecOptions, SummaryRow
    from trainbench.recipe import Recipe
    from trainbench.runner import PlannedRun

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

RecipesArg = Annotated[list[Path], typer.Argument(help="Recipe YAML file(s).", show_default=False)]
RunPathsArg = Annotated[list[Path], typer.Argument(
    help="Run directories, or folders holding them (searched recursively).", show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a field: --set optimizer.lr=0.2 (VALUE is YAML). Repeatable.")]
GridOpt = Annotated[list[str] | None, typer.Option(
    "--grid", help="Vary a field: --grid optimizer.lr=0.05,0.1 (each value YAML; commas inside [..] "
                   "do not split). Repeatable: the cartesian product, each point a recipe named "
                   "<name>[lr=0.05,...].")]


def _print_error(e: InputError) -> None:
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)


def _fail(e: InputError) -> typer.Exit:
    _print_error(e)
    return typer.Exit(2)


def _load(paths: list[Path], overrides: list[str] | None, grid: list[str] | None = None) -> list[Recipe]:
    """Load every recipe (each grid point of each, with --grid), reporting the problems of all
    of them before exiting."""
    from trainbench.grid import load_grid, parse_grid

    axes = parse_grid(grid or (), overrides or ())
    recipes, errors = [], []
    for p in paths:
        try:
            recipes.extend(load_grid(p, overrides or (), axes))
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


class Executor(StrEnum):
    local = "local"
    ray = "ray"
    slurm = "slurm"


MANY = "Many runs at once"


@app.command()
def run(
    recipes: RecipesArg,
    set_: SetOpt = None,
    grid: GridOpt = None,
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
    log: Annotated[str | None, typer.Option(
        "--log", help="Also send the points to trackers: tensorboard, mlflow, wandb (comma-separated; "
                      "added to the recipes' log:).")] = None,
    mlflow_uri: Annotated[str | None, typer.Option(
        "--mlflow-uri", help="MLflow tracking URI (a server, a database); default "
                             "$MLFLOW_TRACKING_URI, else sqlite:///OUT/mlflow.db.")] = None,
    mlflow_experiment: Annotated[str | None, typer.Option(
        "--mlflow-experiment", help="MLflow experiment; default $MLFLOW_EXPERIMENT_NAME, else the "
                                    "--out folder's name.")] = None,
    executor: Annotated[Executor, typer.Option(
        help="Where runs train: local (here, one after another), ray (Ray tasks: this machine or "
             "a cluster), slurm (Slurm jobs through submitit).", rich_help_panel=MANY)] = Executor.local,
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Runs at once (ray, slurm; default: as many as the resources allow).",
        rich_help_panel=MANY)] = None,
    cpus_per_run: Annotated[int | None, typer.Option(
        min=1, help="CPUs per run, and torch's CPU threads in it (default: 1 with ray/slurm; torch's "
                    "default with local). Equal counts give equal points on CPU.",
        rich_help_panel=MANY)] = None,
    gpus_per_run: Annotated[float | None, typer.Option(
        min=0, help="ray: GPUs per run (default 1 when the cluster has GPUs, else 0).",
        rich_help_panel=MANY)] = None,
    address: Annotated[str | None, typer.Option(
        help="ray: join a running cluster (auto, or HOST:PORT) instead of starting one here.",
        rich_help_panel=MANY)] = None,
    max_retries: Annotated[int, typer.Option(
        min=0, help="ray, slurm: retries of a run whose worker died; a retry resumes from the "
                    "run's last checkpoint.", rich_help_panel=MANY)] = 2,
    slurm_partition: Annotated[str | None, typer.Option(
        help="slurm: partition.", rich_help_panel=MANY)] = None,
    slurm_time: Annotated[int | None, typer.Option(
        min=1, help="slurm: time limit per run, in minutes (default 1440).", rich_help_panel=MANY)] = None,
    slurm_gpus_per_run: Annotated[int | None, typer.Option(
        min=0, help="slurm: GPUs per job.", rich_help_panel=MANY)] = None,
    slurm_extra: Annotated[list[str] | None, typer.Option(
        help="slurm: another sbatch option as KEY=VALUE (e.g. constraint=volta32gb). Repeatable.",
        rich_help_panel=MANY)] = None,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="slurm: print the job ids and return; `trainbench compare OUT` reads the "
                          "results later.", rich_help_panel=MANY)] = False,
    nproc_per_node: Annotated[int | None, typer.Option(
        "--nproc-per-node", min=1, help="Train each run on N processes of this machine (one per GPU; "
        "N gloo processes on a CPU) started by torch's launcher; data.batch_size is the global "
        "batch. (Several machines: start `torchrun ... -m trainbench run` on each.)")] = None,
) -> None:
    """Train recipe(s) and write one run directory per recipe x seed. Ctrl-C (or SIGTERM)
    stops after the current step with a checkpoint; --resume continues from it.

    Many runs at once: --executor ray --jobs N on this machine or --address of a Ray cluster,
    or --executor slurm; the results do not depend on the executor. One run on several
    processes: --nproc-per-node N, or this command started by torchrun."""
    from trainbench.executors import ExecOptions, parse_extra

    ranked = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1  # started by torchrun, one of several
    if ranked and int(os.environ.get("RANK", "0")):
        console.quiet = err.quiet = True  # rank 0 speaks for the job
    try:
        opts = ExecOptions(executor.value, jobs=jobs, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                           address=address, slurm_partition=slurm_partition, slurm_time=slurm_time,
                           slurm_gpus_per_run=slurm_gpus_per_run, slurm_extra=parse_extra(slurm_extra),
                           no_wait=no_wait, max_retries=max_retries)
        problems = opts.problems()
        if (ranked or nproc_per_node is not None) and opts.executor != "local":
            problems.append("--nproc-per-node / torchrun trains one run on several processes here; "
                            f"--executor {opts.executor} does not launch such runs yet. Use --executor "
                            "local (the default) with --nproc-per-node.")
        if ranked and nproc_per_node is not None:
            problems.append("--nproc-per-node: this process was started by torchrun (WORLD_SIZE is "
                            "set), which already chose the processes; drop --nproc-per-node.")
        if problems:
            raise InputError("\n".join(problems))
        # --device is an override like any other, so recipe.yaml records where it ran.
        loaded = _with_trackers(_load(recipes, _overrides(set_, device), grid), log)
        if nproc_per_node is not None and nproc_per_node > 1:
            from trainbench.distributed import job_problems, launch

            job_problems(loaded, nproc_per_node, nproc_per_node)
    except InputError as e:
        raise _fail(e) from None
    if nproc_per_node is not None and nproc_per_node > 1:  # this same command, on N processes
        argv = _run_argv(recipes, set_, grid, log, mlflow_uri, mlflow_experiment, seeds, seed, out,
                         device, smoke, force, resume)
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
        with _mlflow_env(mlflow_uri, mlflow_experiment):
            _run_planned(loaded, out=out, seeds=seeds, seed=seed, smoke=smoke, force=force,
                         resume=resume, opts=opts)
    finally:
        if ranked:
            distributed.teardown()


def _run_planned(loaded: list[Recipe], *, out: Path, seeds: int | None, seed: int | None,
                 smoke: bool, force: bool, resume: bool, opts: ExecOptions) -> None:
    from trainbench.runner import plan_job  # torch: a file that cannot be read is refused without it

    try:
        plans = plan_job(loaded, out=out, seeds=seeds, seed=seed, smoke=smoke, force=force,
                         resume=resume)
    except InputError as e:
        raise _fail(e) from None

    rows, code = _execute(plans, smoke, out, opts)
    if opts.no_wait:
        raise typer.Exit(code)
    print_summary(rows)
    if len(plans) > 1 and code < 128:  # not after an interrupt: the user wants out
        _compare_what_ran(plans, smoke)
    raise typer.Exit(code)


def _with_trackers(recipes: list[Recipe], log: str | None) -> list[Recipe]:
    """--log's trackers added to every recipe's ``log`` (recorded in recipe.yaml; not part of
    a run's identity, so skip and resume are unchanged)."""
    from trainbench.trackers import parse_log_option

    try:
        names = parse_log_option(log)
    except ValueError as e:
        raise InputError(str(e)) from None
    for r in recipes:
        r.data["log"] = list(dict.fromkeys([*r["log"], *names]))
    return recipes


@contextlib.contextmanager
def _mlflow_env(uri: str | None, experiment: str | None) -> Iterator[None]:
    """--mlflow-uri / --mlflow-experiment as MLflow's own variables for the runs of this call
    (they reach executors' workers like the rest of the environment), restored after."""
    given = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment}
    saved = {k: os.environ.get(k) for k, v in given.items() if v is not None}
    os.environ.update({k: v for k, v in given.items() if v is not None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_argv(recipes: list[Path], set_: list[str] | None, grid: list[str] | None, log: str | None,
              mlflow_uri: str | None, mlflow_experiment: str | None, seeds: int | None,
              seed: int | None, out: Path, device: str | None, smoke: bool, force: bool,
              resume: bool) -> list[str]:
    """``run``'s arguments as given, for the processes torch's launcher starts."""
    argv = ["run", *map(str, recipes), "--out", str(out)]
    argv += [a for item in set_ or [] for a in ("--set", item)]
    argv += [a for item in grid or [] for a in ("--grid", item)]
    for name, value in (("--seeds", seeds), ("--seed", seed), ("--device", device), ("--log", log),
                        ("--mlflow-uri", mlflow_uri), ("--mlflow-experiment", mlflow_experiment)):
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
    print_comparison(c, "table")


def _execute(plans: list[PlannedRun], smoke: bool, out: Path,
             opts: ExecOptions | None = None) -> tuple[list[SummaryRow], int]:
    """Train the plans with the chosen executor (default: in this process, in order)."""
    from trainbench.executors import Abort, ExecOptions, execute

    try:
        return execute(plans, smoke=smoke, opts=opts or ExecOptions(), out=out, console=console, err=err)
    except Abort as e:  # a second Ctrl-C: out at once
        raise typer.Exit(e.code) from None
    except InputError as e:  # before anything trained: an extra, a cluster, a shared --out
        raise _fail(e) from None


@app.command()
def validate(
    recipes: RecipesArg,
    set_: SetOpt = None,
    grid: GridOpt = None,
    check_data: Annotated[bool, typer.Option(
        "--check-data", help="Also fail (exit 2) when a dataset's files are missing.")] = False,
) -> None:
    """Check recipe(s) fully without training; exit 2 on any problem. With --grid, every
    point of each recipe."""
    from trainbench.grid import load_grid, parse_grid

    try:
        axes = parse_grid(grid or (), set_ or ())
    except InputError as e:
        raise _fail(e) from None
    loaded, failed = [], False
    for p in recipes:  # each file judged alone: 'ok' or its own error block, in order
        try:
            points = load_grid(p, set_ or (), axes)
        except InputError as e:
            _print_error(InputError(_problems_of(p, e)))
            failed = True
            continue
        loaded += points
        for r in points:
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
    grid: GridOpt = None,
    lr_plot: Annotated[Path | None, typer.Option(
        "--lr-plot", help="Also draw the LR over the run, curve points marked (PNG/SVG).")] = None,
) -> None:
    """Print the fully resolved recipe (every default filled in), as `run` would use it.
    With --grid, every point's, as a YAML stream (one document per point, in run order)."""
    _check_plot_name("--lr-plot", lr_plot)
    try:
        points = _load([recipe], set_, grid)
        if lr_plot is not None and len(points) > 1:
            raise InputError(f"--lr-plot draws one recipe's schedule, and --grid makes {len(points)}; "
                             "give one value per --grid key, or leave --lr-plot out.")
    except InputError as e:
        raise _fail(e) from None
    for i, r in enumerate(points, 1):
        head = f"---\n# grid point {i}/{len(points)}: {r.name}\n" if grid else ""
        print(head + r.to_yaml(), end="")
    r = points[0]
    if lr_plot is not None:
        from trainbench.plots import plot_lr_schedule

        steps = _write_plot("--lr-plot", lr_plot, lambda p: plot_lr_schedule(r, p))
        err.print(f"LR plot: {escape(str(lr_plot))} ({steps} steps)", highlight=False)


@app.command()
def fidelity(
    recipes: Annotated[list[Path], typer.Argument(
        help="Method recipe(s), each with a cyclic or sgdr schedule.", show_default=False)],
    baseline: Annotated[Path | None, typer.Option(
        help="Baseline recipe: adds each method's gains over it on both curves and their "
             "correlation.")] = None,
    seeds: Annotated[int | None, typer.Option(
        min=1, help="Seeds per recipe: S, S+1, ... (S = --seed or the recipe's); each point gets a "
                    "mean and 95% interval.")] = None,
    set_: SetOpt = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override the recipes' (first) seed.")] = None,
    out: Annotated[Path, typer.Option(help="Run directories; the report goes to OUT/fidelity/.")] = Path(
        "runs"),
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N.")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="Shrunk runs, for CI.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run runs that already exist.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue unfinished runs.")] = False,
    metric: Annotated[list[str] | None, typer.Option(
        help="Accuracy column(s) a recipe is judged by, e.g. test_acc_swa (repeatable): each recipe "
             "uses the first its runs hold, else test_acc.")] = None,
) -> None:
    """The cheap one-run cyclic curve against separate runs at the same budgets (Portes et al. 2022).

    Per recipe and seed: the accuracy gap per point, the mean gap and the cost ratio; with
    --baseline, every method's gain over it on both curves and their correlation. Completed
    runs in OUT are reused, so a study grows seed by seed (--seeds 3, later --seeds 5)."""
    from trainbench.fidelity import study, write_study
    from trainbench.recipe import load_recipe, self_timed
    from trainbench.runner import plan_runs

    sets = _overrides(set_, device)
    paths = ([baseline] if baseline is not None else []) + list(recipes)
    try:
        metrics = [_accuracy_metric(m) for m in metric or []]
        pairs = []
        for p, r in zip(paths, _load(paths, sets), strict=True):
            if r["curve"]["mode"] != "cyclic" or r["curve"]["budgets"] is not None \
                    or not self_timed(r["schedule"]["name"]):
                raise InputError(f"{p}: fidelity compares a cyclic run with separate runs at its "
                                 "cycle ends, so the recipe needs schedule.name cyclic or sgdr "
                                 f"(got '{r['schedule']['name']}') and the default curve section.")
            if any(r.name == q.name for q, _ in pairs):
                raise InputError(f"{p}: a recipe named '{r.name}' is given twice (as --baseline and "
                                 "a method, or as two methods); give each recipe once.")
            ref = load_recipe(p, [*sets, "curve.mode=budgets", f"name={json.dumps(r.name + '-budgets')}"])
            pairs.append((r, ref))
        plans = plan_runs([x for pair in pairs for x in pair], out=out, seeds=seeds, seed=seed,
                          smoke=smoke, force=force, resume=resume)
    except InputError as e:
        raise _fail(e) from None
    rows, code = _execute(plans, smoke, out)
    print_summary(rows)
    if code:
        raise typer.Exit(code)
    pts = {(pl.recipe.name, pl.recipe.seed): pl.run.read_points() for pl in plans}
    by_seed = sorted({pl.recipe.seed for pl in plans})
    runs = {m.name: {s: (pts[(m.name, s)], pts[(ref.name, s)]) for s in by_seed} for m, ref in pairs}
    base = pairs[0][0].name if baseline is not None else None
    try:
        result = study(runs, base, metrics)
    except ValueError as e:  # a recipe without curve points: nothing to compare
        raise _fail(InputError(str(e))) from None
    methods = [m.name for m, _ in pairs[1 if base else 0:]]
    name = "+".join(methods) if len(methods) <= 2 else f"{methods[0]}+{len(methods) - 1}-more"
    name += (f"-vs-{base}" if base else "") + ("-smoke" if smoke else "")
    files = write_study(result, out / "fidelity" / name)
    print_fidelity(result)
    console.print("Written: " + ", ".join(escape(str(f)) for f in files), highlight=False)


def _accuracy_metric(name: str) -> str:
    from trainbench.compare.metrics import metric_spec

    if not metric_spec(name).is_accuracy:
        raise InputError(f"--metric {name}: fidelity compares accuracies (gaps and gains in pp); "
                         "give an accuracy column: test_acc, test_acc_swa, test_acc_ema, ...")
    return name


class XAxis(StrEnum):
    time = "time"
    epochs = "epochs"
    samples = "samples"
    sparsity = "sparsity"
    device_time = "device_time"
    energy = "energy"
    cost = "cost"


class SigTest(StrEnum):
    welch = "welch"
    bootstrap = "bootstrap"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


@app.command()
def compare(
    paths: RunPathsArg,
    baseline: Annotated[str | None, typer.Option(
        help="Recipe name (or a row's full label) the speedups are measured against.")] = None,
    target: Annotated[float | None, typer.Option(
        help="Accuracy to reach (0.98 or 98), or for a loss metric the loss to get down to: adds the "
             "cost each recipe needs to get there.")] = None,
    x: Annotated[XAxis | None, typer.Option(
        "--x", help="Cost axis: time (training s), epochs (compares machines), samples, sparsity, "
                    "device_time (training s x devices), energy (J), cost ($; the default with "
                    "--price-per-device-hour). Default: time.", show_default=False)] = None,
    price: Annotated[float | None, typer.Option(
        "--price-per-device-hour", help="Price of one device for one hour: adds the cost axis, "
                                        "device hours x this.")] = None,
    metric: Annotated[str, typer.Option(
        help="points.csv column compared: test_acc, test_acc_swa, ... (higher is better), test_loss, "
             "train_loss, test_ece, ... (lower is better); runs without a method's column (_swa, _ema) "
             "use the plain one.")] = "test_acc",
    plot: Annotated[Path | None, typer.Option(
        help="Also draw the curves, seed bands and Pareto frontier (PNG or SVG).")] = None,
    format_: Annotated[Format, typer.Option("--format", help="table, csv, json or markdown.")] = Format.table,
    include_smoke: Annotated[bool, typer.Option(
        "--include-smoke", help="Also compare smoke runs (left out by default).")] = False,
    test: Annotated[SigTest | None, typer.Option(
        help="Test each recipe against --baseline (welch or bootstrap) at the final point and at "
             "equal cost; p-values Holm-corrected across recipes.")] = None,
) -> None:
    """Compare runs: final accuracy over seeds (mean, std, 95% CI), time to a target,
    speedup over a baseline, AUC on a log-time axis, the Pareto frontier and, with --test,
    significance against the baseline. Exit 2 when there is nothing to compare."""
    from trainbench.compare import compare as build

    _check_plot_name("--plot", plot)
    try:
        axis = x.value if x else "cost" if price is not None else "time"
        c = build(paths, baseline=baseline, target=target, x=axis, metric=metric,
                  include_smoke=include_smoke, test=test.value if test else None,
                  price_per_device_hour=price)
    except InputError as e:
        raise _fail(e) from None
    print_comparison(c, format_.value)
    sys.stdout.flush()
    if plot is not None:
        from trainbench.plots import plot_comparison

        _write_plot("--plot", plot, lambda p: plot_comparison(c, p))
        err.print(f"plot: {escape(str(plot))}", highlight=False)


class ExportTo(StrEnum):
    mlflow = "mlflow"
    tensorboard = "tensorboard"


@app.command()
def export(
    paths: RunPathsArg,
    to: Annotated[ExportTo, typer.Option("--to", help="mlflow or tensorboard.")],
    mlflow_uri: Annotated[str | None, typer.Option(
        "--mlflow-uri", help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else "
                             "sqlite:///OUT/mlflow.db.")] = None,
    mlflow_experiment: Annotated[str | None, typer.Option(
        "--mlflow-experiment", help="MLflow experiment; default the --out folder's name.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace runs exported before.")] = False,
    include_smoke: Annotated[bool, typer.Option("--include-smoke", help="Also export smoke runs.")] = False,
) -> None:
    """Send finished runs to MLflow or TensorBoard afterwards (backfill): points, LR schedule,
    status and files, as if the tracker had followed them. Runs exported before are skipped."""
    from trainbench.trackers.export import export as send

    try:
        with _mlflow_env(mlflow_uri, mlflow_experiment):
            done, problems = send(paths, to.value, force=force, include_smoke=include_smoke)
    except InputError as e:
        raise _fail(e) from None
    for p in problems:
        err.print(f"[yellow]skipped:[/] {escape(p)}", highlight=False)
    for d in done:
        color = "green" if d.what in ("exported", "replaced") else "red" if d.what.startswith("failed") \
            else "yellow"
        console.print(f"[{color}]{escape(d.what)}[/] {escape(str(d.path))}", highlight=False)
    if any(d.what.startswith("failed") for d in done):
        raise typer.Exit(1)


@app.command()
def report(
    paths: RunPathsArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.")] = Path(
        "report.html"),
    baseline: Annotated[str | None, typer.Option(help="Recipe the speedups are measured against.")] = None,
    target: Annotated[float | None, typer.Option(help="Accuracy to reach (0.98 or 98).")] = None,
    x: Annotated[XAxis, typer.Option("--x", help="Cost axis: time, epochs, samples, sparsity.")] = XAxis.time,
    metric: Annotated[str, typer.Option(help="points.csv column compared (as for compare).")] = "test_acc",
    include_smoke: Annotated[bool, typer.Option(
        "--include-smoke", help="Also report smoke runs (left out by default).")] = False,
    title: Annotated[str | None, typer.Option(help="The page's title.")] = None,
) -> None:
    """One self-contained HTML page (viewable offline, shareable): the comparison table (the
    same numbers as compare), interactive tradeoff curves with seed bands and the Pareto
    frontier, LR schedules, fidelity results where present, and the environment."""
    if output.suffix.lower() not in (".html", ".htm"):
        raise _fail(InputError(f"-o {output}: give an .html file name."))
    from trainbench.trackers import install_hint, missing_module

    if missing_module("plotly"):
        raise _fail(InputError(f"trainbench report draws with plotly, which is not installed: "
                               f"{install_hint('report')}"))
    from trainbench.compare import compare as build

    try:
        c = build(paths, baseline=baseline, target=target, x=x.value, metric=metric,
                  include_smoke=include_smoke)
    except InputError as e:
        raise _fail(e) from None
    for p in c.problems:
        err.print(f"[yellow]skipped:[/] {escape(p)}", highlight=False)
    from trainbench.report import write_report

    try:
        size = write_report(c, output, paths=paths, title=title)
    except OSError as e:
        raise _fail(InputError(f"-o {output}: cannot write it ({e.strerror or e}).")) from None
    console.print(f"report: {escape(str(output))} ({size / 2**20:.1f} MiB, self-contained: opens offline)",
                  highlight=False)


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
