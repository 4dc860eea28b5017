"""torch.compile: the model is wrapped (compilation itself is lazy and not run by default).

Compiling is slow on the 2-core CPU this suite is written for: with a cold Inductor cache a
tiny conv net's compiled forward took 20 s, the quickstart's first compiled steps 16 s (a
small CNN's forward+backward 24 s), over the suite's time budget. The two tests that compile
are opt-in: TRAINBENCH_SLOW_TESTS=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import build_state
from torch import nn

from trainbench.errors import InputError
from trainbench.methods import METHODS, build_methods
from trainbench.methods.compile import Compile, compile_model
from trainbench.recipe import load_recipe

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"
slow = pytest.mark.skipif(os.environ.get("TRAINBENCH_SLOW_TESTS") != "1",
                          reason="runs torch.compile (~25 s cold on a 2-core CPU); "
                                 "set TRAINBENCH_SLOW_TESTS=1")
OptimizedModule = torch._dynamo.eval_frame.OptimizedModule


def test_method_wraps_the_model_lazily() -> None:
    assert METHODS.get("compile") is Compile
    assert (Compile().mode, Compile().fullgraph) == ("default", False)
    model = nn.Sequential(nn.Linear(4, 3))
    state = build_state(model=model)
    Compile(mode="max-autotune", fullgraph=True).on_init(state)
    assert isinstance(state.model, OptimizedModule)
    assert state.model._orig_mod is model
    # the optimizer the engine builds next sees the original parameters
    assert [id(p) for p in state.model.parameters()] == [id(p) for p in model.parameters()]
    assert list(state.model.state_dict()) == [f"_orig_mod.{k}" for k in model.state_dict()]


def test_runs_last_and_is_off_unless_listed() -> None:
    assert Compile.order == 100
    recipe = load_recipe(QUICKSTART, ["methods.compile={}", "methods.channels_last={}",
                                      "methods.blurpool={}", "methods.lookahead={}",
                                      "methods.grad_clip={}"])
    methods = list(build_methods(recipe["methods"]).values())  # in the engine's event order
    assert isinstance(methods[-1], Compile)
    assert [type(m).__name__ for m in methods[:2]] == ["ChannelsLast", "BlurPool"]
    assert "compile" not in load_recipe(QUICKSTART)["methods"]
    with pytest.raises(InputError, match="mode"):
        load_recipe(QUICKSTART, ["methods.compile={mode: fast}"])


def test_missing_cpu_compiler_is_reported_up_front() -> None:
    import torch._inductor.config as inductor_config

    state = build_state(model=nn.Linear(4, 3))
    with inductor_config.patch({"cpp.cxx": (None, "no-such-c++-compiler")}), \
            pytest.raises(InputError, match="C\\+\\+ compiler"):
        Compile().on_init(state)
    assert isinstance(state.model, nn.Linear)  # left as it was


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_device_needs_no_cpu_compiler_check() -> None:
    import torch._inductor.config as inductor_config

    state = build_state(model=nn.Linear(4, 3).cuda(), device=torch.device("cuda"))
    with inductor_config.patch({"cpp.cxx": (None, "no-such-c++-compiler")}):
        Compile().on_init(state)
    assert isinstance(state.model, OptimizedModule)


@slow
def test_compiled_forward_matches_eager() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    x = torch.randn(2, 1, 4, 4)
    compiled = compile_model(model)
    torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=1e-5)


@slow
def test_end_to_end(tmp_path: Path) -> None:
    from trainbench.engine import run_recipe
    from trainbench.results import RunDir

    recipe = load_recipe(QUICKSTART, ["duration=10ba", "eval.every=null", "methods.compile={}"])
    assert run_recipe(recipe, RunDir(tmp_path / "r")).status == "completed"
