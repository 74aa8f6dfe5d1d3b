"""Bias labels by exact per-class quota (LfF's ``make_attr_labels``, after a seeded shuffle).

Quotas instead of per-image coin flips make a generated bundle hit its nominal conflicting
ratio exactly (up to rounding per class), so verify's ratio checks are meaningful on small
stand-ins too. The shuffle decides *which* images of a class are conflicting.
"""

from __future__ import annotations

import math
import zlib

import numpy as np


def stream_seed(seed: int, *tags: str | int) -> np.random.SeedSequence:
    """A seed for one purpose, from (seed, tags): adding a ratio or a split to a run never
    changes the random numbers another (ratio, split) gets."""
    words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF]
    words += [zlib.crc32(str(tag).encode()) for tag in tags]
    return np.random.SeedSequence(words)


def stream_rng(seed: int, *tags: str | int) -> np.random.Generator:
    """A numpy generator seeded by :func:`stream_seed`."""
    return np.random.default_rng(stream_seed(seed, *tags))


def _spread(total: int, targets: list[int], rng: np.random.Generator) -> np.ndarray:
    """``total`` items spread evenly over ``targets``; the remainder goes to random targets."""
    base, extra = divmod(total, len(targets))
    counts = np.full(len(targets), base, dtype=np.int64)
    counts[rng.choice(len(targets), size=extra, replace=False)] += 1
    return np.repeat(np.asarray(targets, dtype=np.int64), counts)


def assign_bias(
    labels: np.ndarray, conflicting_pct: float, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Class c gets exactly ``round(n_c * (1 - pct/100))`` aligned images (bias = c); its other
    images are spread evenly over the K-1 other bias values."""
    bias = np.empty(len(labels), dtype=np.int64)
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_aligned = math.floor(len(members) * (1 - conflicting_pct / 100) + 0.5)
        others = [j for j in range(num_classes) if j != c]
        bias[members[:n_aligned]] = c
        bias[members[n_aligned:]] = _spread(len(members) - n_aligned, others, rng)
    return bias


def assign_unbiased(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Bias independent of the label: each class spread evenly over all K bias values."""
    bias = np.empty(len(labels), dtype=np.int64)
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        bias[members] = _spread(len(members), list(range(num_classes)), rng)
    return bias
