"""Names and paths: recipe names are single path components, user strings are printed as
typed (never as rich markup or emoji), results honour the umask, legends hide no data."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainbench import cli_tables
from trainbench.catalog import catalog
from trainbench.cli import app
from trainbench.errors import InputError
from trainbench.recipe import NAME_MAX_BYTES, Recipe, check_name, load_recipe
from trainbench.results import atomic_write_text
from trainbench.runner import run_dir_for

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
# a run of two smoke steps
TINY = ["--set", "duration=2ba", "--set", "schedule.warmup=0ba", "--set", "eval.every=null"]
runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def quoted(name: str) -> str:
    return json.dumps(name)  # a YAML string for --set name=...


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask a test sets."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


# --- names are single, safe path components ---


UNSAFE = ["../evil", "/abs/evil", "..", ".", "a/b", "a\\b", "a\nb", "tab\there", "nul\x00x", "-rf",
          " padded", "padded ", "x" * (NAME_MAX_BYTES + 1), "é" * (NAME_MAX_BYTES // 2 + 1)]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_names_are_refused_at_validate(name: str) -> None:
    result = invoke("validate", QUICKSTART, "--set", f"name={quoted(name)}")
    assert result.exit_code == 2, result.output
    no_traceback(result)
    out = flat(result.output)
    assert "name:" in out and "cannot name a run" in out
    assert "Try name:" in out  # a safe name is suggested
    assert "ok " not in out


def test_suggested_names_are_safe() -> None:
    for name in UNSAFE:
        problem = check_name(name)
        assert problem is not None
        suggestion = json.loads(problem.rsplit("Try name: ", 1)[1].removesuffix("."))
        assert check_name(suggestion) is None, (name, suggestion)
    assert "Try name: \"evil\"" in (check_name("../evil") or "")


@pytest.mark.parametrize("name", ["../evil", "ABSOLUTE", "..", "a[x]/b"])
def test_run_never_writes_outside_out(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = str(tmp_path / "abs-evil") if name == "ABSOLUTE" else name
    out = tmp_path / "box" / "runs"
    result = invoke("run", QUICKSTART, "--smoke", "--out", out, "--set", f"name={quoted(name)}", *TINY)
    assert result.exit_code == 2, result.output
    no_traceback(result)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere


@pytest.mark.parametrize("name", ["grid[lr=0.1,wd=0]", "a[x]:x:", "résumé run", ".hidden",
                                  "x" * NAME_MAX_BYTES])
def test_other_names_are_allowed(name: str) -> None:
    """Grid names (brackets, '=', ',') and any other single component stay allowed."""
    assert check_name(name) is None
    assert load_recipe(QUICKSTART, [f"name={quoted(name)}"]).name == name


def test_a_default_name_from_an_unsafe_file_name_asks_for_a_name(tmp_path: Path) -> None:
    bad = tmp_path / "-dash.yaml"
    shutil.copy(QUICKSTART, bad)
    bad.write_text(bad.read_text().replace("name: quickstart\n", ""))
    result = invoke("validate", bad)
    assert result.exit_code == 2
    out = flat(result.output)
    assert "the recipe's name defaults to its file name, which starts with '-'" in out
    assert "Set 'name:' in the recipe." in out


def test_run_dir_for_refuses_an_unchecked_name(tmp_path: Path) -> None:
    """Belt and braces: a Recipe not built by load_recipe cannot escape --out either."""
    good = load_recipe(QUICKSTART)
    assert run_dir_for(tmp_path, good, smoke=False).path == tmp_path / "quickstart" / "seed0"
    for name in ("../evil", "/etc", ".."):
        evil = Recipe({**good.data, "name": name}, "evil.yaml")
        with pytest.raises(InputError, match="cannot name a run"):
            run_dir_for(tmp_path, evil, smoke=False)


# --- user strings are printed as typed ---


def test_validate_prints_paths_and_names_as_typed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = Path("exp[lr=0.1]")
    folder.mkdir()
    shutil.copy(QUICKSTART, folder / "q.yaml")
    result = invoke("validate", folder / "q.yaml", "--set", f"name={quoted('a[bold]x[red]:x:')}")
    assert result.exit_code == 0, result.output
    assert "ok exp[lr=0.1]/q.yaml (a[bold]x[red]:x:)" in result.output
    assert "❌" not in result.output
    # 'exp[' / 'x]': printed as markup, '[/x]' would be a closing tag without an opening one
    closing = Path("exp[") / "x]" / "q.yaml"
    closing.parent.mkdir(parents=True)
    shutil.copy(QUICKSTART, closing)
    result = invoke("validate", closing)
    no_traceback(result)
    assert result.exit_code == 0 and "ok exp[/x]/q.yaml (quickstart)" in result.output


def test_run_and_compare_print_names_and_out_as_typed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = "a[x]:x:"
    result = invoke("run", QUICKSTART, "--smoke", "--out", "runs[test]", "--set", f"name={quoted(name)}",
                    *TINY)
    assert result.exit_code == 0, result.output
    no_traceback(result)
    run_dir = Path("runs[test]") / name / "seed0-smoke"
    assert (run_dir / "meta.json").exists()
    out = result.output
    assert f"run 1/1 {name} seed 0 (smoke) -> {run_dir}" in out  # the progress line
    assert f"│ {name} " in out and str(run_dir) in out  # the summary table
    assert "❌" not in out
    result = invoke("compare", "runs[test]", "--include-smoke", "--baseline", name)
    assert result.exit_code == 0, result.output
    assert f"│ {name} " in result.output or f"{name} " in result.output
    assert f"vs {name}" in result.output  # the speedup column's header
    assert "❌" not in result.output


def test_fidelity_table_prints_names_as_typed(capsys) -> None:
    from trainbench.fidelity import study

    pts = [{"curve": 1, "epoch": 1, "test_acc": 0.9, "train_time_s": 1.0}]
    cli_tables.print_fidelity(study({"a[red]b[/]:x:": {0: (pts, pts)}}))
    assert "fidelity: a[red]b[/]:x:" in capsys.readouterr().out


# --- plot paths ---


def test_show_lr_plot_to_an_unwritable_path_is_bad_input(tmp_path: Path) -> None:
    result = invoke("show", QUICKSTART, "--lr-plot", tmp_path / "no such dir" / "x.png")
    assert result.exit_code == 2
    no_traceback(result)
    assert f"--lr-plot {tmp_path / 'no such dir' / 'x.png'}: cannot write it (No such file or directory)" \
        in flat(result.output)
    result = invoke("show", QUICKSTART, "--lr-plot", tmp_path / "x.txt")
    assert result.exit_code == 2
    no_traceback(result)
    assert "give a .png or .svg file name" in result.output
    assert result.stdout == ""  # refused before printing the recipe


# --- permissions: a plain write's ---


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_honours_the_umask(mask: int, mode: int, tmp_path: Path, umask: None) -> None:
    os.umask(mask)
    target = tmp_path / "meta.json"
    atomic_write_text(target, "{}")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == mode


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_run_results_are_readable_as_the_umask_says(mask: int, mode: int, tmp_path: Path,
                                                     umask: None) -> None:
    os.umask(mask)
    result = invoke("run", QUICKSTART, "--smoke", "--out", tmp_path, *TINY)
    assert result.exit_code == 0, result.output
    run = tmp_path / "quickstart" / "seed0-smoke"
    for f in ("meta.json", "recipe.yaml", "model.pt", "curve.png", "points.csv"):
        assert (run / f).stat().st_mode & 0o777 == mode, f
    plot = tmp_path / "cmp.png"
    result = invoke("compare", tmp_path, "--include-smoke", "--plot", plot)
    assert result.exit_code == 0, result.output
    assert plot.stat().st_mode & 0o777 == mode


# --- validate: every file judged alone ---


def test_validate_several_files_reports_each(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: fine\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: broken-one\nsed: 1\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1\n")
    result = invoke("validate", good, bad, QUICKSTART, broken)
    assert result.exit_code == 2
    out = result.output
    assert f"ok {good} (fine)" in out
    assert f"ok {QUICKSTART} (quickstart)" in out
    assert f"error: {bad} (broken-one): 1 problem in the recipe:" in out  # file and recipe named
    assert f"{bad}:2: sed: unknown key 'sed'" in out
    assert f"error: {broken}:2: invalid YAML" in out
    assert out.count("error:") == 2


# --- list: defaults as a recipe writes them ---


def test_list_writes_defaults_as_yaml() -> None:
    params = {name: p for kind in ("schedules", "optimizers", "methods", "datasets")
              for name, _, p in catalog(kind)}
    assert "milestones=[0.5dur, 0.75dur]" in params["multistep"]
    assert "max_lr=null" in params["triangular"] and "cycle_momentum=false" in params["triangular"]
    assert "betas=[0.9, 0.999]" in params["adam"]
    assert "download=false" in params["cifar10"]
    for p in params.values():
        for python in ("None", "True", "False", "'", "Time("):
            assert python not in p, p
    result = invoke("list", "schedules")
    assert "milestones=[0.5dur, 0.75dur]" in result.output


# --- legends hide no data ---


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plot functions save, drawn (the legend's place is known only then)."""
    from trainbench import plots

    figs: list = []
    save = plots.save_figure

    def keep(fig, path, **kw) -> None:
        fig.canvas.draw()
        figs.append((fig.axes[0].get_window_extent(), fig.axes[0].get_legend().get_window_extent(),
                     fig.bbox))
        save(fig, path, **kw)

    monkeypatch.setattr(plots, "save_figure", keep)
    return figs


