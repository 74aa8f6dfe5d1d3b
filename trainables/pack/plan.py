"""Which trials may share a packed process, and how a list of trials is cut into packs.

Trials pack together when one vmapped step serves them all: same network (model, width, stem,
classes), same input pipeline (dataset, augmentation preset, training-set size), same batch size
and epoch count (steps stay in lockstep), same optimizer kind and momentum, same numerics knobs
(device, precision, compile) and a method family that runs the standard loop. Seeds, ratios with
equally sized training sets, learning rates, weight decay, densities, methods of the family,
reweighting, schedules and selection may all differ: they are per-trial tensors or per-trial
objects inside the pack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainables.config import TrialConfig
from trainables.methods import METHODS

PackKey = tuple[Any, ...]


class PackSizeError(ValueError):
    """Packed trials' training sets differ in size (their epochs would not stay in step)."""


def pack_key(config: TrialConfig, *, by_ratio: bool = True) -> PackKey | None:
    """The grouping key of a trial, or None when the trial can only run on its own.

    With ``by_ratio`` the conflict ratio is part of the key: different ratios are different
    training sets, usually of different sizes, hence different step counts per epoch.
    """
    spec = METHODS.get(config.method)
    if spec.trainer != "standard" or config.precision != "fp32":
        return None  # bf16: vmapped BatchNorm rejects fp32 running stats under autocast
    return (
        config.model, config.width, config.stem, config.dataset, config.num_classes,
        config.augment, config.data_root, config.ratio if by_ratio else None,
        config.batch_size, config.epochs, config.optimizer,
        config.momentum if config.optimizer == "sgd" else None,
        config.device, config.channels_last, config.compile, spec.family,
    )  # fmt: skip


def can_pack(configs: Sequence[TrialConfig]) -> bool:
    """True when 2+ configs share one non-None key, the ratio aside.

    Trials of different ratios can share a pack only if their training sets have the same
    size; that is checked when the data is loaded (``PackSizeError``), and ``run_pack`` then
    falls back to single trials. :func:`plan_packs` never mixes ratios.
    """
    if len(configs) < 2:
        return False
    keys = {pack_key(c, by_ratio=False) for c in configs}
    return len(keys) == 1 and None not in keys


def plan_packs(configs: Sequence[TrialConfig], max_pack: int) -> list[list[int]]:
    """Cut ``configs`` into packs of at most ``max_pack`` indices; singles run alone.

    Order is kept within a key (so a grid's seeds and densities stay together) and packs are
    balanced: 10 trials with ``max_pack=8`` give packs of 5 and 5, not 8 and 2, so no pack is
    mostly idle GPU. A trial whose key is None, or ``max_pack <= 1``, is a pack of one.
    """
    if max_pack < 1:
        raise ValueError(f"max_pack: {max_pack!r} is not allowed; allowed: an integer >= 1")
    groups: dict[PackKey, list[int]] = {}
    singles: list[list[int]] = []
    for index, config in enumerate(configs):
        key = pack_key(config)
        if key is None or max_pack == 1:
            singles.append([index])
        else:
            groups.setdefault(key, []).append(index)
    packs: list[list[int]] = []
    for members in groups.values():
        count = -(-len(members) // max_pack)
        size, extra = divmod(len(members), count)
        start = 0
        for chunk in range(count):
            stop = start + size + (1 if chunk < extra else 0)
            packs.append(members[start:stop])
            start = stop
    return sorted(packs + singles, key=lambda pack: pack[0])
