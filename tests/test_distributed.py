"""One run on several processes: torch.distributed (gloo on this CPU), DDP and torch's launcher.

Few launches, each a real 2-process gloo job on the quickstart (digits): an external
``python -m torch.distributed.run`` run, a ``--nproc-per-node 2`` run interrupted by SIGINT
to its rank 1 and resumed, and one whose rank 1 is killed. The model is BatchNorm-free
(``model.norm: none``): with per-rank BatchNorm the 2-process run would normalise over half
batches, so its curve would legitimately differ from the 1-process run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from trainbench import checkpoint
from trainbench.cli import app
from trainbench.data.base import ImageData
from trainbench.data.loader import DeviceData
from trainbench.distributed import exit_code_of
from trainbench.errors import InputError
from trainbench.recipe import load_recipe
from trainbench.results import TIMING_COLUMNS, read_points
from trainbench.runner import plan_runs

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
# 8 steps per epoch, 480 steps: long enough to be interrupted after its first checkpoint.
SETS = ["duration=60ep", "schedule.warmup=0ba", "data.train_subset=512", "eval.every=10ep",
        "model.norm=none", "model.width=16", "checkpoint.every=60ba", "device=cpu"]
TIMING = set(TIMING_COLUMNS)
# One thread per process, whatever the cores: the same kernels (and float sums) in every run.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
runner = CliRunner()
# Real multi-process jobs: several launches in the module's fixture (about 40 s on a quiet
# 2-core machine; far more on a loaded one).
pytestmark = pytest.mark.timeout(1800)


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def trainbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainbench", "run", str(QUICKSTART), *sets(SETS), *args]


def rank_pid(launcher: subprocess.Popen, rank: int, timeout: float = 120) -> int:
    """The pid of the launcher's worker process of ``rank`` (from its environment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in Path("/proc").glob("[0-9]*"):
            try:
                if int((child / "stat").read_text().rsplit(")", 1)[1].split()[1]) != launcher.pid:
                    continue
                if f"RANK={rank}".encode() in (child / "environ").read_bytes().split(b"\0"):
                    return int(child.name)
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.05)
    raise AssertionError(f"no rank {rank} process under the launcher")


