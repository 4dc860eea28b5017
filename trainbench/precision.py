"""Which precision a run trains in, and whether this CPU runs it at full speed.

``precision: bf16 | fp16`` means ``torch.autocast`` (and a GradScaler for fp16). On a GPU
both are fast. On a CPU they are fast only where the hardware computes in that type:
without it, autocast converts every operand and runs emulated kernels, and a step can be
ten times slower than fp32 (a ResNet-9 step at batch 16 on a 2-core AVX2 EPYC: 17 s in
bf16 against 1.5 s in fp32). The rules (:func:`choose`):

- a **smoke run on a CPU trains and evaluates in fp32**, whatever the recipe says: smoke
  runs exist to exercise every code path in seconds, on any CPU. On a GPU a smoke run keeps
  the recipe's precision.
- a **normal run** always trains in the recipe's precision (results must not change
  silently); on a CPU without native support for it, one warning on stderr says why it
  will be slow and how to switch (``--set precision=fp32``).
- ``meta.json`` records ``precision: {recipe, used, why}`` (``why`` is empty when used ==
  recipe).

"Native" (:func:`native_cpu_precisions`), on x86-64:

- bf16: the CPU has AVX512-BF16 or AMX (oneDNN's bf16 kernels) *and* ATen runs its
  AVX-512 kernels;
- fp16: the CPU has AMX-FP16 *and* ATen runs its AVX-512 kernels (AVX512-FP16 alone is not
  enough: measured on a Sapphire Rapids, a ResNet-9 fp16 autocast step is over 10x slower
  than fp32).

Caps a user sets on the instruction set are honoured, because torch honours them:
``ATEN_CPU_CAPABILITY`` (e.g. ``avx2``) lowers what ``torch.backends.cpu.get_cpu_capability()``
reports, and ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) below the ISA that holds the
type's kernels makes oneDNN fall back to emulation; either makes the precision not native.
On other architectures (ARM, POWER) the check cannot tell cheaply, so it claims nothing
and never warns.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass

X86 = ("x86_64", "amd64", "i386", "i686")
FP32 = "fp32"
SMOKE_WHY = "smoke run on a CPU: trained and evaluated in fp32 so that it takes seconds on any CPU"

# oneDNN's ISA names in increasing order (oneDNN docs, "CPU Dispatcher Control"); the ones
# that hold the native kernels of each type.
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
               "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
               "AVX10_2_512_AMX_2")
ONEDNN_NEEDS = {"bf16": "AVX512_CORE_BF16", "fp16": "AVX512_CORE_AMX_FP16"}


@dataclass(frozen=True)
class CpuFeatures:
    """What decides native bf16/fp16 on an x86 CPU (see the module docstring)."""

    aten_capability: str  # torch.backends.cpu.get_cpu_capability(): "AVX512", "AVX2", "DEFAULT"
    avx512_bf16: bool
    amx: bool  # AMX tiles (AMX-BF16 comes with them)
    amx_fp16: bool
    onednn_cap: str | None  # ONEDNN_MAX_CPU_ISA as set (upper case), or None

    def native(self) -> frozenset[str]:
        avx512 = self.aten_capability == "AVX512"
        found = set()
        if avx512 and (self.avx512_bf16 or self.amx) and _onednn_allows(self.onednn_cap, "bf16"):
            found.add("bf16")
        if avx512 and self.amx_fp16 and _onednn_allows(self.onednn_cap, "fp16"):
            found.add("fp16")
        return frozenset(found)

    def describe(self) -> str:
        has = [n for n, v in (("avx512_bf16", self.avx512_bf16), ("AMX", self.amx),
                              ("AMX-FP16", self.amx_fp16)) if v]
        cap = f", ONEDNN_MAX_CPU_ISA={self.onednn_cap}" if self.onednn_cap else ""
        return (f"ATen CPU capability {self.aten_capability}{cap}; "
                f"{'has ' + ', '.join(has) if has else 'no avx512_bf16, AMX or AMX-FP16'}")


def _onednn_allows(cap: str | None, precision: str) -> bool:
    if cap is None or cap in ("DEFAULT", "ALL") or cap not in ONEDNN_ISAS:
        return True  # not capped, or a name we do not know: do not guess
    return ONEDNN_ISAS.index(cap) >= ONEDNN_ISAS.index(ONEDNN_NEEDS[precision])


def cpu_features() -> CpuFeatures | None:
    """This CPU's features as torch uses them, or None off x86 (cannot tell). Cheap: reads
    flags torch has already detected; the function the tests replace to fake a CPU."""
    if platform.machine().lower() not in X86:
        return None
    import torch

    def has(name: str) -> bool:  # private torch.cpu checks: absent in some versions
        check = getattr(torch.cpu, name, None)
        return bool(check()) if check is not None else False

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return CpuFeatures(aten_capability=torch.backends.cpu.get_cpu_capability(),
                       avx512_bf16=has("_is_avx512_bf16_supported"), amx=has("_is_amx_tile_supported"),
                       amx_fp16=has("_is_amx_fp16_supported"), onednn_cap=cap.upper() if cap else None)


@dataclass(frozen=True)
class Choice:
    """The precision a run asked for, the one it trains in, and why they differ; a warning
    to show once when the run will be slow as asked."""

    recipe: str
    used: str
    why: str = ""
    warning: str = ""

    def meta(self) -> dict[str, str]:
        return {"recipe": self.recipe, "used": self.used, "why": self.why}


def choose(precision: str, device_type: str, smoke: bool) -> Choice:
    """The rules of the module docstring."""
    if precision == FP32 or device_type != "cpu":
        return Choice(precision, precision)
    if smoke:
        return Choice(precision, FP32, SMOKE_WHY)
    features = cpu_features()
    if features is None or precision in features.native():
        return Choice(precision, precision)
    return Choice(precision, precision, warning=(
        f"precision {precision} was asked for, but this CPU has no native {precision} support "
        f"({features.describe()}), so autocast emulates it and training can be ten times "
        f"slower than fp32. It runs as asked; to train in fp32 instead: --set precision=fp32"))


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Print ``message`` as one warning on stderr, once per process (several seeds, budget
    sub-runs and recipes asking the same thing show it once)."""
    if message and message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)
