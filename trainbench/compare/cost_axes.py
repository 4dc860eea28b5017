"""The cost axes beyond training time: what a point consumed, so runs on 1 and 8 devices
compare (``--x device_time``, ``--x energy``, ``--x cost`` with ``--price-per-device-hour``).

- ``device_time``: points.csv's ``device_time_s`` (training seconds x devices). Runs made
  before that column existed get ``train_time_s`` x meta.json's ``world_size`` (1 when
  absent), with a note saying so.
- ``energy``: ``energy_j``, where it was measured (see :mod:`trainbench.costs`). Runs without
  it are left out, each with a problem line; none with it is bad input (exit 2).
- ``cost``: device hours x the price: ``device_time_s`` / 3600 x ``--price-per-device-hour``,
  in the price's currency ($ in the column header).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence

from trainbench.compare.discovery import Run
from trainbench.errors import InputError

COLUMNS = {"device_time": "device_time_s", "energy": "energy_j", "cost": "cost_usd"}


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_price(x: str, price: float | None) -> None:
    if x == "cost" and price is None:
        raise InputError("--x cost needs --price-per-device-hour P: the price of one device for one "
                         "hour (e.g. 2.5); a point's cost is its device hours x P.")
    if price is not None and x != "cost":
        raise InputError(f"--price-per-device-hour prices device time, so it goes with --x cost (the "
                         f"default when a price is given), not --x {x}: drop one of the two.")
    if price is not None and not (math.isfinite(price) and price > 0):
        raise InputError(f"--price-per-device-hour {price:g}: give a price above 0, e.g. 2.5.")


def with_cost_column(runs: Sequence[Run], x: str, price: float | None,
                     notes: list[str], problems: list[str]) -> list[Run]:
    """The runs with the ``x`` axis's column filled in (copies; the runs given are not
    changed); runs that cannot have it are left out with a problem line."""
    if x == "energy":
        having = [r for r in runs if any(_finite(p.get("energy_j")) for p in r.points)]
        if not having:
            raise InputError(f"--x energy: none of the {len(runs)} runs has energy_j measured. It is "
                             "read from NVML on NVIDIA GPUs (pip install \"trainbench[nvml]\") and from "
                             "RAPL (/sys/class/powercap, often root-only) on CPUs; each run's meta.json "
                             "'energy' says why it was not. Use --x device_time or --x time.")
        problems += [f"{r.path}: no energy_j measured (see its meta.json 'energy'); left out of "
                     "--x energy." for r in runs if r not in having]
        return having
    if x not in ("device_time", "cost"):
        return list(runs)
    out, derived = [], 0
    for r in runs:
        points = []
        derived += not any(_finite(p.get("device_time_s")) for p in r.points) and bool(r.points)
        for p in r.points:
            q = dict(p)
            if not _finite(q.get("device_time_s")) and _finite(q.get("train_time_s")):
                q["device_time_s"] = q["train_time_s"] * r.world_size
            if x == "cost" and price is not None and _finite(q.get("device_time_s")):
                q["cost_usd"] = q["device_time_s"] / 3600 * price
            points.append(q)
        out.append(dataclasses.replace(r, points=points, columns=[*r.columns, COLUMNS[x]]))
    if derived:
        notes.append(f"{derived} run{'s have' if derived > 1 else ' has'} no device_time_s (made before "
                     "trainbench recorded it): train_time_s x meta.json's world_size (1 when absent) "
                     "stands in.")
    return out


def world_size_note(runs: Sequence[Run], x: str) -> str | None:
    """A note when the runs were made on different numbers of devices."""
    sizes = Counter(r.world_size for r in runs)
    if len(sizes) < 2:
        return None
    listing = ", ".join(f"{n} device{'s' if n > 1 else ''} ({k} run{'s' if k > 1 else ''})"
                        for n, k in sorted(sizes.items()))
    advice = ("compare what they consumed with --x device_time, --x energy or "
              "--price-per-device-hour P" if x in ("time", "epochs", "samples", "sparsity")
              else f"--x {x} accounts for it")
    return f"runs were made on different numbers of devices: {listing}; time is wall-clock time, so " \
           f"{advice}."
