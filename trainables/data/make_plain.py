"""Plain (unbiased) classification datasets in the DisEnt layout: Fashion-MNIST, CIFAR-10/100.

The pruning family (docs/data.md, "Unbiased datasets") trains on ordinary labelled data. Writing
it in the same PNG layout as the biased bundles keeps the cache, ``data verify`` and the loader
unchanged: every file is ``<id>_<label>_<label>.png`` (bias label = label, so every sample is
bias-aligned and every group metric is defined), under the single ratio folder ``1pct``::

    <root>/<dataset>/1pct/align/<label>/<id>_<label>_<label>.png   train
    <root>/<dataset>/1pct/valid/<label>/...                          held out from train
    <root>/<dataset>/test/<label>/...                                the source's test split

``1pct`` is the config's default ``ratio`` (``trainables.datasets.UNBIASED_RATIO``); it means
nothing here, and a trial of an unbiased dataset must keep ``ratio=1``. Gray sources (IDX) are
stored as RGB with three equal channels at their native 28 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data.bundle import BundlePlan, write_bundle
from trainables.data.sources import read_cifar100, read_cifar_batches, read_mnist_format
from trainables.datasets import UNBIASED_RATIO, dataset_info
from trainables.errors import UserError

SOURCES = ("fashion_mnist", "cifar10", "cifar100")


def _gray_to_rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images[..., None], 3, axis=3) if images.ndim == 3 else images


def read_source(dataset: str, source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, H, W, 3) uint8, labels (N,))`` of ``split`` of the raw ``source`` folder."""
    if dataset == "fashion_mnist":
        images, labels = read_mnist_format(Path(source), split)
    elif dataset == "cifar10":
        images, labels = read_cifar_batches(Path(source), split)
    elif dataset == "cifar100":
        images, labels = read_cifar100(Path(source), split)
    else:
        raise UserError(f"dataset: {dataset!r} is not allowed; allowed: {', '.join(SOURCES)}")
    return _gray_to_rgb(images), labels


def make_plain(
    dataset: str,
    source: str | Path,
    out: str | Path,
    *,
    valid_size: int = 5000,
    limit: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write ``<out>/<dataset>/`` (train, valid split off train, test); returns it."""
    info = dataset_info(dataset) if dataset in SOURCES else None
    if info is None:
        raise UserError(f"dataset: {dataset!r} is not allowed; allowed: {', '.join(SOURCES)}")
    train = read_source(dataset, Path(source), "train")
    test = read_source(dataset, Path(source), "test")
    for split, (_, labels) in (("train", train), ("test", test)):
        if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
            raise UserError(
                f"source: {source} {split} labels span {labels.min()}..{labels.max()}; "
                f"allowed: 0..{info.num_classes - 1}"
            )

    def render(images, labels, bias, seed_sequence):
        return images

    plan = BundlePlan(
        dataset=dataset,
        ratios=(UNBIASED_RATIO,),
        valid_size=valid_size,
        limit=limit,
        test_size=test_size,
        seed=seed,
        nested_valid=info.nested_valid,
        num_classes=info.num_classes,
        unbiased=True,
    )
    return write_bundle(plan, Path(out), train, test, render, overwrite=overwrite)
