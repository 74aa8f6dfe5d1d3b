"""The batches of N packed trials, drawn exactly as N single trials would draw them.

Each trial keeps its own data order and augmentation draws (``DeviceSplit.order`` and the
``augment`` generator, both seeded by (seed, epoch) as in the single-trial loop), but the
expensive parts run once for the whole pack: one gather of N*B images from the device
storage, one crop/flip gather, one float conversion and normalisation. Trials may train on
different splits (for example two ratios) as long as the splits have the same size, so that
every trial's epoch has the same number of steps; their images are concatenated once.

Batches come out trial-second, ``x`` as (B, N, C, H, W), which is the layout the stacked
forward folds into channels without a copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from trainables.data import DeviceSplit, epoch_generator
from trainables.data.transforms import Transform, crop_flip, draw_crop_flip, resize_uint8_levels
from trainables.pack.plan import PackSizeError


@dataclass
class PackBatch:
    """``x`` (B, N, C, H, W) float; ``y``, ``b`` (N, B) int64."""

    x: torch.Tensor
    y: torch.Tensor
    b: torch.Tensor


def apply_transform(
    transform: Transform,
    images: torch.Tensor,
    generators: Sequence[torch.Generator] | None,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``Transform.__call__`` for a (B, N) batch with one generator per trial.

    ``images`` is (B*N, 3, H, W) uint8 in trial-second order; trial ``i``'s crop/flip draws come
    from ``generators[i]`` in the same calls a single trial makes, so its pixels are identical.
    Kept step for step in sync with ``trainables.data.transforms.Transform.__call__``, except
    that the normalisation constants come in as device tensors (``stats``): building them from
    Python lists each batch is a blocking host-to-device copy, i.e. a sync per step.
    """
    out = images
    if transform.resize is not None and tuple(out.shape[-2:]) != (transform.resize,) * 2:
        out = resize_uint8_levels(out, transform.resize)
    if transform.augments:
        if generators is None:
            raise ValueError(f"transform {transform.preset!r} augments and needs generators")
        n = len(generators)
        per_trial = out.shape[0] // n
        draws = [
            draw_crop_flip(per_trial, transform.crop_padding, transform.flip, g, out.device)
            for g in generators
        ]
        top, left, flip = (
            torch.stack(parts, dim=1).reshape(-1) for parts in zip(*draws, strict=True)
        )
        out = crop_flip(out, top, left, flip, transform.crop_padding)
    out = out.float().div_(255.0)
    if transform.mean is not None and transform.std is not None:
        mean, std = stats if stats is not None else normalisation(transform, out.device)
        out = out.sub_(mean).div_(std)
    return out


def normalisation(transform: Transform, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The transform's mean and std as (1, 3, 1, 1) tensors on ``device``."""
    mean = torch.tensor(transform.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(transform.std, device=device).view(1, 3, 1, 1)
    return mean, std


class PackSplit:
    """N trials' view of one kind of split (train, valid or test), each with its own order."""

    def __init__(self, splits: Sequence[DeviceSplit]) -> None:
        sizes = {s.n for s in splits}
        if len(sizes) != 1:
            raise PackSizeError(
                f"packed trials need splits of one size, got sizes {sorted(sizes)}; "
                "pack trials of the same dataset and ratio"
            )
        self.splits = list(splits)
        self.n_trials = len(splits)
        self.size = splits[0].n
        self.transform = splits[0].transform
        distinct: list[DeviceSplit] = []
        for s in splits:
            if not any(s is d for d in distinct):
                distinct.append(s)
        self.shared = len(distinct) == 1
        if self.shared:
            self.images, self.labels, self.bias = (
                distinct[0].images,
                distinct[0].labels,
                distinct[0].bias,
            )
            offsets = [0] * len(splits)
        else:
            self.images = torch.cat([d.images for d in distinct])
            self.labels = torch.cat([d.labels for d in distinct])
            self.bias = torch.cat([d.bias for d in distinct])
            starts = {id(d): i * self.size for i, d in enumerate(distinct)}
            offsets = [starts[id(s)] for s in splits]
        device = self.images.device
        self.offsets = torch.tensor(offsets, device=device).view(-1, 1)
        self.stats = (
            normalisation(self.transform, device) if self.transform.mean is not None else None
        )

    def batches(
        self,
        batch_size: int,
        *,
        epoch: int,
        seeds: Sequence[int],
        shuffle: bool,
        weights: Sequence[torch.Tensor | None],
    ) -> Iterator[PackBatch]:
        """The epoch's batches of every trial, in lockstep (the last partial batch is kept)."""
        orders = torch.stack([
            s.order(epoch=epoch, seed=seed, shuffle=shuffle, weights=w)
            for s, seed, w in zip(self.splits, seeds, weights, strict=True)
        ]) + self.offsets  # fmt: skip
        generators = None
        if self.transform.augments:
            device = self.images.device
            generators = [epoch_generator(seed, epoch, "augment", device) for seed in seeds]
        n = self.n_trials
        for start in range(0, self.size, batch_size):
            index = orders[:, start : start + batch_size]  # (N, B)
            flat = index.t().reshape(-1)  # trial-second: image j of trial i at j*N + i
            x = apply_transform(
                self.transform, self.images.index_select(0, flat), generators, self.stats
            )
            yield PackBatch(
                x=x.view(-1, n, *x.shape[1:]),
                y=self.labels.index_select(0, index.reshape(-1)).view(n, -1),
                b=self.bias.index_select(0, index.reshape(-1)).view(n, -1),
            )
