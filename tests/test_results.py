"""The run directory: atomic writes, meta.json, append-only points.csv and its reader."""

from __future__ import annotations

import datetime as dt
import json
import math
import platform
from importlib import metadata
from pathlib import Path

import pytest
import torch

from trainbench import results
from trainbench.results import (
    POINT_COLUMNS,
    PointsWriter,
    RunDir,
    atomic_write,
    atomic_write_text,
    read_points,
)


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def parse_time(s: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(s)
    assert t.tzinfo is not None
    return t


# --- atomic_write_text ---


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    atomic_write_text(target, "first\n")
    assert target.read_text() == "first\n"
    atomic_write_text(target, "second, longer content\n")
    assert target.read_text() == "second, longer content\n"
    atomic_write_text(target, "3")
    assert target.read_text() == "3"
    assert listing(tmp_path) == ["meta.json"]  # no temp files left behind


def test_atomic_write_failure_keeps_old_content_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "meta.json"
    atomic_write_text(target, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert listing(tmp_path) == ["meta.json"]


def test_atomic_write_error_while_writing_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"

    def half_then_full_disk(f) -> None:
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, half_then_full_disk)
    assert listing(tmp_path) == []
    atomic_write_text(target, "old")
    with pytest.raises(OSError):
        atomic_write(target, half_then_full_disk)
    assert listing(tmp_path) == ["x.txt"] and target.read_text() == "old"


# --- RunDir ---


def test_start_writes_recipe_and_meta(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "runs" / "quick" / "seed0")
    assert not run.exists()
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run.start("name: quick\nseed: 0\n", {"name": "quick", "seed": 0, "device": "cpu"})
    after = dt.datetime.now(dt.UTC)
    assert run.exists()
    assert run.recipe_path.read_text() == "name: quick\nseed: 0\n"
    meta = json.loads(run.meta_path.read_text())
    assert meta == run.read_meta()
    assert meta["status"] == "running"
    assert (meta["name"], meta["seed"], meta["device"]) == ("quick", 0, "cpu")
    assert before <= parse_time(meta["start_time"]) <= after
    assert meta["end_time"] is None
    assert isinstance(meta["command"], str)
    v = meta["versions"]
    assert set(v) == {"python", "trainbench", "torch", "torchvision", "timm"}
    assert v["python"] == platform.python_version()
    assert v["torch"] == metadata.version("torch") and torch.__version__.startswith(v["torch"])
    assert v["timm"] == metadata.version("timm") and v["torchvision"] == metadata.version("torchvision")
    assert v["trainbench"] == "0.1.0"
    assert listing(run.path) == ["meta.json", "recipe.yaml"]


def test_start_clears_an_old_run(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.points_path.write_text("step\n1\n")
    run.curve_path.write_bytes(b"png")
    run.start("a: 1\n", {})
    assert listing(tmp_path) == ["meta.json", "recipe.yaml"]


def test_update_meta(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.start("a: 1\n", {"name": "r"})
    start = run.read_meta()["start_time"]
    run.update_meta(device="cpu", status="running")
    meta = run.read_meta()
    assert meta["device"] == "cpu" and meta["status"] == "running" and meta["end_time"] is None
    assert meta["start_time"] == start and meta["name"] == "r"

    run.update_meta(status="completed", final_acc=0.93)
    meta = run.read_meta()
    assert meta["status"] == "completed" and meta["final_acc"] == 0.93
    assert parse_time(meta["end_time"]) >= parse_time(start)
    assert listing(tmp_path) == ["meta.json", "recipe.yaml"]  # no temp files


@pytest.mark.parametrize("status", ["diverged", "interrupted", "failed"])
def test_update_meta_terminal_statuses_set_end_time(tmp_path: Path, status: str) -> None:
    run = RunDir(tmp_path)
    run.start("a: 1\n", {})
    # a fresh RunDir object (e.g. another process) reads meta.json from disk first
    other = RunDir(tmp_path)
    other.update_meta(status=status)
    meta = run.read_meta()
    assert meta["status"] == status and meta["end_time"] is not None
    assert set(meta) >= {"versions", "start_time", "command"}


def test_update_meta_is_atomic(tmp_path: Path, monkeypatch) -> None:
    run = RunDir(tmp_path)
    run.start("a: 1\n", {})
    old = run.meta_path.read_text()
    written = []
    real = results.atomic_write_text
    monkeypatch.setattr(results, "atomic_write_text", lambda p, t: (written.append(p), real(p, t)))
    run.update_meta(status="completed")
    assert written == [run.meta_path]  # goes through the temp-file-and-rename path

    monkeypatch.setattr(results, "atomic_write_text", real)
    monkeypatch.setattr(results.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("crash")))
    run2 = RunDir(tmp_path)
    with pytest.raises(OSError):
        run2.update_meta(status="failed")
    assert run.meta_path.read_text() != old  # the completed write landed
    assert json.loads(run.meta_path.read_text())["status"] == "completed"  # the crashed one did not
    assert listing(tmp_path) == ["meta.json", "recipe.yaml"]


# --- points.csv ---


def test_points_writer_header_once_and_rows_flushed(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    w = PointsWriter(path, ["step", "lr", "test_acc", "curve"])
    assert path.read_text() == "step,lr,test_acc,curve\n"  # visible before close
    w.append({"step": 10, "lr": 0.1, "test_acc": 0.5, "curve": 0})
    assert path.read_text() == "step,lr,test_acc,curve\n10,0.1,0.5,0\n"
    w.append({"step": 20, "lr": 1 / 3, "curve": 1, "ignored": 5})  # missing column -> blank
    assert path.read_text() == "step,lr,test_acc,curve\n10,0.1,0.5,0\n20,0.3333333333333333,,1\n"
    assert read_points(path) == [
        {"step": 10.0, "lr": 0.1, "test_acc": 0.5, "curve": 0.0},
        pytest.approx({"step": 20.0, "lr": 1 / 3, "test_acc": math.nan, "curve": 1.0}, nan_ok=True),
    ]
    w.close()

    # reopening (resume) appends without a second header
    w = PointsWriter(path, ["step", "lr", "test_acc", "curve"])
    w.append({"step": 30, "lr": float("nan"), "test_acc": float("inf"), "curve": 1})
    w.close()
    lines = path.read_text().splitlines()
    assert lines.count("step,lr,test_acc,curve") == 1
    assert lines[-1] == "30,nan,inf,1"
    last = read_points(path)[-1]
    assert last["step"] == 30.0 and math.isnan(last["lr"]) and last["test_acc"] == math.inf


def test_points_writer_on_an_empty_file_writes_the_header(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text("")
    w = PointsWriter(path, ["step", "test_acc"])
    w.append({"step": 1, "test_acc": 0.25})
    w.close()
    assert path.read_text() == "step,test_acc\n1,0.25\n"


def test_run_dir_points_roundtrip(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.start("a: 1\n", {})
    cols = [*POINT_COLUMNS, "sparsity"]
    w = run.points_writer(cols)
    row = {"step": 5, "epoch": 0.5, "samples": 320, "train_time_s": 1.25, "device_time_s": 2.5,
           "energy_j": 30.0, "data_wait_s": 0.25, "lr": 0.05, "train_loss": 2.0,
           "test_loss": 1.5, "test_acc": 0.75, "test_ece": 0.125, "curve": 1, "sparsity": 0.5}
    w.append(row)
    assert run.read_points() == [{k: float(v) for k, v in row.items()}]
    w.close()
    assert run.read_points() == [{k: float(v) for k, v in row.items()}]


HEADER = "step,lr,test_acc\n"


@pytest.mark.parametrize("tail", ["30,0.0", "30,0.01,0.9", "3", "30,0.01,0.9\n30,0.0"])
def test_read_points_skips_a_torn_last_line(tmp_path: Path, tail: str) -> None:
    path = tmp_path / "points.csv"
    path.write_text(HEADER + "10,0.1,0.5\n20,0.05,0.7\n" + tail)
    rows = read_points(path)
    extra = [{"step": 30.0, "lr": 0.01, "test_acc": 0.9}] if tail.count("\n") else []
    assert rows == [{"step": 10.0, "lr": 0.1, "test_acc": 0.5}, {"step": 20.0, "lr": 0.05, "test_acc": 0.7},
                    *extra]


def test_read_points_skips_short_rows_and_keeps_blanks_as_nan(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text(HEADER + "10,,0.5\n15,0.1\n20,0.05,\n")
    rows = read_points(path)
    assert len(rows) == 2
    assert rows[0]["step"] == 10.0 and math.isnan(rows[0]["lr"]) and rows[0]["test_acc"] == 0.5
    assert rows[1]["step"] == 20.0 and rows[1]["lr"] == 0.05 and math.isnan(rows[1]["test_acc"])
    assert all(isinstance(v, float) for r in rows for k, v in r.items() if k != "step")
    assert all(type(r["step"]) is int for r in rows)  # integers stay integers


def test_read_points_edge_cases(tmp_path: Path) -> None:
    assert read_points(tmp_path / "missing.csv") == []
    path = tmp_path / "points.csv"
    path.write_text("")
    assert read_points(path) == []
    path.write_text(HEADER)
    assert read_points(path) == []
    path.write_text("step,lr,te")  # torn header
    assert read_points(path) == []


def test_read_points_keeps_integers_so_rows_round_trip(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    row = {"step": 8, "epoch": 2.0, "samples": 512, "train_time_s": 0.25, "test_acc": 0.5, "curve": 1}
    run.rewrite_points(list(row), [row])
    back = run.read_points()[0]
    assert back == row and type(back["step"]) is int and type(back["epoch"]) is float
    text = run.points_path.read_text()
    run.rewrite_points(list(row), [back])
    assert run.points_path.read_text() == text


def test_a_run_made_before_new_fields_existed_is_the_same_run(tmp_path) -> None:
    """Fields added since a run was made (absent from its recipe.yaml) count as unchanged when
    today's default fills them with the value the recipe has now; a changed one still counts."""
    import yaml

    from trainbench.recipe import load_recipe
    from trainbench.results import RunDir

    ROOT = Path(__file__).parent.parent
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    old = yaml.safe_load(recipe.to_yaml())
    for section, key in (("model", "sync_bn"), ("data", "loader"), ("data", "label_noise"), (None, "log")):
        (old[section] if section else old).pop(key)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.recipe_path.write_text(yaml.safe_dump(old))
    assert run.changes(recipe.to_yaml()) == []
    changed = load_recipe(ROOT / "recipes" / "quickstart.yaml", ["model.sync_bn=true"])
    assert run.changes(changed.to_yaml()) == ["model.sync_bn: (absent) -> true"]
    workers = load_recipe(ROOT / "recipes" / "quickstart.yaml", ["data.workers=3"])
    assert run.changes(workers.to_yaml()) == []  # how many decode processes: not identity
