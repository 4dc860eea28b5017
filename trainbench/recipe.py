"""Recipes: YAML loading, ``extends``, ``--set`` overrides, validation and defaults.

A recipe is loaded in four steps, and every problem found on the way is collected so the
user sees all of them at once, each with its file, line, field path, bad value and fix:

1. each file is read by :mod:`trainbench.recipe_files` (safe YAML within limits, each key's line);
2. ``extends: base.yaml`` (a path relative to the file, or a list of them) is layered
   underneath: the component-switch rule, then mappings merge key by key, everything else
   (lists too) is replaced;
3. ``--set a.b.c=VALUE`` overrides (VALUE parsed as YAML) are layered on top the same way;
4. every section is checked against the signatures of the registered factories (dataset
   loader, model, optimizer, schedule, methods) and the defaults are filled in.

The result, :class:`Recipe`, is a plain nested dict that can be dumped to YAML and loaded
again to the same thing: the ``recipe.yaml`` of a run directory re-runs the run.
"""

from __future__ import annotations

import copy
import json
import re
import reprlib
import types
import typing
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from trainbench.errors import InputError
from trainbench.recipe_files import (
    Origin,
    Path_,
    deep_merge,
    parse_override,
    read_yaml,
    shown_item,
)
from trainbench.registry import REQUIRED, NonNegInt, ParamSpec, PosFloat, PosInt, Range, params_of, suggest
from trainbench.schedules import SCHEDULES, Schedule
from trainbench.timeunits import PosTime, Time

# --- the sections every recipe has (component-specific parameters come from registries) ---


@dataclass(kw_only=True)
class TopLevel:
    name: str = ""  # default: the recipe file's name without .yaml
    seed: NonNegInt = 0  # numpy's and torch's generators take seeds >= 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    duration: Time | None = Time(10, "ep")  # 'ep', 'ba' or 'sp'; cyclic/sgdr schedules set it
    # Trackers fed with the run's points (trainbench/trackers/). Not part of the run's identity:
    # they record results, never change them (RunDir.changes and compare's grouping ignore it).
    log: list[Literal["tensorboard", "mlflow", "wandb"]] = field(default_factory=list)


@dataclass(kw_only=True)
class DataSection:
    dataset: str = "digits"
    batch_size: PosInt = 128
    eval_batch_size: PosInt = 1024
    augment: list[Literal["random_crop", "hflip", "random_resized_crop"]] = field(default_factory=list)
    crop_padding: Annotated[int, Range(ge=0)] = 4  # pixels of reflect padding for random_crop
    # Stream mode (trainbench/data/stream.py): how batches reach the device.
    loader: Literal["auto", "device", "stream"] = "auto"  # auto: device if it fits, else stream
    workers: NonNegInt | None = None  # DataLoader worker processes; default: CPUs, capped
    prefetch: PosInt = 2  # batches each worker prepares ahead (DataLoader prefetch_factor)
    skip_corrupt: bool = False  # skip unreadable images (counted in meta.json) instead of failing
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # random_resized_crop area
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 4 / 3])  # and aspect ratio
    eval_resize: PosInt | None = None  # shorter side before the evaluation center crop
    normalize: bool = True  # per-channel mean/std computed from the training images
    train_subset: PosInt | None = None  # N training images, class-stratified (data/subset.py)
    test_subset: PosInt | None = None  # N test images, class-stratified (data/subset.py)
    label_noise: dict[str, Any] | None = None  # {rate, kind, seed}: data/label_noise.py


@dataclass(kw_only=True)
class ModelSection:
    name: str = "small_cnn"
    # Several processes: BatchNorm statistics over the global batch (SyncBatchNorm, CUDA only)
    # instead of each process's slice; no effect in a single process.
    sync_bn: bool = False


@dataclass(kw_only=True)
class OptimizerSection:
    name: str = "sgd"
    exempt_norm_bias: bool = False  # no weight decay on normalisation weights and biases


@dataclass(kw_only=True)
class ScheduleSection(Schedule):  # every schedule has the base class's warmup
    name: str = "cosine"


