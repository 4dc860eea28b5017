"""What a point costs beyond wall-clock time: ``device_time_s`` and ``energy_j`` (points.csv).

- ``device_time_s`` = ``train_time_s`` x :func:`num_devices`: a run on 8 GPUs for 10 s used
  80 device-seconds, what a 1-GPU run of 80 s uses, so the two compare on what they consumed.
- ``energy_j``: the energy the training devices drew during the training intervals, the same
  intervals ``train_time_s`` counts (the engine starts the meter where it starts the training
  clock and stops it where it stops it, after the device sync), so evaluation, checkpoints and
  start-up are left out. Counters, by the run's device:

  * CUDA: NVML's total-energy counter of the run's GPU
    (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver loaded; Volta or
    newer), found by the GPU's UUID so ``CUDA_VISIBLE_DEVICES`` is honoured. NVML comes from
    ``nvidia-ml-py`` (``pip install "trainbench[nvml]"``); without it, or on a GPU whose
    driver does not report energy, ``energy_j`` stays empty and meta.json's ``energy`` says why.
  * CPU: the RAPL package counters of every CPU package,
    ``/sys/class/powercap/intel-rapl:N/energy_uj`` (Intel, and AMD through the same driver),
    summed; sub-zones (``intel-rapl:N:M``, core/uncore/dram) are parts of their package and
    not added again. Each counter wraps at ``max_energy_range_uj``: a read below the previous
    one adds the range. Most Linux systems let only root read these files (since 2020); where
    they cannot be read, ``energy_j`` stays empty.
  * anything else: empty.

  Both counters measure the whole device or package, so other work on it at the same time
  counts too (on a shared CPU, every process's).

Neither is read per step: the meter reads its counter where the training clock starts and
stops (the run's start and each evaluation or checkpoint point), on the host, with no device
sync of its own. A RAPL counter could wrap more than once between two such reads on a long
interval, so a daemon thread also reads it every :func:`guard_period` seconds (a sysfs read;
the step loop never waits for it).

The energy total is checkpointed with the loop's counters, so a resumed run continues it;
a run resumed where no counter can be read (or started from an older checkpoint) reports
none from then on rather than a part.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

POWERCAP = Path("/sys/class/powercap")
_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")  # not intel-rapl:N:M (parts of package N)
MAX_PACKAGE_WATTS = 2000.0  # for guard_period: a generous bound on one package's power


def num_devices() -> int:
    """How many devices one run trains on (``device_time_s`` = ``train_time_s`` x this): the
    process group's world size (one device per process; 1 without one), what meta.json's
    ``world_size`` records, which ``compare`` reads for runs made before this column."""
    from trainbench import distributed

    return distributed.world_size()


class EnergyCounter(Protocol):
    source: str  # what is measured, for meta.json

    def read_j(self) -> float:
        """Joules since an arbitrary origin, non-decreasing."""
        ...


class NvmlCounter:
    """One GPU's NVML total-energy counter."""

    def __init__(self, nvml: Any, handle: Any, source: str) -> None:
        self.nvml, self.handle, self.source = nvml, handle, source

    def read_j(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0  # mJ -> J


@dataclass
class _Zone:
    energy: Path
    max_range_uj: int
    last_uj: int


class RaplCounter:
    """The summed package counters of RAPL zones, wrap-around corrected."""

    def __init__(self, zones: list[tuple[Path, int]], source: str, guard: bool = True) -> None:
        self.source = source
        self._zones = [_Zone(path, max_range, _read_int(path)) for path, max_range in zones]
        self._total_uj = 0
        self._lock = threading.Lock()  # the guard thread and the training loop both read
        if guard:
            _start_guard(self, guard_period(min(z.max_range_uj for z in self._zones)))

    def read_j(self) -> float:
        with self._lock:
            for z in self._zones:
                now = _read_int(z.energy)
                delta = now - z.last_uj
                if delta < 0:  # wrapped past max_energy_range_uj (at most once: see guard_period)
                    delta += z.max_range_uj
                self._total_uj += delta
                z.last_uj = now
            return self._total_uj / 1e6


def guard_period(max_range_uj: int) -> float:
    """Seconds between the guard thread's reads: half the time one wrap takes at
    :data:`MAX_PACKAGE_WATTS`, within 1 to 60 s."""
    return max(1.0, min(60.0, max_range_uj / 1e6 / MAX_PACKAGE_WATTS / 2))


def _start_guard(counter: RaplCounter, period: float) -> None:
    """A daemon thread reading ``counter`` every ``period`` s while the counter lives, so
    no two reads are a whole wrap apart. It holds only a weak reference."""
    ref = weakref.ref(counter)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            c = ref()
            if c is None:
                return
            with contextlib.suppress(OSError, ValueError):
                c.read_j()
            del c

    weakref.finalize(counter, stop.set)
    threading.Thread(target=loop, name="trainbench-rapl-guard", daemon=True).start()


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def rapl_counter(root: Path = POWERCAP, guard: bool = True) -> RaplCounter | str:
    """The CPU packages' energy counter under ``root``, or why there is none."""
    zones, unreadable = [], []
    for d in sorted(root.glob("intel-rapl:*")) if root.is_dir() else []:
        if not _PACKAGE_ZONE.fullmatch(d.name):
            continue
        try:
            zones.append((d / "energy_uj", _read_int(d / "max_energy_range_uj")))
            _read_int(d / "energy_uj")
        except (OSError, ValueError):
            unreadable.append(d.name)
    if unreadable:  # a sum over some packages only would undercount: none rather than part
        return (f"none: cannot read {', '.join(f'{root / n}/energy_uj' for n in unreadable)} (most "
                "Linux systems let only root read RAPL counters)")
    if not zones:
        return f"none: no RAPL package zone (intel-rapl:N) under {root}"
    names = []
    for path, _ in zones:
        try:
            names.append((path.parent / "name").read_text().strip())
        except OSError:
            names.append(path.parent.name)
    return RaplCounter(zones, f"rapl: {', '.join(names)} ({root})", guard=guard)


def nvml_counter(device: Any) -> NvmlCounter | str:
    """The NVML energy counter of the CUDA ``device`` (a torch.device), or why there is none."""
    try:
        import pynvml  # from nvidia-ml-py
    except ImportError:
        return 'none: NVML is not installed (pip install "trainbench[nvml]", i.e. nvidia-ml-py)'
    import torch

    try:
        pynvml.nvmlInit()  # reference-counted by NVML: a second init is harmless
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        uuid = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # supported? (Volta or newer)
        name = pynvml.nvmlDeviceGetName(handle)
    except Exception as e:  # NVMLError_*: no driver, not supported, no such device
        return f"none: NVML cannot read this GPU's energy ({type(e).__name__}: {e})"
    name = name.decode() if isinstance(name, bytes) else str(name)
    return NvmlCounter(pynvml, handle, f"nvml: {name} ({uuid}), total energy")


def energy_counter(device: Any) -> EnergyCounter | str:
    """The counter for a run on ``device`` (a torch.device), or why there is none."""
    if device.type == "cuda":
        return nvml_counter(device)
    if device.type == "cpu":
        return rapl_counter()
    return f"none: no energy counter for '{device.type}' devices"


class EnergyMeter:
    """Energy over the training intervals: :meth:`start` where the training clock starts,
    :meth:`stop` where it stops (after the device sync)."""

    def __init__(self, counter: EnergyCounter | str) -> None:
        self.counter = None if isinstance(counter, str) else counter
        self.source = counter if isinstance(counter, str) else counter.source  # for meta.json
        self._start: float | None = None

    @classmethod
    def for_device(cls, device: Any) -> EnergyMeter:
        return cls(energy_counter(device))

    @property
    def zero(self) -> float | None:
        """A fresh run's total: 0 J when measured, None (never reported) when not."""
        return None if self.counter is None else 0.0

    def start(self) -> None:
        self._start = None if self.counter is None else self.counter.read_j()

    def stop(self, total: float | None) -> float | None:
        """``total`` plus the energy since :meth:`start`; None once any interval went unmeasured."""
        if total is None or self.counter is None or self._start is None:
            return None
        return total + self.counter.read_j() - self._start


def point_costs(train_time_s: float, energy_j: float | None, *, per_node: bool = False) -> dict[str, float]:
    """The cost columns of a points.csv row (``energy_j`` left out, so empty, when unknown).
    With several processes ``energy_j`` is this rank's reading, summed over the ranks here
    (at evaluation points only): each GPU's own counter, or, ``per_node``, a CPU package's
    counter that every rank of a node reads alike (counted once per node)."""
    from trainbench import distributed

    energy_j = distributed.sum_over_ranks(energy_j, per_node=per_node)
    return {"device_time_s": train_time_s * num_devices(),
            **({} if energy_j is None else {"energy_j": energy_j})}
