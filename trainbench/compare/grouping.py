"""Which runs are seeds of one recipe.

Runs are seeds of one recipe when they share the recipe name *and* the resolved recipe
(``recipe.yaml``) apart from the fields that do not change what is trained:

- ``seed`` (what varies across seeds);
- ``device``: a request (``auto``, ``cpu``, ``cuda:1``), not the device that ran; the device
  that ran is in meta.json, shown per row and warned about when runs differ;
- ``eval``, ``checkpoint`` and ``data.eval_batch_size``: when the model is evaluated or
  saved, and in what batches, does not change the training (nor the curve points);
- ``log``: the trackers (TensorBoard, MLflow, wandb) the points were also sent to.

Runs with one name but different recipes (a ``--set optimizer.lr=0.2`` rerun under the same
name) are not averaged together: each recipe is a row of its own, labelled with the fields
that tell it apart, e.g. ``digits (optimizer.lr=0.2)``. A run without a readable recipe.yaml
is grouped by name only, labelled ``(no recipe.yaml)`` if its name has other recipes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainbench.compare.discovery import Run
from trainbench.results import flatten

# Dotted paths of the resolved recipe left out of its identity (see the module docstring).
IGNORED = ("seed", "device", "eval", "checkpoint", "data.eval_batch_size", "log")
MAX_LABEL_FIELDS = 3  # more differing fields than this are summarised "+k more"


@dataclass
class Group:
    """The runs of one recipe: the same name and the same resolved recipe."""

    name: str
    label: str  # the name, plus the distinguishing fields when the name has several recipes
    runs: list[Run]
    differs: dict[str, str]  # field -> this recipe's value, for the fields that differ


def fields(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's identity fields: dotted path -> leaf, ignored paths and empty mappings
    (no methods) left out."""
    return {k: v for k, v in flatten(recipe).items() if v != {} and not _ignored(k)}


def _ignored(key: str) -> bool:
    return any(key == i or key.startswith(i + ".") for i in IGNORED)


def identity(recipe: dict[str, Any] | None) -> str | None:
    """A canonical text of what the recipe trains; None for a run without recipe.yaml."""
    if recipe is None:
        return None
    return json.dumps(fields(recipe), sort_keys=True, default=str)


def _show(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, default=str)


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs -> groups in the order their first run comes, each a name and one recipe."""
    by_key: dict[tuple[str, str | None], list[Run]] = {}
    for r in runs:
        by_key.setdefault((r.name, identity(r.recipe)), []).append(r)
    names: dict[str, list[tuple[str | None, list[Run]]]] = {}
    for (name, ident), rs in by_key.items():
        names.setdefault(name, []).append((ident, rs))
    labelled: dict[tuple[str, str | None], Group] = {}
    for name, variants in names.items():
        if len(variants) == 1:
            ident, rs = variants[0]
            labelled[(name, ident)] = Group(name, name, rs, {})
            continue
        flats = {ident: fields(rs[0].recipe) for ident, rs in variants if ident is not None}
        keys = sorted({k for f in flats.values() for k in f})
        differing = [k for k in keys if len({_show(f.get(k, "(unset)")) for f in flats.values()}) > 1]
        for ident, rs in variants:
            if ident is None:
                labelled[(name, ident)] = Group(name, f"{name} (no recipe.yaml)", rs, {})
                continue
            differs = {k: _show(flats[ident].get(k, "(unset)")) for k in differing}
            labelled[(name, ident)] = Group(name, _label(name, differs, MAX_LABEL_FIELDS), rs, differs)
        shortened = [g.label for (n, _), g in labelled.items() if n == name]
        for (n, _), g in labelled.items():  # two labels alike once shortened: show every field
            if n == name and shortened.count(g.label) > 1:
                g.label = _label(name, g.differs, len(g.differs))
    return [labelled[k] for k in by_key]


def _label(name: str, differs: dict[str, str], most: int) -> str:
    shown = [f"{k}={v}" for k, v in differs.items()][:most]
    if len(differs) > most:
        shown.append(f"+{len(differs) - most} more")
    # One recipe and runs without recipe.yaml under one name: nothing differs to show.
    return f"{name} ({', '.join(shown)})" if shown else name
