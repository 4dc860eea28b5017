"""The fidelity study over seeds and methods: exact aggregation on hand-built points, and
`trainbench fidelity --baseline B M1 M2 --seeds 2` on run directories written by the test
(reused, nothing trained); bad input exits 2 before anything is written."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.compare.significance import pearson_interval
from trainbench.fidelity import study
from trainbench.recipe import load_recipe
from trainbench.results import POINT_COLUMNS, RunDir

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "recipes" / "digits"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def curve(accs: list[float], times: list[float] | None = None) -> list[dict[str, float]]:
    times = times or [2.0 ** i for i in range(len(accs))]
    return [{"step": 10 * 2 ** (i + 1), "epoch": 2.0 ** (i + 1), "test_acc": a, "train_time_s": t,
             "curve": 1} for i, (a, t) in enumerate(zip(accs, times, strict=True))]


# recipe -> seed -> (cyclic accuracies, reference accuracies); dyadic: sums are exact
ACCS = {
    "B": {0: ([0.5, 0.625, 0.75], [0.5, 0.75, 0.75]), 1: ([0.5, 0.75, 0.875], [0.625, 0.75, 0.875])},
    "M1": {0: ([0.625, 0.75, 0.875], [0.625, 0.875, 0.875]), 1: ([0.625, 0.875, 0.875], [0.75, 0.875, 1.0])},
    "M2": {0: ([0.5, 0.5, 0.75], [0.5, 0.625, 0.75]), 1: ([0.5, 0.625, 0.75], [0.5, 0.625, 0.625])},
}


def runs_of(accs: dict) -> dict:
    return {name: {s: (curve(c), curve(r)) for s, (c, r) in seeds.items()} for name, seeds in accs.items()}


def t_interval(values: list[float]) -> list[float]:
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=statistics.mean(values), scale=stats.sem(values))
    return [lo, hi]


def test_study_aggregates_seeds_and_methods_exactly() -> None:
    s = study(runs_of(ACCS), "B")
    assert [r.recipe for r in s.reports] == ["B", "M1", "M2"]
    assert [r.recipe for r in s.methods] == ["M1", "M2"]
    m1 = s.reports[1]
    assert m1.seeds == [0, 1] and [row.n for row in m1.rows] == [2, 2, 2]
    assert [row.ref_acc for row in m1.rows] == [0.6875, 0.875, 0.9375]
    assert [row.cyclic_acc for row in m1.rows] == [0.625, 0.8125, 0.875]
    # intervals: Student's t over the seeds, as scipy computes them
    assert m1.rows[0].ref_ci == pytest.approx(t_interval([0.625, 0.75]))
    assert m1.rows[1].cyclic_ci == pytest.approx(t_interval([0.75, 0.875]))
    # the gap is paired by seed: seed 0 gives 1/8, seed 1 gives 0 at point 2
    assert m1.rows[1].gap == 0.0625 and m1.rows[1].gap_ci == pytest.approx(t_interval([0.125, 0.0]))
    assert m1.rows[1].ref_ci == [0.875, 0.875]  # both seeds agree: no spread
    # baseline point 3: seed 0 and seed 1 each have gap 0, so the paired interval has no width
    assert s.reports[0].rows[2].gap == 0.0 and s.reports[0].rows[2].gap_ci == [0.0, 0.0]
    # mean gap: each seed's gaps over points 2 and 3, then the mean over seeds
    assert m1.avg_gap == 0.0625 and m1.avg_gap_ci == pytest.approx([0.0625, 0.0625])  # both seeds 1/16
    m2 = s.reports[2]
    assert m2.avg_gap == ((0.125 + 0.0) / 2 + (0.0 - 0.125) / 2) / 2 == 0.0
    # gains over the baseline's means: B ref [9/16, 3/4, 13/16], cyclic [1/2, 11/16, 13/16]
    assert [row.ref_gain for row in m1.rows] == [0.125, 0.125, 0.125]
    assert [row.cyclic_gain for row in m1.rows] == [0.125, 0.125, 0.0625]
    assert [row.ref_gain for row in m2.rows] == [-0.0625, -0.125, -0.125]
    assert [row.cyclic_gain for row in m2.rows] == [0.0, -0.125, -0.0625]
    xs = [0.125, 0.125, 0.125, -0.0625, -0.125, -0.125]
    ys = [0.125, 0.125, 0.0625, 0.0, -0.125, -0.0625]
    assert s.gain_correlation == pytest.approx(statistics.correlation(xs, ys), rel=1e-12)
    assert m1.gain_correlation is None  # its own reference gains do not vary
    assert m2.gain_correlation == pytest.approx(statistics.correlation(xs[3:], ys[3:]), rel=1e-12)
    assert s.gain_correlation_ci == pytest.approx(list(pearson_interval(xs, ys)))
    assert s.gain_correlation_ci[0] <= s.gain_correlation <= s.gain_correlation_ci[1]
    assert (s.pairs, s.resamples) == (6, 10_000)
    # times 1, 2, 4 everywhere: separate runs 7 s, a cyclic run 4 s
    assert m1.cost_ratio == s.cost_ratio == 1.75
    assert s.reports[0].rows[0].ref_gain == 0.0 and s.reports[0].gain_correlation is None


def test_each_recipe_is_judged_by_the_first_metric_its_runs_hold() -> None:
    # M1 is a SWA recipe: its test_acc_swa is its accuracy; the baseline has no such column
    # and is read from test_acc, so M1's gains are its SWA accuracy minus B's plain one.
    runs = runs_of({k: ACCS[k] for k in ("B", "M1")})
    for cyc, ref in runs["M1"].values():
        for p in (*cyc, *ref):
            p["test_acc_swa"] = p["test_acc"] + 0.125
        cyc[0]["test_acc_swa"] = float("nan")  # a point without the column: not this metric
    s = study(runs, "B", ["test_acc_swa"])
    assert [r.metric for r in s.reports] == ["test_acc", "test_acc"]  # M1 lacks it at one point
    for cyc, _ in runs["M1"].values():
        cyc[0]["test_acc_swa"] = cyc[0]["test_acc"] + 0.125
    s = study(runs, "B", ["test_acc_ema", "test_acc_swa"])
    b, m1 = s.reports
    assert (b.metric, m1.metric) == ("test_acc", "test_acc_swa")
    plain = study(runs_of({k: ACCS[k] for k in ("B", "M1")}), "B")
    assert [r.ref_gain for r in m1.rows] == [r.ref_gain + 0.125 for r in plain.reports[1].rows]
    assert [r.cyclic_acc for r in m1.rows] == [r.cyclic_acc + 0.125 for r in plain.reports[1].rows]
    assert m1.avg_gap == plain.reports[1].avg_gap  # both curves shifted alike


def test_pearson_interval_is_a_seeded_bootstrap_of_the_pairs() -> None:
    xs, ys = [0.0, 1.0, 2.0, 3.0, 4.0], [0.1, 0.9, 2.2, 2.8, 4.1]
    a, b = pearson_interval(xs, ys), pearson_interval(xs, ys)
    assert a == b  # fixed seed
    assert 0.9 < a[0] < statistics.correlation(xs, ys) <= a[1] <= 1.0
    # the 2.5% and 97.5% percentiles, as scipy's own paired percentile bootstrap finds them
    xs2 = [float(i) for i in range(12)]
    ys2 = [0.3, -1.2, 2.5, 0.1, 3.9, 1.0, 2.2, 5.1, 1.7, 4.4, 2.9, 6.0]
    def r(x, y, axis=-1):
        dx, dy = x - x.mean(axis, keepdims=True), y - y.mean(axis, keepdims=True)
        return (dx * dy).sum(axis) / np.sqrt((dx * dx).sum(axis) * (dy * dy).sum(axis))

    ref = stats.bootstrap((xs2, ys2), r, paired=True, vectorized=True, n_resamples=10_000,
                          method="percentile", random_state=1).confidence_interval
    assert pearson_interval(xs2, ys2) == pytest.approx((ref.low, ref.high), abs=0.03)
    assert pearson_interval([1.0, 2.0], [1.0, 2.0]) is None
    assert pearson_interval([1.0, -1.0, 1.0, -1.0], [1.0, -1.0, 1.0, -1.0]) == pytest.approx((1.0, 1.0))


def test_seeds_with_different_lengths_are_cut_and_noted() -> None:
    accs = {"M": {0: ([0.5, 0.625, 0.75], [0.5, 0.75, 0.75]), 1: ([0.5, 0.75], [0.625, 0.75])}}
    s = study(runs_of(accs))
    assert [len(r.rows) for r in s.reports] == [2]
    assert s.notes == ["M seed 1: 2 cyclic points vs 3 reference points; compared the first 2."] \
        or "M: its seeds have different numbers of points; compared the first 2." in s.notes
    assert s.gain_correlation is None and s.baseline is None


# --- the CLI on prepared run directories ---

CLI_RECIPES = {"digits-cyclic": DIGITS / "cyclic.yaml",
               "digits-cyclic-label-smoothing": DIGITS / "cyclic_label_smoothing.yaml",
               "digits-cyclic-mixup": DIGITS / "cyclic_mixup.yaml"}


def fake_accs(k: int, seed: int, ref: bool) -> list[float]:
    """Five curve points; recipe k gains k/32 over the baseline, the reference 1/64 more."""
    return [0.5 + i / 16 + k / 32 + seed / 64 + (i % 2) * k / 64 + (1 / 64 if ref and i else 0)
            for i in range(5)]


def write_run(out: Path, recipe_path: Path, budgets: bool, seed: int, accs: list[float]) -> list[dict]:
    sets = ['device="cpu"']
    r = load_recipe(recipe_path, sets)
    if budgets:
        r = load_recipe(recipe_path, [*sets, "curve.mode=budgets", f"name={json.dumps(r.name + '-budgets')}"])
    r = r.with_seed(seed)
    run = RunDir(out / r.name / f"seed{seed}")
    run.start(r.to_yaml(), {"name": r.name, "seed": seed, "smoke": False})
    w = run.points_writer(list(POINT_COLUMNS))
    pts = []
    for i, a in enumerate(accs):
        p = {"step": 22 * 2 ** (i + 1), "epoch": 2.0 ** (i + 1), "samples": 1408 * 2 ** (i + 1),
             "train_time_s": (2.0 ** i if budgets else 2.0 ** i * 0.75), "lr": 0.0, "train_loss": 0.1,
             "test_loss": 0.2, "test_acc": a, "test_ece": 0.01, "curve": 1}
        w.append(p)
        pts.append(p)
    w.close()
    run.update_meta(status="completed", device="cpu (2 threads)", torch_build="2.5.0+cpu")
    return pts


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fidelity-study")
    runs: dict = {}
    for k, (name, path) in enumerate(CLI_RECIPES.items()):
        runs[name] = {s: (write_run(out, path, False, s, fake_accs(k, s, False)),
                          write_run(out, path, True, s, fake_accs(k, s, True))) for s in (0, 1)}
    return out, runs


def test_cli_fidelity_over_methods_and_seeds_reuses_the_runs(prepared: tuple[Path, dict]) -> None:
    out, runs = prepared
    metas = {p: p.read_text() for p in out.rglob("meta.json")}
    result = runner.invoke(app, ["fidelity", str(CLI_RECIPES["digits-cyclic-label-smoothing"]),
                                 str(CLI_RECIPES["digits-cyclic-mixup"]), "--baseline",
                                 str(CLI_RECIPES["digits-cyclic"]), "--seeds", "2", "--device", "cpu",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("already completed") == 12  # 3 recipes x 2 modes x 2 seeds
    assert {p: p.read_text() for p in out.rglob("meta.json")} == metas  # nothing trained
    folder = out / "fidelity" / "digits-cyclic-label-smoothing+digits-cyclic-mixup-vs-digits-cyclic"
    doc = json.loads((folder / "fidelity.json").read_text())
    expected = json.loads(study(runs, "digits-cyclic").to_json())
    assert doc == expected
    assert doc["baseline"] == "digits-cyclic"
    assert [r["recipe"] for r in doc["reports"]] == list(CLI_RECIPES)
    mixup = doc["reports"][2]
    assert mixup["seeds"] == [0, 1]
    # gains: 2/32 at even points, 2/32 + 2/64 at odd ones; the reference's extra 1/64 cancels
    assert [r["ref_gain"] for r in mixup["rows"]] == [0.0625, 0.09375, 0.0625, 0.09375, 0.0625]
    assert [r["cyclic_gain"] for r in mixup["rows"]] == [0.0625, 0.09375, 0.0625, 0.09375, 0.0625]
    assert mixup["avg_gap"] == 1 / 64 and mixup["rows"][0]["gap"] == 0.0
    assert mixup["cost_ratio"] == 31 / 12  # (1+2+4+8+16) / (16 * 0.75)
    assert doc["gain_correlation"] == pytest.approx(1.0)
    with (folder / "fidelity.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 15
    assert (folder / "fidelity.md").read_text().startswith("# Fidelity")
    for png in ("fidelity.png", "gains.png"):
        assert (folder / png).read_bytes()[:8] == PNG_MAGIC
    flat = " ".join(result.output.split())
    assert "gain correlation over every method and point: 1.000" in flat
    assert "fidelity: digits-cyclic-mixup (2 seeds)" in flat


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "Invalid value for '--seeds'"),
    (["--baseline", str(DIGITS / "cyclic.yaml")], "a recipe named 'digits-cyclic' is given twice"),
    (["--metric", "test_loss"], "give an accuracy column"),
    (["--metric", "lr"], "does not know whether a higher or a lower lr is better"),
])
def test_cli_fidelity_bad_input_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["fidelity", str(DIGITS / "cyclic.yaml"), *args, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []
