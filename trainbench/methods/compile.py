"""``torch.compile`` of the model (TorchDynamo + Inductor), a speed method.

Replaces ``state.model`` with ``torch.compile(model, mode=..., fullgraph=...)`` in
``on_init``, after every other method (order 100), so model surgery (BlurPool,
channels-last) and averaging copies (EMA, SWA) see the plain model. The optimizer is built
afterwards from the compiled module's parameters, which are the original ones.

Things that show up in the results:

- Compilation is lazy: it happens inside the first training steps, and that time is
  counted as training time (``train_time_s`` of the first point), as it would be in practice.
  Measured on a 2-core CPU, quickstart recipe cut to 10 steps: ``train_time_s`` 16.4 s with
  a cold Inductor cache and 1.4 s with its on-disk cache warm, against 0.16 s eager (same
  accuracy); so on small runs compile mostly adds time.
- Evaluation reuses the compiled model; eval mode under ``torch.inference_mode`` is another
  graph, compiled at the first evaluation point (outside the timed loop). A last test batch
  of a different size may compile once more.
- On CPU, Inductor needs a C++ compiler (``g++``, or ``$CXX``); its absence is reported
  at start-up as bad input instead of failing inside the first step. ``reduce-overhead``
  (CUDA graphs) helps on CUDA only; ``max-autotune`` spends longer compiling to benchmark
  kernel choices.

Data-parallel runs: DDP wraps the compiled module (``DDP(torch.compile(model))``): correct,
but DDP's all-reduce hooks then fire after the whole compiled backward instead of
overlapping it (torch's DDPOptimizer, which splits graphs at bucket boundaries, needs
``torch.compile(DDP(model))``, whose evaluation would have to go through DDP).

Recipe::

    methods:
      compile: {mode: default, fullgraph: false}

Off unless listed. Does not depend on the fraction of training, so it is well defined in
cyclic runs.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from trainbench.errors import InputError
from trainbench.methods.base import METHODS, Method, TrainState

CompileMode = Literal["default", "reduce-overhead", "max-autotune"]


def compile_model(model: nn.Module, mode: CompileMode = "default", fullgraph: bool = False) -> nn.Module:
    """``torch.compile(model)``: an ``OptimizedModule`` whose ``_orig_mod`` is ``model``.
    Nothing is compiled until the first forward call."""
    return torch.compile(model, mode=mode, fullgraph=fullgraph)


def cpu_compiler_problem() -> str | None:
    """Why Inductor cannot build CPU kernels here (no C++ compiler), or None."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a private helper moved: let torch report problems itself
        return None
    try:
        get_cpp_compiler()
    except Exception as e:
        return (f"methods.compile: torch.compile on the CPU needs a C++ compiler (g++ or $CXX), "
                f"and none was found ({type(e).__name__}: {e}). Install one, or remove the "
                "compile method.")
    return None


@METHODS.register("compile")
class Compile(Method):
    """torch.compile the model (compile time counts as training time)."""

    order = 100

    def __init__(self, *, mode: CompileMode = "default", fullgraph: bool = False) -> None:
        self.mode = mode
        self.fullgraph = fullgraph

    def on_init(self, state: TrainState) -> None:
        if state.device.type == "cpu" and (problem := cpu_compiler_problem()):
            raise InputError(problem)
        state.model = compile_model(state.model, self.mode, self.fullgraph)
