"""Models (recipe ``model:``): builtin nets, ``timm:<name>`` and ``torchvision:<name>``.

Every factory takes the input channels and the number of classes (from the dataset)
positionally, and its recipe parameters as keywords.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

from torch import nn

from trainbench.models.builtin import MODELS
from trainbench.registry import instantiate, suggest

__all__ = ["MODELS", "build_model", "external_model_names", "kwargs_problems"]

# Set by build_model itself: from the dataset (num_classes, in_chans), never pretrained weights.
RESERVED_KWARGS = {"num_classes": "the dataset's number of classes",
                   "in_chans": "the dataset's image channels",
                   "pretrained": "trainbench (training starts from scratch)",
                   "weights": "trainbench (training starts from scratch)"}


@cache
def external_model_names(prefix: str) -> frozenset[str]:
    if prefix == "timm":
        import timm

        return frozenset(timm.list_models())
    import torchvision

    return frozenset(torchvision.models.list_models())


class _RepeatChannels(nn.Module):
    """Feeds 1-channel images to a model built for RGB by repeating the channel."""

    def __init__(self, model: nn.Module, in_chans: int) -> None:
        super().__init__()
        self.model, self.repeat = model, 3 // in_chans

    def forward(self, x: Any) -> Any:
        return self.model(x.repeat(1, self.repeat, 1, 1))


def build_model(section: dict[str, Any], in_chans: int, num_classes: int) -> nn.Module:
    name: str = section["name"]
    prefix, _, ext = name.partition(":")
    if prefix == "timm" and ext:
        import timm

        return timm.create_model(ext, pretrained=False, num_classes=num_classes,
                                 in_chans=in_chans, **section["kwargs"])
    if prefix == "torchvision" and ext:
        import torchvision

        model = torchvision.models.get_model(ext, weights=None, num_classes=num_classes,
                                             **section["kwargs"])
        # torchvision models take RGB only; grey images are repeated to three channels.
        return model if in_chans == 3 else _RepeatChannels(model, in_chans)
    return instantiate(MODELS.get(name), section, in_chans, num_classes)


def kwargs_problems(section: dict[str, Any], in_chans: int,
                    num_classes: int) -> Iterator[tuple[tuple[str, ...], str]]:
    """Keys of ``model.kwargs`` that timm/torchvision would refuse, as (key path, message).

    Their factories forward ``**kwargs`` to the model class, so no signature tells what they
    take: the model is built on the meta device (no memory, no weights computed; well under a
    second even for large models), as the run would build it. Only a TypeError that goes away
    without the kwargs is blamed on them; a model the meta device cannot build is left to the run.
    """
    kwargs: dict[str, Any] = section["kwargs"]
    reserved = sorted(k for k in kwargs if k in RESERVED_KWARGS)
    for key in reserved:
        yield (key,), f"is set by {RESERVED_KWARGS[key]}; remove it from model.kwargs."
    if reserved or not kwargs:
        return
    error = _meta_build_error(section["name"], json.dumps(kwargs, sort_keys=True), in_chans, num_classes)
    if error is None:
        return
    accepted = _accepted_kwargs(section["name"], in_chans, num_classes)
    if accepted is None:  # it fails without the kwargs too: not theirs to blame
        return
    names, open_ended = accepted
    unknown = [k for k in kwargs if k not in names]
    listed = ", ".join(n for n in names if n not in RESERVED_KWARGS)
    if unknown and not open_ended:
        for key in unknown:
            yield (key,), (f"{section['name']} does not take '{key}'." + suggest(key, names)
                           + f" It accepts: {listed}.")
    else:  # a known key with a bad value, or a class that takes **kwargs and refuses it deeper
        yield (), f"{section['name']} refuses these kwargs: {error}. It accepts: {listed}."


@cache
def _meta_build_error(name: str, kwargs_json: str, in_chans: int, num_classes: int) -> str | None:
    """Building the model with these kwargs on the meta device: None, or the TypeError's text."""
    import torch

    try:
        with torch.device("meta"):
            build_model({"name": name, "kwargs": json.loads(kwargs_json)}, in_chans, num_classes)
    except TypeError as e:
        return str(e)
    except Exception:
        return None
    return None


@cache
def _accepted_kwargs(name: str, in_chans: int, num_classes: int) -> tuple[list[str], bool] | None:
    """The keyword parameters of the model class ``name`` builds, and whether it also takes
    ``**kwargs``; None when it cannot be built on the meta device at all."""
    import torch

    try:
        with torch.device("meta"):
            model = build_model({"name": name, "kwargs": {}}, in_chans, num_classes)
    except Exception:
        return None
    cls = type(model.model if isinstance(model, _RepeatChannels) else model)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # not self
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)
