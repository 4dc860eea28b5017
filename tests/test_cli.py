"""The command line: help, validate, show, list, and `run`'s up-front checks (no training here)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.recipe import load_recipe

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    return write(tmp_path, "bad.yaml", """
        sed: 1
        data: {batch_size: 0}
        optimizer: {lr: fast}
    """)


@pytest.fixture
def missing_data(tmp_path: Path) -> tuple[Path, Path]:
    """A valid recipe whose dataset files are not there, and the empty data folder."""
    root = tmp_path / "empty data"
    root.mkdir()
    return write(tmp_path, "cf.yaml", f"data: {{dataset: cifar10, root: '{root}'}}\n"), root


# --- help and import time ---


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "validate", "show", "list"):
        assert command in result.output
    assert "Accuracy-versus-training-time" in result.output


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "Usage" in result.output
    assert "validate" in result.output


@pytest.mark.parametrize("command", ["run", "validate", "show", "list"])
def test_command_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output


COMMANDS = {c.name or c.callback.__name__: c.callback for c in app.registered_commands}
BOX = " │╭╮╰╯─"


def help_at(width: int, *args: str) -> list[str]:
    """``--help`` output at a terminal ``width`` columns wide, box borders stripped."""
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": str(width), "TERMINAL_WIDTH": None})
    assert result.exit_code == 0, result.output
    return [line.strip(BOX) for line in result.output.splitlines()]


def paragraphs(doc: str | None) -> list[str]:
    return [" ".join(p.split()) for p in textwrap.dedent(doc or "").strip().split("\n\n")]


def test_help_breaks_no_sentence_at_a_wide_terminal() -> None:
    listing = help_at(300)
    assert sorted(COMMANDS) == ["compare", "export", "fidelity", "list", "report", "run", "show", "validate"]
    for name, fn in COMMANDS.items():
        first, *_ = paragraphs(fn.__doc__)
        # the command list: one line each
        assert any(line.split(maxsplit=1) == [name, first] for line in listing), (name, first)
        page = help_at(300, name)
        for p in paragraphs(fn.__doc__):
            assert p in page, (name, p)  # the command's own page: each paragraph on one line
    assert any("Ctrl-C (or SIGTERM) stops after" in line for line in help_at(200))
    assert any("Ctrl-C (or SIGTERM) stops after" in line for line in help_at(200, "run"))


def test_later_docstring_paragraphs_read_as_prose_too() -> None:
    # typer keeps a later paragraph's line breaks as written; the app joins them.
    from trainbench.cli import ProseTyper

    demo = ProseTyper(rich_markup_mode="rich")

    @demo.command()
    def one() -> None:
        """First paragraph.

        A second paragraph written over
        two source lines."""

    @demo.command()
    def two() -> None:
        """Another command."""

    result = runner.invoke(demo, ["one", "--help"], env={"COLUMNS": "120"})
    assert any(line.strip() == "A second paragraph written over two source lines."
               for line in result.output.splitlines()), result.output


@pytest.mark.parametrize("width", [40, 64])
def test_help_wraps_as_prose_at_a_narrow_terminal(width: int) -> None:
    for name, fn in COMMANDS.items():
        raw = runner.invoke(app, [name, "--help"], env={"COLUMNS": str(width)}).output.splitlines()
        assert max(len(line) for line in raw) <= width
        usage = next(i for i, line in enumerate(raw) if "Usage:" in line)
        start = next(i for i in range(usage, len(raw)) if not raw[i].strip())  # usage may wrap
        end = next(i for i, line in enumerate(raw) if line.startswith("╭"))
        text = "\n".join(line.strip() for line in raw[start:end]).strip()
        assert [" ".join(p.split()) for p in text.split("\n\n")] == paragraphs(fn.__doc__)
        for p in text.split("\n\n"):
            lines = p.splitlines()
            for a, b in itertools.pairwise(lines):
                # wrapped where the terminal ends, not earlier: the next word did not fit
                assert len(a) + 1 + len(b.split()[0]) > width - 2, (name, a, b)


def test_cli_import_does_not_import_torch_and_help_runs() -> None:
    """`trainbench --help` must stay fast: torch is imported inside the commands only."""
    check = subprocess.run(
        [sys.executable, "-c",
         "import trainbench.cli, sys; assert 'torch' not in sys.modules, 'torch imported'; "
         "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
         "try: trainbench.cli.app(['run', '--help'])\nexcept SystemExit: pass\n"
         "heavy = {'torch', 'ray', 'submitit'} & set(sys.modules); assert not heavy, heavy"],
        capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stderr
    script = Path(sys.executable).with_name("trainbench")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "trainbench.cli"]
    help_ = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0, help_.stderr
    assert "validate" in help_.stdout


# --- validate ---


def test_validate_quickstart() -> None:
    result = invoke("validate", QUICKSTART)
    assert result.exit_code == 0, result.output
    assert f"ok {QUICKSTART} (quickstart)" in result.output


def test_validate_several_recipes(tmp_path: Path) -> None:
    other = write(tmp_path, "other.yaml", "seed: 1\n")
    result = invoke("validate", QUICKSTART, other)
    assert result.exit_code == 0, result.output
    assert "(quickstart)" in result.output and "(other)" in result.output


def test_validate_bad_recipe_lists_every_problem(bad: Path) -> None:
    result = invoke("validate", bad)
    assert result.exit_code == 2
    out = result.output
    assert "3 problems in the recipe:" in out
    assert f"{bad}:1: sed: unknown key 'sed'" in out
    assert "Did you mean 'seed'?" in out
    assert f"{bad}:2: data.batch_size: must be >= 1, got 0" in out
    assert f"{bad}:3: optimizer.lr: expected a number, got 'fast'" in out
    assert "ok " not in out


def test_validate_reports_all_bad_recipes(bad: Path, tmp_path: Path) -> None:
    worse = write(tmp_path, "worse.yaml", "device: gpu\n")
    result = invoke("validate", bad, QUICKSTART, worse)
    assert result.exit_code == 2
    assert "sed: unknown key" in result.output
    assert f"{worse}:1: device: expected auto, cpu, cuda or cuda:N, got 'gpu'." in result.output


def test_validate_set(tmp_path: Path) -> None:
    assert invoke("validate", QUICKSTART, "--set", "optimizer.lr=0.2").exit_code == 0
    result = invoke("validate", QUICKSTART, "--set", "data.augment=[rotate]")
    assert result.exit_code == 2
    # the user's own text is shown as typed (not eaten as console markup)
    assert ("--set data.augment=[rotate]: data.augment: item 0: expected one of random_crop, hflip, "
            "random_resized_crop; "
            "got 'rotate'.") in result.output
    result = invoke("validate", QUICKSTART, "--set", "optimizer.lr")
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.output
    assert "--set data.augment=[hflip]" in result.output  # the example in the message survives


def test_validate_yaml_error_and_missing_file(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", "seed: [1\nname: x\n")
    result = invoke("validate", broken)
    assert result.exit_code == 2
    assert f"{broken}:2: invalid YAML" in result.output
    result = invoke("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "recipe file not found" in result.output


def test_validate_missing_data(missing_data: tuple[Path, Path]) -> None:
    recipe, root = missing_data
    # valid recipe, data not on this machine: a note by default...
    result = invoke("validate", recipe)
    assert result.exit_code == 0, result.output
    assert "ok " in result.output
    assert f"files not found under {root}" in flat(result.output)
    # ...and a failure with --check-data
    result = invoke("validate", "--check-data", recipe)
    assert result.exit_code == 2
    assert f"cifar10: files not found under {root}" in result.output
    assert "--set data.root=PATH" in result.output


# --- show ---


def test_show_prints_the_resolved_recipe() -> None:
    result = invoke("show", QUICKSTART)
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown == load_recipe(QUICKSTART).data
    assert shown["data"]["eval_batch_size"] == 1024  # defaults filled in


def test_show_honors_set() -> None:
    result = invoke("show", QUICKSTART, "--set", "optimizer.lr=0.2", "--set", "methods.label_smoothing=true")
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["optimizer"]["lr"] == 0.2
    assert shown["methods"] == {"label_smoothing": {"smoothing": 0.1}}
    assert shown == load_recipe(QUICKSTART, ["optimizer.lr=0.2", "methods.label_smoothing=true"]).data


def test_show_output_reloads_to_the_same_recipe(tmp_path: Path) -> None:
    result = invoke("show", QUICKSTART, "--set", "seed=4")
    path = tmp_path / "again.yaml"
    path.write_text(result.stdout)
    assert load_recipe(path).data == yaml.safe_load(result.stdout)


def test_show_bad_recipe(bad: Path) -> None:
    result = invoke("show", bad)
    assert result.exit_code == 2
    assert "unknown key 'sed'" in result.output
    assert result.stdout == ""


# --- list ---


def test_list_everything() -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for title in ("datasets", "models", "optimizers", "schedules", "methods"):
        assert title in result.output
    for name in ("digits", "cifar10", "small_cnn", "sgd", "cosine", "label_smoothing"):
        assert name in result.output


def test_list_models() -> None:
    result = invoke("list", "models")
    assert result.exit_code == 0, result.output
    for name in ("small_cnn", "resnet9", "resnet18_cifar", "timm:<name>", "torchvision:<name>"):
        assert name in result.output
    assert "width=32" in result.output
    assert "label_smoothing" not in result.output


def test_list_methods() -> None:
    result = invoke("list", "methods")
    assert result.exit_code == 0, result.output
    assert "label_smoothing" in result.output
    assert "smoothing=0.1" in result.output
    assert "small_cnn" not in result.output


@pytest.mark.parametrize("kind", ["datasets", "optimizers", "schedules", "all"])
def test_list_other_kinds(kind: str) -> None:
    assert invoke("list", kind).exit_code == 0


def test_list_unknown_kind() -> None:
    result = invoke("list", "nonsense")
    assert result.exit_code == 2
    assert "cannot list 'nonsense'" in result.output
    assert "datasets, models, optimizers, schedules, methods" in result.output
    result = invoke("list", "methodz")
    assert result.exit_code == 2
    assert "Did you mean 'methods'?" in result.output


# --- run: bad input stops before any training ---


def test_run_bad_recipe_trains_nothing(bad: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = invoke("run", bad, "--out", out)
    assert result.exit_code == 2
    assert "unknown key 'sed'" in result.output
    assert not out.exists()


def test_run_one_bad_recipe_stops_all(bad: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = invoke("run", QUICKSTART, bad, "--out", out, "--smoke")
    assert result.exit_code == 2
    assert "unknown key 'sed'" in result.output
    assert not out.exists()


def test_run_bad_set_trains_nothing(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = invoke("run", QUICKSTART, "--out", out, "--set", "optimizer.lr=-1")
    assert result.exit_code == 2
    assert "--set optimizer.lr=-1: optimizer.lr: must be > 0, got -1" in result.output
    assert not out.exists()


@pytest.mark.parametrize("device", ["cuda9x", "gpu", "cuda:"])
def test_run_bad_device(tmp_path: Path, device: str) -> None:
    out = tmp_path / "runs"
    result = invoke("run", QUICKSTART, "--device", device, "--out", out)
    assert result.exit_code == 2
    # --device is applied as the override 'device=...', so the recipe.yaml records it
    assert f"device: expected auto, cpu, cuda or cuda:N, got '{device}'." in result.output
    assert not out.exists()


def test_run_missing_data_stops_before_training(missing_data: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, root = missing_data
    out = tmp_path / "runs"
    result = invoke("run", recipe, "--out", out)
    assert result.exit_code == 2
    assert f"cifar10: files not found under {root}" in result.output
    assert str(root / "cifar-10-batches-py") in result.output
    assert not (out / "cf").exists()
    assert not out.exists() or list(out.iterdir()) == []


def test_run_usage_errors_exit_2(tmp_path: Path) -> None:
    assert invoke("run").exit_code == 2  # no recipe
    assert invoke("run", QUICKSTART, "--seeds", "0", "--out", tmp_path / "r").exit_code == 2
    assert invoke("run", QUICKSTART, "--bogus").exit_code == 2
    assert not (tmp_path / "r").exists()


def test_list_shows_defaults_as_a_recipe_writes_them() -> None:
    result = CliRunner().invoke(app, ["list", "schedules"])
    assert result.exit_code == 0
    assert "milestones=[0.5dur, 0.75dur]" in result.output and "Time(" not in result.output
