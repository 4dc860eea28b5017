"""``--grid KEY=V1,V2,...``: one recipe expanded into the cartesian product of some values.

Each ``--grid`` option is one *axis*: a dotted recipe key and its values, each value parsed
as YAML exactly like a ``--set`` value (:func:`trainbench.recipe_files.parse_override`, same
limits and checks). Values are separated by the commas at the top level only, so a flow
sequence or mapping is one value: ``--grid data.augment=[hflip],[hflip,random_crop]`` has two
values; a comma inside quotes (``'a,b'``, ``"a,b"``) does not split either.

**Order.** Recipes in the order given; for each, the points in :func:`itertools.product`
order of the axes as given: the first ``--grid`` varies slowest, the last fastest.

**Names.** A point is a recipe of its own, applied like ``--set`` items on top of the
user's ``--set`` (the component-switch rule included), named ``<name>[<label>=<value>,...]``
in axis order, e.g. ``quickstart[lr=0.1,augment=[hflip]]``, so its runs go to
``OUT/<point name>/seed<S>`` and ``trainbench compare`` shows each point as a row. The rule:

- *label*: the key's last segment (``optimizer.lr`` -> ``lr``); the full dotted key for the
  axes whose last segments coincide (``optimizer.lr`` and ``methods.swa.lr``);
- *value*: compact YAML flow text: ``true``/``false``/``null``, integers as written, floats
  as Python's shortest repr (``0.1``, ``1e-05``), strings as they are unless YAML would read
  them as another type (``'1'`` -> ``"1"``, JSON-quoted), lists ``[a,b]``, mappings
  ``{k:v}``;
- a value whose text holds a path separator (``/``, ``\\``) or a control character, is longer
  than :data:`MAX_VALUE_BYTES` bytes, or reads the same as another value of its axis, is
  written ``#`` + the first 8 hex digits of the SHA-256 of its canonical JSON;
- a name that still exceeds the 120 bytes a run name may have
  (:data:`trainbench.recipe.NAME_MAX_BYTES`) becomes ``<name, cut>[#<16 hex digits>]``, the
  SHA-256 of the whole point.

The name is stable (the same recipe and values give the same name on every machine and
Python) and always passes :func:`trainbench.recipe.check_name`. ``recipe.yaml`` records it,
and the values themselves, so a point's run directory re-runs as is without ``--grid``.

Bad input is exit 2 with every problem of the ``--grid`` options at once: not
``KEY=VALUES``, no values, an empty value, a value that is not YAML or is listed twice, a
key given twice (or inside another ``--grid`` key), a key also given with ``--set``, the
keys ``name`` and ``seed`` (``--seeds`` varies seeds), more than :data:`MAX_POINTS` points.
A key or value the recipe refuses is reported by the recipe checks, each once, against
``--grid KEY=VALUE``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainbench.errors import InputError
from trainbench.recipe import NAME_MAX_BYTES, Problem, Recipe, RecipeError, check_name, load_recipe
from trainbench.recipe_files import Path_, parse_override, shown_item

MAX_POINTS = 1000  # a typo such as an extra axis should not plan thousands of runs
MAX_VALUE_BYTES = 40  # a longer value is shown by its hash
_KEY_RE = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
_RESERVED = {"name": "a grid point's name is made from the recipe's name and its values",
             "seed": "use --seeds N (or --seed S) to vary the seed"}
_EXAMPLE = "e.g. --grid optimizer.lr=0.05,0.1 or --grid data.augment=[hflip],[hflip,random_crop]"


@dataclass(frozen=True)
class Axis:
    """One ``--grid`` option: a key and its values (the item text and the parsed value)."""

    key: str
    path: Path_
    values: tuple[tuple[str, Any], ...]


def split_values(text: str) -> list[str]:
    """``text`` split at its top-level commas: not inside ``[...]``/``{...}`` nor inside a
    quoted scalar. A quote opens a scalar only where YAML would (at a value's start or after
    a flow indicator), so the apostrophe of ``it's`` is a plain character."""
    out, cur, depth, quote, prev = [], [], 0, "", ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if quote == '"' and ch == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                if quote == "'" and text[i + 1: i + 2] == "'":  # '' is an escaped quote
                    cur.append("'")
                    i += 1
                else:
                    quote = ""
        elif ch in "'\"" and prev in ("", "[", "{", ",", ":"):
            quote = ch
            cur.append(ch)
        elif ch == "," and depth == 0:
            out.append("".join(cur))
            cur, prev = [], ""
            i += 1
            continue
        else:
            depth += (ch in "[{") - (ch in "]}")
            depth = max(depth, 0)
            cur.append(ch)
        if not ch.isspace():
            prev = ch
        i += 1
    out.append("".join(cur))
    return out


