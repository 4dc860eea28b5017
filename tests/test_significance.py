"""compare --test: Welch and bootstrap tests against hand-computed values, Holm's correction,
interpolation at equal cost, and the comparison's table/records/CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from scipy import stats
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.compare import Run, compare_runs, display_table, records
from trainbench.compare.significance import bootstrap, holm, interpolate, welch
from trainbench.errors import InputError

A = [0.70, 0.72, 0.74]  # mean 0.72, sample variance 0.0004
B = [0.60, 0.64, 0.68]  # mean 0.64, sample variance 0.0016


def test_welch_against_the_hand_computed_statistic() -> None:
    se2 = 0.0004 / 3 + 0.0016 / 3
    t = 0.08 / math.sqrt(se2)  # 3.0984
    df = se2**2 / ((0.0004 / 3) ** 2 / 2 + (0.0016 / 3) ** 2 / 2)  # Welch-Satterthwaite: 50/17
    assert df == pytest.approx(50 / 17)
    r = welch(A, B)
    assert r.diff == pytest.approx(0.08) and (r.n_a, r.n_b, r.why) == (3, 3, "")
    assert r.p == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)
    assert r.p == pytest.approx(0.054787, abs=1e-6)
    assert welch(B, A).p == pytest.approx(r.p) and welch(B, A).diff == pytest.approx(-0.08)


def test_bootstrap_matches_the_exact_enumeration() -> None:
    # a = [0, 2], b = [1, 2]: observed difference -0.5; shifted to the pooled mean 1.25 the
    # samples are [0.25, 2.25] and [0.75, 1.75]; their resampled means differ from 1.25 by
    # {-1, 0, +1} (probabilities 1/4, 1/2, 1/4) and {-0.5, 0, +0.5} (same), so
    # P(|difference| >= 0.5) = 1/4 + 1/2 * 1/2 + 1/4 = 3/4 exactly.
    r = bootstrap([0.0, 2.0], [1.0, 2.0], resamples=100_000)
    assert r.diff == -0.5
    assert r.p == pytest.approx(0.75, abs=0.005)  # Monte Carlo error 0.0014 with 100,000 resamples
    default = bootstrap([0.0, 2.0], [1.0, 2.0])  # 10,000 resamples, seed 0
    assert default.p == bootstrap([0.0, 2.0], [1.0, 2.0]).p  # seeded: the same p every time
    assert default.p == pytest.approx(0.75, abs=0.015)
    # far apart: no resample reaches the observed difference, p = 1 / (1 + resamples)
    assert bootstrap([0.0, 0.01, 0.02], [1.0, 1.01, 1.02]).p == 1 / 10_001


def test_tests_are_undefined_without_seeds_or_spread() -> None:
    for test in (welch, bootstrap):
        assert test([0.5], [0.4, 0.6]).p is None
        assert test([0.5], [0.4, 0.6]).why == "needs 2+ seeds on each side (has 1 and 2)"
        assert test([0.5, 0.5], [0.4, 0.4]).why == "no spread among the seeds on either side"


def test_holm_step_down() -> None:
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, kept monotone
    assert holm([0.02, None, 0.04]) == pytest.approx([0.04, None, 0.04])  # None: not a hypothesis
    assert holm([]) == [] and holm([0.03]) == [0.03]


def test_interpolate_in_cost() -> None:
    c = [(1.0, 0.5), (2.0, 0.7), (4.0, 0.9)]
    assert interpolate(c, 3.0) == pytest.approx(0.8)
    assert interpolate(c, 1.0) == 0.5 and interpolate(c, 4.0) == 0.9
    assert interpolate(c, 0.5) is None and interpolate(c, 5.0) is None
    assert interpolate([(1.0, math.nan), (2.0, 0.7), (4.0, 0.9)], 3.0) == pytest.approx(0.8)


def run(name: str, seed: int, curve: list[tuple[float, float]]) -> Run:
    points = [{"epoch": 2.0 ** (i + 1), "train_time_s": t, "test_acc": a, "curve": 1.0}
              for i, (t, a) in enumerate(curve)]
    return Run(path=Path(f"/runs/{name}/seed{seed}"), name=name, seed=seed, status="completed", smoke=False,
               device="cpu", versions={}, points=points,
               columns=["epoch", "train_time_s", "test_acc", "curve"])


RUNS = [
    *(run("base", s, [(1.0, 0.5), (2.0, b - 0.2), (4.0, b)]) for s, b in enumerate(B)),
    # better at its end, which costs 3 s: the baseline's seeds there are 0.1 below their finals
    *(run("good", s, [(1.5, 0.6), (3.0, a)]) for s, a in enumerate(A)),
    *(run("same", s, [(2.0, 0.5), (4.0, b + 0.001)]) for s, b in enumerate(reversed(B))),
]


def test_compare_tests_each_recipe_against_the_baseline_with_holm() -> None:
    c = compare_runs(RUNS, baseline="base", test="welch")
    base, good, same = c.recipes
    assert base.test_final is None  # the baseline is not tested against itself
    p_good, p_same = welch(A, B).p, welch([b + 0.001 for b in reversed(B)], B).p
    assert good.test_final.p == pytest.approx(p_good) and same.test_final.p == pytest.approx(p_same)
    assert good.test_final_holm == pytest.approx(2 * min(p_good, p_same))  # the smaller, times 2
    assert same.test_final_holm == pytest.approx(max(2 * min(p_good, p_same), p_same))
    # at equal cost (3 s): the baseline's seeds interpolated half way from 2 s to 4 s
    at3 = [b - 0.1 for b in B]
    assert good.test_equal_cost.p == pytest.approx(welch(A, at3).p)
    assert good.test_equal_cost.diff == pytest.approx(0.18)
    assert good.test_equal_cost_holm == pytest.approx(2 * good.test_equal_cost.p)  # the smaller of 2
    headers, rows = display_table(c)
    assert headers[-2:] == ["vs base: final", "vs base: equal time"]
    assert rows[0][-2:] == ["-", "-"]
    assert rows[2][-2] == f"not distinguishable (p={same.test_final_holm:.2g})"
    assert rows[1][-1] == f"+18.00 pp (p={good.test_equal_cost_holm:.2g})"
    # a cost outside the baseline's curves: no test, and the cell says why
    far = compare_runs([*RUNS, *(run("late", s, [(8.0, 0.9 + s / 50)]) for s in range(2))], baseline="base",
                       test="welch")
    assert display_table(far)[1][-1][-1] == "no test: 0 of base's 3 seed curves span this cost; needs 2+"
    rec = records(c)[1]
    assert (rec["test"], rec["p_final"]) == ("welch", good.test_final.p)
    assert rec["p_final_holm"] == good.test_final_holm
    assert rec["diff_equal_cost"] == pytest.approx(0.18)
    boot = compare_runs(RUNS, baseline="base", test="bootstrap").recipes[1]
    assert boot.test_final.p == bootstrap(A, B).p


def test_test_needs_a_baseline_and_a_known_name() -> None:
    with pytest.raises(InputError, match=r"--test welch tests each recipe against the baseline: name it "
                                         r"with --baseline NAME\."):
        compare_runs(RUNS, test="welch")
    with pytest.raises(InputError, match=r"--test ttest: choose one of welch, bootstrap\."):
        compare_runs(RUNS, baseline="base", test="ttest")


def test_cli_compare_test_bad_input_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["compare", str(tmp_path), "--baseline", "b", "--test", "ttest"])
    assert bad.exit_code == 2 and "Invalid value for '--test'" in bad.output
    no_base = runner.invoke(app, ["compare", str(tmp_path), "--test", "welch"])
    assert no_base.exit_code == 2
    assert "--test welch tests each recipe against the baseline: name it with --baseline NAME." in " ".join(
        no_base.output.split())
    assert list(tmp_path.iterdir()) == []
