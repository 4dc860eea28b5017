"""Models (recipe ``model:``): builtin nets, ``timm:<name>`` and ``torchvision:<name>``.

Every factory takes the input channels and the number of classes (from the dataset)
positionally, and its recipe parameters as keywords.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from torch import nn

from trainbench.models.builtin import MODELS
from trainbench.registry import instantiate

__all__ = ["MODELS", "build_model", "external_model_names"]


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
