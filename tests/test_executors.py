"""Many runs at once: the Ray executor on a real local Ray runtime (one per module), the Slurm
executor through submitit's LocalExecutor, and what they share with the local executor: the
same points, skip/force/resume, retries that resume after a kill -9, Ctrl-C, the --out probe."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainbench import checkpoint
from trainbench.cli import app
from trainbench.errors import InputError
from trainbench.results import read_points

ray = pytest.importorskip("ray")
pytest.importorskip("submitit")
# Worker start-up (a process importing torch) is slow on a loaded 2-core CI machine.
pytestmark = pytest.mark.timeout(400)

ROOT = Path(__file__).parent.parent
BASE = ROOT / "recipes" / "digits" / "baseline.yaml"
TINY = ["schedule.warmup=0ba", "duration=8ba", "eval.every=4ba"]
# Long enough to be killed or interrupted mid-run: a checkpoint every 5 steps.
LONG = ["schedule.warmup=0ba", "duration=60ba", "eval.every=20ba", "checkpoint.every=5ba"]
TIMING = {"train_time_s", "device_time_s", "energy_j", "data_wait_s"}  # differ run to run
runner = CliRunner()


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def grid_recipes(folder: Path) -> list[Path]:
    """A 2x2 grid (lr x label smoothing) as four recipe files."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for lr in (0.05, 0.1):
        for ls in (0.0, 0.1):
            p = folder / f"g-lr{lr}-ls{ls}.yaml"
            p.write_text(f"extends: {BASE}\nname: g-lr{lr}-ls{ls}\noptimizer: {{lr: {lr}}}\n"
                         f"methods: {{label_smoothing: {{smoothing: {ls}}}}}\n")
            out.append(p)
    return out


def points_of(out: Path) -> dict[str, list[dict[str, float]]]:
    """Every run's points under ``out``, timing columns aside."""
    return {str(p.parent.relative_to(out)): [{k: v for k, v in row.items() if k not in TIMING}
                                              for row in read_points(p)]
            for p in sorted(out.glob("*/seed*/points.csv"))}


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[str]:
    """One local Ray runtime for the module's Ray tests (the executor joins it)."""
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return grid_recipes(tmp_path_factory.mktemp("grid"))


