"""Comparing recipes, the pure functions: exact numbers on hand-built curves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from trainbench.compare import (
    Run,
    align,
    auc,
    auc_span,
    compare_runs,
    cost_to_reach,
    display_table,
    metric_spec,
    normalize_target,
    pareto,
    records,
    seed_stats,
    speedup,
    t975,
)
from trainbench.errors import InputError

# --- statistics over seeds ---


def test_t975_matches_scipy_where_available() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in [*range(1, 61), 90, 120, 500, 10_000]:
        assert t975(df) == pytest.approx(float(stats.t.ppf(0.975, df)), abs=2e-5), df


def test_t975_known_values() -> None:
    assert t975(1) == pytest.approx(12.706205)
    assert t975(2) == pytest.approx(4.302653)
    assert t975(30) == pytest.approx(2.042272)
    assert t975(10**6) == pytest.approx(1.959964, abs=1e-5)
    with pytest.raises(ValueError):
        t975(0)


def test_seed_stats_mean_sample_std_and_t_interval() -> None:
    s = seed_stats([0.90, 0.92, 0.94])
    assert s.n == 3
    assert s.mean == pytest.approx(0.92)
    assert s.std == pytest.approx(0.02)  # ddof = 1
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert s.ci_low == pytest.approx(0.92 - half)
    assert s.ci_high == pytest.approx(0.92 + half)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.8703172, 0.9696828), abs=1e-6)


def test_seed_stats_single_seed_has_no_spread() -> None:
    s = seed_stats([0.97])
    assert (s.n, s.mean, s.std, s.ci_low, s.ci_high) == (1, 0.97, None, None, None)


def test_seed_stats_two_seeds() -> None:
    s = seed_stats([0.5, 0.7])
    assert s.std == pytest.approx(math.sqrt(0.02))
    assert s.ci_high - s.mean == pytest.approx(12.706205 * math.sqrt(0.02) / math.sqrt(2))


# --- alignment ---


def test_align_curves_with_different_numbers_of_points() -> None:
    a = [(1.0, 0.50), (2.0, 0.70), (4.0, 0.90)]
    b = [(1.2, 0.60), (2.2, 0.80)]  # interrupted after two points
    curve = align([a, b])
    assert [p.index for p in curve] == [0, 1, 2]
    assert [p.n for p in curve] == [2, 2, 1]
    assert [p.cost for p in curve] == pytest.approx([1.1, 2.1, 4.0])
    assert [p.acc for p in curve] == pytest.approx([0.55, 0.75, 0.90])
    assert curve[0].acc_std == pytest.approx(math.sqrt(0.005))
    assert curve[2].acc_std is None
    assert (curve[1].acc_min, curve[1].acc_max) == (0.70, 0.80)
    assert (curve[2].acc_min, curve[2].acc, curve[2].acc_max) == (0.90, 0.90, 0.90)  # the one seed


def test_align_skips_missing_values_but_keeps_indices() -> None:
    a = [(1.0, 0.5), (2.0, math.nan), (4.0, 0.9)]
    b = [(1.0, 0.7), (2.0, math.nan), (4.0, 0.7)]
    curve = align([a, b])
    assert [p.index for p in curve] == [0, 2]
    assert curve[1].acc == pytest.approx(0.8)
    assert align([]) == []


# --- time to target, speedup ---


CURVE = [(1.0, 0.50), (2.0, 0.70), (4.0, 0.90)]


def test_cost_to_reach_interpolates_linearly_in_cost() -> None:
    assert cost_to_reach(CURVE, 0.80) == pytest.approx(3.0)
    assert cost_to_reach(CURVE, 0.75) == pytest.approx(2.5)
    assert cost_to_reach(CURVE, 0.60) == pytest.approx(1.5)
    assert cost_to_reach(CURVE, 0.70) == pytest.approx(2.0)  # exactly on a point
    assert cost_to_reach(CURVE, 0.90) == pytest.approx(4.0)


def test_cost_to_reach_first_point_and_not_reached() -> None:
    assert cost_to_reach(CURVE, 0.40) == 1.0  # the first point already exceeds it
    assert cost_to_reach(CURVE, 0.95) is None
    assert cost_to_reach([], 0.5) is None


def test_cost_to_reach_takes_the_first_crossing_of_a_non_monotone_curve() -> None:
    curve = [(1.0, 0.60), (2.0, 0.90), (4.0, 0.80)]
    assert cost_to_reach(curve, 0.85) == pytest.approx(1 + 0.25 / 0.30)


def test_speedup_at_equal_accuracy() -> None:
    # The baseline needs 3.0 to reach 0.80; a recipe reaching 0.80 at 1.5 is 2x faster.
    assert speedup(CURVE, 0.80, 1.5) == pytest.approx(2.0)
    assert speedup(CURVE, 0.90, 8.0) == pytest.approx(0.5)
    assert speedup(CURVE, 0.99, 1.0) is None  # the baseline never gets there


# --- AUC on a log axis ---


def test_auc_is_mean_accuracy_over_log_cost() -> None:
    curve = [(1.0, 0.5), (10.0, 0.7), (100.0, 0.9)]
    assert auc(curve, 1.0, 100.0) == pytest.approx(0.7)
    # From 10**0.5: half of the first segment ((0.6 + 0.7) / 2 * 0.5) + the second (0.8 * 1).
    assert auc(curve, 10**0.5, 100.0) == pytest.approx((0.325 + 0.8) / 1.5)
    assert auc(curve, 10.0, 100.0) == pytest.approx(0.8)
    assert auc(curve, 1.0, 1000.0) is None  # not covered
    assert auc(curve, 5.0, 5.0) is None
    assert auc([(2.0, 0.5), (4.0, 0.7)], 2.0, 4.0, log=False) == pytest.approx(0.6)


def test_auc_span_is_the_common_range_of_multi_point_curves() -> None:
    curves = [[(1.0, 0.5), (100.0, 0.9)], [(2.0, 0.6), (50.0, 0.8)], [(5.0, 0.7)]]
    assert auc_span(curves) == (2.0, 50.0)
    assert auc_span([[(1.0, 0.5), (2.0, 0.6)], [(3.0, 0.5), (4.0, 0.6)]]) is None  # disjoint
    assert auc_span([[(5.0, 0.7)]]) is None


# --- Pareto ---


def test_pareto_membership() -> None:
    pts = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (2.0, 0.7), (4.0, 0.9), (0.5, 0.4), (4.0, 0.85)]
    assert pareto(pts) == [True, True, False, True, True, True, False]


def test_pareto_with_higher_cost_better_for_sparsity() -> None:
    pts = [(0.5, 0.9), (0.8, 0.85), (0.7, 0.80), (0.9, 0.6)]
    assert pareto(pts, higher_cost_better=True) == [True, True, False, True]


def test_target_accepts_fraction_or_percent() -> None:
    assert normalize_target(0.98) == 0.98
    assert normalize_target(98) == pytest.approx(0.98)
    assert normalize_target(None) is None
    for bad in (0, -1, 101, math.nan):
        with pytest.raises(InputError, match="--target"):
            normalize_target(bad)


# --- the whole comparison, on in-memory runs ---


def run(name: str, seed: int, curve: list[tuple[float, float]], *, status: str = "completed",
        device: str = "cpu", extra: list[dict[str, float]] | None = None, torn: bool = False,
        smoke: bool = False) -> Run:
    points = [{"epoch": 2.0 ** (i + 1), "train_time_s": t, "samples": 100.0 * 2 ** (i + 1), "test_acc": a,
               "curve": 1.0} for i, (t, a) in enumerate(curve)]
    return Run(path=Path(f"/runs/{name}/seed{seed}"), name=name, seed=seed, status=status, smoke=smoke,
               device=device, versions={"torch": "2.5"}, points=[*points, *(extra or [])],
               columns=["step", "epoch", "samples", "train_time_s", "test_acc", "curve"], torn=torn)


def test_compare_runs_exact_numbers() -> None:
    runs = [
        run("base", 0, [(1.0, 0.50), (2.0, 0.70), (4.0, 0.90)]),
        run("base", 1, [(1.0, 0.50), (2.0, 0.70), (4.0, 0.90)]),
        run("fast", 0, [(0.5, 0.70), (1.0, 0.78)]),
        run("fast", 1, [(0.5, 0.70), (1.0, 0.82)]),
    ]
    c = compare_runs(runs, baseline="base", target=0.8)
    base, fast = c.recipes
    assert (base.name, fast.name) == ("base", "fast")
    assert base.final.mean == pytest.approx(0.9) and base.final.std == pytest.approx(0.0)
    assert fast.final.n == 2 and fast.final.mean == pytest.approx(0.80)
    assert fast.final.std == pytest.approx(math.sqrt(0.0008))
    assert fast.cost == pytest.approx(1.0)
    # time to 80%: base interpolates between (2, 0.7) and (4, 0.9): 3.0; fast reaches it at its end.
    assert base.target_cost == pytest.approx(3.0)
    assert fast.target_cost == pytest.approx(1.0)
    # speedup: base needs 3.0 to reach fast's 0.80, fast takes 1.0.
    assert fast.speedup == pytest.approx(3.0)
    assert base.speedup == 1.0
    # frontier: (0.5, .70), (1, .80), (2, .70)x, (4, .90); (1, .5) and (2, .7) are dominated.
    assert fast.pareto_points == [0, 1] and base.pareto_points == [2]
    assert [(f[0], f[1]) for f in c.frontier] == [("fast", 0), ("fast", 1), ("base", 2)]
    # AUC over the common range [1, 2] (fast covers 0.5..1 only: common = [1, 1]) -> none.
    assert c.span is None and base.auc is None
    assert base.status == "2 completed" and base.complete
    assert c.warnings == [] and c.notes == []


def test_compare_runs_auc_on_common_span() -> None:
    runs = [run("a", 0, [(1.0, 0.5), (10.0, 0.7), (100.0, 0.9)]),
            run("b", 0, [(10.0, 0.6), (100.0, 0.8), (1000.0, 0.95)])]
    c = compare_runs(runs)
    assert c.span == (10.0, 100.0)
    assert c.recipes[0].auc == pytest.approx(0.8)
    assert c.recipes[1].auc == pytest.approx(0.7)


def test_baseline_never_reaching_gives_a_lower_bound() -> None:
    runs = [run("base", 0, [(1.0, 0.5), (4.0, 0.9)]), run("better", 0, [(2.0, 0.95)])]
    c = compare_runs(runs, baseline="base")
    better = c.recipes[1]
    assert better.speedup is None and better.speedup_lower_bound == pytest.approx(2.0)
    headers, rows = display_table(c)
    assert rows[1][headers.index("speedup vs base")] == "not reached (>2.00x)"


def test_diverged_and_half_written_runs_are_kept_and_marked() -> None:
    runs = [run("r", 0, [(1.0, 0.6), (2.0, 0.8), (4.0, 0.9)]),
            run("r", 1, [(1.0, 0.4)], status="diverged"),
            run("r", 2, [(1.0, 0.5), (2.0, 0.7)], status="running", torn=True)]
    c = compare_runs(runs)
    (r,) = c.recipes
    assert [p.n for p in r.curve] == [3, 2, 1]
    assert r.curve[0].acc == pytest.approx(0.5)
    assert r.final.n == 1 and r.final.mean == 0.9
    assert not r.complete
    assert r.status == "1 completed, 1 running (half-written), 1 diverged"
    assert any("r seed 1: diverged" in n for n in c.notes)
    assert any("r seed 2: running, half-written" in n for n in c.notes)


def test_runs_without_curve_points_use_their_evaluations() -> None:
    evals = [{"epoch": 5.0, "train_time_s": 1.0, "test_acc": 0.6, "curve": 0.0},
             {"epoch": 10.0, "train_time_s": 2.0, "test_acc": 0.7, "curve": 0.0}]
    c = compare_runs([run("r", 0, [], status="interrupted", extra=evals)])
    (r,) = c.recipes
    assert r.from_evaluations and [p.acc for p in r.curve] == [0.6, 0.7]
    assert any("evaluation points stand in" in n for n in c.notes)
    # With a seed that has curve points, the evaluations of the others are not mixed in.
    c = compare_runs([run("r", 0, [], status="interrupted", extra=evals), run("r", 1, [(3.0, 0.9)])])
    assert [p.acc for p in c.recipes[0].curve] == [0.9] and not c.recipes[0].from_evaluations


def test_smoke_runs_left_out_by_default() -> None:
    runs = [run("r", 0, [(1.0, 0.9)]), run("r", 1, [(1.0, 0.1)], smoke=True)]
    c = compare_runs(runs)
    assert c.smoke_left_out == 1 and c.recipes[0].final.n == 1
    assert any("left out 1 smoke run" in n for n in c.notes)
    assert compare_runs(runs, include_smoke=True).recipes[0].final.n == 2
    with pytest.raises(InputError, match="--include-smoke"):
        compare_runs([runs[1]])


def test_mixed_devices_and_versions_warn() -> None:
    a, b = run("a", 0, [(1.0, 0.9)], device="cpu"), run("b", 0, [(1.0, 0.9)], device="NVIDIA H100")
    b.versions = {"torch": "2.6"}
    c = compare_runs([a, b])
    assert any("different devices" in w and "not comparable" in w for w in c.warnings)
    assert any("torch 2.5 (1), 2.6 (1)" in w for w in c.warnings)
    assert [r.devices for r in c.recipes] == [["cpu"], ["NVIDIA H100"]]


def test_bad_baseline_metric_and_sparsity_are_input_errors() -> None:
    runs = [run("digits-cyclic", 0, [(1.0, 0.9)])]
    with pytest.raises(InputError, match="Did you mean 'digits-cyclic'"):
        compare_runs(runs, baseline="digits-cyclc")
    with pytest.raises(InputError, match="--x sparsity needs a 'sparsity' column"):
        compare_runs(runs, x="sparsity")
    with pytest.raises(InputError, match="Did you mean 'test_acc'"):
        compare_runs(runs, metric="test_ac")


def test_sparsity_axis_prefers_higher_sparsity() -> None:
    def pruned(name: str, pts: list[tuple[float, float]]) -> Run:
        r = run(name, 0, [])
        r.points = [{"sparsity": s, "train_time_s": 1.0, "test_acc": a, "curve": 1.0} for s, a in pts]
        r.columns = [*r.columns, "sparsity"]
        return r

    c = compare_runs([pruned("p", [(0.5, 0.9), (0.9, 0.8)]), pruned("q", [(0.5, 0.85), (0.8, 0.84)])],
                     x="sparsity")
    assert c.recipes[0].pareto_points == [0, 1] and c.recipes[1].pareto_points == [1]
    assert c.recipes[0].auc == pytest.approx(0.8625)  # linear axis over [0.5, 0.8]


def test_records_and_table_carry_the_same_numbers() -> None:
    runs = [run("base", s, [(1.0, 0.5 + s / 100), (2.0, 0.7 + s / 100), (4.0, 0.9 + s / 100)])
            for s in range(3)]
    runs += [run("fast", s, [(0.5, 0.7), (1.0, 0.8 + s / 100)]) for s in range(3)]
    c = compare_runs(runs, baseline="base", target=0.8)
    headers, rows = display_table(c)
    for rec, row in zip(records(c), rows, strict=True):
        cell = dict(zip(headers, row, strict=True))
        assert cell["final %"] == f"{100 * rec['final_acc']:.2f}"
        assert cell["± std"] == f"{100 * rec['final_acc_std']:.2f}"
        assert cell["95% CI"] == f"{100 * rec['final_acc_ci_low']:.2f}-{100 * rec['final_acc_ci_high']:.2f}"
        assert cell["speedup vs base"] == f"{rec['speedup']:.2f}x"
        assert cell["n"] == str(rec["n"]) == "3"


def test_final_interval_is_clipped_to_valid_accuracies() -> None:
    runs = [run("hi", s, [(1.0, a)]) for s, a in enumerate((0.99, 1.0, 0.98))]
    final = compare_runs(runs).recipes[0].final
    assert final.mean == pytest.approx(0.99) and final.ci_high == 1.0
    assert final.ci_low == pytest.approx(0.99 - t975(2) * 0.01 / math.sqrt(3))


def test_costs_reached_at_a_first_point_are_upper_bounds() -> None:
    runs = [run("b1", 0, [(2.0, 0.80)]),  # the baseline's only point beats everything below
            run("slow", 0, [(1.0, 0.50)]),
            run("best", 0, [(1.0, 0.70), (4.0, 0.90)])]
    c = compare_runs(runs, baseline="b1", target=0.6)
    b1, slow, best = c.recipes
    assert slow.speedup == pytest.approx(2.0) and slow.speedup_upper_bound
    assert best.speedup is None and best.speedup_lower_bound == pytest.approx(0.5)
    assert b1.target_cost == 2.0 and b1.target_cost_upper_bound
    assert best.target_cost == 1.0 and best.target_cost_upper_bound
    assert slow.target_cost is None
    headers, rows = display_table(c)
    cells = dict(zip(headers, rows[1], strict=True))
    assert cells["speedup vs b1"] == "≤2.00x" and cells["time to 60%"] == "not reached"
    assert dict(zip(headers, rows[2], strict=True))["time to 60%"] == "≤1.00"


# --- integer columns (points.csv keeps integers as int) ---


def test_integer_cells_are_values_not_missing() -> None:
    """`samples` and `step` read back from points.csv as int: they are costs like any other."""
    r = run("r", 0, [])
    r.points = [{"epoch": 1.0, "samples": 128 * (i + 1), "train_time_s": 0.5 * (i + 1), "test_acc": a,
                 "curve": 1} for i, a in enumerate((0.5, 0.7))]
    c = compare_runs([r], x="samples")
    assert [p.cost for p in c.recipes[0].curve] == [128.0, 256.0]
    assert c.recipes[0].cost == 256.0 and c.recipes[0].final.mean == 0.7
    # A bool is no measurement.
    r.points = [{"samples": True, "train_time_s": 1.0, "test_acc": 0.5, "curve": 1}]
    assert compare_runs([r], x="samples").recipes[0].curve == []


# --- metric direction: a loss is better lower ---


def loss_run(name: str, seed: int, curve: list[tuple[float, float]], col: str = "test_loss") -> Run:
    r = run(name, seed, [])
    r.points = [{"epoch": 2.0 ** (i + 1), "train_time_s": t, "samples": 64 * 2 ** (i + 1), col: v,
                 "test_acc": 0.5, "curve": 1} for i, (t, v) in enumerate(curve)]
    r.columns = [*r.columns, col]
    return r


def test_loss_metric_best_target_speedup_and_pareto_favour_low_loss() -> None:
    runs = [loss_run("base", 0, [(1.0, 0.9), (2.0, 0.5), (4.0, 0.3)]),
            loss_run("fast", 0, [(0.5, 0.6), (1.0, 0.4)])]
    c = compare_runs(runs, metric="test_loss", baseline="base", target=0.45)
    base, fast = c.recipes
    assert c.lower_is_better and c.target == 0.45  # a loss target is no percent
    assert base.best_acc == 0.3 and fast.best_acc == 0.4  # the lowest loss
    assert base.final.mean == 0.3 and fast.final.mean == 0.4
    # loss <= 0.45: base between (2, .5) and (4, .3): 2 + .05 / .2 * 2 = 2.5; fast between
    # (.5, .6) and (1, .4): .5 + .15 / .2 * .5 = .875. Neither at its first point.
    assert base.target_cost == pytest.approx(2.5) and not base.target_cost_upper_bound
    assert fast.target_cost == pytest.approx(0.875) and not fast.target_cost_upper_bound
    # base gets down to fast's final 0.4 at 2 + .1 / .2 * 2 = 3.0; fast takes 1.0: 3x.
    assert fast.speedup == pytest.approx(3.0) and not fast.speedup_upper_bound
    assert base.speedup == 1.0
    # (1, .9) is dominated by (.5, .6), (2, .5) by (1, .4); (4, .3) has the lowest loss.
    assert base.pareto_points == [2] and fast.pareto_points == [0, 1]
    headers, rows = display_table(c)
    assert headers[4] == "final" and "time to test_loss ≤ 0.45" in headers and "AUC" in headers
    cells = dict(zip(headers, rows[1], strict=True))
    assert cells["final"] == "0.4000" and cells["best"] == "0.4000" and cells["speedup vs base"] == "3.00x"


def test_loss_baseline_never_getting_down_and_first_point_bounds() -> None:
    runs = [loss_run("base", 0, [(1.0, 0.8), (4.0, 0.5)]), loss_run("better", 0, [(2.0, 0.2)]),
            loss_run("worse", 0, [(1.0, 0.9)])]
    c = compare_runs(runs, metric="test_loss", baseline="base", target=0.85)
    base, better, worse = c.recipes
    assert better.speedup is None and better.speedup_lower_bound == pytest.approx(2.0)
    # base's first point (0.8) already beats worse's 0.9: at most 1.0 / 1.0.
    assert worse.speedup == pytest.approx(1.0) and worse.speedup_upper_bound
    assert base.target_cost == 1.0 and base.target_cost_upper_bound  # 0.8 <= 0.85 at once
    assert worse.target_cost is None


def test_loss_interval_is_clipped_at_zero_not_at_one() -> None:
    runs = [loss_run("r", s, [(1.0, v)]) for s, v in enumerate((0.9, 1.5))]
    final = compare_runs(runs, metric="test_loss").recipes[0].final
    half = t975(1) * math.sqrt(0.18) / math.sqrt(2)
    assert final.ci_high == pytest.approx(1.2 + half) and final.ci_low == 0.0


def test_loss_auc_is_the_mean_loss() -> None:
    runs = [loss_run("a", 0, [(1.0, 0.9), (10.0, 0.5), (100.0, 0.1)])]
    assert compare_runs(runs, metric="test_loss").recipes[0].auc == pytest.approx(0.5)


def test_method_variant_of_a_loss_falls_back_to_the_loss() -> None:
    plain = loss_run("r", 0, [(1.0, 0.4)])
    ema = loss_run("r", 1, [(1.0, 0.2)], col="test_loss_ema")
    c = compare_runs([plain, ema], metric="test_loss_ema")
    assert c.lower_is_better and c.recipes[0].final.mean == pytest.approx(0.3)  # not test_acc's 0.5
    assert any("their test_loss is used" in n for n in c.notes)


def test_metric_direction_table_and_unknown_metrics_refused() -> None:
    assert not metric_spec("test_acc").lower_is_better and not metric_spec("test_acc_swa").lower_is_better
    for m in ("test_loss", "train_loss", "test_ece", "test_ece_ema", "test_loss_swa"):
        assert metric_spec(m).lower_is_better, m
    r = loss_run("r", 0, [(1.0, 0.4)], col="lr")
    with pytest.raises(InputError, match="does not know whether a higher or a lower lr is better"):
        compare_runs([r], metric="lr")
    with pytest.raises(InputError, match="does not know"):
        metric_spec("sparsity")


def test_targets_per_metric() -> None:
    assert normalize_target(0.45, "test_loss") == 0.45 and normalize_target(45, "test_loss") == 45
    assert normalize_target(2, "test_ece") == pytest.approx(0.02)
    for bad in (0, -1, math.inf):
        with pytest.raises(InputError, match="not a percent"):
            normalize_target(bad, "test_loss")


# --- grouping: the same name, different recipes ---


def recipe_run(name: str, seed: int, curve: list[tuple[float, float]], **fields: object) -> Run:
    r = run(name, seed, curve)
    r.recipe = {"name": name, "seed": seed, "device": fields.pop("device", "auto"),
                "optimizer": {"name": "sgd", "lr": fields.pop("lr", 0.1)},
                "eval": {"every": fields.pop("every", "1ep")}, "methods": fields.pop("methods", {})}
    assert not fields
    return r


def test_same_name_different_recipes_are_separate_rows() -> None:
    runs = [recipe_run("r", 0, [(1.0, 0.5)]), recipe_run("r", 1, [(1.0, 0.7)], device="cpu", every="2ep"),
            recipe_run("r", 0, [(1.0, 0.9)], lr=0.2), recipe_run("r", 1, [(1.0, 0.8)], lr=0.2),
            recipe_run("q", 0, [(1.0, 0.6)])]
    c = compare_runs(runs)
    assert [r.label for r in c.recipes] == ["r (optimizer.lr=0.1)", "r (optimizer.lr=0.2)", "q"]
    assert [r.name for r in c.recipes] == ["r", "r", "q"]
    # Seed, requested device and evaluation cadence do not make another recipe.
    assert [r.final.n for r in c.recipes] == [2, 2, 1]
    assert [r.final.mean for r in c.recipes] == pytest.approx([0.6, 0.85, 0.6])
    assert any("r: runs of 2 different recipes share the name" in w and "optimizer.lr" in w
               for w in c.warnings)
    assert display_table(c)[1][1][0] == "r (optimizer.lr=0.2)"
    assert records(c)[1]["recipe"] == "r (optimizer.lr=0.2)" and records(c)[1]["name"] == "r"


def test_baseline_by_label_and_ambiguous_names() -> None:
    runs = [recipe_run("r", 0, [(1.0, 0.5), (2.0, 0.9)]), recipe_run("r", 0, [(1.0, 0.7)], lr=0.2),
            recipe_run("q", 0, [(1.0, 0.9)], methods={"mixup": {"alpha": 0.2}})]
    labels = r"'r \(optimizer.lr=0.1\)'; 'r \(optimizer.lr=0.2\)'"
    with pytest.raises(InputError, match=r"2 different recipes .*" + labels):
        compare_runs(runs, baseline="r")
    c = compare_runs(runs, baseline="r (optimizer.lr=0.1)")
    assert c.baseline == "r (optimizer.lr=0.1)" and c.recipes[0].speedup == 1.0
    # the lr=0.2 row reaches 0.7 at 1.0; the baseline at 1 + .2 / .4 = 1.5.
    assert c.recipes[1].speedup == pytest.approx(1.5)
    assert compare_runs(runs, baseline="q").recipes[0].label == "q"  # a unique name still works


def test_labels_name_added_methods_and_runs_without_recipe() -> None:
    runs = [recipe_run("r", 0, [(1.0, 0.5)]),
            recipe_run("r", 0, [(1.0, 0.6)], methods={"mixup": {"alpha": 0.2}}),
            run("r", 0, [(1.0, 0.7)])]  # no recipe.yaml
    labels = [r.label for r in compare_runs(runs).recipes]
    assert labels == ["r (methods.mixup.alpha=(unset))", "r (methods.mixup.alpha=0.2)", "r (no recipe.yaml)"]


def test_pareto_on_sparsity_with_a_loss() -> None:
    """Higher sparsity and lower loss are both better."""
    pts = [(0.5, 0.3), (0.8, 0.35), (0.7, 0.4), (0.9, 0.6), (0.5, 0.5)]
    assert pareto(pts, higher_cost_better=True, lower_is_better=True) == [True, True, False, True, False]
