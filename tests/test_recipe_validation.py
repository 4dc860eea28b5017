"""Recipes that used to validate and then fail or mislead at run time: each is refused by
`trainbench validate` (exit 2, file:line and field named) and by `run` before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.recipe import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"  # digits, batch 64: 22 steps per epoch
runner = CliRunner()


def problems(*sets: str, path: Path = QUICKSTART) -> list[str]:
    """The recipe's problems as 'origin: field: message' lines."""
    with pytest.raises(RecipeError) as e:
        load_recipe(path, list(sets))
    return [str(p) for p in e.value.problems]


def validate(*args: object):
    return runner.invoke(app, ["validate", *map(str, args)])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"extends: {QUICKSTART}\nname: r\n{text}")
    return path


# --- warmup against a duration in another unit, compared in steps ---


def test_warmup_in_epochs_not_shorter_than_a_duration_in_batches(tmp_path: Path) -> None:
    result = validate(QUICKSTART, "--set", "duration=10ba")
    assert result.exit_code == 2
    assert "quickstart.yaml:14: schedule.warmup: warmup 1ep is 22 steps, not shorter than the run " \
           "(10ba = 10 steps) at 22 steps per epoch (1437 training images / batch size 64)" in result.output
    assert "without ever decaying" in result.output
    (p,) = problems("duration=22ba")  # equal: the run would end right at the peak
    assert "warmup 1ep is 22 steps, not shorter than the run (22ba = 22 steps)" in p
    assert load_recipe(QUICKSTART, ["duration=23ba"])["duration"] == "23ba"
    # the same check against each budget of a budgets-mode run
    (p,) = problems("curve.mode=budgets", "curve.budgets=[20ba, 3ep]")
    assert "schedule.warmup: warmup 1ep is 22 steps, not shorter than the run (the budget 20ba" in p


def test_dur_warmup_that_rounds_to_the_whole_run_is_refused() -> None:
    # 0.99 of a 10-step run rounds to all 10 steps
    (p,) = problems("duration=10ba", "schedule.warmup=0.99dur")
    assert "warmup 0.99dur is 10 steps, not shorter than the run (10ba = 10 steps)" in p


# --- zero intervals ---


@pytest.mark.parametrize(("sets", "field"), [
    (("eval.every=0ba",), "eval.every"),
    (("eval.every=0ep",), "eval.every"),
    (("checkpoint.every=0ba",), "checkpoint.every"),
    (("schedule.name=triangular", "schedule.step_size=0ba"), "schedule.step_size"),
    (("schedule.name=step", "schedule.step_size=0ep"), "schedule.step_size"),
])
def test_zero_intervals_are_refused(sets: tuple[str, ...], field: str) -> None:
    (p,) = problems(*sets)
    value = sets[-1].partition("=")[2]
    assert p == f"--set {sets[-1]}: {field}: must be > 0, got '{value}'"


def test_zero_interval_in_a_file_names_its_line(tmp_path: Path) -> None:
    result = validate(write(tmp_path, "eval:\n  every: 0ba\n"))
    assert result.exit_code == 2
    assert "r.yaml:4: eval.every: must be > 0, got '0ba'" in result.output


def test_show_lr_plot_of_a_zero_step_size_is_bad_input_not_a_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(QUICKSTART), "--set", "schedule.name=triangular",
                                 "--set", "schedule.step_size=0ba", "--lr-plot", str(tmp_path / "lr.png")])
    assert result.exit_code == 2 and "schedule.step_size: must be > 0" in result.output
    assert not (tmp_path / "lr.png").exists()


# --- seeds ---


def test_negative_seed_option_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(QUICKSTART), "--seed", "-2", "--out", str(out)])
    assert result.exit_code == 2 and "--seed" in result.output
    assert not out.exists()


def test_negative_seed_in_the_recipe_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    recipe = write(tmp_path, "seed: -1\n")
    checked = validate(recipe)
    assert checked.exit_code == 2 and "r.yaml:3: seed: must be >= 0, got -1" in checked.output
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(recipe), "--out", str(out)])
    assert result.exit_code == 2 and "seed: must be >= 0, got -1" in result.output
    assert not out.exists()


# --- model.kwargs against the model class ---


def test_unknown_timm_kwarg_names_it_and_lists_the_accepted_ones(tmp_path: Path) -> None:
    recipe = write(tmp_path, "model:\n  name: timm:resnet18\n  kwargs: {drop_rat: 0.1}\n")
    result = validate(recipe)
    assert result.exit_code == 2
    assert "r.yaml:5: model.kwargs.drop_rat: timm:resnet18 does not take 'drop_rat'. Did you mean " \
           "'drop_rate'? It accepts: block, layers," in result.output
    assert load_recipe(QUICKSTART, ["model.name=timm:resnet18", "model.kwargs={drop_rate: 0.1}"])