def _key_of(item: str) -> str:
    return item.partition("=")[0].strip()


def _overlap(a: Path_, b: Path_) -> bool:
    """One key is the other or inside it (``optimizer`` and ``optimizer.lr``)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def parse_grid(items: Sequence[str], sets: Sequence[str] = ()) -> list[Axis]:
    """The ``--grid`` options as axes; InputError naming every problem (see the module)."""
    problems: list[str] = []
    axes: list[Axis] = []
    keys: list[Path_] = []  # every well-formed key so far, valid or not: a repeat is named too
    set_keys = {tuple(_key_of(s).split(".")): _key_of(s) for s in sets if _KEY_RE.fullmatch(_key_of(s))}
    for item in items:
        shown = f"--grid {shown_item(item)}"
        key, sep, rest = item.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.fullmatch(key):
            problems.append(f"{shown}: expected KEY=V1,V2,... with a dotted key, {_EXAMPLE}.")
            continue
        path = tuple(key.split("."))
        if path[0] in _RESERVED and len(path) == 1:
            problems.append(f"{shown}: '{key}' cannot be a grid key: {_RESERVED[path[0]]}.")
            continue
        if not rest.strip():
            problems.append(f"{shown}: no values; list them after '=', separated by commas, {_EXAMPLE}.")
            continue
        values, seen, ok = [], {}, True
        for i, text in enumerate(split_values(rest), 1):
            if not text.strip():
                problems.append(f"{shown}: value {i} is empty; remove the extra comma (write "
                                "null for a null value).")
                ok = False
                continue
            try:
                _, value = parse_override(f"{key}={text}", "--grid")
            except InputError as e:
                problems.append(str(e))
                ok = False
                continue
            canon = _canonical(value)
            if canon in seen:
                problems.append(f"{shown}: value {text.strip()!r} is listed twice (values {seen[canon]} "
                                f"and {i}); each value gives one run per seed, so list it once.")
                ok = False
            seen[canon] = i
            values.append((text.strip(), value))
        clash = next((".".join(k) for k in keys if _overlap(k, path)), None)
        keys.append(path)
        if clash is not None:
            how = "given twice" if clash == key else f"overlaps --grid {clash}"
            problems.append(f"{shown}: the key {key} is {how}; give each key once, with all its "
                            "values in one --grid KEY=V1,V2,...")
            ok = False
        clash_set = [k for p, k in set_keys.items() if _overlap(p, path)]
        if clash_set:
            problems.append(f"{shown}: {key} is also given with --set {clash_set[0]}=...; a --grid key "
                            "varies a field and --set fixes it: drop one of them.")
            ok = False
        if ok:
            axes.append(Axis(key, path, tuple(values)))
    if not problems and axes:
        n = 1
        for a in axes:
            n *= len(a.values)
        if n > MAX_POINTS:
            problems.append(f"--grid: {' x '.join(str(len(a.values)) for a in axes)} = {n} points, more "
                            f"than the {MAX_POINTS} one call may plan; split the grid over several calls.")
    if problems:
        raise InputError("\n".join(problems) if len(problems) > 1 else problems[0])
    return axes


def points(axes: Sequence[Axis]) -> list[list[tuple[Axis, str, Any]]]:
    """The cartesian product: each point a list of (axis, value text, value), first axis
    slowest. No axes: one point with nothing set."""
    return [list(zip(axes, (v[0] for v in combo), (v[1] for v in combo), strict=True))
            for combo in itertools.product(*(a.values for a in axes))]


# --- names ---


def _sha(value: Any, digits: int) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()[:digits]


def render(value: Any) -> str:
    """A value as compact YAML flow text (see the module's naming rule)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{render(k)}:{render(v)}" for k, v in value.items()) + "}"
    text = str(value)
    try:
        plain = yaml.safe_load(text) == text
    except yaml.YAMLError:
        plain = False
    return text if plain and text == text.strip() else json.dumps(text, ensure_ascii=False)


def _unsafe(text: str) -> bool:
    return ("/" in text or "\\" in text or len(text.encode()) > MAX_VALUE_BYTES
            or any(unicodedata.category(ch) == "Cc" for ch in text))


def value_texts(axis: Axis) -> list[str]:
    """How each value of an axis is written in names: rendered, or hashed when unsafe, too
    long, or alike another value of the axis once rendered."""
    texts = [render(v) for _, v in axis.values]
    return [f"#{_sha(v, 8)}" if _unsafe(t) or texts.count(t) > 1 else t
            for t, (_, v) in zip(texts, axis.values, strict=True)]


def labels(axes: Sequence[Axis]) -> list[str]:
    last = [a.path[-1] for a in axes]
    return [a.path[-1] if last.count(a.path[-1]) == 1 else a.key for a in axes]


def point_names(base: str, axes: Sequence[Axis]) -> list[str]:
    """The name of every point of ``points(axes)``, in that order (the module's rule)."""
    if not axes:
        return [base]
    texts = list(itertools.product(*(value_texts(a) for a in axes)))
    names = []
    for combo, point in zip(texts, points(axes), strict=True):
        name = f"{base}[{','.join(f'{lab}={t}' for lab, t in zip(labels(axes), combo, strict=True))}]"
        names.append(name if len(name.encode()) <= NAME_MAX_BYTES else _hashed(base, point))
    # Distinct values render distinctly on each axis, but values holding ',' or '=' could
    # still spell another point's name: those points fall back to the whole-point hash.
    names = [_hashed(base, p) if names.count(n) > 1 else n
             for n, p in zip(names, points(axes), strict=True)]
    for n in names:  # by construction; a failure here is a bug, not bad input
        assert check_name(n) is None, (n, check_name(n))
    return names


def _hashed(base: str, point: list[tuple[Axis, str, Any]]) -> str:
    """``<base, cut>[#<16 hex>]``: the SHA-256 of the point's keys and values."""
    tag = f"[#{_sha([[a.key, v] for a, _, v in point], 16)}]"
    return base.encode()[: NAME_MAX_BYTES - len(tag)].decode(errors="ignore").rstrip() + tag


# --- loading ---


def load_grid(path: Path, overrides: Sequence[str], axes: Sequence[Axis]) -> list[Recipe]:
    """Every point of the grid over the recipe at ``path`` (one recipe without axes). A
    problem shared by several points (an unknown key, the same bad value) is reported once;
    raises InputError (RecipeError when every problem is a field problem)."""
    if not axes:
        return [load_recipe(path, overrides)]
    recipes, problems, others, name = [], [], [], None
    grid_points = points(axes)
    for point in grid_points:
        try:
            recipes.append(load_recipe(path, overrides, [f"{a.key}={text}" for a, text, _ in point]))
        except RecipeError as e:
            name = name or e.recipe_name
            problems += e.problems
        except InputError as e:
            others.append(str(e))
    if others or problems:
        # One line per distinct problem: a key the recipe does not know fails at every point
        # with the same message (only the value in its --grid origin differs).
        unique: dict[tuple[str, str], Problem] = {}
        for p in problems:
            unique.setdefault((p.path, p.message), p)
        if others:
            raise InputError("\n".join([*dict.fromkeys(others), *map(str, unique.values())]))
        raise RecipeError(list(unique.values()), name)
    for r, name in zip(recipes, point_names(recipes[0].name, axes), strict=True):
        r.data["name"] = name
    return recipes


