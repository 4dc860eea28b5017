"""Budgets mode (the expensive reference curve) and the fidelity metrics, on hand-built
points and end to end on the digits cyclic/budgets pair."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from trainbench.budgets import budget_recipes
from trainbench.cli import app
from trainbench.fidelity import (
    FidelityReport,
    FidelityRow,
    FidelityStudy,
    fidelity,
    pearson,
    study,
    write_study,
)
from trainbench.recipe import load_recipe
from trainbench.results import read_points
from trainbench.schedules import build_schedule
from trainbench.timeunits import Clock

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "recipes" / "digits"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STEPS_PER_EPOCH = 22  # 1437 digits training images // batch 64
BUDGET_EPOCHS = [2, 4, 8, 16, 32]
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


# --- budget_recipes ---


def test_budget_recipes_of_the_digits_reference() -> None:
    parent = load_recipe(DIGITS / "cyclic_budgets.yaml")
    assert parent["curve"] == {"mode": "budgets", "budgets": ["2ep", "4ep", "8ep", "16ep", "32ep"]}
    subs = budget_recipes(parent)
    assert [s.name for s in subs] == [f"digits-cyclic-budgets-budget{k}" for k in range(1, 6)]
    assert [s["duration"] for s in subs] == [f"{e}ep" for e in BUDGET_EPOCHS]
    for sub, epochs in zip(subs, BUDGET_EPOCHS, strict=True):
        # one cosine cycle from the peak to min_lr, after the same 1ep warmup
        assert sub["schedule"] == {**parent["schedule"], "cycles": 1, "t0": f"{epochs - 1}ep"}
        assert sub["schedule"]["warmup"] == "1ep" and sub["schedule"]["shape"] == "cosine"
        assert sub["curve"] == {"mode": "cyclic", "budgets": None}
        for key in ("seed", "device", "precision", "data", "model", "optimizer", "eval", "methods"):
            assert sub[key] == parent[key]
        assert sub.source == parent.source
        s = build_schedule(sub["schedule"]).bind(Clock(STEPS_PER_EPOCH, 64), sub["optimizer"]["lr"])
        assert s.warmup_steps == STEPS_PER_EPOCH
        assert s.curve_points() == [epochs * STEPS_PER_EPOCH]
        assert s.end_factor(s.total) == 0.0


# --- fidelity() on known numbers (dyadic values: every sum below is exact in floats) ---


def pt(epoch: float, acc: float, time_s: float, curve: int = 1) -> dict[str, float]:
    return {"step": 10 * epoch, "epoch": epoch, "test_acc": acc, "train_time_s": time_s, "curve": curve}


# a cyclic run: an evaluation off the curve, then four cycle ends
CYCLIC = [pt(1, 0.25, 0.5, curve=0),
          pt(2, 0.5, 1.0), pt(4, 0.625, 2.0), pt(8, 0.8125, 3.5), pt(16, 0.9375, 6.0)]
# the reference: the final point of each separate run
REF = [pt(2, 0.625, 1.0), pt(4, 0.75, 2.0), pt(8, 0.875, 4.0), pt(16, 0.875, 8.0)]


def test_fidelity_gaps_average_and_cost_ratio() -> None:
    report = fidelity("m", CYCLIC, REF)
    assert report.rows == [
        FidelityRow(1, 2, 0.625, 0.5, 0.125, 1.0, 1.0),
        FidelityRow(2, 4, 0.75, 0.625, 0.125, 2.0, 2.0),
        FidelityRow(3, 8, 0.875, 0.8125, 0.0625, 4.0, 3.5),
        FidelityRow(4, 16, 0.875, 0.9375, -0.0625, 8.0, 6.0)]
    assert report.avg_gap == (0.125 + 0.0625 - 0.0625) / 3  # the first point excluded
    assert report.cost_ratio == (1 + 2 + 4 + 8) / 6.0 == 2.5  # all separate runs / the one cyclic run
    assert (report.recipe, report.baseline, report.gain_correlation, report.notes) == ("m", None, None, [])


def test_fidelity_single_point_keeps_its_gap() -> None:
    report = fidelity("one", [pt(2, 0.5, 2.0)], [pt(2, 0.75, 3.0)])
    assert report.avg_gap == 0.25
    assert report.cost_ratio == 1.5
    assert [r.point for r in report.rows] == [1]


def test_fidelity_misaligned_lengths_are_noted() -> None:
    report = fidelity("m", CYCLIC, REF[:3])
    assert report.notes == ["m: 4 cyclic points vs 3 reference points; compared the first 3."]
    assert [r.gap for r in report.rows] == [0.125, 0.125, 0.0625]
    assert report.avg_gap == (0.125 + 0.0625) / 2
    assert report.cost_ratio == (1 + 2 + 4) / 3.5 == 2.0  # against the cyclic time at the last compared point
    with pytest.raises(ValueError, match=r"^m: no curve points to compare$"):
        fidelity("m", [pt(1, 0.5, 1.0, curve=0)], REF)


# baseline runs: the method's gains over it are 1/8, 1/8, 1/4, 1/4 (reference curve) and
# 0, 1/8, 1/4, 0 (cyclic curve)
BASE_CYCLIC = [pt(2, 0.5, 1.0), pt(4, 0.5, 2.0), pt(8, 0.5625, 3.0), pt(16, 0.9375, 5.0)]
BASE_REF = [pt(2, 0.5, 1.0), pt(4, 0.625, 2.0), pt(8, 0.625, 4.0), pt(16, 0.625, 8.0)]


def test_fidelity_gains_and_correlation_against_a_baseline() -> None:
    report = fidelity("m", CYCLIC, REF, "base", BASE_CYCLIC, BASE_REF)
    ref_gains = [r.ref_gain for r in report.rows]
    cyc_gains = [r.cyclic_gain for r in report.rows]
    assert ref_gains == [0.125, 0.125, 0.25, 0.25]
    assert cyc_gains == [0.0, 0.125, 0.25, 0.0]
    # by hand: x = [1,1,2,2]/8, y = [0,1,2,0]/8; mean 1.5/8 and 0.75/8;
    # sum dx*dy = (-.5*-.75 + -.5*.25 + .5*1.25 + .5*-.75)/64 = 0.5/64,
    # sum dx^2 = 1/64, sum dy^2 = 2.75/64 => r = 0.5 / sqrt(2.75)
    assert report.gain_correlation == pytest.approx(0.5 / math.sqrt(2.75), rel=1e-12)
    assert report.gain_correlation == pytest.approx(statistics.correlation(ref_gains, cyc_gains), rel=1e-12)
    assert report.baseline == "base" and report.notes == []
    assert report.avg_gap == (0.125 + 0.0625 - 0.0625) / 3  # the gaps do not depend on the baseline


def test_pearson_exact_and_undefined() -> None:
    assert pearson([0.0, 0.125, 0.25], [0.0, 0.25, 0.125]) == 0.5
    assert pearson([1.0, 2.0, 3.0], [-2.0, -4.0, -6.0]) == -1.0
    assert pearson([1.0, 2.0], [1.0, 2.0]) is None  # fewer than 3 points
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None  # no variance
    assert pearson([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]) is None


UNDEFINED = "gain correlation undefined: needs 3+ points with varying gains."


def test_fidelity_correlation_undefined_cases_are_noted() -> None:
    two = fidelity("m", CYCLIC, REF, "base", BASE_CYCLIC[:2], BASE_REF[:2])
    assert two.gain_correlation is None
    assert two.notes == ["base: 2 points vs 4 for m; compared the first 2.", UNDEFINED]
    # every metric covers the same points: those with a baseline to compare against
    assert [(r.point, r.gap, r.ref_gain, r.cyclic_gain) for r in two.rows] == [(1, 0.125, 0.125, 0.0),
                                                                             (2, 0.125, 0.125, 0.125)]
    assert (two.avg_gap, two.cost_ratio) == (0.125, (1 + 2) / 2.0)
    # the baseline's own curves misaligned: noted under its name
    odd = fidelity("m", CYCLIC, REF, "base", BASE_CYCLIC, BASE_REF[:3])
    assert odd.notes == ["base: 4 cyclic points vs 3 reference points; compared the first 3.",
                         "base: 3 points vs 4 for m; compared the first 3."]
    assert len(odd.rows) == 3 and odd.gain_correlation == pytest.approx(
        statistics.correlation([0.125, 0.125, 0.25], [0.0, 0.125, 0.25]), rel=1e-12)
    flat = fidelity("m", CYCLIC, REF, "base", CYCLIC, [dict(p, test_acc=p["test_acc"] - 0.125) for p in REF])
    assert [r.ref_gain for r in flat.rows] == [0.125] * 4  # no variance
    assert [r.cyclic_gain for r in flat.rows] == [0.0] * 4
    assert flat.gain_correlation is None and flat.notes == [UNDEFINED]


def test_write_study_json_csv_markdown_and_plots(tmp_path: Path) -> None:
    s = study({"base": {0: (BASE_CYCLIC, BASE_REF)}, "m": {0: (CYCLIC, REF)}}, "base")
    files = write_study(s, tmp_path / "out")
    assert files == [tmp_path / "out" / f for f in ("fidelity.json", "fidelity.csv", "fidelity.md",
                                                   "fidelity.png", "gains.png")]
    data = json.loads(files[0].read_text())
    assert data == json.loads(json.dumps(asdict(s)))
    back = FidelityStudy(**{**data, "reports": [
        FidelityReport(**{**r, "rows": [FidelityRow(**x) for x in r["rows"]]}) for r in data["reports"]]})
    assert back == s
    assert [r["recipe"] for r in data["reports"]] == ["base", "m"]
    assert data["reports"][1]["avg_gap"] == (0.125 + 0.0625 - 0.0625) / 3
    with files[1].open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["recipe", "metric", "point", "epoch", "n", "ref_acc", "ref_ci_low",
                             "ref_ci_high",
                             "cyclic_acc", "cyclic_ci_low", "cyclic_ci_high", "gap", "gap_ci_low",
                             "gap_ci_high", "ref_time_s", "cyclic_time_s", "ref_gain", "cyclic_gain"]
    assert [r["recipe"] for r in rows] == ["base"] * 4 + ["m"] * 4
    assert {r["metric"] for r in rows} == {"test_acc"}
    m_rows = [r for r in rows if r["recipe"] == "m"]
    assert [float(r["gap"]) for r in m_rows] == [0.125, 0.125, 0.0625, -0.0625]
    assert [float(r["ref_gain"]) for r in m_rows] == [0.125, 0.125, 0.25, 0.25]
    assert {r["gap_ci_low"] for r in rows} == {""}  # one seed: no interval
    md = files[2].read_text()
    assert "| m | 1 | 4 | +4.17 | 2.50x | +18.75 / +9.38 | 0.302 |" in md  # avg gap 1/24; gains 3/16, 3/32
    assert md.count("## ") == 2
    for png in files[3:]:
        assert png.read_bytes()[:8] == PNG_MAGIC
    # without a baseline: no gains, no scatter plot
    files = write_study(study({"m": {0: (CYCLIC, REF)}}), tmp_path / "nobase")
    assert [f.name for f in files] == ["fidelity.json", "fidelity.csv", "fidelity.md", "fidelity.png"]
    with (tmp_path / "nobase" / "fidelity.csv").open() as f:
        assert [(r["ref_gain"], r["cyclic_gain"]) for r in csv.DictReader(f)] == [("", "")] * 4
    assert json.loads(files[0].read_text())["gain_correlation"] is None


# --- end to end: the digits cyclic run and its budgets reference (one training of each) ---


@pytest.fixture(scope="module")
def digits_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # cpu: bitwise-reproducible kernels, so the first budget run repeats the cyclic run's
    # first cycle exactly
    out = tmp_path_factory.mktemp("digits-pair")
    result = invoke("run", DIGITS / "cyclic.yaml", DIGITS / "cyclic_budgets.yaml", "--device", "cpu",
                    "--out", out)
    assert result.exit_code == 0, result.output
    return {"out": out, "output": result.output, "cyclic": out / "digits-cyclic" / "seed0",
            "budgets": out / "digits-cyclic-budgets" / "seed0"}


CURVE_STEPS = [e * STEPS_PER_EPOCH for e in BUDGET_EPOCHS]  # 44, 88, 176, 352, 704


def test_cyclic_run_has_a_point_at_each_cycle_end(digits_pair: dict[str, Any]) -> None:
    run = digits_pair["cyclic"]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "completed"
    assert (meta["total_steps"], meta["steps_per_epoch"]) == (704, STEPS_PER_EPOCH)
    assert meta["curve_steps"] == CURVE_STEPS == [44, 88, 176, 352, 704]
    points = read_points(run / "points.csv")
    assert [p["step"] for p in points if p["curve"] == 1] == CURVE_STEPS
    assert [p for p in points if p["curve"] != 1] == []  # eval.every null: nothing else
    assert [p["epoch"] for p in points] == BUDGET_EPOCHS
    assert [p["lr"] for p in points] == [0.0] * 5  # min_lr at every cycle end
    times = [p["train_time_s"] for p in points]
    assert times == sorted(times) and times[0] > 0
    assert (run / "curve.png").read_bytes()[:8] == PNG_MAGIC


def test_budgets_run_has_one_completed_run_per_budget(digits_pair: dict[str, Any]) -> None:
    run = digits_pair["budgets"]
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == [f"budget{k}" for k in range(1, 6)]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["curve_mode"] == "budgets"
    assert meta["budgets"] == ["2ep", "4ep", "8ep", "16ep", "32ep"]
    finals = []
    for k, epochs in enumerate(BUDGET_EPOCHS, 1):
        sub = run / f"budget{k}"
        sub_meta = json.loads((sub / "meta.json").read_text())
        assert sub_meta["status"] == "completed" and sub_meta["name"] == f"digits-cyclic-budgets-budget{k}"
        assert sub_meta["curve_steps"] == [epochs * STEPS_PER_EPOCH]
        sub_points = read_points(sub / "points.csv")
        assert sub_points[-1]["step"] == epochs * STEPS_PER_EPOCH
        assert sub_points[-1]["curve"] == 1 and sub_points[-1]["lr"] == 0.0
        assert load_recipe(sub / "recipe.yaml")["duration"] == f"{epochs}ep"  # re-runnable as is
        finals.append(sub_points[-1])
    points = read_points(run / "points.csv")
    assert len(points) == 5 and [p["curve"] for p in points] == [1] * 5
    assert [p["epoch"] for p in points] == BUDGET_EPOCHS
    assert [p["test_acc"] for p in points] == [f["test_acc"] for f in finals]
    assert [p["train_time_s"] for p in points] == [f["train_time_s"] for f in finals]
    assert points == finals  # each row is that run's own final point, its own training time


def test_fidelity_reuses_the_runs_and_reports_them(digits_pair: dict[str, Any]) -> None:
    out = digits_pair["out"]
    metas = {p: p.read_text() for p in out.rglob("meta.json")}
    result = invoke("fidelity", DIGITS / "cyclic.yaml", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.count("already completed") == 2
    assert "run 1/" not in result.output  # nothing trained again
    assert {p: p.read_text() for p in out.rglob("meta.json")} == metas
    cyclic = read_points(digits_pair["cyclic"] / "points.csv")
    ref = read_points(digits_pair["budgets"] / "points.csv")
    doc = json.loads((out / "fidelity" / "digits-cyclic" / "fidelity.json").read_text())
    assert (doc["baseline"], doc["notes"], len(doc["reports"])) == (None, [], 1)
    report = doc["reports"][0]
    assert (report["recipe"], report["baseline"], report["notes"], report["seeds"]) == (
        "digits-cyclic", None, [], [0])
    assert [(r["point"], r["epoch"], r["ref_acc"], r["cyclic_acc"], r["gap"], r["ref_time_s"],
             r["cyclic_time_s"]) for r in report["rows"]] == [
        (i, c["epoch"], f["test_acc"], c["test_acc"], f["test_acc"] - c["test_acc"], f["train_time_s"],
         c["train_time_s"]) for i, (c, f) in enumerate(zip(cyclic, ref, strict=True), 1)]
    # budget 1 (1ep warmup + one 1ep cycle) is the same computation as the cyclic run's first cycle
    assert report["rows"][0]["gap"] == 0.0
    assert report["rows"][0]["ref_acc"] == report["rows"][0]["cyclic_acc"] == cyclic[0]["test_acc"]
    gaps = [r["gap"] for r in report["rows"]]
    assert report["avg_gap"] == sum(gaps[1:]) / 4
    assert report["cost_ratio"] == sum(f["train_time_s"] for f in ref) / cyclic[-1]["train_time_s"]
    assert (out / "fidelity" / "digits-cyclic" / "fidelity.png").read_bytes()[:8] == PNG_MAGIC
    assert "mean gap = reference - cyclic, first point excluded" in result.output


def test_fidelity_refuses_a_cosine_recipe(tmp_path: Path) -> None:
    result = invoke("fidelity", ROOT / "recipes" / "quickstart.yaml", "--out", tmp_path)
    assert result.exit_code == 2
    assert (f"{ROOT / 'recipes' / 'quickstart.yaml'}: fidelity compares a cyclic run with separate runs at "
            "its cycle ends, so the recipe needs schedule.name cyclic or sgdr (got 'cosine') and the default "
            "curve section.") in result.output
    assert list(tmp_path.iterdir()) == []  # refused before anything ran


def test_show_lr_plot_writes_a_png(tmp_path: Path) -> None:
    plot = tmp_path / "lr.png"
    result = invoke("show", DIGITS / "cyclic.yaml", "--lr-plot", plot)
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert "duration: 32ep" in result.output
    assert "(704 steps)" in result.output