@pytest.fixture(scope="module")
def local_grid(grid: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The grid x 2 seeds with the local executor, one CPU thread per run."""
    out = tmp_path_factory.mktemp("local")
    r = invoke("run", *grid, "--seeds", "2", *sets(TINY), "--cpus-per-run", "1", "--out", out)
    assert r.exit_code == 0, r.output
    return points_of(out)


def kill_when_checkpointed(run: Path, at_least: int, timeout: float = 120) -> list[int]:
    """In the background: once ``run`` has a checkpoint at step >= ``at_least``, kill -9 the
    process holding its lock (the worker training it: the driver handed the lock over).
    Returns the list the killed pid is appended to."""
    killed: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            step = checkpoint.latest_step(run)
            if step is not None and step >= at_least:
                holder = json.loads((run / ".lock").read_text())["pid"]
                if holder != os.getpid():  # never the driver (this process)
                    os.kill(holder, signal.SIGKILL)
                    killed.append(holder)
                return
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()
    return killed


# --- Ray ---


def test_ray_grid_matches_local_then_skips_and_forces(ray_runtime: str, grid: list[Path],
                                                      local_grid: dict, tmp_path: Path) -> None:
    args = ("run", *grid, "--seeds", "2", *sets(TINY), "--out", tmp_path)
    r = invoke(*args, "--executor", "ray", "--jobs", "2")
    assert r.exit_code == 0, r.output
    assert points_of(tmp_path) == local_grid and len(local_grid) == 8
    m = meta(tmp_path / "g-lr0.1-ls0.1" / "seed1")
    assert m["status"] == "completed" and m["torch_threads"] == 1 and m["attempt"]
    assert "8 completed" in r.output and "trainbench compare" in r.output
    assert not (tmp_path / "g-lr0.1-ls0.1" / "seed1" / ".progress.json").exists()
    # Skip across executors: the runs Ray completed are skipped by the Slurm and local executors.
    for executor in ("slurm", "local"):
        again = invoke(*args, "--executor", executor)
        assert again.exit_code == 0 and again.output.count("already completed") == 8, again.output
    before = meta(tmp_path / "g-lr0.05-ls0.0" / "seed0")["attempt"]
    forced = invoke("run", grid[0], *sets(TINY), "--out", tmp_path, "--executor", "ray", "--force")
    assert forced.exit_code == 0, forced.output
    assert meta(tmp_path / "g-lr0.05-ls0.0" / "seed0")["attempt"] != before
    assert points_of(tmp_path) == local_grid


def test_ray_worker_killed_mid_run_is_retried_and_resumes(ray_runtime: str, tmp_path: Path) -> None:
    ref = invoke("run", BASE, *sets(LONG), "--cpus-per-run", "1", "--out", tmp_path / "ref")
    assert ref.exit_code == 0, ref.output
    run = tmp_path / "ray" / "digits-baseline" / "seed0"
    killed = kill_when_checkpointed(run, at_least=20)
    r = invoke("run", BASE, *sets(LONG), "--out", tmp_path / "ray", "--executor", "ray", "--force")
    assert r.exit_code == 0, r.output
    assert killed  # the worker, not the driver, held the run's lock while it trained
    m = meta(run)
    assert m["status"] == "completed"
    assert m["resumed"][0]["from_step"] >= 20 and m["resumed"][0]["status_was"] == "running"
    assert points_of(tmp_path / "ray") == points_of(tmp_path / "ref")


def test_ctrl_c_interrupts_every_run_and_resume_completes_them(ray_runtime: str, tmp_path: Path) -> None:
    # Small batches: many cheap steps, so that the runs are still training at the Ctrl-C.
    args = ("run", BASE, "--seeds", "2", *sets([*LONG, "data.batch_size=16", "duration=200ba"]),
            "--out", tmp_path, "--executor", "ray")
    runs = [tmp_path / "digits-baseline" / f"seed{s}" for s in (0, 1)]
    done = threading.Event()

    def press_ctrl_c() -> None:  # a real SIGINT to this process, the driver
        while not done.is_set():
            if any(checkpoint.latest_step(r) for r in runs):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    try:
        r = invoke(*args, "--jobs", "2")
    finally:
        done.set()
    assert r.exit_code == 130, r.output
    started = [run for run in runs if (run / "meta.json").exists()]
    assert started  # a run whose worker had not started yet stays unstarted ("not run")
    for run in started:
        m = meta(run)
        assert m["status"] == "interrupted" and m["checkpoint_step"] == checkpoint.latest_step(run)
        assert m["checkpoint_step"] < m["total_steps"]
    # Resumed by another executor: the run directory is the unit of truth.
    again = invoke(*args[:-2], "--resume", "--cpus-per-run", "1")
    assert again.exit_code == 0, again.output
    assert again.output.count("resuming from step") == len(started)
    assert [meta(run)["status"] for run in runs] == ["completed", "completed"]
    assert all(read_points(run / "points.csv")[-1]["step"] == 200 for run in runs)


def test_out_not_seen_by_the_workers_exits_2(ray_runtime: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The real probe task writes where the driver does not look (as a worker whose --out is
    another disk would): exit 2, nothing trained."""
    from trainbench.executors import ray as ray_exec

    elsewhere = tmp_path / "node-local-disk"
    monkeypatch.setattr(ray_exec.RayBackend, "probe", lambda self, path, token: ray.get(
        ray_exec.probe_out.remote(str(elsewhere / Path(path).name), token)))
    r = invoke("run", BASE, *sets(TINY), "--out", tmp_path / "out", "--executor", "ray")
    assert r.exit_code == 2, r.output
    assert "cannot see" in r.output and "shared file system" in r.output
    assert not (tmp_path / "out").exists()  # nothing trained, no run directory left


def test_check_shared_out_reports_a_worker_that_cannot_write(tmp_path: Path) -> None:
    from trainbench.executors.remote import check_shared_out

    class Unwritable:
        name = "Slurm"

        def probe(self, path: str, token: str) -> str:
            raise PermissionError(13, "Permission denied", path)

    class OwnDisk:  # writes fine, but to its own disk: the driver cannot see the file
        name = "Ray"

        def probe(self, path: str, token: str) -> str:
            (tmp_path / "node").mkdir(exist_ok=True)
            (tmp_path / "node" / Path(path).name).write_text(token)
            return "node7"

    with pytest.raises(InputError, match=r"could not write there .*Permission denied"):
        check_shared_out(Unwritable(), tmp_path / "out")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="worker on node7 wrote a file there that this machine cannot see"):
        check_shared_out(OwnDisk(), tmp_path / "out")  # type: ignore[arg-type]
    class Shared:
        name = "Ray"

        def probe(self, path: str, token: str) -> str:
            Path(path).write_text(token)
            return "node7"

    check_shared_out(Shared(), tmp_path)  # shared: the file is read back and removed
    assert not list(tmp_path.glob(".trainbench-probe-*"))


