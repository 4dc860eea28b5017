"""Trackers: TensorBoard and MLflow read back equal to the run directory, a resumed run
continues the same MLflow run, a failing tracker never fails a run, export backfills, a
missing extra is exit 2 before anything trains, wandb stays offline, and `log` is not part of
a run's identity. One tracked run (failed, then resumed) serves most assertions."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.engine import run_recipe
from trainbench.recipe import load_recipe
from trainbench.results import RunDir, flatten, read_points
from trainbench.runner import plan_runs

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
# 2 steps per epoch, 8 steps, a point every step, checkpoints at steps 4 and 8.
TRACKED = ["data.train_subset=128", "data.test_subset=64", "duration=4ep", "eval.every=1ba",
           "checkpoint.every=4ba", "log=[tensorboard, mlflow]"]
runner = CliRunner()
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")


class FailAt:
    """Stands in for the stop signal; raises at step ``k`` (after the points of steps < k):
    the run fails there, as a crash would, past its last checkpoint."""

    signum, exit_code = 2, 130

    def __init__(self, k: int) -> None:
        self.k, self.calls = k, 0

    @property
    def requested(self) -> bool:
        self.calls += 1
        if self.calls >= self.k:
            raise RuntimeError("simulated crash")
        return False


@pytest.fixture(autouse=True)
def no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in MLFLOW_ENV:
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """OUT/quickstart/seed0 tracked by TensorBoard and MLflow: crashed at step 6 (points 1-5
    logged, checkpoint at 4), then resumed to completion."""
    with pytest.MonkeyPatch.context() as mp:
        for k in MLFLOW_ENV:
            mp.delenv(k, raising=False)
        out = tmp_path_factory.mktemp("tracked")
        recipe = load_recipe(QUICKSTART, TRACKED)
        run = RunDir(out / recipe.name / "seed0")
        first = run_recipe(recipe, run, stop=FailAt(6))
        meta_failed = run.read_meta()
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
        status_failed = client.get_run(meta_failed["mlflow"]["run_id"]).info.status
        second = run_recipe(recipe, run, resume=True)
        yield {"out": out, "run": run, "recipe": recipe, "first": first, "second": second,
               "meta_failed": meta_failed, "status_failed": status_failed, "client": client}


def tb_scalars(run_path: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_path / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}, ea


def expected_scalars(points: list[dict[str, float]]) -> dict[str, list[tuple[int, float]]]:
    cols = [c for c in points[0] if c != "step"]
    return {c: [(int(p["step"]), float(p[c])) for p in points if math.isfinite(p[c])] for c in cols}


def assert_scalars_equal(got: dict[str, list[tuple[int, float]]], points: list[dict[str, float]]) -> None:
    want = expected_scalars(points)
    for col, values in want.items():
        assert [s for s, _ in got.get(col, [])] == [s for s, _ in values], col  # none: never measured
        # TensorBoard stores float32
        assert [v for _, v in got.get(col, [])] == pytest.approx([v for _, v in values], rel=1e-6), col


def test_the_tracked_run_failed_then_completed(tracked: dict[str, Any]) -> None:
    assert tracked["first"].status == "failed" and tracked["second"].status == "completed"
    assert [p["step"] for p in tracked["run"].read_points()] == list(range(1, 9))


def test_tensorboard_scalars_read_back_equal_points_csv(tracked: dict[str, Any]) -> None:
    run = tracked["run"]
    points = run.read_points()
    got, ea = tb_scalars(run.path)
    # The crashed attempt logged step 5 before its checkpoint at 4; purge_step drops it.
    assert_scalars_equal(got, points)
    lr = got["lr_per_step"]
    assert [s for s, _ in lr] == list(range(1, 9))  # 8 steps: sampled every step
    assert all(0 <= v <= 0.05 + 1e-9 for _, v in lr)
    assert lr[1][1] == pytest.approx(0.05)  # step 2 trains at the peak after a 2-step warmup
    assert ea.Tags()["images"] == ["curve"]
    assert "recipe/text_summary" in ea.Tags()["tensors"]


def test_mlflow_run_read_back_from_the_sqlite_store(tracked: dict[str, Any]) -> None:
    from trainbench.trackers.mlflow import params

    out, run, client = tracked["out"], tracked["run"], tracked["client"]
    assert (out / "mlflow.db").read_bytes()[:16] == b"SQLite format 3\x00"  # a real SQLite database
    meta = run.read_meta()
    r = client.get_run(meta["mlflow"]["run_id"])
    assert r.info.status == "FINISHED" and r.info.run_name == "quickstart/seed0"
    assert client.get_experiment(r.info.experiment_id).name == out.name  # the --out folder's name
    assert r.data.params == params(tracked["recipe"].data)
    assert r.data.params["optimizer.lr"] == "0.05" and r.data.params["data.augment"] == '["random_crop"]'
    assert "log" not in r.data.params and set(flatten(tracked["recipe"].data)) - set(r.data.params) == {"log"}
    tags = r.data.tags
    assert tags["trainbench.status"] == "completed" and tags["trainbench.device"] == meta["device"]
    assert tags["trainbench.version.torch"] == meta["versions"]["torch"]
    points = run.read_points()
    for col in ("test_acc", "train_loss", "lr", "train_time_s"):
        history = client.get_metric_history(r.info.run_id, col)
        latest = {}
        for m in sorted(history, key=lambda m: m.timestamp):
            latest[m.step] = m.value
        assert latest == {p["step"]: pytest.approx(p[col]) for p in points}, col
    names = sorted(f.path for f in client.list_artifacts(r.info.run_id))
    assert names == ["curve.png", "meta.json", "points.csv", "recipe.yaml"]
    local = Path(client.download_artifacts(r.info.run_id, "points.csv", str(out / "dl")))
    assert local.read_text() == run.points_path.read_text()
    assert str(out / "mlflow-artifacts") in r.info.artifact_uri  # beside the database, not ./mlruns


def test_resume_continues_the_same_mlflow_run(tracked: dict[str, Any]) -> None:
    client = tracked["client"]
    run_id = tracked["meta_failed"]["mlflow"]["run_id"]
    assert tracked["status_failed"] == "FAILED"
    assert tracked["run"].read_meta()["mlflow"]["run_id"] == run_id
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED" and r.data.tags["trainbench.resumed"] == "1"
    assert len(client.search_runs([r.info.experiment_id])) == 1
    assert tracked["run"].read_meta()["trackers"] == {"tensorboard": "logged", "mlflow": "logged"}


def test_a_tracker_failing_mid_run_leaves_the_run_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str],
                                                            tracked: dict[str, Any]) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    calls = {"n": 0}
    real = MlflowClient.log_batch

    def log_batch(self: Any, run_id: str, metrics: Any = (), *a: Any, **k: Any) -> Any:
        if metrics:
            calls["n"] += 1
            if calls["n"] == 2:  # the second point: the server went away
                raise MlflowException("API request failed: connection refused")
        return real(self, run_id, metrics, *a, **k)

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    # The tracked run's store, through MLflow's own variables (as --mlflow-uri sets them).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tracked['out'] / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "failing")
    recipe = load_recipe(QUICKSTART, ["data.train_subset=128", "data.test_subset=64", "duration=2ep",
                                      "eval.every=1ba", "log=[mlflow]"])
    run = RunDir(tmp_path / "quickstart" / "seed0")
    outcome = run_recipe(recipe, run)
    assert outcome.status == "completed"
    meta = run.read_meta()
    assert meta["status"] == "completed"
    assert [p["step"] for p in read_points(run.points_path)] == [1, 2, 3, 4]
    assert (run.path / "model.pt").exists() and run.curve_path.exists()
    assert meta["trackers"]["mlflow"].startswith("failed at point: MlflowException")
    err = capsys.readouterr().err
    assert err.count("warning: the mlflow tracker failed") == 1
    assert calls["n"] == 2  # switched off after the failure: no more calls
    client = tracked["client"]
    r = client.get_run(meta["mlflow"]["run_id"])
    assert client.get_experiment(r.info.experiment_id).name == "failing"
    assert r.info.artifact_uri.startswith((tracked["out"] / "mlflow-artifacts").as_uri())


def fake_run(root: Path, name: str = "quickstart", seed: int = 0, accs: tuple[float, ...] = (0.5, 0.8),
             status: str = "completed", sets: tuple[str, ...] = ()) -> RunDir:
    """A finished run directory written directly (a real resolved recipe, made-up points)."""
    recipe = load_recipe(QUICKSTART, ["data.train_subset=128", "duration=2ep", f"name={name}", *sets])
    run = RunDir(root / name / f"seed{seed}")
    run.start(recipe.with_seed(seed).to_yaml(), {"name": name, "seed": seed, "smoke": False,
                                                 "device_type": "cpu"})
    cols = ["step", "epoch", "samples", "train_time_s", "lr", "train_loss", "test_loss", "test_acc",
            "test_ece", "curve"]
    rows = [{"step": 2 * (i + 1), "epoch": float(i + 1), "samples": 128 * (i + 1),
             "train_time_s": 1.5 * (i + 1) + 0.1 * seed, "lr": 0.05 / (i + 1), "train_loss": 1.0 - a / 2,
             "test_loss": 1.0 - a / 3, "test_acc": a + 0.01 * seed, "test_ece": 0.05, "curve": 1}
            for i, a in enumerate(accs)]
    run.rewrite_points(cols, rows)
    run.update_meta(status=status, device="cpu (2 threads)", total_steps=4, steps_per_epoch=2,
                    curve_steps=[2, 4], synthetic_data=False, precision={"recipe": "fp32", "used": "fp32",
                                                                         "why": ""})
    return run


def test_export_backfills_tensorboard_and_mlflow(tmp_path: Path) -> None:
    out = tmp_path / "old-runs"
    run = fake_run(out)
    before = run.meta_path.read_text()
    result = runner.invoke(app, ["export", str(out), "--to", "tensorboard"])
    assert result.exit_code == 0, result.output
    assert f"exported {run.path}" in result.output
    got, ea = tb_scalars(run.path)
    assert_scalars_equal(got, run.read_points())
    assert [s for s, _ in got["lr_per_step"]] == [1, 2, 3, 4]  # rebuilt from recipe.yaml
    assert got["lr_per_step"][1][1] == pytest.approx(0.05)
    assert ea.Tags()["images"] == ["curve"] or not run.curve_path.exists()

    result = runner.invoke(app, ["export", str(out), "--to", "mlflow", "--mlflow-experiment", "backfill"])
    assert result.exit_code == 0, result.output
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("backfill")
    (r,) = client.search_runs([exp.experiment_id])
    assert r.info.status == "FINISHED" and r.data.tags["trainbench.run_dir"] == str(run.path.resolve())
    assert [m.value for m in client.get_metric_history(r.info.run_id, "test_acc")] == [0.5, 0.8]
    assert sorted(f.path for f in client.list_artifacts(r.info.run_id)) == ["meta.json", "points.csv",
                                                                              "recipe.yaml"]
    assert run.meta_path.read_text() == before  # a backfill leaves the run directory as it was
    # Twice: skipped, not duplicated; --force replaces it.
    again = runner.invoke(app, ["export", str(out), "--to", "mlflow", "--mlflow-experiment", "backfill"])
    assert "skipped: already in mlflow" in again.output
    forced = runner.invoke(app, ["export", str(out), "--to", "mlflow", "--mlflow-experiment", "backfill",
                                 "--force"])
    assert "replaced" in forced.output
    assert len(client.search_runs([exp.experiment_id])) == 1
    # The artifact copies of meta.json are not runs to compare.
    cmp = runner.invoke(app, ["compare", str(out), "--format", "json"])
    assert [len(r["run_dirs"]) for r in json.loads(cmp.stdout)["recipes"]] == [1]


@pytest.mark.parametrize(("how", "module"), [(["--log", "mlflow"], "mlflow"),
                                             (["--set", "log=[tensorboard]"], "tensorboard"),
                                             (["--log", "wandb"], "wandb")])
def test_a_missing_extra_is_exit_2_before_anything_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          how: list[str], module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails, as when not installed
    tiny = ["--set", "data.train_subset=128", "--set", "data.test_subset=64", "--set", "duration=2ep"]
    result = runner.invoke(app, ["run", str(QUICKSTART), "--out", str(tmp_path / "o"), *tiny, *how])
    assert result.exit_code == 2, result.output
    assert f'pip install "trainbench[{module}]"' in result.output
    assert not (tmp_path / "o" / "quickstart").exists()
    if module != "wandb":
        exp = runner.invoke(app, ["export", str(tmp_path), "--to", module])
        assert exp.exit_code == 2 and f'pip install "trainbench[{module}]"' in exp.output


def test_an_unknown_tracker_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(QUICKSTART), "--out", str(tmp_path), "--log", "tensorbord"])
    assert result.exit_code == 2 and "unknown tracker 'tensorbord'" in result.output
    assert "tensorboard" in result.output
    bad = runner.invoke(app, ["validate", str(QUICKSTART), "--set", "log=[neptune]"])
    assert bad.exit_code == 2 and "log" in bad.output and "mlflow" in bad.output


def test_log_is_not_part_of_a_runs_identity(tmp_path: Path) -> None:
    """A completed run is skipped (and an unfinished one resumed) whatever trackers are asked
    for; compare averages such runs as seeds of one recipe."""
    fake_run(tmp_path)
    fake_run(tmp_path, seed=1, sets=("log=[tensorboard]",))
    for log in ("[]", "[mlflow, wandb]"):
        recipe = load_recipe(QUICKSTART, ["data.train_subset=128", "duration=2ep", f"log={log}"])
        plans = plan_runs([recipe], out=tmp_path, seeds=2)
        assert all(p.skip.startswith("already completed") for p in plans)
    cmp = runner.invoke(app, ["compare", str(tmp_path), "--format", "json"])
    assert [len(r["run_dirs"]) for r in json.loads(cmp.stdout)["recipes"]] == [2]


def test_wandb_runs_offline_without_a_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no `wandb login` here
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    from trainbench.trackers.wandb import mode

    assert mode() == "offline"
    recipe = load_recipe(QUICKSTART, ["data.train_subset=128", "data.test_subset=64", "duration=2ep",
                                      "log=[wandb]"])
    run = RunDir(tmp_path / "quickstart" / "seed0")
    assert run_recipe(recipe, run).status == "completed"
    meta = run.read_meta()
    assert meta["trackers"] == {"wandb": "logged"} and meta["wandb"]["mode"] == "offline"
    (offline,) = (run.path / "wandb").glob("offline-run-*")
    assert meta["wandb"]["run_id"] in offline.name
    assert (offline / "files" / "points.csv").read_text() == run.points_path.read_text()
    assert list(offline.glob("run-*.wandb"))


def test_cli_import_does_not_import_the_trackers_or_plotly() -> None:
    check = subprocess.run(
        [sys.executable, "-c", "import trainbench.cli, sys; "
         "bad = [m for m in ('mlflow', 'plotly', 'wandb', 'tensorboard', 'torch') if m in sys.modules]; "
         "assert not bad, bad"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