@dataclass(kw_only=True)
class EvalSection:
    every: PosTime | None = Time(1, "ep")  # plus always the final step and every curve point


@dataclass(kw_only=True)
class CurveSection:
    # cyclic: one run, a point wherever the schedule puts one (each cycle end of a cyclic or
    # sgdr schedule; the end of the run otherwise). budgets: the expensive reference, one
    # separate run per budget with the schedule scaled to it; its final points are the curve.
    mode: Literal["cyclic", "budgets"] = "cyclic"
    budgets: list[Time] | None = None  # budgets mode; default: the schedule's cycle ends


@dataclass(kw_only=True)
class CheckpointSection:
    # Checkpoints let a run resume bit for bit (trainbench run --resume). Written atomically
    # into the run directory at every curve point, every `every` of training if set, and
    # at least every `minutes` minutes of training time; the newest `keep` are kept.
    curve_points: bool = True
    every: PosTime | None = None
    minutes: PosFloat | None = 10.0
    keep: PosInt = 2


@dataclass(kw_only=True)
class ExternalModel:
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to timm/torchvision as is


SECTION_ORDER = ("data", "model", "optimizer", "schedule", "eval", "curve", "checkpoint", "methods")
EXTERNAL_MODEL_PREFIXES = ("timm:", "torchvision:")
LIST_NAMES = {"data": "datasets", "model": "models", "optimizer": "optimizers", "schedule": "schedules"}


# --- problems and their origins ---


@dataclass(frozen=True)
class Problem:
    origin: Origin
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.origin}: {self.path}" if self.path else str(self.origin)
        return f"{where}: {self.message}"


class RecipeError(InputError):
    def __init__(self, problems: Sequence[Problem], recipe_name: str | None = None) -> None:
        self.problems = list(problems)
        self.recipe_name = recipe_name  # the recipe's (valid) name, for the CLI's error header
        n = len(self.problems)
        head = f"{n} problem{'s' if n > 1 else ''} in the recipe:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


# --- reading files, extends and --set (safe reading of YAML text: recipe_files) ---


SELECTORS = {"data": ("dataset", DataSection), "model": ("name", ModelSection),
             "optimizer": ("name", OptimizerSection), "schedule": ("name", ScheduleSection)}
MAX_EXTENDS_DEPTH = 20  # files in one 'extends' chain


