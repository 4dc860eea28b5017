"""`trainbench compare` on run directories written by the real engine (tiny digits runs
trained once for the module): every --x axis in csv and json, the numbers checked against
the points.csv the engine wrote (whose integer columns read back as int)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.engine import run_recipe
from trainbench.recipe import load_recipe
from trainbench.results import RunDir

runner = CliRunner()
BATCH = 64
SEEDS = (0, 1)

# 128 training images in batches of 64: 2 steps an epoch. A cyclic schedule with three
# 1-epoch cycles (curve points at epochs 1, 2, 3) and a 1-epoch dense run pruned by IMP in
# two 1-epoch rounds to 75% (curve points at sparsity 0, 0.5, 0.75, epochs 1, 2, 3).
BASE = f"""
seed: 0
device: cpu
data: {{dataset: digits, batch_size: {BATCH}, train_subset: 128, test_subset: 128}}
model: {{name: small_cnn, width: 4}}
optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}
eval: {{every: null}}
checkpoint: {{curve_points: false, minutes: null}}
"""
CYCLIC = "name: tiny-cyclic\nschedule: {name: cyclic, warmup: 0ep, t0: 1ep, t_mult: 1, cycles: 3}\n"
IMP = ("name: tiny-imp\nduration: 1ep\nschedule: {name: cosine, warmup: 0ep}\n"
       "methods:\n  prune: {schedule: imp, goal: 0.75, phases: 2, retrain: 1ep, retrain_schedule: llr}\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real runs (2 recipes x 2 seeds), about a second each on a free CPU. The run's
    curve.png is not drawn (matplotlib costs more than the training; compare never reads it)."""
    import torch

    from trainbench import plots

    root = tmp_path_factory.mktemp("engine-runs")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "plot_run_curve", lambda *a, **k: None)
        torch.set_num_threads(1)  # tiny convolutions: threads only contend
        try:
            for body in (CYCLIC, IMP):
                src = root / f"{body.split()[1]}.yaml"
                src.write_text(BASE + body)
                recipe = load_recipe(src)
                for seed in SEEDS:
                    run = RunDir(root / "out" / recipe.name / f"seed{seed}")
                    outcome = run_recipe(recipe.with_seed(seed), run)
                    assert outcome.status == "completed", outcome.message
        finally:
            torch.set_num_threads(threads)
    return root / "out"


def curves(out: Path, name: str, col: str) -> list[list[tuple[float, float]]]:
    """Each seed's (col, test_acc) curve points, read from points.csv with the csv module."""
    seeds = []
    for seed in SEEDS:
        with (out / name / f"seed{seed}" / "points.csv").open() as f:
            rows = [r for r in csv.DictReader(f) if r["curve"] == "1"]
        seeds.append([(float(r[col]), float(r["test_acc"])) for r in rows])
    return seeds


def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def test_engine_writes_integer_samples_and_three_curve_points(trained: Path) -> None:
    for name in ("tiny-cyclic", "tiny-imp"):
        with (trained / name / "seed0" / "points.csv").open() as f:
            rows = [r for r in csv.DictReader(f) if r["curve"] == "1"]
        assert [r["epoch"] for r in rows] == ["1.0", "2.0", "3.0"]
        # The bug's premise: samples is written (and read back) as an integer.
        samples = [r["samples"] for r in rows]
        assert samples == [str(int(r["step"]) * BATCH) for r in rows] == ["128", "256", "384"]


