"""Biased-image datasets: DisEnt bundle layout, verify, uint8 cache, device loader, presets,
and generators of offline stand-ins (see docs/data.md).

Names are resolved lazily (PEP 562) so the generators and ``verify`` (numpy + PIL) can be
imported without paying for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "SplitTensors": "cache",
    "load_split": "cache",
    "load_splits": "cache",
    "DeviceSplit": "loader",
    "Batch": "loader",
    "epoch_generator": "loader",
    "Transform": "transforms",
    "make_transform": "transforms",
    "PRESETS": "transforms",
    "available_ratios": "layout",
    "ratio_folder": "layout",
    "DATASETS": "trainables.datasets",  # the dataset registry (torch-free)
}

__all__ = [
    "DATASETS",
    "PRESETS",
    "Batch",
    "DeviceSplit",
    "SplitTensors",
    "Transform",
    "available_ratios",
    "epoch_generator",
    "load_split",
    "load_splits",
    "make_transform",
    "ratio_folder",
]

if TYPE_CHECKING:
    from trainables.data.cache import SplitTensors, load_split, load_splits
    from trainables.data.layout import available_ratios, ratio_folder
    from trainables.data.loader import Batch, DeviceSplit, epoch_generator
    from trainables.data.transforms import PRESETS, Transform, make_transform
    from trainables.datasets import DATASETS


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainables.data' has no attribute {name!r}")
    path = module if "." in module else f"trainables.data.{module}"
    value = getattr(importlib.import_module(path), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
