"""Model registry: ``MODELS.get(name)(num_classes=..., width=..., stem=...)`` builds a network.

Every entry takes the same keyword arguments so the trial code never branches on the model
name; an entry that has no use for ``width`` or ``stem`` accepts and ignores it. A new model
is one ``MODELS.register`` line below.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from trainables.errors import UserError
from trainables.models.resnet import resnet18
from trainables.models.simple_cnn import simple_cnn
from trainables.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.register("simple_cnn", simple_cnn)
MODELS.register("resnet18", resnet18)


def build_model(name: str, num_classes: int, width: int = 64, stem: str = "imagenet") -> nn.Module:
    """Build a registered model; bad sizes are a :class:`UserError` naming the argument."""
    if num_classes < 1:
        raise UserError(f"num_classes: {num_classes!r} is not allowed; allowed: an integer >= 1")
    if width < 1:
        raise UserError(f"width: {width!r} is not allowed; allowed: an integer >= 1")
    return MODELS.get(name)(num_classes=num_classes, width=width, stem=stem)


__all__ = ["MODELS", "build_model"]