@pytest.mark.parametrize("x, col", [("time", "train_time_s"), ("epochs", "epoch"), ("samples", "samples")])
def test_every_cost_axis_in_json_matches_points_csv(trained: Path, x: str, col: str) -> None:
    result = invoke("compare", trained, "--x", x, "--format", "json", "--baseline", "tiny-cyclic")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["x_column"] == col
    recs = {r["recipe"]: r for r in doc["recipes"]}
    assert list(recs) == ["tiny-cyclic", "tiny-imp"]
    for name, rec in recs.items():
        seeds = curves(trained, name, col)
        assert rec["n"] == 2 and rec["curve_points"] == 3
        assert [p["n"] for p in rec["curve"]] == [2, 2, 2]
        assert [p["cost"] for p in rec["curve"]] == pytest.approx(
            [mean([s[i][0] for s in seeds]) for i in range(3)], rel=1e-12)
        assert [p["acc"] for p in rec["curve"]] == pytest.approx(
            [mean([s[i][1] for s in seeds]) for i in range(3)], rel=1e-12)
        assert rec["final_acc"] == pytest.approx(mean([s[-1][1] for s in seeds]), rel=1e-12)
        assert rec["cost"] == pytest.approx(mean([s[-1][0] for s in seeds]), rel=1e-12)
        if x == "samples":
            assert [p["cost"] for p in rec["curve"]] == [128.0, 256.0, 384.0]  # step * batch size
        if x == "epochs":
            assert [p["cost"] for p in rec["curve"]] == [1.0, 2.0, 3.0]
    assert recs["tiny-cyclic"]["speedup"] == 1.0
    if x != "time":  # both recipes' points fall at epochs 1, 2, 3 (times vary)
        assert doc["auc_span"] == ([1.0, 3.0] if x == "epochs" else [128.0, 384.0])
        assert all(r["auc"] is not None for r in recs.values())
    assert any(r["pareto"] for r in recs.values())


@pytest.mark.parametrize("x", ["time", "epochs", "samples", "sparsity"])
def test_every_axis_in_csv_has_filled_rows(trained: Path, x: str) -> None:
    result = invoke("compare", trained, "--x", x, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    expected = ["tiny-imp"] if x == "sparsity" else ["tiny-cyclic", "tiny-imp"]
    assert [r["recipe"] for r in rows] == expected
    col = {"time": "train_time_s", "epochs": "epoch", "samples": "samples", "sparsity": "sparsity"}[x]
    for row in rows:
        seeds = curves(trained, row["recipe"], col)
        assert row["n"] == "2" and row["curve_points"] == "3" and row["x"] == x
        assert float(row["final_acc"]) == pytest.approx(mean([s[-1][1] for s in seeds]), rel=1e-12)
        assert float(row["cost"]) == pytest.approx(mean([s[-1][0] for s in seeds]), rel=1e-12)
        assert float(row["best_acc"]) == pytest.approx(max(mean([s[i][1] for s in seeds]) for i in range(3)))
        if x != "time":  # the same costs for every run (times vary: their ranges may not overlap)
            assert row["auc"] and float(row["auc_lo"]) == pytest.approx(seeds[0][0][0], abs=2e-3)
    assert any(row["pareto"] == "True" for row in rows)


def test_sparsity_axis_on_an_imp_run(trained: Path) -> None:
    result = invoke("compare", trained, "--x", "sparsity", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (imp,) = doc["recipes"]
    # IMP to 75% in two rounds: 1 - 0.25 ** (k / 2), counted on the pruned layers' weights.
    assert [p["cost"] for p in imp["curve"]] == pytest.approx([0.0, 0.5, 0.75], abs=2e-3)
    assert doc["auc_span"] == pytest.approx([0.0, imp["curve"][-1]["cost"]])
    # The cyclic runs have no sparsity column: named, left out.
    assert sum("no 'sparsity' column" in p for p in doc["problems"]) == 2


def test_loss_metric_on_engine_runs_ranks_lower_first(trained: Path) -> None:
    result = invoke("compare", trained, "--x", "samples", "--metric", "test_loss", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["lower_is_better"] is True
    for rec in doc["recipes"]:
        seeds = []
        for seed in SEEDS:
            with (trained / rec["recipe"] / f"seed{seed}" / "points.csv").open() as f:
                seeds.append([float(r["test_loss"]) for r in csv.DictReader(f) if r["curve"] == "1"])
        means = [mean([s[i] for s in seeds]) for i in range(3)]
        assert [p["acc"] for p in rec["curve"]] == pytest.approx(means, rel=1e-12)
        assert rec["best_acc"] == pytest.approx(min(means), rel=1e-12)