def drop_switched_params(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """When ``over`` switches a section to another component (another model, dataset,
    optimizer or schedule), the base's parameters for the old component no longer apply:
    keep only the section's common keys (e.g. data.batch_size) from the base."""
    out = dict(base)
    for section, (key, common) in SELECTORS.items():
        old, new = base.get(section), over.get(section)
        if isinstance(old, dict) and isinstance(new, Mapping) and key in new \
                and old.get(key, params_of(common)[key].default) != new[key]:
            out[section] = {k: v for k, v in old.items() if k in params_of(common)}
            if section == "schedule" and self_timed(new[key]):
                out.pop("duration", None)  # the new schedule sets the run's length itself
    return out


def layer(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base`` as ``extends`` and ``--set`` do it: the component-switch
    rule, then a deep merge."""
    return deep_merge(drop_switched_params(dict(base), over), over)


def self_timed(schedule_name: Any) -> bool:
    return schedule_name in SCHEDULES and SCHEDULES.get(schedule_name).self_timed


Loaded = tuple[dict[str, Any], dict[Path_, Origin]]


def _load_with_extends(path: Path, stack: tuple[Path, ...] = (), via: Origin | None = None,
                       cache: dict[Path, Loaded] | None = None) -> Loaded:
    """A file with its bases merged underneath, and each key's origin (the file and line
    where its final value is written). ``via``: the 'extends' that named the file; ``cache``:
    files already loaded in this call, so a base reached twice is read and merged once."""
    cache = {} if cache is None else cache
    try:
        path = path.resolve()
    except (OSError, ValueError, RuntimeError) as e:  # NUL in the path, symlink loop
        how = f" (named in 'extends' at {via})" if via else ""
        raise InputError(f"{path}: cannot read the recipe file ({e}){how}.") from None
    if path in stack:
        chain = " -> ".join(p.name for p in (*stack, path))
        raise InputError(f"{stack[-1]}: 'extends' forms a cycle ({chain}). Remove one of the links.")
    if len(stack) >= MAX_EXTENDS_DEPTH:
        raise InputError(f"{via}: 'extends' goes more than {MAX_EXTENDS_DEPTH} files deep "
                         f"({stack[0].name} -> ... -> {path.name}). Merge some of the bases.")
    if path in cache:
        return cache[path]
    raw, lines = read_yaml(path, via)
    parents = raw.pop("extends", None)
    if parents is None:
        cache[path] = raw, lines
        return raw, lines
    where = lines.get(("extends",), Origin(str(path)))
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise InputError(f"{where}: extends: expected a file path or a list of paths, "
                         f"got {reprlib.repr(parents)}.")
    merged: dict[str, Any] = {}
    merged_lines: dict[Path_, Origin] = {}
    for parent in parents:  # each base is layered on the ones before it, like the file on all
        praw, plines = _load_with_extends(path.parent / parent, (*stack, path), where, cache)
        merged = layer(merged, praw)
        merged_lines.update(plines)
    merged_lines.update(lines)
    cache[path] = layer(merged, raw), merged_lines
    return cache[path]


def apply_override(raw: dict[str, Any], path: Path_, value: Any) -> None:
    """Set ``path`` to ``value`` in place. A mapping VALUE merges key by key into the mapping
    there, through the component-switch rule, exactly as a file merges onto its base."""
    node = raw
    for i, k in enumerate(path[:-1]):
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            if nxt is not None:
                raise InputError(f"--set {'.'.join(path)}: '{'.'.join(path[: i + 1])}' is "
                                 f"{nxt!r}, not a section, so it has no key '{path[i + 1]}'.")
            break  # missing or null: the merge creates it
        node = nxt
    over: Any = value
    for k in reversed(path):
        over = {k: over}
    merged = layer(raw, over)
    raw.clear()
    raw.update(merged)


def _key_paths(path: Path_, value: Any) -> Iterable[Path_]:
    """``path`` and the path of every key inside a mapping ``value``."""
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _key_paths((*path, str(k)), v)


def _override_order(key: Path_, value: Any) -> int:
    """--set items that reset a section (SECTION=null) apply first, then those that pick a
    component (model.name=x, optimizer={name: adam, ...}), then the rest, each group in
    command-line order: the parameters set next to a switch or a reset are kept."""
    if len(key) == 1 and key[0] in SECTION_ORDER and value is None:
        return 0
    selector = SELECTORS.get(key[0], ("",))[0]
    if (len(key) == 2 and key[1] == selector) or \
            (len(key) == 1 and isinstance(value, dict) and selector in value):
        return 1
    return 2


# --- validation ---


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class _Bad(Exception):
    pass


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _describe(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " or null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0])}" if args else "a list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            Time: "a time like '8ep', '500ba' or '0.25dur'", dict: "a mapping"}.get(
        hint, "a mapping" if origin is dict else getattr(hint, "__name__", str(hint)))


def coerce(hint: Any, value: Any) -> Any:
    """Check ``value`` against a type hint; return its canonical YAML-able form or raise _Bad."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Annotated:
        out = coerce(args[0], value)
        amount = Time.parse(out).value if args[0] is Time else out  # a time: its number, any unit
        for meta in args[1:]:
            if isinstance(meta, Range) and (msg := meta.violation(amount)):
                raise _Bad(f"{msg}, got {value!r}")
        return out
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return coerce(a, value)
            except _Bad as e:
                errors.append(str(e))
        raise _Bad(errors[0] if len(errors) == 1 else f"expected {_describe(hint)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise _Bad(f"expected one of {', '.join(map(str, args))}; got {value!r}."
                   + suggest(str(value), map(str, args)))
    if origin is list:
        if not isinstance(value, list):
            raise _Bad(f"expected {_describe(hint)}, got {value!r}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(coerce(args[0], v))
            except _Bad as e:
                raise _Bad(f"item {i}: {e}") from None
        return out
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise _Bad(f"expected a mapping, got {value!r}")
        return value
    if hint is Time:
        try:
            return str(Time.parse(value))
        except ValueError as e:
            raise _Bad(str(e)) from None
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)  # PyYAML reads 1e-3 (no dot) as a string: accept it
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a factory with an unsupported hint is a programming error
        raise TypeError(f"unsupported parameter type {hint!r}")
    raise _Bad(f"expected {_describe(hint)}, got {value!r} ({type(value).__name__})")


def yamlable(d: Any) -> Any:
    """A default in canonical YAML form: times as strings, also inside lists and mappings."""
    if isinstance(d, Time):
        return str(d)
    if isinstance(d, list | tuple):
        return [yamlable(v) for v in d]
    if isinstance(d, dict):
        return {k: yamlable(v) for k, v in d.items()}
    return copy.deepcopy(d)


class _Checker:
    def __init__(self, lines: dict[Path_, Origin], source: str) -> None:
        self.lines, self.source = lines, source
        self.problems: list[Problem] = []

    def origin(self, path: Path_) -> Origin:
        for i in range(len(path), 0, -1):
            if path[:i] in self.lines:
                return self.lines[path[:i]]
        return Origin(self.source)

    def add(self, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.origin(path), ".".join(path), message))

    def mapping(self, path: Path_, raw: Any) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.add(path, f"expected a mapping (key: value lines), got {raw!r}.")
            return {}
        return raw

    def fill(self, path: Path_, raw: dict[str, Any], specs: dict[str, ParamSpec],
             what: str, out: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check ``raw`` against ``specs``; unknown keys are reported against ``what``."""
        out = {} if out is None else out
        for key in raw:
            if key not in specs:
                self.add((*path, str(key)), f"unknown key '{key}' for {what}. "
                         f"Allowed: {', '.join(specs) or '(none)'}." + suggest(str(key), specs))
        for name, spec in specs.items():
            if name in raw:
                try:
                    out[name] = coerce(spec.hint, raw[name])
                except _Bad as e:
                    self.add((*path, name), str(e))
            elif spec.default is REQUIRED:
                self.add((*path, name), f"required for {what} and has no default; set it.")
            else:
                out[name] = yamlable(spec.default)
        return out

    def component(self, section: str, raw: dict[str, Any], common: type, registry: Any,
                  key: str) -> dict[str, Any]:
        """A section naming a registered factory (``key``), plus that factory's parameters."""
        path = (section,)
        common_specs = params_of(common)
        name = raw.get(key, common_specs[key].default)
        if not isinstance(name, str):
            self.add((*path, key), f"expected a name, got {name!r}.")
            return {}
        if name not in registry:
            known = ", ".join(registry.names())
            if section == "model":
                known += ", or timm:<name> / torchvision:<name>"
            self.add((*path, key), f"unknown {registry.kind} '{name}'. Known: {known}."
                     + suggest(name, registry.names())
                     + f" See 'trainbench list {LIST_NAMES[section]}'.")
            return {}
        specs = {key: common_specs[key], **common_specs, **params_of(registry.get(name))}
        return self.fill(path, raw, specs, f"{registry.kind} '{name}'")


def _external_model(chk: _Checker, raw: dict[str, Any]) -> dict[str, Any]:
    name = raw["name"]
    prefix, _, model = name.partition(":")
    out = chk.fill(("model",), raw, {**params_of(ModelSection), **params_of(ExternalModel)},
                   f"model '{name}'")
    from trainbench.models import external_model_names

    known = external_model_names(prefix)
    if model not in known:
        chk.add(("model", "name"), f"{prefix} has no model '{model}'." + suggest(model, known)
                + f" See 'trainbench list models' or {prefix}'s own list.")
    return out


NAME_MAX_BYTES = 120  # fidelity's <name>-vs-<baseline>-smoke folder must fit 255 bytes


def check_name(name: str) -> str | None:
    """Why ``name`` cannot name a run folder, or None. The name is one path component
    (``OUT/<name>/seed<S>``), so it must not leave ``--out`` or be read as something else;
    any other character is fine (grid names like ``lr[lr=0.1,wd=0]`` included). Refused
    rather than silently changed: the name is how ``compare`` groups seeds and finds
    ``--baseline``, and two different names must never share a folder."""
    problem = None
    if not name:
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is a directory reference ('.' or '..')"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator ('/' or '\\')"
    elif any(unicodedata.category(ch) == "Cc" for ch in name):
        problem = "contains a control character"
    elif name.startswith("-"):
        problem = "starts with '-' (shell commands would read it as an option)"
    elif name != name.strip():
        problem = "starts or ends with whitespace"
    elif len(name.encode()) > NAME_MAX_BYTES:
        problem = f"is {len(name.encode())} bytes long (at most {NAME_MAX_BYTES})"
    if problem is None:
        return None
    unsafe = {"/", "\\"}
    safe = "".join("-" if ch in unsafe or unicodedata.category(ch) == "Cc" else ch for ch in name)
    safe = re.sub("-{2,}", "-", safe).strip().lstrip(".-").strip()
    safe = safe.encode()[:NAME_MAX_BYTES].decode(errors="ignore").strip() or "my-run"
    return (f"{problem}; a name is one folder name under --out (OUT/<name>/seed<S>): no '/' or "
            f"'\\', no control characters, not '.' or '..', not starting with '-', at most "
            f"{NAME_MAX_BYTES} bytes. Try name: {json.dumps(safe, ensure_ascii=False)}.")


DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_HELP = "expected auto, cpu, cuda or cuda:N"


def resolve(raw: dict[str, Any], lines: dict[Path_, Origin], source: str) -> dict[str, Any]:
    """Validate a merged raw recipe and fill every default. Raises RecipeError."""
    from trainbench.data import DATASETS
    from trainbench.methods import METHODS
    from trainbench.models import MODELS
    from trainbench.optim import OPTIMIZERS

    chk = _Checker(lines, source)
    raw = dict(raw)
    top_specs = params_of(TopLevel)
    sections = {s: chk.mapping((s,), raw.pop(s, None)) for s in SECTION_ORDER}
    out = chk.fill((), raw, {**top_specs, **{s: ParamSpec(s, dict, {}) for s in SECTION_ORDER}},
                   "a recipe (top level)")
    for s in SECTION_ORDER:
        out.pop(s, None)
    if not out.get("name"):
        out["name"] = Path(source).stem
        if problem := check_name(out["name"]):
            chk.add((), f"the recipe's name defaults to its file name, which {problem} "
                    "Set 'name:' in the recipe.")
    elif problem := check_name(out["name"]):
        chk.add(("name",), f"{out['name']!r} cannot name a run: it {problem}")
    if not DEVICE_RE.fullmatch(out.get("device", "auto")):
        chk.add(("device",), f"{DEVICE_HELP}, got {out['device']!r}.")
    if out.get("duration") is None:
        pass  # only self-timed schedules may leave it out: checked in _schedule_timing
    elif Time.parse(out["duration"]).unit == "dur":
        chk.add(("duration",), "the run's duration cannot be given in 'dur'; use 'ep', 'ba' or 'sp'.")
    elif Time.parse(out["duration"]).value == 0:
        chk.add(("duration",), "must be greater than 0.")

    out["data"] = chk.component("data", sections["data"], DataSection, DATASETS, "dataset")
    if out["data"].get("label_noise") is not None:
        from trainbench.data.label_noise import LabelNoise

        out["data"]["label_noise"] = chk.fill(("data", "label_noise"), out["data"]["label_noise"],
                                              params_of(LabelNoise), "data.label_noise")
    augment = out["data"].get("augment") or []
    if len(set(augment)) < len(augment):
        twice = sorted({a for a in augment if augment.count(a) > 1})
        chk.add(("data", "augment"), f"{', '.join(twice)} listed more than once; each augmentation "
                f"is applied once per batch, so list it once: {list(dict.fromkeys(augment))}.")
    if not chk.problems:
        from trainbench.data.choose import loader_problems

        for path, msg in loader_problems(out["data"]):
            chk.add(("data", *path), msg)
    model_raw = sections["model"]
    if str(model_raw.get("name", "")).startswith(EXTERNAL_MODEL_PREFIXES):
        out["model"] = _external_model(chk, model_raw)
    else:
        out["model"] = chk.component("model", model_raw, ModelSection, MODELS, "name")
    out["optimizer"] = chk.component("optimizer", sections["optimizer"], OptimizerSection,
                                     OPTIMIZERS, "name")
    out["schedule"] = chk.component("schedule", sections["schedule"], ScheduleSection,
                                    SCHEDULES, "name")
    out["eval"] = chk.fill(("eval",), sections["eval"], params_of(EvalSection), "eval")
    out["curve"] = chk.fill(("curve",), sections["curve"], params_of(CurveSection), "curve")
    out["checkpoint"] = chk.fill(("checkpoint",), sections["checkpoint"], params_of(CheckpointSection),
                                 "checkpoint")
    if out["schedule"] and not chk.problems:
        _schedule_timing(chk, out, explicit_duration=raw.get("duration"))

    methods: dict[str, Any] = {}
    for mname, mraw in sections["methods"].items():
        path = ("methods", str(mname))
        if mname not in METHODS:
            chk.add(path, f"unknown method '{mname}'. Known: {', '.join(METHODS.names())}."
                    + suggest(str(mname), METHODS.names()) + " See 'trainbench list methods'.")
            continue
        if mraw is False:  # 'methods.x: false' switches off a method set by a base recipe
            continue
        if mraw is True:
            mraw = {}
        methods[mname] = chk.fill(path, chk.mapping(path, mraw), params_of(METHODS.get(mname)),
                                  f"method '{mname}'")
    out["methods"] = methods
    for mname in methods if not chk.problems else ():  # a method may define the run's length
        hook = getattr(METHODS.get(mname), "resolve_duration", None)  # (prune's IMP: dense + rounds)
        for path, msg in hook(out, raw.get("duration")) if hook else ():
            chk.add(path, msg)

    if not chk.problems:  # cross-field checks need well-typed values
        for registry, section in ((OPTIMIZERS, out["optimizer"]), (SCHEDULES, out["schedule"])):
            for path, msg in getattr(registry.get(section["name"]), "check_recipe", _none)(out):
                chk.add(path, msg)
        for mname in methods:
            for path, msg in getattr(METHODS.get(mname), "check_recipe", _none)(out):
                chk.add(path, msg)
    if not chk.problems:  # the dataset's shape: what the model is built for, and the run's clock
        _dataset_checks(chk, out, source)
    if chk.problems:
        name = out.get("name")
        raise RecipeError(chk.problems, name if isinstance(name, str) and not check_name(name) else None)
    return out


def _dataset_checks(chk: _Checker, out: dict[str, Any], source: str) -> None:
    """Checks against the dataset, known without loading it: model.kwargs against the model
    built for its shape, and everything that needs the run's clock (clock_checks)."""
    from trainbench.clock_checks import clock_problems
    from trainbench.data import dataset_shape
    from trainbench.models import kwargs_problems

    if out["model"].get("kwargs"):
        shape = dataset_shape(out["data"]["dataset"], out["data"])
        for key, msg in kwargs_problems(out["model"], shape.channels, shape.num_classes):
            chk.add(("model", "kwargs", *key), msg)
    for path, msg in clock_problems(out, source):
        chk.add(path, msg)


def _schedule_timing(chk: _Checker, out: dict[str, Any], explicit_duration: Any) -> None:
    """A self-timed schedule (cyclic, sgdr) sets the run's duration; budgets mode gets
    its budgets from the schedule's cycle ends unless they are given."""
    cls = SCHEDULES.get(out["schedule"]["name"])
    if cls.self_timed:
        # Its own problems (e.g. t0 0ep) first: without them there is no length to derive.
        problems = list(cls.check_recipe({**out, "duration": "1ep"}))
        for path, msg in problems:
            chk.add(path, msg)
        if problems:
            return
        derived = cls.derived_duration(out["schedule"])
        if explicit_duration is not None and Time.parse(explicit_duration) != derived:
            chk.add(("duration",), f"the '{out['schedule']['name']}' schedule defines the run's "
                    f"length ({derived}: warmup plus its cycles); remove 'duration' or set it "
                    f"to {derived}.")
        out["duration"] = str(derived)
    elif out["duration"] is None:
        chk.add(("duration",), f"the '{out['schedule']['name']}' schedule needs the run's "
                "duration, e.g. duration: 30ep.")
    curve = out["curve"]
    if curve["mode"] != "budgets":
        return
    if curve["budgets"] is None:
        budgets = cls.default_budgets(out["schedule"])
        if budgets is None:
            chk.add(("curve", "budgets"), f"budgets mode needs 'curve.budgets' (a list of run "
                    f"lengths, e.g. [10ep, 20ep, 40ep]) for the '{out['schedule']['name']}' "
                    "schedule; only cyclic and sgdr schedules provide them.")
            return
        curve["budgets"] = [str(b) for b in budgets]
    if not curve["budgets"]:
        chk.add(("curve", "budgets"), "an empty list gives no curve point; list the run lengths "
                "(e.g. [10ep, 20ep, 40ep]), or remove it for the schedule's cycle ends.")
    warm = Time.parse(out["schedule"]["warmup"])
    for i, b in enumerate(Time.parse(b) for b in curve["budgets"]):
        if b.unit == "dur" or b.value == 0:
            chk.add(("curve", "budgets"), f"item {i}: a budget is a run length in 'ep', 'ba' or "
                    f"'sp' greater than 0, got {b}.")
        elif cls.self_timed and warm.value and (b.unit != warm.unit or b.value <= warm.value):
            # each budget run is the same warmup plus one cycle filling the rest of the budget
            chk.add(("curve", "budgets"), f"item {i}: each budget run is the warmup ({warm}) plus "
                    f"one cycle, so a budget must be in the warmup's unit ('{warm.unit}') and longer "
                    f"than it, got {b}.")


def _none(_recipe: dict[str, Any]) -> Iterable[tuple[Path_, str]]:
    return ()


# --- the public API ---


class _Dumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists: ``augment: [random_crop, hflip]``."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v,
                                                                flow_style=True))


