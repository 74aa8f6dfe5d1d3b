"""Which trials may train as one fused group (:mod:`trainables.train.fused`), torch-free.

Planning reads it (the no-Ray launcher groups its queue with :func:`fuse_groups`) without
importing torch. Trials fuse when their networks and batches have one shape and they train in
lockstep (:data:`SHAPE_FIELDS`), and their method declares ``MethodInfo.can_fuse``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainables.config import TrialConfig

# Config fields that must be equal for trials to fuse: one network shape (model, width, stem,
# classes), one batch shape and count per epoch (data, augmentation, batch size, the training
# set and the data root it is read from), one numerics path (device, precision), and an epoch count and schedule so they train in
# lockstep. Everything else (seed, density, method among those that fuse, their parameters,
# optimizer values) may differ: each member keeps its own.
SHAPE_FIELDS = (
    "model",
    "width",
    "stem",
    "dataset",
    "ratio",
    "augment",
    "normalisation",
    "batch_size",
    "train_on_valid",
    "device",
    "precision",
    "epochs",
    "data_root",
)


def fuse_key(cfg: TrialConfig) -> tuple[Any, ...] | None:
    """The key trials must share to train in one group; None when ``cfg`` cannot fuse: its
    method does not declare ``can_fuse``, it is staged, or it is compiled."""
    info = cfg.method_info
    if not info.can_fuse or info.stages is not None or cfg.compile:
        return None
    values = cfg.to_dict()
    return tuple(values[name] for name in SHAPE_FIELDS)


def fuse_groups(configs: Sequence[TrialConfig], size: int) -> list[list[TrialConfig]]:
    """``configs`` in groups of at most ``size`` trials with one :func:`fuse_key`, in the order
    given (a group takes the next trials of its key); a trial that cannot fuse is alone."""
    if size < 1:
        raise ValueError(f"fuse size {size} < 1")
    groups: list[list[TrialConfig]] = []
    open_by_key: dict[tuple[Any, ...], list[TrialConfig]] = {}
    for cfg in configs:
        key = fuse_key(cfg) if size > 1 else None
        group = open_by_key.get(key) if key is not None else None
        if group is None or len(group) >= size:
            group = [cfg]
            groups.append(group)
            if key is not None:
                open_by_key[key] = group
        else:
            group.append(cfg)
    return groups