def assert_legend_clear(figs: list) -> None:
    assert figs
    for axes_box, legend_box, fig_box in figs:
        assert not legend_box.overlaps(axes_box)  # outside the axes: no line or point under it
        assert fig_box.x0 <= legend_box.x0 and legend_box.x1 <= fig_box.x1  # and not cut off


def test_short_lr_plot_legend_hides_nothing(tmp_path: Path, drawn: list) -> None:
    from trainbench.plots import plot_lr_schedule

    # Constant LR of three steps: the line and the curve point end at the top right.
    recipe = load_recipe(QUICKSTART, ["duration=3ba", "schedule.name=constant", "schedule.warmup=0ba"])
    plot_lr_schedule(recipe, tmp_path / "lr.png")
    assert_legend_clear(drawn)


def test_fidelity_legend_hides_nothing(tmp_path: Path, drawn: list) -> None:
    from trainbench.fidelity import study, write_study

    def pts(accs: list[float]) -> list[dict[str, float]]:
        return [{"curve": 1, "epoch": 2**i, "test_acc": a, "train_time_s": 2.0**i}
                for i, a in enumerate(accs)]

    # The reference's last point is its lowest: bottom right, where the legend was.
    written = write_study(study({"m": {0: (pts([0.93, 0.955, 0.96, 0.962]),
                                           pts([0.95, 0.958, 0.957, 0.93]))}}), tmp_path / "fid")
    assert any(p.name == "fidelity.png" for p in written)
    assert_legend_clear(drawn)