@dataclass
class Recipe:
    """A fully resolved recipe: every field present, values in canonical YAML form."""

    data: dict[str, Any]
    source: str

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def seed(self) -> int:
        return self.data["seed"]

    def with_seed(self, seed: int) -> Recipe:
        return Recipe({**copy.deepcopy(self.data), "seed": seed}, self.source)

    def to_yaml(self) -> str:
        return yaml.dump(self.data, Dumper=_Dumper, sort_keys=False, width=100)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


def load_recipe(path: str | Path, overrides: Sequence[str] = (), grid: Sequence[str] = ()) -> Recipe:
    """Load, merge, override, validate. Raises InputError (RecipeError for field problems).
    ``grid``: one grid point's ``KEY=VALUE`` items (:mod:`trainbench.grid`), applied like
    ``--set`` items and named ``--grid`` in messages."""
    path = Path(path)
    try:
        raw, lines = _load_with_extends(path)  # fresh objects: changed in place below
        items = [*(("--set", i) for i in overrides), *(("--grid", i) for i in grid)]
        parsed = sorted(((opt, item, *parse_override(item, opt)) for opt, item in items),
                        key=lambda o: _override_order(o[2], o[3]))
        for opt, item, key, value in parsed:
            apply_override(raw, key, value)
            origin = Origin(f"{opt} {item}" if len(item) <= 80 else f"{opt} {shown_item(item)}")
            for p in _key_paths(key, value):  # the values it brings come from the command line
                lines[p] = origin
    except (RecursionError, MemoryError) as e:  # the limits above should make this unreachable
        raise InputError(f"{path}: the recipe (with its 'extends' and --set items) is too large "
                         f"or too deeply nested to load ({type(e).__name__}).") from None
    return Recipe(resolve(raw, lines, str(path)), str(path))
