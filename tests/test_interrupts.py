"""Long runs survive: Ctrl-C/SIGTERM, kill -9, a second process on the same run directory,
a full disk. Real subprocesses where the behaviour is about signals and processes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainbench import checkpoint
from trainbench.cli import app
from trainbench.compare import compare
from trainbench.engine import run_recipe
from trainbench.recipe import load_recipe
from trainbench.results import PointsWriter, RunDir, read_points
from trainbench.runlock import RunLock

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
# Long enough to be interrupted, checkpointing every 5 steps, a point every 2 epochs (16 steps).
LONG = ["data.train_subset=512", "duration=120ep", "eval.every=2ep", "checkpoint.every=5ba"]
runner = CliRunner()


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def start(out: Path, extra: list[str] = ()) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trainbench", "run", str(QUICKSTART), "--out", str(out),
                             "--device", "cpu", *sets(LONG), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(run: Path, proc: subprocess.Popen, at_least: int = 1, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        found = checkpoint.list_checkpoints(run)
        if found and found[-1][0] >= at_least * 5:
            return found[-1][0]
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_checkpoints_marks_interrupted_and_keeps_points(tmp_path: Path, sig: int,
                                                                     code: int) -> None:
    proc = start(tmp_path)
    run = tmp_path / "quickstart" / "seed0"
    wait_for_checkpoint(run, proc, at_least=4)  # past step 16: a point written
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "interrupted" and "--resume" in meta["message"]
    step = checkpoint.latest_step(run)
    assert meta["checkpoint_step"] == step and step < meta["total_steps"]
    points = read_points(run / "points.csv")
    assert points and points[-1]["step"] <= step
    assert "--resume" in stderr
    # Without --resume the run is not silently restarted: the hint says what to do.
    again = runner.invoke(app, ["run", str(QUICKSTART), "--out", str(tmp_path), "--device", "cpu",
                                *sets(LONG)])
    assert again.exit_code == 2
    assert f"last checkpoint is at step {step}" in again.output and "--resume" in again.output


# Run as `python -c SLOW_STOP_CHECKPOINT MARKER run ...`: the trainbench CLI, except that once
# a first signal has arrived, a checkpoint save writes its step to MARKER and then takes 10 s:
# a second signal sent then lands while the first is being handled, as when a user presses
# Ctrl-C again during a big model's stop checkpoint. (Without it the second signal would race
# the step and its checkpoint; two signals sent back to back may even be merged into one.)
SLOW_STOP_CHECKPOINT = """
import sys, time
from pathlib import Path
from trainbench import checkpoint, interrupts
marker = Path(sys.argv.pop(1))
signalled = []
real_handle, real_save = interrupts.StopSignal._handle, checkpoint.save
def handle(self, signum, frame):
    signalled.append(signum)
    real_handle(self, signum, frame)
def save(run_path, step, payload, keep):
    if signalled:
        marker.write_text(str(step))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.01)
    return real_save(run_path, step, payload, keep)
