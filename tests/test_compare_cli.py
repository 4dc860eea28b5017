"""`trainbench compare` on run directories written by the tests (no training): every format,
warnings, marked runs, problems, smoke runs, the plot, exit codes; and the comparison at the
end of a several-run `trainbench run`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.results import POINT_COLUMNS, RunDir
from trainbench.runlock import RunLock

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch) -> None:
    """Rich wraps table cells to the console width; a wide console keeps each cell on a line."""
    from trainbench import cli_tables

    monkeypatch.setattr(cli_tables.console, "width", 300)


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


def make_run(root: Path, name: str, seed: int, curve: list[tuple[float, float]], *,
             status: str = "completed", device: str = "cpu (2 threads)", smoke: bool = False,
             torn: bool = False, versions: dict[str, str] | None = None, recipe: str = "",
             folder: str | None = None) -> RunDir:
    """A run directory as trainbench writes it: curve points at epochs 2, 4, 8, ...;
    ``recipe``: more recipe.yaml lines."""
    run = RunDir(root / (folder or name) / f"seed{seed}{'-smoke' if smoke else ''}")
    run.start(f"name: {name}\nseed: {seed}\n{recipe}", {"name": name, "seed": seed, "smoke": smoke})
    w = run.points_writer(list(POINT_COLUMNS))
    for i, (t, acc) in enumerate(curve):
        step = 10 * 2 ** (i + 1)
        w.append({"step": step, "epoch": 2.0 ** (i + 1), "samples": 64 * step, "train_time_s": t,
                  "lr": 0.0, "train_loss": 0.1, "test_loss": 0.2, "test_acc": acc, "test_ece": 0.01,
                  "curve": 1})
    w.close()
    if torn:  # the writer died mid-row
        with run.points_path.open("a") as f:
            f.write("9999,64.0,4096")
    meta = {"status": status, "device": device, "torch_build": "2.5.0+cpu"}
    if versions:
        meta["versions"] = {**run.read_meta()["versions"], **versions}
    run.update_meta(**meta)
    return run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """base (3 seeds), fast (3 seeds, one diverged after its first point), half (torn)."""
    root = tmp_path / "runs"
    for s in range(3):
        make_run(root, "base", s, [(1.0, 0.50 + s / 100), (2.0, 0.70 + s / 100), (4.0, 0.90 + s / 100)])
    make_run(root, "fast", 0, [(0.5, 0.70), (1.0, 0.80)])
    make_run(root, "fast", 1, [(0.5, 0.72), (1.0, 0.82)])
    make_run(root, "fast", 2, [(0.5, 0.20)], status="diverged")
    make_run(root, "half", 0, [(1.5, 0.60), (3.0, 0.75)], status="running", torn=True)
    return root


def test_table_shows_every_recipe_and_marks_incomplete_runs(runs: Path) -> None:
    result = invoke("compare", runs, "--baseline", "base", "--target", "0.8")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "trainbench compare" in out
    for name in ("base", "fast", "half"):
        assert name in out
    assert "2 completed, 1 diverged" in out
    # 'running' with no process holding its lock: it was killed.
    assert "1 running, no process (killed?) (half-written)" in out
    assert "fast seed 2: diverged" in out
    assert "half seed 0: running, no process (killed?), half-written" in out
    # base: time to 80% between (2, .71) and (4, .91): 2 + 0.09 / 0.2 * 2 = 2.9.
    assert "2.9" in out and "1.00x" in out
    md = invoke("compare", runs, "--baseline", "base", "--target", "0.8", "--format", "markdown").stdout
    base_row = next(line for line in md.splitlines() if line.startswith("| base |"))
    header = next(line for line in md.splitlines() if line.startswith("| recipe |"))
    cells = dict(zip((h.strip() for h in header.split("|")), (v.strip() for v in base_row.split("|")),
                     strict=True))
    assert cells["time to 80%"] == "2.90" and cells["speedup vs base"] == "1.00x"
    assert "speedup" in out and "AUC" in out and "Pareto" in out


def test_json_numbers(runs: Path) -> None:
    result = invoke("compare", runs, "--baseline", "base", "--target", "80", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    rec = {r["recipe"]: r for r in doc["recipes"]}
    assert list(rec) == ["base", "fast", "half"]
    assert doc["target"] == pytest.approx(0.8) and doc["baseline"] == "base" and doc["x"] == "time"
    base, fast, half = rec["base"], rec["fast"], rec["half"]
    assert base["n"] == 3 and base["final_acc"] == pytest.approx(0.91)
    assert base["final_acc_std"] == pytest.approx(0.01)
    half_width = 4.302653 * 0.01 / 3**0.5
    assert base["final_acc_ci_low"] == pytest.approx(0.91 - half_width)
    assert base["target_cost"] == pytest.approx(2.9)
    assert base["speedup"] == 1.0
    # fast: points aligned by index; the diverged seed has only point 1.
    assert [p["n"] for p in fast["curve"]] == [3, 2]
    assert fast["curve"][0]["acc"] == pytest.approx((0.70 + 0.72 + 0.20) / 3)
    assert fast["final_acc"] == pytest.approx(0.81) and fast["n"] == 2 and fast["cost"] == 1.0
    assert fast["target_cost"] == pytest.approx(0.5 + (0.8 - 0.54) / (0.81 - 0.54) * 0.5)
    assert fast["speedup"] == pytest.approx(2.0 + (0.81 - 0.71) / 0.2 * 2.0)  # base needs 3.0
    assert fast["status"] == "2 completed, 1 diverged" and fast["complete"] is False
    # half: the torn row is skipped, its two points kept.
    assert half["curve_points"] == 2 and half["status"] == "1 running, no process (killed?) (half-written)"
    assert half["run_dirs"][0]["half_written"] is True and half["run_dirs"][0]["no_process"] is True
    assert fast["pareto"] is True and fast["pareto_points"] == [1, 2]
    assert base["pareto_points"] == [3] and half["pareto"] is False
    assert doc["auc_span"] is None  # fast (0.5 to 1) and half (1.5 to 3) do not overlap
    assert any("fast seed 2: diverged" in n for n in doc["notes"])


def test_csv_and_markdown_carry_the_table_numbers(runs: Path) -> None:
    args = ("compare", runs, "--baseline", "base", "--target", "0.8")
    table = invoke(*args)
    csv_out = invoke(*args, "--format", "csv")
    md = invoke(*args, "--format", "markdown")
    assert table.exit_code == csv_out.exit_code == md.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert [r["recipe"] for r in rows] == ["base", "fast", "half"]
    lines = [ln for ln in md.stdout.splitlines() if ln.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    assert lines[1].startswith("|---")
    assert header[:5] == ["recipe", "runs", "device", "n", "final %"]
    assert "speedup vs base" in header and "time to 80%" in header
    for row, line in zip(rows, lines[2:], strict=True):
        cell = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        assert cell["recipe"] == row["recipe"]
        assert cell["final %"] == f"{100 * float(row['final_acc']):.2f}"
        assert cell["time (s)"] == f"{float(row['cost']):.2f}"
        assert cell["speedup vs base"] == f"{float(row['speedup']):.2f}x"
        assert cell["final %"] in flat(table.stdout)
    assert rows[0]["final_acc_std"] and rows[2]["final_acc_std"] == ""  # n = 1: no std
    assert "| 2.90 |" in md.stdout
    assert "speedup:" in md.stdout  # the definitions follow the table


def test_mixed_devices_and_versions_warn_and_device_per_row(tmp_path: Path) -> None:
    make_run(tmp_path, "a", 0, [(1.0, 0.9)], device="cpu (2 threads)")
    make_run(tmp_path, "b", 0, [(0.1, 0.9)], device="NVIDIA H100 80GB HBM3", versions={"torch": "9.9"})
    result = invoke("compare", tmp_path)
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "warning:" in out and "different devices" in out and "not comparable" in out
    assert "different versions" in out and "9.9" in out
    assert "cpu (2 threads)" in out and "NVIDIA H100 80GB HBM3" in out
    doc = json.loads(invoke("compare", tmp_path, "--format", "json").stdout)
    assert len(doc["warnings"]) == 2
    csv_run = invoke("compare", tmp_path, "--format", "csv")
    assert "different devices" in csv_run.stderr and "different devices" not in csv_run.stdout


def test_foreign_and_unreadable_directories_are_reported_and_the_rest_compared(
        tmp_path: Path, runs: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "meta.json").write_text(json.dumps({"model": "bert"}))
    empty = tmp_path / "photos"
    empty.mkdir()
    (empty / "cat.jpg").write_text("x")
    result = invoke("compare", runs, broken, foreign, empty, tmp_path / "missing")
    assert result.exit_code == 0, result.output
    err = flat(result.stderr)
    assert f"{broken}: meta.json cannot be read" in err
    assert f"{foreign}: not a trainbench run directory" in err
    assert f"{empty}: no run directories in it" in err
    assert f"{tmp_path / 'missing'}: no such file or directory" in err
    assert "base" in result.stdout and "fast" in result.stdout


def test_no_runs_exit_2(tmp_path: Path) -> None:
    result = invoke("compare", tmp_path)
    assert result.exit_code == 2
    assert "no runs to compare" in flat(result.output)
    assert "no run directories in it" in flat(result.output)


def test_smoke_runs_left_out_by_default(tmp_path: Path) -> None:
    make_run(tmp_path, "a", 0, [(1.0, 0.9)])
    make_run(tmp_path, "a", 0, [(0.1, 0.1)], smoke=True)
    make_run(tmp_path, "b", 0, [(0.1, 0.2)], smoke=True)
    result = invoke("compare", tmp_path)
    assert result.exit_code == 0
    out = flat(result.stdout)
    assert "left out 2 smoke runs (--include-smoke to include them)" in out
    assert " b " not in out
    doc = json.loads(invoke("compare", tmp_path, "--include-smoke", "--format", "json").stdout)
    assert [r["recipe"] for r in doc["recipes"]] == ["a", "b"] and doc["smoke_left_out"] == 0
    assert doc["recipes"][0]["n"] == 2
    only_smoke = invoke("compare", tmp_path / "b")
    assert only_smoke.exit_code == 2 and "--include-smoke" in only_smoke.output


def test_budget_sub_runs_are_skipped(tmp_path: Path) -> None:
    parent = make_run(tmp_path, "cyc-budgets", 0, [(1.0, 0.8), (2.0, 0.9)])
    sub = make_run(parent.path, "budget1", 0, [(1.0, 0.8)])
    sub.update_meta(budget_of="cyc-budgets")
    doc = json.loads(invoke("compare", tmp_path, "--format", "json").stdout)
    assert [r["recipe"] for r in doc["recipes"]] == ["cyc-budgets"]
    direct = invoke("compare", sub.path, parent.path)
    assert "a budget sub-run of cyc-budgets" in flat(direct.stderr)


def test_bad_input_exit_2(runs: Path, tmp_path: Path) -> None:
    bad_base = invoke("compare", runs, "--baseline", "bas")
    assert bad_base.exit_code == 2 and "Did you mean 'base'?" in flat(bad_base.output)
    assert invoke("compare", runs, "--x", "sparsity").exit_code == 2
    assert "sparsity" in invoke("compare", runs, "--x", "sparsity").output
    assert invoke("compare", runs, "--format", "xml").exit_code == 2
    assert invoke("compare", runs, "--target", "150").exit_code == 2
    bad_plot = invoke("compare", runs, "--plot", tmp_path / "curve.jpg")
    assert bad_plot.exit_code == 2 and ".png or .svg" in bad_plot.output


def test_epochs_axis(runs: Path) -> None:
    doc = json.loads(invoke("compare", runs, "--x", "epochs", "--baseline", "base",
                            "--format", "json").stdout)
    assert doc["x_column"] == "epoch"
    rec = {r["recipe"]: r for r in doc["recipes"]}
    assert rec["base"]["cost"] == 8.0 and rec["fast"]["cost"] == 4.0
    # base reaches fast's 0.81 at epoch 4 + (0.81 - 0.71) / 0.2 * 4 = 6: speedup 6 / 4.
    assert rec["fast"]["speedup"] == pytest.approx(1.5)


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_is_written(runs: Path, tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / f"compare{suffix}"
    result = invoke("compare", runs, "--baseline", "base", "--target", "0.8", "--plot", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic)
    if suffix == ".svg":
        text = out.read_text()
        for label in ("base (n=3)", "fast (n=2)", "Pareto frontier"):
            assert label in text


def test_compare_help_is_listed() -> None:
    result = invoke("compare", "--help")
    assert result.exit_code == 0
    for opt in ("--baseline", "--target", "--x", "--plot", "--format", "--include-smoke"):
        assert opt in result.output


def test_run_with_several_recipes_ends_with_the_comparison(tmp_path: Path, monkeypatch) -> None:
    """`trainbench run a b` prints the comparison; training is replaced by a stub here."""
    from trainbench import engine

    def fake_run(recipe, run, *, smoke=False, progress=None, **_):
        run.start(recipe.to_yaml(), {"name": recipe.name, "seed": recipe.seed, "smoke": smoke})
        w = run.points_writer(list(POINT_COLUMNS))
        acc = 0.9 if "smoothing" in recipe.name else 0.8
        points = [{"step": 10, "epoch": 1.0, "samples": 640, "train_time_s": 1.0 + recipe.seed,
                   "test_acc": acc, "curve": 1}]
        for p in points:
            w.append(p)
        w.close()
        run.update_meta(status="completed", device="cpu (stub)")
        return engine.Outcome("completed", points)

    monkeypatch.setattr(engine, "run_recipe", fake_run)
    digits = ROOT / "recipes" / "digits"
    result = invoke("run", digits / "baseline.yaml", digits / "label_smoothing.yaml", "--seeds", "2",
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "trainbench run" in out and "trainbench compare" in out
    assert "vs digits-baseline" in out
    assert "2 completed" in out


def test_a_run_still_being_written_is_marked_running(runs: Path) -> None:
    lock = RunLock(runs / "half" / "seed0").acquire()  # as the training process holds it
    try:
        out = flat(invoke("compare", runs).stdout)
    finally:
        lock.release()
    assert "1 running (half-written)" in out and "no process" not in out


def test_samples_axis_reads_integer_samples(runs: Path) -> None:
    """points.csv holds samples as integers (64 x step): every recipe has its curve."""
    result = invoke("compare", runs, "--x", "samples", "--baseline", "base", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = {r["recipe"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert [rows[k]["n"] for k in ("base", "fast", "half")] == ["3", "2", "1"]
    # The last points: base at step 80, fast and half at step 40.
    assert [float(rows[k]["cost"]) for k in ("base", "fast", "half")] == [5120.0, 2560.0, 2560.0]
    assert float(rows["base"]["final_acc"]) == pytest.approx(0.91)
    # base reaches fast's 0.81 halfway from 2560 (0.71) to 5120 (0.91): 3840 / 2560.
    assert float(rows["fast"]["speedup"]) == pytest.approx(1.5)
    table = flat(invoke("compare", runs, "--x", "samples").stdout)
    assert "5,120" in table and "2,560" in table


def test_metric_of_unknown_direction_is_exit_2(runs: Path) -> None:
    result = invoke("compare", runs, "--metric", "lr")
    assert result.exit_code == 2
    out = flat(result.output)
    assert "--metric lr: trainbench does not know whether a higher or a lower lr is better" in out
    assert "test_loss" in out and "Traceback" not in out


def test_loss_metric_in_json_table_and_plot(tmp_path: Path) -> None:
    for s in range(2):
        run = make_run(tmp_path, "a", s, [(1.0, 0.5), (2.0, 0.7)])
        # test_loss falls 0.4 -> 0.2 on seed 0, 0.6 -> 0.3 on seed 1.
        run.rewrite_points(list(POINT_COLUMNS), [{**p, "test_loss": [(0.4, 0.2), (0.6, 0.3)][s][i]}
                                                 for i, p in enumerate(run.read_points())])
    out = tmp_path / "loss.svg"
    result = invoke("compare", tmp_path, "--metric", "test_loss", "--target", "0.4", "--format", "json",
                    "--plot", out)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (a,) = doc["recipes"]
    assert doc["lower_is_better"] is True and doc["target"] == 0.4
    assert a["final_acc"] == pytest.approx(0.25) and a["best_acc"] == pytest.approx(0.25)
    # mean loss 0.5 at 1.0, 0.25 at 2.0: down to 0.4 at 1 + 0.1 / 0.25 = 1.4.
    assert a["target_cost"] == pytest.approx(1.4) and a["target_cost_upper_bound"] is False
    text = out.read_text()
    assert "lower is better" in text and "(%)" not in text
    table = flat(invoke("compare", tmp_path, "--metric", "test_loss", "--target", "0.4").stdout)
    assert "time to test_loss ≤ 0.4" in table and "0.2500" in table and "1.40" in table


def test_same_name_different_recipes_are_separate_rows(tmp_path: Path) -> None:
    for s in range(2):
        make_run(tmp_path, "r", s, [(1.0, 0.6 + s / 100)], recipe="optimizer: {lr: 0.1}\ndevice: cpu\n")
        make_run(tmp_path, "r", s, [(1.0, 0.8 + s / 100)], recipe="optimizer: {lr: 0.2}\n", folder="r-lr02")
    doc = json.loads(invoke("compare", tmp_path, "--format", "json").stdout)
    rec = {r["recipe"]: r for r in doc["recipes"]}
    assert list(rec) == ["r (optimizer.lr=0.1)", "r (optimizer.lr=0.2)"]
    assert [r["n"] for r in rec.values()] == [2, 2]
    assert rec["r (optimizer.lr=0.2)"]["final_acc"] == pytest.approx(0.805)
    assert rec["r (optimizer.lr=0.2)"]["differs"] == {"optimizer.lr": "0.2"}
    assert any("2 different recipes share the name" in w for w in doc["warnings"])
    ambiguous = invoke("compare", tmp_path, "--baseline", "r")
    assert ambiguous.exit_code == 2 and "give the row's full label" in flat(ambiguous.output)
    ok = invoke("compare", tmp_path, "--baseline", "r (optimizer.lr=0.2)")
    assert ok.exit_code == 0 and "vs r (optimizer.lr=0.2)" in flat(ok.stdout)
