"""`trainbench run` end to end: the quickstart, several recipes and seeds, exit codes, smoke."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.recipe import load_recipe
from trainbench.results import read_points
from trainbench.smoke import MAX_STEPS

ROOT = Path(__file__).parent.parent
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_quickstart_end_to_end(tmp_path: Path) -> None:
    result = invoke("run", ROOT / "recipes" / "quickstart.yaml", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    run = tmp_path / "quickstart" / "seed0"
    assert {p.name for p in run.iterdir()} >= {"recipe.yaml", "meta.json", "points.csv", "curve.png"}
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["smoke"] is False
    points = read_points(run / "points.csv")
    assert points[-1]["test_acc"] >= 0.97  # the quickstart's promise
    assert points[-1]["curve"] == 1
    assert "completed" in result.output and "quickstart" in result.output
    # recipe.yaml is exactly the resolved recipe and re-runs as is.
    again = load_recipe(run / "recipe.yaml")
    assert again.data == load_recipe(ROOT / "recipes" / "quickstart.yaml").data


def test_several_recipes_seeds_skip_and_force(tmp_path: Path) -> None:
    r = ROOT / "recipes" / "digits" / "baseline.yaml"
    ls = ROOT / "recipes" / "digits" / "label_smoothing.yaml"
    args = ("run", r, ls, "--seeds", "2", "--set", "duration=20ba", "--set", "schedule.warmup=0ba",
            "--set", "eval.every=null",
            "--out", tmp_path)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    dirs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/seed*"))
    assert dirs == ["digits-baseline/seed0", "digits-baseline/seed1",
                    "digits-label-smoothing/seed0", "digits-label-smoothing/seed1"]
    assert yaml.safe_load((tmp_path / "digits-baseline/seed1/recipe.yaml").read_text())["seed"] == 1
    before = (tmp_path / "digits-baseline/seed0/meta.json").read_text()
    again = invoke(*args)
    assert again.exit_code == 0
    assert again.output.count("already completed") == 4
    assert (tmp_path / "digits-baseline/seed0/meta.json").read_text() == before  # untouched
    forced = invoke(*args, "--force", "--seed", "0", "--seeds", "1")
    assert forced.exit_code == 0 and "already completed" not in forced.output
    assert (tmp_path / "digits-baseline/seed0/meta.json").read_text() != before


def test_diverged_run_exits_1_and_the_next_recipe_still_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {ROOT / 'recipes' / 'quickstart.yaml'}\nname: boom\n"
                   "optimizer: {lr: 1.0e+4}\nduration: 2ep\n")
    good = ROOT / "recipes" / "quickstart.yaml"
    result = invoke("run", bad, good, "--set", "duration=2ep", "--out", tmp_path / "runs")
    assert result.exit_code == 1, result.output
    assert json.loads((tmp_path / "runs/boom/seed0/meta.json").read_text())["status"] == "diverged"
    assert json.loads((tmp_path / "runs/quickstart/seed0/meta.json").read_text())["status"] == "completed"
    assert "diverged" in result.output


def test_existing_unfinished_run_is_refused_before_training(tmp_path: Path) -> None:
    run = tmp_path / "quickstart" / "seed0"
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"status": "failed"}))
    (run / "recipe.yaml").write_text(load_recipe(ROOT / "recipes" / "quickstart.yaml").to_yaml())
    result = invoke("run", ROOT / "recipes" / "quickstart.yaml", "--out", tmp_path)
    assert result.exit_code == 2
    assert "status 'failed'" in result.output and "--force" in result.output
    assert "--resume" in result.output
    assert not (run / "points.csv").exists()


def test_existing_run_of_another_recipe_is_not_reused(tmp_path: Path) -> None:
    run = tmp_path / "quickstart" / "seed0"
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"status": "completed"}))
    (run / "recipe.yaml").write_text(
        load_recipe(ROOT / "recipes" / "quickstart.yaml", ["optimizer.lr=0.3"]).to_yaml())
    result = invoke("run", ROOT / "recipes" / "quickstart.yaml", "--out", tmp_path)
    assert result.exit_code == 2
    assert "holds a run of a different recipe" in result.output and "--force" in result.output


def test_unwritable_output_is_bad_input(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke("run", ROOT / "recipes" / "quickstart.yaml", "--out", blocker / "runs")
    assert result.exit_code == 2 and "--out" in result.output


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_every_shipped_recipe_validates(recipe: Path) -> None:
    result = invoke("validate", recipe)
    assert result.exit_code == 0, result.output


# The CI smoke (`trainbench run recipes/*/*.yaml --smoke`), in three calls: CIFAR-10's
# recipes, the other GPU-scale ones (ImageNet, the shared bases, synthetic), and the
# CPU-scale digits ones. Each is a class of its own so that `pytest -n 2 --dist loadscope`
# (`make test`) can give them to different workers (see tests/conftest.py). Every shipped
# recipe has a smoke budget of 3 minutes on a 2-core AVX2 CPU, hence the longer timeout.
SMOKE_CHUNKS = {
    "cifar10": lambda p: p.parts[0] == "cifar10",
    "gpu-scale": lambda p: p.parts[0] in ("imagenet", "base", "synthetic"),
    "digits": lambda p: p.parts[0] in ("digits", "digits_hard", "quickstart.yaml"),
}


def test_smoke_chunks_cover_every_shipped_recipe_once() -> None:
    rel = [r.relative_to(ROOT / "recipes") for r in RECIPES]
    assert all(sum(f(p) for f in SMOKE_CHUNKS.values()) == 1 for p in rel), rel


def smoke_runs(tmp_path: Path, chunk: str) -> None:
    recipes = [r for r in RECIPES if SMOKE_CHUNKS[chunk](r.relative_to(ROOT / "recipes"))]
    result = invoke("run", *recipes, "--smoke", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    runs = list(tmp_path.glob("*/seed*-smoke"))
    assert len(runs) == len({load_recipe(r).name for r in recipes})
    for run in runs:
        meta = json.loads((run / "meta.json").read_text())
        assert meta["status"] == "completed" and meta["smoke"] is True, meta
        # a budgets-mode run holds one sub-run per budget
        subs = [run / d for d in meta.get("budget_dirs", [])] or [run]
        for sub in subs:
            assert json.loads((sub / "meta.json").read_text())["total_steps"] <= MAX_STEPS


@pytest.mark.timeout(360)
class TestSmokeCifar10:
    def test_every_recipe_smoke_runs(self, tmp_path: Path) -> None:
        smoke_runs(tmp_path, "cifar10")
        cifar = json.loads((tmp_path / "cifar10-baseline/seed0-smoke/meta.json").read_text())
        assert cifar["synthetic_data"] is True  # no CIFAR files here: same-shape synthetic stand-in
        # bf16 in the recipe, fp32 in a smoke run on a CPU: seconds whatever the CPU's bf16 support
        assert (cifar["precision"]["recipe"], cifar["precision"]["used"]) == ("bf16", "fp32")


@pytest.mark.timeout(360)
class TestSmokeGpuScale:
    def test_every_recipe_smoke_runs(self, tmp_path: Path) -> None:
        smoke_runs(tmp_path, "gpu-scale")


@pytest.mark.timeout(360)
class TestSmokeDigits:
    def test_every_recipe_smoke_runs(self, tmp_path: Path) -> None:
        smoke_runs(tmp_path, "digits")


def test_digits_method_recipes_run_on_real_data(tmp_path: Path) -> None:
    # Every shipped digits recipe with a fixed-length schedule, shortened to 3 epochs (the
    # cyclic ones run in full in tests/test_budgets_fidelity.py).
    # IMP recipes: 3 dense epochs, then 2 rounds of 1 epoch.
    recipes = [r for r in sorted((ROOT / "recipes" / "digits").glob("*.yaml"))
               if load_recipe(r)["schedule"]["name"] == "cosine"]
    assert len(recipes) >= 8
    imp = [r for r in recipes if load_recipe(r)["methods"].get("prune", {}).get("schedule") == "imp"]
    assert imp
    # Distillation needs a trained teacher: the baseline just trained (the recipe names the
    # default runs/digits-baseline/seed0).
    distill = [r for r in recipes if "distill" in load_recipe(r)["methods"]]
    rest = [r for r in recipes if r not in imp and r not in distill]
    result = invoke("run", *rest, "--set", "duration=3ep", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    result = invoke("run", *distill, "--set", "duration=3ep", "--out", tmp_path, "--set",
                    f"methods.distill.teacher={tmp_path / 'digits-baseline' / 'seed0'}")
    assert result.exit_code == 0, result.output
    result = invoke("run", *imp, "--set", "duration=3ep", "--set", "methods.prune.retrain=1ep",
                    "--set", "methods.prune.phases=2", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    for r in recipes:
        name = load_recipe(r).name
        points = read_points(tmp_path / name / "seed0" / "points.csv")
        assert points[-1]["test_acc"] > 0.5, (name, points[-1])
