"""Precision rules: smoke runs on a CPU train in fp32, a normal run keeps the recipe's
precision and warns once when this CPU has no native support for it, meta.json records both;
and what each precision really does in the step loop (autocast, output dtype, GradScaler)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from trainbench import engine, precision
from trainbench.cli import app
from trainbench.engine import run_recipe
from trainbench.precision import SMOKE_WHY, CpuFeatures, choose
from trainbench.recipe import load_recipe
from trainbench.results import RunDir

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
# A few steps on a slice of digits: fast whatever the CPU emulates.
TINY = ["duration=3ba", "schedule.warmup=0ba", "eval.every=null", "data.train_subset=256",
        "data.test_subset=64",
        "data.batch_size=16", "model.width=8"]

AVX2_EPYC = CpuFeatures("AVX2", avx512_bf16=False, amx=False, amx_fp16=False, onednn_cap=None)
SAPPHIRE_RAPIDS = CpuFeatures("AVX512", avx512_bf16=True, amx=True, amx_fp16=False, onednn_cap=None)
GRANITE_RAPIDS = CpuFeatures("AVX512", avx512_bf16=True, amx=True, amx_fp16=True, onednn_cap=None)


@pytest.fixture
def fake_cpu(monkeypatch: pytest.MonkeyPatch):
    """``fake_cpu(features)``: this CPU is replaced by ``features``; warnings start unsent."""
    monkeypatch.setattr(precision, "_warned", set())

    def fake(features: CpuFeatures | None) -> None:
        monkeypatch.setattr(precision, "cpu_features", lambda: features)
    return fake


# --- what "native" means ---


@pytest.mark.parametrize(("features", "native"), [
    (AVX2_EPYC, set()),
    (SAPPHIRE_RAPIDS, {"bf16"}),  # AVX512-FP16 without AMX-FP16 is no fast fp16
    (GRANITE_RAPIDS, {"bf16", "fp16"}),
    (CpuFeatures("AVX512", avx512_bf16=True, amx=False, amx_fp16=False, onednn_cap=None), {"bf16"}),
    (CpuFeatures("AVX512", avx512_bf16=False, amx=True, amx_fp16=False, onednn_cap=None), {"bf16"}),
    (CpuFeatures("AVX512", avx512_bf16=False, amx=False, amx_fp16=False, onednn_cap=None), set()),
    # ISA caps a user sets are honoured: ATen's (ATEN_CPU_CAPABILITY) and oneDNN's.
    (CpuFeatures("AVX2", avx512_bf16=True, amx=True, amx_fp16=True, onednn_cap=None), set()),
    (CpuFeatures("AVX512", avx512_bf16=True, amx=True, amx_fp16=True, onednn_cap="AVX2"), set()),
    (CpuFeatures("AVX512", avx512_bf16=True, amx=True, amx_fp16=True, onednn_cap="AVX512_CORE_BF16"),
     {"bf16"}),
    (CpuFeatures("AVX512", avx512_bf16=True, amx=True, amx_fp16=True, onednn_cap="ALL"), {"bf16", "fp16"}),
], ids=["avx2", "spr", "gnr", "avx512bf16", "amx", "avx512-only", "aten-capped", "onednn-capped",
        "onednn-bf16", "onednn-all"])
def test_native_precisions(features: CpuFeatures, native: set[str]) -> None:
    assert features.native() == native


@pytest.mark.skipif(platform.machine().lower() not in precision.X86, reason="x86 rule")
def test_cpu_features_honour_the_isa_caps_torch_honours() -> None:
    # ATEN_CPU_CAPABILITY is read once per process by torch: check it in a fresh one.
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "avx2",
           "PYTHONPATH": str(ROOT)}
    code = "from trainbench.precision import cpu_features as f; c = f(); print(c.aten_capability, " \
           "c.onednn_cap, sorted(c.native()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AVX2", "AVX2", "[]"]


# --- the rules ---


def test_smoke_on_a_cpu_trains_in_fp32_whatever_the_cpu(fake_cpu) -> None:
    for features in (AVX2_EPYC, GRANITE_RAPIDS):
        fake_cpu(features)
        for asked in ("bf16", "fp16"):
            c = choose(asked, "cpu", smoke=True)
            assert (c.recipe, c.used, c.why, c.warning) == (asked, "fp32", SMOKE_WHY, "")
    assert choose("fp32", "cpu", smoke=True).meta() == {"recipe": "fp32", "used": "fp32", "why": ""}


def test_gpu_runs_keep_the_recipes_precision_even_in_smoke(fake_cpu) -> None:
    fake_cpu(AVX2_EPYC)  # the CPU does not matter on a GPU
    for smoke in (False, True):
        c = choose("bf16", "cuda", smoke=smoke)
        assert (c.used, c.why, c.warning) == ("bf16", "", "")


def test_normal_run_keeps_precision_and_warns_only_without_native_support(fake_cpu) -> None:
    fake_cpu(AVX2_EPYC)
    c = choose("bf16", "cpu", smoke=False)
    assert (c.recipe, c.used, c.why) == ("bf16", "bf16", "")
    assert "no native bf16 support" in c.warning and "ATen CPU capability AVX2" in c.warning
    assert "slower than fp32" in c.warning and c.warning.endswith("--set precision=fp32")
    fake_cpu(SAPPHIRE_RAPIDS)
    assert choose("bf16", "cpu", smoke=False).warning == ""
    assert "no native fp16 support" in choose("fp16", "cpu", smoke=False).warning
    fake_cpu(None)  # not x86: cannot tell, so no claim
    assert choose("fp16", "cpu", smoke=False).warning == ""


# --- what the engine does with them ---


class Recorder:
    """Records, for every training-mode forward pass of the model, whether autocast was on,
    its dtype and the output's dtype; and every GradScaler the engine builds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.forwards: list[tuple[bool, torch.dtype, torch.dtype]] = []
        self.scalers: list[torch.amp.GradScaler] = []
        real_build, recorder = engine.build_model, self

        def build_model(*args, **kwargs):
            model = real_build(*args, **kwargs)
            model.register_forward_hook(self._hook)
            return model

        class Scaler(torch.amp.GradScaler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                self.scaled = 0
                recorder.scalers.append(self)

            def scale(self, outputs):  # type: ignore[override]
                self.scaled += 1
                return super().scale(outputs)

        monkeypatch.setattr(engine, "build_model", build_model)
        monkeypatch.setattr(torch.amp, "GradScaler", Scaler)

    def _hook(self, module: torch.nn.Module, args: object, out: torch.Tensor) -> None:
        if module.training:
            self.forwards.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
                                  out.dtype))