def test_ray_missing_extra_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    monkeypatch.delitem(sys.modules, "trainbench.executors.ray", raising=False)
    r = invoke("run", BASE, *sets(TINY), "--out", tmp_path, "--executor", "ray")
    assert r.exit_code == 2, r.output
    assert 'pip install "trainbench[ray]"' in r.output
    assert list(tmp_path.iterdir()) == []


def test_executor_options_that_do_not_fit_exit_2(tmp_path: Path) -> None:
    for bad, say in ((["--jobs", "2"], "--executor ray"), (["--address", "auto"], "--executor ray"),
                     (["--executor", "ray", "--no-wait"], "--executor slurm"),
                     (["--executor", "slurm", "--slurm-extra", "nokey"], "KEY=VALUE")):
        r = invoke("run", BASE, "--out", tmp_path, *bad)
        assert r.exit_code == 2 and say in r.output, r.output
    assert list(tmp_path.iterdir()) == []


# --- Slurm, through submitit's LocalExecutor ---


def test_slurm_runs_match_local_and_a_killed_job_is_resubmitted(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINBENCH_SLURM_CLUSTER", "local")
    ref = invoke("run", BASE, "--seeds", "2", *sets(LONG), "--cpus-per-run", "1", "--out", tmp_path / "ref")
    assert ref.exit_code == 0, ref.output
    run = tmp_path / "slurm" / "digits-baseline" / "seed1"
    killed = kill_when_checkpointed(run, at_least=20)
    r = invoke("run", BASE, "--seeds", "2", *sets(LONG), "--out", tmp_path / "slurm", "--executor", "slurm",
               "--jobs", "2")
    assert r.exit_code == 0, r.output
    assert killed
    assert "retrying digits-baseline/s1" in r.output
    assert meta(run)["resumed"][0]["from_step"] >= 20
    assert points_of(tmp_path / "slurm") == points_of(tmp_path / "ref")


def test_slurm_no_wait_prints_job_ids_and_compare_reads_later(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINBENCH_SLURM_CLUSTER", "local")
    r = invoke("run", BASE, *sets(TINY), "--out", tmp_path, "--executor", "slurm", "--no-wait")
    assert r.exit_code == 0, r.output
    assert "submitted digits-baseline seed 0: Slurm job" in r.output and "trainbench compare" in r.output
    run = tmp_path / "digits-baseline" / "seed0"
    deadline = time.monotonic() + 90
    while not (run.joinpath("meta.json").exists() and meta(run)["status"] == "completed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    c = invoke("compare", tmp_path)
    assert c.exit_code == 0 and "digits-baseline" in c.output


# --- the worker's side of the hand-over (no engine) ---


def test_stop_file_is_looked_for_at_most_every_half_second(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from trainbench.executors import worker

    clock = [100.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: clock[0])
    stop = worker.StopFile(tmp_path / "stop")
    assert not stop.requested
    worker.write_stop(tmp_path / "stop", signal.SIGTERM)
    clock[0] += 0.4
    assert not stop.requested  # polled per step, but the file is not looked at again yet
    clock[0] += 0.2
    assert stop.requested and stop.signum == signal.SIGTERM and stop.exit_code == 143


def test_progress_record_is_written_at_most_every_second(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from trainbench.executors import worker

    clock = [100.0]
    monkeypatch.setattr(worker.time, "monotonic", lambda: clock[0])
    p = worker.ProgressFile(tmp_path, "a1")
    p.start(50, None, "x/s0")
    p.update(3, loss=1.5)
    assert worker.read_progress(tmp_path, "a1")["step"] == 0  # too soon after the last write
    clock[0] += 1.0
    p.update(4)
    assert worker.read_progress(tmp_path, "a1") | {"attempt": "a1"} == {
        "attempt": "a1", "step": 4, "total": 50, "loss": 1.5, "acc": None, "label": "x/s0"}
    assert worker.read_progress(tmp_path, "another attempt") is None
