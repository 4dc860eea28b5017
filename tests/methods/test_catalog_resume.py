"""Resume equality for cutout, the augmentation policies, distill, snapshot_ensemble and
temperature_scaling together: an interrupted and resumed run equals an uninterrupted one
(the snapshots and the fitted temperature through the checkpoint, the policies' draws from
the step alone)."""

from __future__ import annotations

from pathlib import Path

import torch

from trainbench.engine import run_recipe
from trainbench.recipe import load_recipe
from trainbench.results import TIMING_COLUMNS, RunDir

QUICKSTART = Path(__file__).parent.parent.parent / "recipes" / "quickstart.yaml"
SPE = 256 // 64


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path: Path, teacher_run: Path,
                                                                  stop_after: type) -> None:
    sets = ["data.train_subset=256", "data.test_subset=100", "model.width=8", "duration=null",
            "schedule.name=cyclic", "schedule.warmup=0ep", "schedule.t0=1ep", "schedule.t_mult=2",
            "schedule.cycles=2",
            "eval.every=1ep", "methods.cutout.length=3", "methods.randaugment.groups=4",
            "methods.trivialaugment.groups=4", "methods.augmix.groups=2",
            f"methods.distill.teacher={teacher_run}", "methods.snapshot_ensemble={}",
            "methods.temperature_scaling.holdout=0.1"]
    recipe = load_recipe(QUICKSTART, sets)
    whole, cut = RunDir(tmp_path / "whole"), RunDir(tmp_path / "cut")
    assert run_recipe(recipe, whole).status == "completed"
    stopped = run_recipe(recipe, cut, stop=stop_after(2 * SPE + 3))  # mid second cycle
    assert stopped.status == "interrupted"
    assert run_recipe(recipe, cut, resume=True).status == "completed"

    def timing_free(run: RunDir) -> list[dict[str, str]]:
        return [{k: repr(v) for k, v in p.items() if k not in TIMING_COLUMNS} for p in run.read_points()]

    rows = timing_free(whole)
    assert timing_free(cut) == rows
    assert [r["curve"] for r in rows] == ["1", "0", "1"]  # cycle ends at epochs 1 and 3
    assert all(r["test_acc_ens"] != "nan" and r["temperature"] != "nan" for r in rows)
    a = torch.load(whole.path / "model.pt", weights_only=True)
    b = torch.load(cut.path / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