def _train(tmp_path: Path, sets: list[str], smoke: bool = False) -> tuple[dict, RunDir]:
    run = RunDir(tmp_path / "run")
    outcome = run_recipe(load_recipe(QUICKSTART, [*TINY, *sets]), run, smoke=smoke)
    assert outcome.status == "completed", outcome.message
    return run.read_meta(), run


@pytest.mark.parametrize(("asked", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16),
                                              ("fp32", torch.float32)])
def test_each_precision_really_runs_autocast_and_scaler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        fake_cpu, asked: str, dtype: torch.dtype) -> None:
    fake_cpu(GRANITE_RAPIDS)  # native: no warning in the way
    rec = Recorder(monkeypatch)
    meta, _ = _train(tmp_path, [f"precision={asked}"])
    assert meta["precision"] == {"recipe": asked, "used": asked, "why": ""}
    assert len(rec.forwards) == 3  # one per training step
    for enabled, autocast_dtype, out_dtype in rec.forwards:
        assert enabled == (asked != "fp32")
        assert out_dtype == dtype  # the logits come out of autocast in its dtype
        if enabled:
            assert autocast_dtype == dtype
    (scaler,) = rec.scalers
    assert scaler.is_enabled() == (asked == "fp16")  # loss scaling for fp16 only
    assert scaler.scaled == 3  # and the loop goes through it every step


def test_smoke_run_on_cpu_trains_in_fp32_and_meta_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           fake_cpu, capsys) -> None:
    fake_cpu(AVX2_EPYC)
    rec = Recorder(monkeypatch)
    meta, _ = _train(tmp_path, ["precision=bf16"], smoke=True)
    assert meta["precision"] == {"recipe": "bf16", "used": "fp32", "why": SMOKE_WHY}
    assert rec.forwards and all(f == (False, rec.forwards[0][1], torch.float32) for f in rec.forwards)
    (scaler,) = rec.scalers  # the run built its scaler, disabled: fp32 needs no loss scaling
    assert not scaler.is_enabled()
    assert "warning" not in capsys.readouterr().err  # nothing slow to warn about


def test_normal_run_without_native_support_runs_as_asked_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_cpu) -> None:
    fake_cpu(AVX2_EPYC)
    args = ["run", QUICKSTART, "--seeds", "2", "--out", tmp_path, "--set", "precision=bf16",
            *(a for s in TINY for a in ("--set", s))]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning: precision bf16 was asked for") == 1  # two runs, one warning
    assert "--set precision=fp32" in result.stderr and "Traceback" not in result.output
    for seed in (0, 1):
        meta = json.loads((tmp_path / "quickstart" / f"seed{seed}" / "meta.json").read_text())
        assert meta["precision"] == {"recipe": "bf16", "used": "bf16", "why": ""}
