"""A split resident on the device, batched by index slicing: no DataLoader, no worker processes.

The datasets are small (at most ~1 GB as uint8), so each split lives on the device once and an
epoch is a permutation sliced into batches, transformed on the device. Order and augmentation
are drawn from generators seeded by (seed, epoch, stream), so epoch ``e`` yields the same
batches whether the run is fresh or resumed from a checkpoint taken after epoch ``e - 1``.
An augmenting evaluation transform (``rest-code`` on CIFAR-10-C) draws per image index
instead (``Transform.draws_per_index``), so evaluation does not depend on the batch size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from trainables.data.cache import SplitTensors
from trainables.data.transforms import Transform


def epoch_generator(
    seed: int, epoch: int, stream: str, device: torch.device | str
) -> torch.Generator:
    """A generator on ``device`` seeded from (seed, epoch, stream) alone.

    Streams (``"order"``, ``"augment"``) are independent, so changing how many random numbers
    one consumes never shifts the other. The same arguments on the same device type give the
    same numbers (CPU and CUDA generators differ from each other).
    """
    text = f"rest-sweep/{int(seed)}/{int(epoch)}/{stream}".encode()
    value = int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << 63) - 1)
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(value)
    return generator


@dataclass
class Batch:
    """One batch: transformed images, labels, bias labels and the split indices they came from."""

    x: torch.Tensor
    y: torch.Tensor
    b: torch.Tensor
    index: torch.Tensor


class DeviceSplit:
    """A whole split as uint8 on ``device``; :meth:`batches` slices and transforms on the device."""

    def __init__(self, split: SplitTensors, device: torch.device | str, transform: Transform):
        self.device = torch.device(device)
        self.transform = transform
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.bias = split.bias.to(self.device)
        self.aligned = self.labels == self.bias
        self.ids = split.ids
        self.n = len(split.ids)
        self.clean_labels = self.labels  # differs from labels only under label noise
        self.flipped: torch.Tensor | None = None  # bool (N), set by set_noisy_labels

    def set_noisy_labels(self, noisy: torch.Tensor) -> int:
        """Train on ``noisy`` from now on; ``clean_labels`` keeps the originals and ``aligned``
        stays as computed from them (a group is a property of the image, not of its label).
        Returns how many labels changed."""
        noisy = noisy.to(self.device, torch.int64)
        if noisy.shape != self.clean_labels.shape:
            raise ValueError(f"noisy labels: shape {tuple(noisy.shape)}, expected ({self.n},)")
        self.labels = noisy
        self.flipped = noisy != self.clean_labels
        return int(self.flipped.sum().item())

    def __len__(self) -> int:
        return self.n

    def order(
        self, *, epoch: int, seed: int, shuffle: bool, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The epoch's index sequence: weighted draws with replacement, a permutation, or arange."""
        if weights is not None:
            if weights.shape != (self.n,):
                raise ValueError(f"weights: shape {tuple(weights.shape)}, expected ({self.n},)")
            generator = epoch_generator(seed, epoch, "order", self.device)
            probs = weights.to(self.device, torch.float64)
            return torch.multinomial(probs, self.n, replacement=True, generator=generator)
        if shuffle:
            generator = epoch_generator(seed, epoch, "order", self.device)
            return torch.randperm(self.n, generator=generator, device=self.device)
        return torch.arange(self.n, device=self.device)

    def batches(
        self,
        batch_size: int,
        *,
        epoch: int,
        seed: int,
        shuffle: bool,
        weights: torch.Tensor | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Batches of one epoch; the last partial batch is kept unless ``drop_last``.

        A training transform draws crops and flips from the epoch's ``augment`` generator, in
        batch order; an augmenting evaluation transform draws them per image from (seed,
        epoch, split index), whatever ``batch_size``.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size: {batch_size} must be positive")
        order = self.order(epoch=epoch, seed=seed, shuffle=shuffle, weights=weights)
        per_index = self.transform.draws_per_index
        augment = (
            epoch_generator(seed, epoch, "augment", self.device)
            if self.transform.augments and not per_index
            else None
        )
        stop = self.n - self.n % batch_size if drop_last else self.n
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            images = self.images.index_select(0, index)
            if per_index:
                x = self.transform(images, index=index, seed=seed, epoch=epoch)
            else:
                x = self.transform(images, augment)
            yield Batch(
                x=x,
                y=self.labels.index_select(0, index),
                b=self.bias.index_select(0, index),
                index=index,
            )


def group_batches(
    splits: Sequence[DeviceSplit],
    batch_size: int,
    *,
    epoch: int,
    seeds: Sequence[int],
    weights: Sequence[torch.Tensor | None],
) -> Iterator[Batch]:
    """Several trials' training batches of one epoch, stacked on a leading K axis, made with
    one gather per step: what a fused group trains on (``trainables.train.fused``).

    Trial k keeps its own epoch order (``seeds[k]``, ``weights[k]``), augmentation draws and
    labels (label noise is per trial), so its slice of every batch equals the batch
    ``splits[k].batches(batch_size, epoch=epoch, seed=seeds[k], shuffle=True,
    weights=weights[k])`` yields, bit for bit. The images, bias and transform are the first
    split's: the caller checks that the splits hold the same ones (:func:`same_images`).
    Why: K trials' separate gathers, transforms and the stack into one batch are ~10 small
    launches each per step, outside the group's graph; this is ~10 for the group, plus three
    per member where the transform crops and flips (each member's draws stay its own).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size: {batch_size} must be positive")
    first = splits[0]
    if first.transform.draws_per_index:
        raise ValueError("group_batches: a training transform draws per batch, not per index")
    orders = torch.stack(
        [
            split.order(epoch=epoch, seed=seed, shuffle=True, weights=w)
            for split, seed, w in zip(splits, seeds, weights, strict=True)
        ]
    )
    labels = torch.stack([split.labels for split in splits])
    augment = [
        epoch_generator(seed, epoch, "augment", first.device) if first.transform.augments else None
        for seed in seeds
    ]
    k = len(splits)
    for start in range(0, first.n, batch_size):
        index = orders[:, start : start + batch_size]
        flat = index.reshape(-1)
        x = first.transform.many(first.images.index_select(0, flat), augment)
        yield Batch(
            x=x.view(k, -1, *x.shape[1:]),
            y=labels.gather(1, index),
            b=first.bias.index_select(0, flat).view(k, -1),
            index=index,
        )


def same_images(splits: Sequence[DeviceSplit]) -> bool:
    """Whether ``splits`` hold the same images, bias and transform (one data split loaded by
    several trials): then :func:`group_batches` may read the first split's for all. Compares
    contents, not object identity (each trial loaded its own copy): two comparisons per
    split, each a device sync, once per group."""
    first = splits[0]
    return all(
        split.n == first.n
        and split.transform == first.transform
        and split.images.shape == first.images.shape
        and torch.equal(split.images, first.images)
        and torch.equal(split.bias, first.bias)
        for split in splits[1:]
    )