def wait_for_checkpoint(run: Path, proc: subprocess.Popen, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if found := checkpoint.list_checkpoints(run):
            return found[-1][0]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


def same_points(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in TIMING} == \
            {k: v for k, v in y.items() if k not in TIMING}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The module's runs, each made once: 'one' (1 process, in this process), 'external'
    (torch.distributed.run, 2 processes), 'resumed' (--nproc-per-node 2, SIGINT to rank 1,
    then --resume)."""
    out = tmp_path_factory.mktemp("ddp")
    one = runner.invoke(app, ["run", str(QUICKSTART), *sets(SETS), "--out", str(out / "one")])
    assert one.exit_code == 0, one.output
    external = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "trainbench", "run", str(QUICKSTART), *sets(SETS), "--out", str(out / "external")],
        env=ENV, capture_output=True, text=True, timeout=600)
    assert external.returncode == 0, external.stderr[-3000:]

    proc = subprocess.Popen(trainbench("--out", str(out / "resumed"), "--nproc-per-node", "2"), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = out / "resumed" / "quickstart" / "seed0"
    wait_for_checkpoint(run, proc)
    os.kill(rank_pid(proc, 1), signal.SIGINT)  # not the rank that writes: the flag must travel
    stdout, stderr = proc.communicate(timeout=300)
    interrupted = {"code": proc.returncode, "meta": json.loads((run / "meta.json").read_text()),
                   "step": checkpoint.latest_step(run), "output": stdout + stderr}
    (out / "interrupted.json").write_text(json.dumps(interrupted))
    resumed = subprocess.run(trainbench("--out", str(out / "resumed"), "--nproc-per-node", "2", "--resume"),
                             env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"one": out / "one" / "quickstart" / "seed0", "resumed": run,
            "external": out / "external" / "quickstart" / "seed0", "interrupted": out / "interrupted.json"}


def test_two_processes_follow_the_single_process_curve(runs: dict[str, Path]) -> None:
    """Same global batch, same sample stream, gradients averaged by DDP, test set sharded and
    its sums all-reduced: the 2-process curve is the 1-process one up to float reassociation."""
    one, two = read_points(runs["one"] / "points.csv"), read_points(runs["external"] / "points.csv")
    assert [p["step"] for p in one] == [p["step"] for p in two] == [80, 160, 240, 320, 400, 480]
    for a, b in zip(one, two, strict=True):
        # Stated tolerance: 1 % on the losses (float reassociation grows over 480 steps: the
        # largest difference seen was 0.1 %, test_loss at step 320), 1 pp on accuracy.
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-2)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-2)
        assert abs(b["test_acc"] - a["test_acc"]) <= 0.01  # within 1 pp
        assert b["samples"] == a["samples"] and b["lr"] == a["lr"]
    assert two[-1]["test_acc"] > 0.9  # it learned
    # What a point cost: the training time on each of the 2 devices.
    assert [p["device_time_s"] for p in two] == [2 * p["train_time_s"] for p in two]
    assert [p["device_time_s"] for p in one] == [p["train_time_s"] for p in one]
    meta = json.loads((runs["external"] / "meta.json").read_text())
    assert (meta["status"], meta["world_size"], meta["nodes"], meta["backend"]) == ("completed", 2, 1, "gloo")
    assert meta["batch_size"] == 64  # the global batch
    assert json.loads((runs["one"] / "meta.json").read_text())["world_size"] == 1
    # Rank 0 alone wrote; model.pt is the plain module's state_dict (no DDP 'module.' prefix).
    weights = torch.load(runs["external"] / "model.pt", weights_only=True)
    assert weights.keys() == torch.load(runs["one"] / "model.pt", weights_only=True).keys()
    assert not any(k.startswith("module.") for k in weights)


def test_sigint_to_any_rank_stops_all_and_resume_equals_uninterrupted(runs: dict[str, Path]) -> None:
    stopped = json.loads(runs["interrupted"].read_text())
    assert stopped["code"] == 130, stopped["output"][-3000:]
    meta = stopped["meta"]
    assert meta["status"] == "interrupted" and "--resume" in meta["message"]
    step = stopped["step"]
    assert meta["checkpoint_step"] == step and step < meta["total_steps"]
    assert step % 10 == 0  # where the ranks combine their stop flags
    assert len(checkpoint.list_checkpoints(runs["resumed"])) == 0  # completed since: removed
    final = json.loads((runs["resumed"] / "meta.json").read_text())
    assert final["status"] == "completed" and final["resumed"][0]["from_step"] == step
    # The launcher's run (--nproc-per-node), interrupted and resumed, equals the external
    # torchrun run on every non-timing column, bit for bit.
    same_points(read_points(runs["resumed"] / "points.csv"), read_points(runs["external"] / "points.csv"))


def test_killed_rank_leaves_a_failed_resumable_run(tmp_path: Path) -> None:
    proc = subprocess.Popen(trainbench("--out", str(tmp_path), "--nproc-per-node", "2"), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "quickstart" / "seed0"
    step = wait_for_checkpoint(run, proc)
    os.kill(rank_pid(proc, 1), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-3000:]
    meta = json.loads((run / "meta.json").read_text())
    # rank 0 records the failure (gloo's broken pair), or the launcher's SIGTERM first (an
    # interruption with a checkpoint), or was killed in turn: resumable in every case
    assert meta["status"] in ("failed", "interrupted", "running")
    assert checkpoint.latest_step(run) >= step
    recipe = load_recipe(QUICKSTART, SETS)
    with pytest.raises(InputError, match="--resume"):
        plan_runs([recipe], out=tmp_path)
    (plan,) = plan_runs([recipe], out=tmp_path, resume=True)
    assert plan.resume and not plan.skip
    plan.release()


def test_batch_not_divisible_by_processes_is_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(QUICKSTART), *sets(SETS), "--out", str(tmp_path),
                                 "--nproc-per-node", "3"])
    assert result.exit_code == 2
    assert "data.batch_size 64" in result.output and "3 processes" in result.output
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def test_sync_bn_on_cpu_is_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(QUICKSTART), *sets([*SETS, "model.sync_bn=true"]),
                                 "--out", str(tmp_path), "--nproc-per-node", "2"])
    assert result.exit_code == 2 and "model.sync_bn" in result.output and "CUDA" in result.output
    assert not any(tmp_path.iterdir())


# --- the pieces, without processes ---


def loader(rank: int, world: int, n: int = 40, batch: int = 8) -> DeviceData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 6, 6), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 4
    return DeviceData(ImageData(x, y, x[:13].clone(), y[:13].clone(), 4), torch.device("cpu"),
                      batch_size=batch, eval_batch_size=4, augment=["random_crop", "hflip"],
                      crop_padding=2, normalize=True, seed=3, rank=rank, world_size=world)


@pytest.mark.parametrize("world", [2, 4])
def test_rank_slices_together_are_the_single_process_batch(world: int) -> None:
    """Batch i of the seeded permutation, sliced contiguously by rank, augmented with the
    whole batch's draws: the ranks' batches in rank order are the 1-process batch, over passes."""
    single = loader(0, 1).train_batches()
    ranks = [loader(r, world).train_batches() for r in range(world)]
    for _ in range(12):  # 5 batches a pass: crosses two reshuffles
        x, y = next(single)
        parts = [next(b) for b in ranks]
        assert all(p[0].shape[0] == 8 // world for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)


def test_test_shards_cover_the_test_set_once() -> None:
    for world in (1, 2, 3, 5):
        shards = [torch.cat([y for _, y in loader(r, world, batch=2 * world).test_batches()])
                  for r in range(world)]
        assert torch.equal(torch.cat(shards), loader(0, 1).test_y)  # 13 images, uneven shards


def test_batch_must_divide_in_the_loader() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        loader(0, 3)


def test_job_exit_code_from_ranks() -> None:
    assert exit_code_of({0: 130, 1: -15}) == 130  # rank 0 interrupted; the launcher ended rank 1
    assert exit_code_of({0: 130, 1: 143}) == 130  # rank 0 speaks for the job
    assert exit_code_of({1: -9}) == 1  # a rank killed outright: the run failed
    assert exit_code_of({0: -15, 1: -9}) == 1
    assert exit_code_of({0: 143, 1: -9}) == 1  # rank 0 took the launcher's SIGTERM after rank 1 died
    assert exit_code_of({0: 1, 1: -11}) == 1  # a crashed rank
    assert exit_code_of({0: 2, 1: 2}) == 2  # bad input
    assert exit_code_of({1: 1, 2: 143}) == 1  # a failure beats an interrupt
    assert exit_code_of({1: 130, 2: 130}) == 130