def test_unknown_torchvision_kwarg_and_reserved_ones() -> None:
    (p,) = problems("model.name=torchvision:resnet18", "model.kwargs={foo: 1}")
    assert "model.kwargs.foo: torchvision:resnet18 does not take 'foo'. It accepts: block, layers, " \
           "zero_init_residual," in p
    (p,) = problems("model.name=timm:resnet18", "model.kwargs={num_classes: 3}")
    assert p.endswith("model.kwargs.num_classes: is set by the dataset's number of classes; remove it "
                      "from model.kwargs.")


# --- curve.budgets ---


def test_empty_budgets_are_refused() -> None:
    (p,) = problems("curve.mode=budgets", "curve.budgets=[]")
    assert "curve.budgets: an empty list gives no curve point" in p


@pytest.mark.parametrize(("budgets", "expect"), [
    ("[2ep, 1ep]", "item 1 (1ep) is shorter than item 0 (2ep): budgets must be distinct and in increasing "
                   "order (the last one is the curve's final point). Write [1ep, 2ep]."),
    ("[2ep, 44ba, 3ep]", "item 1 (44ba) is the same length as item 0 (2ep) (in steps)"),
    ("[3ep, 2ep, 4ep]", "Write [2ep, 3ep, 4ep]."),
])
def test_unordered_or_repeated_budgets_are_refused(budgets: str, expect: str) -> None:
    found = problems("duration=5ep", "curve.mode=budgets", f"curve.budgets={budgets}")
    assert any(expect in p for p in found)


def test_budgets_of_a_cyclic_schedule_must_exceed_its_warmup_in_its_unit() -> None:
    (p,) = problems("schedule.name=cyclic", "curve.mode=budgets", "curve.budgets=[1ep, 3ep]")
    assert "curve.budgets: item 0: each budget run is the warmup (1ep) plus one cycle" in p
    (p,) = problems("schedule.name=cyclic", "curve.mode=budgets", "curve.budgets=[30ba, 3ep]")
    assert "must be in the warmup's unit ('ep') and longer than it, got 30ba" in p


# --- fractional batches, duplicate augmentations, subsets larger than the dataset ---


def test_fractional_batches_are_refused() -> None:
    (p,) = problems("duration=0.5ba")
    assert "duration: 'ba' counts optimizer steps, so it takes a whole number, got '0.5ba'; use 1ba" in p
    (p,) = problems("eval.every=2.5ba")
    assert "eval.every:" in p and "use 2ba" in p
    assert load_recipe(QUICKSTART, ["duration=100.0ba"])["duration"] == "100ba"  # a whole number


def test_cyclic_ends_in_batches_stay_whole() -> None:
    r = load_recipe(QUICKSTART, ["schedule.name=cyclic", "schedule.warmup=0ba", "schedule.t0=5ba",
                                 "schedule.t_mult=1.5", "schedule.cycles=3", "curve.mode=budgets"])
    # 5, 7.5, 11.25 batches: ends 5, 12.5, 23.75 -> whole steps, as the clock rounds them
    assert r["curve"]["budgets"] == ["5ba", "12ba", "24ba"] and r["duration"] == "24ba"


def test_duplicate_augmentations_are_refused(tmp_path: Path) -> None:
    result = validate(write(tmp_path, "data:\n  augment: [random_crop, hflip, random_crop]\n"))
    assert result.exit_code == 2
    assert "r.yaml:4: data.augment: random_crop listed more than once" in result.output


@pytest.mark.parametrize(("sets", "expect"), [
    (("data.train_subset=2000",),
     "data.train_subset: 2000 is more than the 1437 training images of 'digits'"),
    (("data.test_subset=361",), "data.test_subset: 361 is more than the 360 test images of 'digits'"),
    (("data.batch_size=1000", "data.train_subset=500"),
     "data.batch_size: 1000 is larger than the training set (500 images)"),
])
def test_sizes_beyond_the_dataset_are_refused(sets: tuple[str, ...], expect: str) -> None:
    (p,) = problems(*sets)
    assert expect in p


def test_run_with_a_too_large_subset_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(QUICKSTART), "--set", "data.train_subset=5000",
                                 "--out", str(out)])
    assert result.exit_code == 2 and "data.train_subset: 5000 is more than" in result.output
    assert not out.exists()


def test_imagefolder_without_files_skips_the_size_checks(tmp_path: Path) -> None:
    # its size is unknown until the files are there; `run` refuses the missing data itself
    r = load_recipe(QUICKSTART, ["data.dataset=imagefolder", f"data.root={tmp_path}",
                                 "data.train_subset=100000", "duration=10ba"])
    assert r["data"]["train_subset"] == 100000
    result = runner.invoke(app, ["run", str(QUICKSTART), "--set", "data.dataset=imagefolder",
                                 "--set", f"data.root={tmp_path}", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no images in" in result.output
    assert not (tmp_path / "out" / "quickstart").exists()
