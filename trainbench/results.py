"""The run directory: ``recipe.yaml``, ``meta.json``, ``points.csv``, ``curve.png``.

``meta.json`` and ``recipe.yaml`` are replaced atomically (temp file + rename), so a reader
never sees half a file. ``points.csv`` is append-only and flushed per row, so an
interrupted run keeps every point it measured; readers skip a torn last line.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import io
import json
import math
import os
import platform
import secrets
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Protocol

import yaml

POINT_COLUMNS = ("step", "epoch", "samples", "train_time_s", "device_time_s", "energy_j", "data_wait_s",
                 "lr", "train_loss", "test_loss", "test_acc", "test_ece", "curve")
# Measured, so they differ between two runs of the same recipe and seed (every other column is
# reproducible): what "the same points.csv, timing columns aside" leaves aside.
TIMING_COLUMNS = ("train_time_s", "device_time_s", "energy_j", "data_wait_s")
STATUSES = ("running", "completed", "diverged", "interrupted", "failed")
# Recipe fields a run directory is reused across (skip, resume): they do not change results
# (trackers only record them; the stream's order and augmentation do not depend on how many
# worker processes decode it, nor how far ahead they work).
NOT_IDENTITY = ("log", "data.workers", "data.prefetch")
RESERVE_NAME = ".reserve"  # see RunDir.update_meta: space set aside to record a run's end
RESERVE_BYTES = 64 * 1024


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside ``path``, opened for writing. Created with mode
    0o666 like a plain ``open(path, "w")``, so the umask (and a folder's default ACL) decides
    who may read it, as for points.csv; ``tempfile.mkstemp`` would make every result 0600,
    unreadable to teammates. This needs no umask reading, which is process-wide and racy."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # another writer's temporary file: draw another name
            continue
    raise FileExistsError(f"no free temporary file name beside {path}")


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(f)`` into a temporary file beside ``path``, synced, then renamed over
    ``path``: readers see the old file or the new one, never half of one. On any failure
    (a full disk, an interrupt) the temporary file is removed and ``path`` is untouched.
    The file gets the permissions a plain write would give it (umask applied)."""
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("trainbench", "torch", "torchvision", "timm"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return str(v)


class PointListener(Protocol):
    """Fed by a :class:`PointsWriter` (the trackers: :mod:`trainbench.trackers`). Never raises."""

    def point(self, row: dict[str, Any]) -> None: ...
    def lr(self, step: int, lr: float) -> None: ...


class PointsWriter:
    """Appends rows to points.csv, one flush + fsync per row (rows are rare: eval points), and
    passes each row on to the run's listeners (trackers) once it is on disk."""

    def __init__(self, path: Path, columns: list[str], listeners: list[PointListener] | None = None) -> None:
        self.columns = columns
        self.listeners = listeners or []
        new = not path.exists() or path.stat().st_size == 0
        self._f = path.open("a", newline="")
        if new:
            self._write(columns)

    def _write(self, values: list[str]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        self._f.write(buf.getvalue())
        self._f.flush()
        os.fsync(self._f.fileno())

    def append(self, row: dict[str, Any]) -> None:
        self._write([_fmt(row.get(c, "")) for c in self.columns])
        for listener in self.listeners:
            listener.point({c: row[c] for c in self.columns if c in row})

    def lr(self, step: int, lr: float) -> None:
        """The LR at a training step (a host float: no device sync), for the listeners; called
        every step, so it costs nothing without listeners."""
        for listener in self.listeners:
            listener.lr(step, lr)

    def close(self) -> None:
        self._f.close()


class RunDir:
    """One run (recipe x seed) on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.recipe_path = self.path / "recipe.yaml"
        self.meta_path = self.path / "meta.json"
        self.points_path = self.path / "points.csv"
        self.curve_path = self.path / "curve.png"
        self.listeners: list[PointListener] = []  # fed by points_writer(): the run's trackers

    def exists(self) -> bool:
        return self.meta_path.exists()

    def contents(self) -> list[str]:
        """What the directory holds, hidden entries (the lock, temporary files, the reserve)
        aside; folders end in '/'. Without meta.json, anything here is not a run trainbench
        can account for (e.g. a run whose meta.json was deleted)."""
        try:
            return sorted(p.name + ("/" if p.is_dir() else "") for p in self.path.iterdir()
                          if not p.name.startswith("."))
        except OSError:
            return []

    def start(self, recipe_yaml: str, meta: dict[str, Any]) -> None:
        """Create the directory afresh: recipe, meta with status 'running', no points."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in (self.points_path, self.curve_path, self.path / "model.pt", self.path / "error.log"):
            stale.unlink(missing_ok=True)
        atomic_write_text(self.recipe_path, recipe_yaml)
        self._meta = {"status": "running", **meta, "start_time": now(), "end_time": None,
                      "versions": versions(), "command": " ".join(sys.argv)}
        atomic_write_text(self.meta_path, json.dumps(self._meta, indent=2) + "\n")

    def resume(self, meta: dict[str, Any], from_step: int | None) -> None:
        """Reopen an unfinished run: status back to 'running', the resumption recorded, the
        previous attempt's error.log dropped (it no longer describes the run)."""
        self._meta = self.read_meta()
        resumed = [*self._meta.get("resumed", []), {"time": now(), "from_step": from_step,
                   "status_was": self._meta.get("status"), "command": " ".join(sys.argv)}]
        self._meta.update(meta, status="running", end_time=None, message="", resumed=resumed,
                          versions=versions())
        atomic_write_text(self.meta_path, json.dumps(self._meta, indent=2) + "\n")
        (self.path / "error.log").unlink(missing_ok=True)

    def restore_meta(self, meta: dict[str, Any]) -> None:
        """Put back meta.json as it was (a resumption that stopped on bad input)."""
        self._meta = dict(meta)
        atomic_write_text(self.meta_path, json.dumps(self._meta, indent=2) + "\n")

    def make_reserve(self) -> None:
        """Set aside a little disk space (random bytes: really allocated, even on compressing
        filesystems) that :meth:`update_meta` frees when a full disk would otherwise keep the
        run's end out of meta.json. Best effort: without it, the end status may not be written."""
        reserve = self.path / RESERVE_NAME
        with contextlib.suppress(OSError):
            if not reserve.exists() or reserve.stat().st_size < RESERVE_BYTES:
                with reserve.open("wb") as f:
                    f.write(os.urandom(RESERVE_BYTES))
                    f.flush()
                    os.fsync(f.fileno())

    def release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / RESERVE_NAME).unlink(missing_ok=True)

    def rewrite_points(self, columns: list[str], rows: list[dict[str, Any]]) -> None:
        """Replace points.csv (atomically) with ``rows``: a resumed run drops what was
        measured after its checkpoint, and any torn last line."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow([_fmt(row.get(c, "")) for c in columns])
        atomic_write_text(self.points_path, buf.getvalue())

    def update_meta(self, **fields: Any) -> None:
        """Merge ``fields`` into meta.json (atomically). Recording the end of a run on a full
        disk frees the directory's reserve (see :meth:`make_reserve`) and writes again."""
        if not hasattr(self, "_meta"):
            self._meta = self.read_meta()
        self._meta.update(fields)
        ending = fields.get("status") not in (None, "running")
        if ending:
            self._meta["end_time"] = now()
        text = json.dumps(self._meta, indent=2) + "\n"
        try:
            atomic_write_text(self.meta_path, text)
        except OSError as e:
            if not (ending and e.errno == errno.ENOSPC and (self.path / RESERVE_NAME).exists()):
                raise
            self.release_reserve()
            atomic_write_text(self.meta_path, text)

    def read_meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text())

    def status(self) -> str:
        """meta.json's status; 'unreadable' if it cannot be read."""
        try:
            return str(self.read_meta().get("status", "unknown"))
        except (OSError, ValueError):
            return "unreadable"

    def ran_on(self) -> str | None:
        """The device type ('cpu', 'cuda') the run here resolved its device to, if known:
        meta.json's ``device_type``, else its device name, else a concrete recipe device."""
        try:
            meta = self.read_meta()
        except (OSError, ValueError):
            meta = {}
        if meta.get("device_type"):
            return str(meta["device_type"])
        if isinstance(meta.get("device"), str) and meta["device"]:  # runs recorded before device_type
            return "cpu" if meta["device"].startswith("cpu") else "cuda"
        try:
            spec = str((yaml.safe_load(self.recipe_path.read_text()) or {}).get("device", "auto"))
        except (OSError, yaml.YAMLError, AttributeError):
            return None
        return None if spec == "auto" else spec.partition(":")[0]

    def changes(self, recipe_yaml: str, device_type: str | None = None) -> list[str]:
        """How the run here differs from ``recipe_yaml`` run on a ``device_type`` device, one
        ``field: old -> new`` line per field; [] when it is the same run. The device counts by
        the type it resolves to (``auto`` that gave a CPU equals ``cpu``; ``cuda`` equals
        ``cuda:1``), from what the run recorded; without ``device_type``, as written."""
        try:
            old = yaml.safe_load(self.recipe_path.read_text())
        except (OSError, yaml.YAMLError):
            old = None
        if not isinstance(old, dict):
            return [f"{self.recipe_path.name}: missing or unreadable"]
        new = yaml.safe_load(recipe_yaml)
        ignore = (*NOT_IDENTITY, *self._added_since(old, new))
        if device_type is None:
            return recipe_changes(old, new, ignore=ignore)
        out = recipe_changes(old, new, ignore=("device", *ignore))
        ran = self.ran_on()
        if ran is not None and ran != device_type:
            spec = new.get("device", "auto")
            here = f" ('{spec}' here)" if spec != device_type else ""
            out.insert(0, f"device: {ran} -> {device_type}{here}")
        return out

    def _added_since(self, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        """Fields absent from the stored recipe that today's trainbench fills with the value
        ``new`` has: the run was made before the field existed, with the behaviour its default
        keeps (e.g. ``model.sync_bn: false``), so it is the same run. Found by resolving the
        stored recipe.yaml with today's defaults; if it no longer resolves, none are."""
        a, b = flatten(old), flatten(new)
        added = [k for k in b if k not in a]
        if not added:
            return []
        from trainbench.errors import InputError
        from trainbench.recipe import load_recipe

        try:
            filled = flatten(yaml.safe_load(load_recipe(self.recipe_path).to_yaml()))
        except (InputError, OSError, yaml.YAMLError):
            return []
        return [k for k in added if k in filled and json.dumps(filled[k], default=str)
                == json.dumps(b[k], default=str)]

    def holds(self, recipe_yaml: str, device_type: str | None = None) -> bool:
        """Whether this run directory ran this resolved recipe (see :meth:`changes`)."""
        return not self.changes(recipe_yaml, device_type)

    def points_writer(self, columns: list[str]) -> PointsWriter:
        return PointsWriter(self.points_path, columns, self.listeners)

    def read_points(self) -> list[dict[str, float]]:
        return read_points(self.points_path)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b.c": leaf}``; an empty mapping is a leaf of its own."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def recipe_changes(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """``field: old -> new`` for every leaf that differs between two resolved recipes
    (values as JSON, so 1, 1.0 and true differ as they do in YAML)."""
    a, b = flatten(old), flatten(new)

    def show(d: dict[str, Any], k: str) -> str:
        return json.dumps(d[k], default=str) if k in d else "(absent)"

    out = []
    for k in [*a, *(k for k in b if k not in a)]:
        if k in ignore or show(a, k) == show(b, k):
            continue
        other = b if k in a else a  # `methods: {}` on one side, `methods.x.y` on the other
        if {} in (a.get(k), b.get(k)) and any(o.startswith(k + ".") for o in other):
            continue
        out.append(f"{k}: {show(a, k)} -> {show(b, k)}")
    return out


def _parse(v: str) -> float:
    """A points.csv cell: blank -> NaN; integers (steps, samples, counts) stay int, so a row
    read back and written again is the same text."""
    if v == "":
        return math.nan
    return int(v) if v.lstrip("-").isdigit() else float(v)


def read_points(path: Path) -> list[dict[str, float]]:
    """Rows of a points.csv as numbers; a torn (incomplete) last line is skipped."""
    return parse_points(path)[1]


def parse_points(path: Path) -> tuple[list[str], list[dict[str, float]], bool]:
    """points.csv read once: its header, its rows as numbers (blank -> NaN, integers stay
    int; rows of the wrong length or with non-numbers skipped) and whether its last line is
    torn (the writer died mid-row; that line is skipped). A missing file has no rows."""
    if not path.exists():
        return [], [], False
    text = path.read_text()
    lines = text.splitlines()
    torn = bool(lines) and not text.endswith("\n")
    if torn:
        lines = lines[:-1]
    rows = list(csv.reader(lines))
    if not rows:
        return [], [], torn
    header, out = rows[0], []
    for r in rows[1:]:
        if len(r) != len(header):
            continue
        try:
            out.append({k: _parse(v) for k, v in zip(header, r, strict=True)})
        except ValueError:
            continue
    return header, out, torn


def curve_rows(points: list[dict[str, float]]) -> list[dict[str, float]]:
    """The tradeoff-curve points (``curve`` = 1) among a run's rows, in order."""
    return [p for p in points if p.get("curve") == 1]
