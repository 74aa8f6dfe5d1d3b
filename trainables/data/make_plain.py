"""Plain (unbiased) classification datasets in the DisEnt layout: MNIST, Fashion-MNIST,
CIFAR-10/100.

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

from collections.abc import Callable
from pathlib import Path

import numpy as np

from trainables.data.bundle import BundlePlan, write_bundle
from trainables.data.raw_sources import idx_provenance, is_cifar10
from trainables.data.sources import read_cifar100, read_cifar_batches, read_mnist_format
from trainables.datasets import UNBIASED_RATIO, dataset_info
from trainables.errors import UserError


def _read_idx_rgb(source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_mnist_format(source, split)
    return np.repeat(images[..., None], 3, axis=3), labels


# dataset -> reader of (images (N, H, W, 3) uint8, labels (N,)) for a split of the raw source
READERS: dict[str, Callable[[Path, str], tuple[np.ndarray, np.ndarray]]] = {
    "mnist": _read_idx_rgb,
    "fashion_mnist": _read_idx_rgb,
    "cifar10": read_cifar_batches,
    "cifar100": read_cifar100,
}
SOURCES = tuple(READERS)
# dataset -> the title template of an IDX source's provenance (raw_sources.idx_provenance)
IDX_TITLES = {"mnist": "{}", "fashion_mnist": "{}"}
# dataset -> whether a python-batch source is the published files (by checksum)
BATCH_IDENTIFIERS: dict[str, Callable[[Path], bool]] = {"cifar10": is_cifar10}


def read_source(dataset: str, source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, H, W, 3) uint8, labels (N,))`` of ``split`` of the raw ``source`` folder."""
    if dataset not in READERS:
        raise UserError(f"dataset: {dataset!r} is not allowed; allowed: {', '.join(SOURCES)}")
    return READERS[dataset](Path(source), split)


def _provenance(dataset: str, source: Path) -> dict[str, object]:
    """What ``source.json`` says of the images: identified by checksum for IDX sources and the
    CIFAR-10 batches; the CIFAR-100 files are taken as named (no pins for them here)."""
    if dataset in IDX_TITLES:
        return idx_provenance(source, dataset, IDX_TITLES[dataset])
    title = dataset_info(dataset).title
    identify = BATCH_IDENTIFIERS.get(dataset)
    known = identify(source) if identify is not None else None
    return {
        "generator": dataset,
        "source_dir": str(Path(source).resolve()),
        "images": title if known is not False else "unidentified CIFAR-format batches",
        "known": bool(known),
        "stand_in": known is False,
        "title": title if known is not False else f"{title} (unidentified source)",
        "comparable": known is not False,
    }


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
    provenance = _provenance(dataset, Path(source))
    return write_bundle(
        plan, Path(out), train, test, render, provenance=provenance, overwrite=overwrite
    )