interrupts.StopSignal._handle, checkpoint.save = handle, save
from trainbench.cli import app
app()
"""


def test_second_signal_during_the_stop_checkpoint_stops_at_once_without_it(tmp_path: Path) -> None:
    marker = tmp_path / "saving"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_STOP_CHECKPOINT, str(marker), "run", str(QUICKSTART),
                             "--out", str(tmp_path), "--device", "cpu", *sets(LONG)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "quickstart" / "seed0"
    wait_for_checkpoint(run, proc, at_least=4)  # past step 16: a point written
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    stop_step = int(marker.read_text())
    proc.send_signal(signal.SIGINT)  # during the stop's checkpoint
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    latest = checkpoint.latest_step(run)
    assert latest is not None and latest < stop_step
    # No checkpoint at the stop step, not even a partial one (a temporary file).
    kept = [f"step{s:08d}.pt" for s, _ in checkpoint.list_checkpoints(run)]
    assert sorted(p.name for p in checkpoint.checkpoint_dir(run).iterdir()) == kept
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    assert meta["message"] == ("stopped at once by a second signal; resume from the checkpoint at "
                               f"step {latest} with --resume")
    assert "keeps the points measured so far; continue it with --resume" in " ".join(stderr.split())
    points = read_points(run / "points.csv")
    assert points and points[-1]["step"] < stop_step


def test_second_signal_in_process_raises_at_once_marks_the_run_and_it_resumes(tmp_path: Path,
                                                                             monkeypatch) -> None:
    # The real handlers (StopSignal) and real signals, raised in this process: the first
    # during step 12, the second while step 12's stop checkpoint is being written.
    from trainbench.data.loader import DeviceData
    from trainbench.interrupts import Interrupted, StopSignal

    real_batches, real_write = DeviceData.train_batches, checkpoint.atomic_write

    def batches(self):
        for served, batch in enumerate(real_batches(self), 1):
            if served == 12:
                signal.raise_signal(signal.SIGINT)
            yield batch

    def write(path: Path, fn) -> None:
        def second_signal_midway(f) -> None:
            f.write(b"half a checkpoint")
            signal.raise_signal(signal.SIGINT)
            fn(f)

        real_write(path, second_signal_midway if path.name == "step00000012.pt" else fn)

    monkeypatch.setattr(DeviceData, "train_batches", batches)
    monkeypatch.setattr(checkpoint, "atomic_write", write)
    # 8 steps an epoch, 24 steps: points at 8, 16, 24; checkpoints every 5 steps (2 kept).
    recipe = load_recipe(QUICKSTART, ["data.train_subset=512", "model.width=8", "duration=3ep",
                                      "eval.every=1ep", "checkpoint.every=5ba"])
    run = RunDir(tmp_path / "r")
    with StopSignal() as stop, pytest.raises(Interrupted) as raised:
        run_recipe(recipe, run, stop=stop)
    assert stop.signum == signal.SIGINT and raised.value.exit_code == 130
    # No checkpoint at the stop step, not even a partial one: the one at step 10 is the last.
    assert sorted(p.name for p in checkpoint.checkpoint_dir(run.path).iterdir()) == \
        ["step00000005.pt", "step00000010.pt"]
    meta = run.read_meta()
    assert meta["status"] == "interrupted" and meta["checkpoint_step"] == 10
    assert meta["message"] == ("stopped at once by a second signal; resume from the checkpoint at "
                               "step 10 with --resume")
    assert [p["step"] for p in run.read_points()] == [8]
    monkeypatch.undo()
    out = run_recipe(recipe, run, resume=True)
    assert out.status == "completed", out.message
    assert run.read_meta()["resumed"][0]["from_step"] == 10
    assert [p["step"] for p in run.read_points()] == [8, 16, 24]


def test_kill_9_leaves_a_readable_resumable_directory(tmp_path: Path, stop_after: type) -> None:
    proc = start(tmp_path)
    run = tmp_path / "quickstart" / "seed0"
    step = wait_for_checkpoint(run, proc, at_least=4)  # past the first point (step 16)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "running"  # it never got to say otherwise
    # A torn last line, as if killed mid-write: every reader copes.
    with (run / "points.csv").open("a") as f:
        f.write("123,15.3,78")
    points = read_points(run / "points.csv")
    assert points and all(p["step"] != 123 for p in points)
    c = compare([tmp_path])
    assert c.recipes[0].runs[0].torn and "half-written" in c.recipes[0].status
    # The dead process's lock is gone with it; the run resumes from its last checkpoint.
    latest = checkpoint.latest_step(run)
    assert latest is not None and latest >= step
    result = runner.invoke(app, ["run", str(QUICKSTART), "--out", str(tmp_path), "--device", "cpu",
                                 *sets([*LONG, "duration=12ep"]), "--resume"])
    assert result.exit_code == 2 and "different recipe" in result.output  # resume needs the same recipe
    # Resume it (in process, stopped again one step later: the full resumed-equals-whole check
    # is in test_checkpoint.py).
    recipe = load_recipe(run / "recipe.yaml")
    out = run_recipe(recipe, RunDir(run), resume=True, stop=stop_after(1))
    assert out.status == "interrupted"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["resumed"][0]["from_step"] == latest and meta["resumed"][0]["status_was"] == "running"
    assert meta["checkpoint_step"] == latest + 1
    assert [p["step"] for p in read_points(run / "points.csv")] == [p["step"] for p in points
                                                                     if p["step"] <= latest]


def test_a_second_process_on_the_same_run_directory_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "quickstart" / "seed0"
    lock = RunLock(run).acquire()  # another holder (flock is per open file: same process works)
    try:
        result = runner.invoke(app, ["run", str(QUICKSTART), "--out", str(tmp_path)])
        assert result.exit_code == 2
        assert "being written by another trainbench process" in result.output
        assert f"pid {os.getpid()}" in result.output
    finally:
        lock.release()
    assert not (run / "meta.json").exists()  # nothing was started


def test_force_and_resume_together_are_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(QUICKSTART), "--out", str(tmp_path), "--force", "--resume"])
    assert result.exit_code == 2 and "give one of the two" in result.output


def test_a_full_output_disk_is_refused_before_training(tmp_path: Path, monkeypatch) -> None:
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10 * 2**20))
    result = runner.invoke(app, ["run", str(QUICKSTART), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "10.0 MiB free" in result.output
    assert not (tmp_path / "quickstart").exists()


def test_disk_filling_mid_run_marks_it_failed_and_keeps_what_was_written(tmp_path: Path,
                                                                          monkeypatch) -> None:
    real_append = PointsWriter.append
    calls = []

    def append(self, row) -> None:
        calls.append(row["step"])
        if len(calls) == 3:
            self._f.write("24,3.0,15")  # the row is cut short where the disk filled up
            self._f.flush()
            raise OSError(errno.ENOSPC, "No space left on device", str(self._f.name))
        real_append(self, row)

    monkeypatch.setattr(PointsWriter, "append", append)
    recipe = load_recipe(QUICKSTART, ["data.train_subset=512", "duration=5ep", "eval.every=1ep"])
    run = RunDir(tmp_path / "r")
    out = run_recipe(recipe, run)
    assert out.status == "failed" and "disk is full" in out.message and "--resume" in out.message
    meta = run.read_meta()
    assert meta["status"] == "failed" and "disk is full" in meta["message"]
    assert [p["step"] for p in run.read_points()] == [8, 16]
