"""Failures and resume at the edges: bad input found as a run starts leaves nothing behind,
a refused recipe says what differs, a disk that fills during a checkpoint, a run directory
without meta.json, and what --resume says it does for a budgets run."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from trainbench import checkpoint, results
from trainbench.cli import app
from trainbench.engine import run_recipe
from trainbench.errors import InputError
from trainbench.recipe import load_recipe
from trainbench.results import PointsWriter, RunDir

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
RESERVE = ".reserve"  # trainbench.results.RESERVE_NAME (a literal: these tests also run on old code)
TINY = ["data.train_subset=128", "duration=2ep", "eval.every=1ep"]  # 2 steps per epoch
runner = CliRunner()


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def run_cli(out: Path, *args: str, recipe: Path = QUICKSTART, items: list[str] = TINY) -> Any:
    return runner.invoke(app, ["run", str(recipe), "--out", str(out), *sets(items), *args])


# --- bad input at run start leaves nothing behind ---


def test_a_batch_larger_than_the_dataset_leaves_nothing_and_the_fix_runs(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = run_cli(out, "--set", "data.batch_size=5000")
    assert result.exit_code == 2
    assert "data.batch_size: 5000 is larger than the training set (128 images)" in result.output
    assert not out.exists()  # not even --out: nothing was written
    result = run_cli(out, "--set", "data.batch_size=32")  # the corrected command, no --force
    assert result.exit_code == 0, result.output
    assert json.loads((out / "quickstart/seed0/meta.json").read_text())["status"] == "completed"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_gpu_leaves_nothing_and_the_cpu_run_goes_ahead(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--device", "cuda")
    assert result.exit_code == 2 and "no usable CUDA GPU" in result.output
    assert not (tmp_path / "quickstart").exists()
    result = run_cli(tmp_path, "--device", "cpu")
    assert result.exit_code == 0, result.output


def tiny_imagefolder(root: Path, val_classes: tuple[str, ...]) -> None:
    for split, classes in (("train", ("a", "b")), ("val", val_classes)):
        for k, c in enumerate(classes):
            for i in range(4):
                (root / split / c).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (60 * k + i, 0, 0)).save(root / split / c / f"{i}.png")


def imagefolder_recipe(tmp_path: Path, data_root: Path) -> Path:
    recipe = tmp_path / "folder.yaml"
    recipe.write_text(f"extends: {QUICKSTART}\nname: folder\n"
                      f"data: {{dataset: imagefolder, root: {data_root}, image_size: 8, batch_size: 4}}\n"
                      "model: {name: small_cnn, width: 8}\nduration: 2ep\neval: {every: null}\n")
    return recipe


def test_an_imagefolder_class_mismatch_leaves_nothing_and_the_fix_runs(tmp_path: Path) -> None:
    data = tmp_path / "images"
    tiny_imagefolder(data, ("a", "c"))  # found only when the data loads
    recipe, out = imagefolder_recipe(tmp_path, data), tmp_path / "runs"
    result = run_cli(out, recipe=recipe, items=[])
    assert result.exit_code == 2 and "class folders" in result.output
    assert not (out / "folder").exists()
    (data / "val" / "c").rename(data / "val" / "b")
    result = run_cli(out, recipe=recipe, items=[])  # no --force needed
    assert result.exit_code == 0, result.output


def test_bad_input_keeps_files_that_were_there_before(tmp_path: Path) -> None:
    data = tmp_path / "images"
    tiny_imagefolder(data, ("a", "c"))
    recipe = load_recipe(imagefolder_recipe(tmp_path, data))
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.path / "notes.txt").write_text("mine")
    with pytest.raises(InputError):
        run_recipe(recipe, run)
    assert sorted(p.name for p in run.path.iterdir()) == ["notes.txt"]


def test_a_resumed_run_that_meets_bad_input_stays_as_it_was(tmp_path: Path, stop_after: type) -> None:
    recipe = load_recipe(QUICKSTART, [*TINY, "duration=4ep"])
    run = RunDir(tmp_path / "r")
    assert run_recipe(recipe, run, stop=stop_after(3)).status == "interrupted"
    before = run.read_meta()
    (_, latest), = checkpoint.list_checkpoints(run.path)[-1:]
    latest.write_bytes(b"not a checkpoint")  # refused on load: bad input
    with pytest.raises(InputError, match="refusing to load"):
        run_recipe(recipe, run, resume=True)
    assert run.read_meta() == before  # still 'interrupted', no resumption recorded
    assert not (run.path / RESERVE).exists()


# --- "a different recipe": which fields, and device auto ---


def test_a_different_recipe_refusal_lists_the_fields_that_differ(tmp_path: Path) -> None:
    assert run_cli(tmp_path).exit_code == 0
    result = run_cli(tmp_path, "--set", "optimizer.lr=0.2", "--set", "methods.mixup.alpha=0.4")
    assert result.exit_code == 2 and "holds a run of a different recipe" in result.output
    assert "optimizer.lr: 0.05 -> 0.2" in result.output
    assert "methods.mixup.alpha: (absent) -> 0.4" in result.output
    assert "methods: {} ->" not in result.output  # the leaf says it all
    many = sets(
        ["model.width=9", "data.crop_padding=2", "optimizer.momentum=0.8", "optimizer.weight_decay=0.0",
         "schedule.warmup=0ep", "eval.every=2ep", "precision=bf16"])
    result = run_cli(tmp_path, *many)
    assert result.exit_code == 2 and "... and 1 more" in result.output


def test_device_auto_and_the_device_it_resolved_to_are_the_same_recipe(tmp_path: Path) -> None:
    assert run_cli(tmp_path).exit_code == 0  # device: auto, on this machine's device
    here = "cuda" if torch.cuda.is_available() else "cpu"
    result = run_cli(tmp_path, "--device", here)
    assert result.exit_code == 0 and "skip" in result.output, result.output


def test_a_run_made_on_another_device_type_is_a_different_recipe(tmp_path: Path) -> None:
    recipe = load_recipe(QUICKSTART)
    run = RunDir(tmp_path)
    run.start(recipe.to_yaml(), {"device": "NVIDIA H200"})  # recorded before device_type existed
    assert run.changes(recipe.to_yaml(), "cpu") == ["device: cuda -> cpu ('auto' here)"]
    assert run.holds(recipe.to_yaml(), "cuda")
    run.update_meta(device_type="cpu")
    assert run.holds(load_recipe(QUICKSTART, ["device=cpu"]).to_yaml(), "cpu")
    assert not run.holds(load_recipe(QUICKSTART, ["device=cuda:1"]).to_yaml(), "cuda")
    assert not run.holds(load_recipe(QUICKSTART, ["device=cpu"]).to_yaml())  # no type: as written


# --- full disks ---


class FillingDisk:
    """A disk that fills up, for trainbench's atomic writes: once ``fill`` is set (by the
    first write into a file whose name contains ``at``), writing into any file ``only``
    names (all files when empty) beyond ``capacity`` bytes in all under ``root`` raises
    ENOSPC, part-way like a real full disk; removing files frees space."""

    def __init__(self, root: Path, at: str, only: str = "", slack: int = 100) -> None:
        self.root, self.at, self.only, self.slack = root, at, only, slack
        self.capacity: int | None = None
        self.paths: dict[int, str] = {}

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_new_temp, real_fdopen, disk = results._new_temp_file, os.fdopen, self

        def new_temp_file(path: Path) -> tuple[int, Path]:
            fd, name = real_new_temp(path)
            disk.paths[fd] = str(name)
            return fd, name

        class File:
            def __init__(self, f: Any, name: str) -> None:
                self._f, self.name = f, name

            def write(self, b: Any) -> int:
                n = len(memoryview(b).cast("B"))
                if disk.capacity is None and disk.at in Path(self.name).name:
                    disk.capacity = disk.used() + disk.slack
                if disk.capacity is not None and disk.only in Path(self.name).name:
                    room = disk.capacity - disk.used()
                    if n > room:
                        self._f.write(bytes(memoryview(b).cast("B")[:max(room, 0)]))
                        self._f.flush()
                        raise OSError(errno.ENOSPC, "No space left on device")
                written = self._f.write(b)
                self._f.flush()
                return written

            def __getattr__(self, k: str) -> Any:
                return getattr(self._f, k)

            def __enter__(self) -> File:
                return self

            def __exit__(self, *exc: Any) -> None:
                self._f.close()

        def fdopen(fd: int, *a: Any, **k: Any) -> Any:
            f = real_fdopen(fd, *a, **k)
            return File(f, disk.paths.pop(fd)) if fd in disk.paths else f

        monkeypatch.setattr(results, "_new_temp_file", new_temp_file)
        monkeypatch.setattr(os, "fdopen", fdopen)


CKPT = [*TINY, "duration=6ep", "checkpoint.every=3ba"]


def test_a_disk_filling_during_a_checkpoint_says_the_disk_is_full(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    FillingDisk(tmp_path, at="step00000006", only=".pt").install(monkeypatch)  # the 2nd checkpoint
    run = RunDir(tmp_path / "r")
    out = run_recipe(load_recipe(QUICKSTART, CKPT), run)
    assert out.status == "failed" and out.message.startswith("the disk is full"), out.message
    assert "--resume" in out.message and not (run.path / "error.log").exists()
    assert [s for s, _ in checkpoint.list_checkpoints(run.path)] == [3]  # the earlier one, intact
    assert not list((run.path / "checkpoints").glob(".*.tmp"))
    assert run.read_meta()["status"] == "failed"


def test_a_disk_at_zero_bytes_still_records_the_run_as_failed(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    FillingDisk(tmp_path, at="step00000006").install(monkeypatch)  # full for every file
    run = RunDir(tmp_path / "r")
    assert run_recipe(load_recipe(QUICKSTART, CKPT), run).status == "failed"
    meta = run.read_meta()
    assert meta["status"] == "failed" and meta["message"].startswith("the disk is full")
    assert not (run.path / RESERVE).exists()  # spent on that last write


# --- resume leftovers, directories without meta.json, budgets ---


def test_a_completed_resume_leaves_no_stale_error_log(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real_append = PointsWriter.append
    calls: list[int] = []

    def append(self: PointsWriter, row: dict[str, Any]) -> None:
        calls.append(row["step"])
        if len(calls) == 2:
            raise RuntimeError("a bug at the second point")
        real_append(self, row)

    monkeypatch.setattr(PointsWriter, "append", append)
    recipe = load_recipe(QUICKSTART, [*TINY, "checkpoint.every=1ba"])
    run = RunDir(tmp_path / "r")
    out = run_recipe(recipe, run)
    assert out.status == "failed" and (run.path / "error.log").exists()
    monkeypatch.setattr(PointsWriter, "append", real_append)
    assert run_recipe(recipe, run, resume=True).status == "completed"
    assert not (run.path / "error.log").exists()
    assert "message" not in run.read_meta() or run.read_meta()["message"] == ""


@pytest.mark.parametrize("flag", [[], ["--resume"]], ids=["run", "resume"])
def test_a_run_directory_without_meta_json_is_foreign(tmp_path: Path, flag: list[str]) -> None:
    assert run_cli(tmp_path).exit_code == 0
    run = tmp_path / "quickstart" / "seed0"
    (run / "meta.json").unlink()
    points = (run / "points.csv").read_text()
    weights = (run / "model.pt").stat().st_mtime_ns
    result = run_cli(tmp_path, *flag)
    assert result.exit_code == 2, result.output
    assert "model.pt, points.csv, recipe.yaml but no meta.json" in result.output.replace("\n", " ")
    assert "--force" in result.output
    assert (run / "points.csv").read_text() == points and (run / "model.pt").stat().st_mtime_ns == weights
    assert run_cli(tmp_path, "--force").exit_code == 0  # replaces it
    assert json.loads((run / "meta.json").read_text())["status"] == "completed"


def test_resume_of_an_interrupted_run_without_meta_json_is_refused(tmp_path: Path, stop_after: type) -> None:
    run = RunDir(tmp_path / "quickstart" / "seed0")
    run_recipe(load_recipe(QUICKSTART, [*TINY, "duration=4ep"]), run, stop=stop_after(3))
    run.meta_path.unlink()
    result = run_cli(tmp_path, "--resume", items=[*TINY, "duration=4ep"])
    assert result.exit_code == 2 and "checkpoints/" in result.output, result.output


@pytest.mark.parametrize("device", [[], ["--device", "cpu"]], ids=["same", "auto-then-cpu"])
def test_budgets_resume_says_what_it_keeps_and_where_it_continues(tmp_path: Path, stop_after: type,
                                                                  device: list[str]) -> None:
    # Budgets of 2 and 4 epochs of 2 steps; stopped at step 3 of budget 2 (stop is also asked
    # once before each budget).
    items = ["data.train_subset=128", "schedule.name=cyclic", "schedule.t0=1ep", "schedule.t_mult=2",
             "schedule.cycles=2", "curve.mode=budgets", "eval.every=null"]
    run = RunDir(tmp_path / "quickstart" / "seed0")
    out = run_recipe(load_recipe(QUICKSTART, items), run, stop=stop_after(1 + 4 + 1 + 3))
    assert out.status == "interrupted"
    step = checkpoint.latest_step(run.path / "budget2")
    assert step is not None
    b1_end = (run.path / "budget1" / "meta.json").stat().st_mtime_ns
    result = run_cli(tmp_path, "--resume", *device, items=items)  # it ran as device: auto
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert f"(resuming: 1 of 2 budget runs completed, continuing budget 2 from step {step})" in flat
    assert "no checkpoint" not in flat
    assert (run.path / "budget1" / "meta.json").stat().st_mtime_ns == b1_end  # kept, not re-run
