"""Corrupted CIFAR-10 (LfF "type0", DisEnt's version) in the DisEnt layout.

Each image gets corruption ``TYPE0[bias]``; class i is aligned with corruption i. LfF's dataset
severity s (1..4) applies corruption level s + 1, so the default severity 4 is level 5, which
is what the DisEnt figure shows. Every image has its own random stream spawned from the split's
seed, so the output is identical for any ``workers`` count.

Frost blends in the reference frost photographs (``frost="reference"``, checked against their
pinned checksums before any work) or the procedural fallback texture (``frost="procedural"``).
``source.json`` records which, and whether the images are the real CIFAR-10 (identified by the
md5 of the python batches): only real CIFAR-10 with the reference frost is comparable with
the paper.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from trainables.data.bundle import BundlePlan, write_bundle
from trainables.data.frost import DEFAULT_FROST, FrostLayer, frost_layer
from trainables.data.raw_sources import is_cifar10
from trainables.data.sources import read_cifar_batches
from trainables.errors import UserError

SEVERITIES = (1, 2, 3, 4)
WORKERS_MAX = 256  # corruption processes; more only splits the work finer (and costs memory)


def cifar10c_provenance(source: Path, frost: str, severity: int) -> dict[str, object]:
    """The ``source.json`` fields of a cifar10c bundle: which images, which frost, which level.

    Comparable with the paper only for the real CIFAR-10 batches with the reference frost; other
    CIFAR-format batches (e.g. ``sources.mnist_as_cifar`` output) are an unidentified stand-in.
    """
    known = is_cifar10(source)
    title = "Corrupted CIFAR-10" if known else "Corrupted CIFAR-format images (unidentified)"
    return {
        "generator": "cifar10c",
        "source_dir": str(Path(source).resolve()),
        "images": "CIFAR-10" if known else "unidentified CIFAR-format batches",
        "known": known,
        "stand_in": not known,
        "title": title if frost == "reference" else f"{title} (procedural frost)",
        "comparable": known and frost == "reference",
        "frost": frost,
        "severity": severity,
        "corruptions": "type0",
    }


def _corrupt_chunk(
    images: np.ndarray,
    bias: np.ndarray,
    level: int,
    seeds: list[np.random.SeedSequence],
    frost: str | FrostLayer = DEFAULT_FROST,
) -> np.ndarray:
    """Corrupt a chunk of HWC images (runs in a worker process when ``workers > 1``; the frost
    layer travels with the chunk, pickled, so workers need no access to the photographs)."""
    from trainables.data.corruptions import TYPE0, corrupt

    out = np.empty_like(images)
    for i, (image, b, seed) in enumerate(zip(images, bias.tolist(), seeds, strict=True)):
        out[i] = corrupt(image, TYPE0[b], level, np.random.default_rng(seed), frost=frost)
    return out


def corrupt_images(
    images: np.ndarray,
    bias: np.ndarray,
    level: int,
    seed_sequence: np.random.SeedSequence,
    workers: int = 1,
    *,
    frost: str | FrostLayer = DEFAULT_FROST,
) -> np.ndarray:
    """(N, H, W, 3) uint8 -> the same with corruption ``TYPE0[bias[i]]`` at ``level``; frost
    blends in ``frost`` (a layer name or a built layer, as for ``corrupt``)."""
    seeds = seed_sequence.spawn(len(images))
    if workers <= 1 or len(images) < 256:
        return _corrupt_chunk(images, bias, level, seeds, frost)
    bounds = np.linspace(0, len(images), workers * 4 + 1).astype(int)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = [
            pool.submit(_corrupt_chunk, images[a:b], bias[a:b], level, seeds[a:b], frost)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return np.concatenate([part.result() for part in parts])


def make_cifar10c(
    source: str | Path,
    out: str | Path,
    *,
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0),
    severity: int = 4,
    valid_size: int = 5000,
    limit: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    workers: int = 1,
    frost: str = DEFAULT_FROST,
    frost_dir: Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``<out>/cifar10c/`` from CIFAR-10 python batches in ``source``; returns it.

    ``frost``: ``reference`` (the photographs in ``frost_dir``, default the folder ``rest-sweep
    data fetch frost`` writes) or ``procedural`` (``trainables.data.frost.FROST_LAYERS``).
    """
    if severity not in SEVERITIES:
        raise UserError(
            f"severity: {severity} is not allowed; allowed: 1, 2, 3, 4 "
            "(corruption level = severity + 1)"
        )
    if not 1 <= workers <= WORKERS_MAX:
        raise UserError(
            f"--workers: {workers} is not allowed; allowed: an integer from 1 to {WORKERS_MAX}"
        )
    from trainables.data.corruptions import TYPE0  # lazily: scipy and the corruption tables

    layer = frost_layer(frost, frost_dir)  # missing or altered photographs fail here, first
    train = read_cifar_batches(Path(source), "train")
    test = read_cifar_batches(Path(source), "test")
    for split, (_, labels) in (("train", train), ("test", test)):
        if labels.min() < 0 or labels.max() >= len(TYPE0):
            raise UserError(
                f"source: {source} {split} labels span {labels.min()}..{labels.max()};"
                f" allowed: 0..{len(TYPE0) - 1}"
            )

    def render(images, labels, bias, seed_sequence):
        return corrupt_images(images, bias, severity + 1, seed_sequence, workers, frost=layer)

    plan = BundlePlan(
        dataset="cifar10c",
        ratios=tuple(ratios),
        valid_size=valid_size,
        limit=limit,
        test_size=test_size,
        seed=seed,
        nested_valid=True,
        num_classes=10,
    )
    provenance = cifar10c_provenance(Path(source), frost, severity)
    return write_bundle(
        plan, Path(out), train, test, render, provenance=provenance, overwrite=overwrite
    )
