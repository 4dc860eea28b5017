"""Distillation: the loss against the hand formula, the wrapper around the run's loss, the
teacher from a run directory, alpha 0 = the plain run, bad teachers (exit 2 naming the
field), a smoke run's stand-in teacher."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TEACHER_SETS, build_state, tiny_data
from torch import nn
from typer.testing import CliRunner

from trainbench.cli import app
from trainbench.engine import run_recipe
from trainbench.errors import InputError
from trainbench.methods import METHODS
from trainbench.methods.distill import Distill, distill_loss, load_teacher
from trainbench.recipe import RecipeError, load_recipe
from trainbench.results import TIMING_COLUMNS, RunDir

ROOT = Path(__file__).parent.parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def test_loss_is_the_hand_computed_formula() -> None:
    s = [[1.0, -0.5, 2.0], [0.3, 0.1, -1.2]]
    t = [[2.0, 0.0, 1.0], [-1.0, 0.5, 0.2]]
    y = [2, 1]
    temp, alpha = 2.0, 0.7

    def softmax(row: list[float]) -> list[float]:
        e = [math.exp(v / temp) for v in row]
        return [v / sum(e) for v in e]

    kl = sum(sum(pt * math.log(pt / ps) for pt, ps in zip(softmax(tr), softmax(sr), strict=True))
             for sr, tr in zip(s, t, strict=True)) / 2
    ce = sum(math.log(sum(math.exp(v) for v in sr)) - sr[c] for sr, c in zip(s, y, strict=True)) / 2
    want = alpha * kl * temp**2 + (1 - alpha) * ce
    got = distill_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), nn.CrossEntropyLoss(), temp, alpha)
    assert got.item() == pytest.approx(want, rel=1e-6)
    same = distill_loss(torch.tensor(s), torch.tensor(s), torch.tensor(y), nn.CrossEntropyLoss(), temp, 1.0)
    assert same.item() == pytest.approx(0, abs=1e-7)  # KL: 0 when the student matches


def test_the_method_wraps_the_runs_loss_and_feeds_the_teacher_the_students_batch() -> None:
    assert METHODS.get("distill") is Distill and Distill.order > 0  # after augmentation and mixing
    torch.manual_seed(0)
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    smoothed = nn.CrossEntropyLoss(label_smoothing=0.1)  # what label_smoothing put there
    state = build_state(loss_fn=smoothed)
    m = Distill(teacher="unused", temperature=3.0, alpha=0.4)
    m.teacher = teacher
    m.on_fit_start(state)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    x2, y2 = m.on_batch(state, x, y)
    assert x2 is x and y2 is y
    logits = student(x)
    got = state.loss_fn(logits, y)
    torch.testing.assert_close(got, distill_loss(logits, teacher(x), y, smoothed, 3.0, 0.4))
    got.backward()
    assert student.weight.grad is not None and teacher.weight.grad is None  # no teacher gradients


def test_teacher_is_the_run_directorys_model_and_weights(teacher_run: Path) -> None:
    state = build_state(data=tiny_data(channels=1, size=8, classes=10), num_classes=10)
    teacher = load_teacher(teacher_run, state)
    saved = torch.load(teacher_run / "model.pt", weights_only=True)
    assert saved.keys() == teacher.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def points(run: RunDir) -> list[dict[str, str]]:
    return [{k: repr(v) for k, v in p.items() if k not in TIMING_COLUMNS} for p in run.read_points()]


def test_alpha_zero_is_the_plain_run_and_alpha_positive_is_not(teacher_run: Path, tmp_path: Path) -> None:
    # The teacher fixture is the plain run of these settings: with alpha 0 the distilled run
    # must repeat it exactly (the teacher draws no randomness and adds nothing to the loss).
    out = {}
    for alpha in (0.0, 0.9):
        recipe = load_recipe(QUICKSTART, [*TEACHER_SETS, f"methods.distill.teacher={teacher_run}",
                                          f"methods.distill.alpha={alpha}"])
        out[alpha] = RunDir(tmp_path / str(alpha))
        assert run_recipe(recipe, out[alpha]).status == "completed"
    assert points(out[0.0]) == points(RunDir(teacher_run))
    assert out[0.9].read_points()[-1]["train_loss"] != out[0.0].read_points()[-1]["train_loss"]


def test_bad_teachers_are_refused_naming_the_field(teacher_run: Path, tmp_path: Path) -> None:
    def problems(teacher: Path | str, *sets: str) -> str:
        with pytest.raises(RecipeError) as e:
            load_recipe(QUICKSTART, [f"methods.distill.teacher={teacher}", *sets])
        return str(e.value)

    with pytest.raises(RecipeError, match=r"methods\.distill\.teacher: required"):
        load_recipe(QUICKSTART, ["methods.distill={}"])
    no_model = tmp_path / "no_model"
    shutil.copytree(teacher_run, no_model, ignore=shutil.ignore_patterns("model.pt"))
    assert "methods.distill.teacher: " + str(no_model) + " has no model.pt" in problems(no_model)
    assert "is not a directory" in problems(teacher_run / "model.pt")
    assert "was trained on digits (1x8x8 images, 10 classes), the student's images are 1x16x16" in problems(
        teacher_run, "data.size=16")
    # Weights of another architecture than the recipe builds: found when the run starts.
    other = tmp_path / "other"
    shutil.copytree(teacher_run, other)
    r = yaml.safe_load((other / "recipe.yaml").read_text())
    r["model"]["width"] = 16
    (other / "recipe.yaml").write_text(yaml.safe_dump(r))
    with pytest.raises(InputError, match=r"methods.distill.teacher: .*model.pt does not hold weights"):
        load_teacher(other, build_state(data=tiny_data(channels=1, size=8, classes=10), num_classes=10))
    # An absent directory: refused by the run (exit 2), nothing written.
    result = CliRunner().invoke(app, ["run", str(QUICKSTART), "--out", str(tmp_path / "runs"),
                                      "--set", f"methods.distill.teacher={tmp_path}/nope"])
    assert result.exit_code == 2, result.output
    assert "methods.distill.teacher" in result.output and "does not exist" in result.output
    assert not list((tmp_path / "runs").glob("*/seed0/*"))


def test_a_smoke_run_without_the_teacher_uses_a_fresh_one_and_says_so(tmp_path: Path, capsys) -> None:
    recipe = load_recipe(QUICKSTART, [f"methods.distill.teacher={tmp_path}/absent"])
    assert run_recipe(recipe, RunDir(tmp_path / "s"), smoke=True).status == "completed"
    assert "freshly initialised small_cnn" in capsys.readouterr().err
