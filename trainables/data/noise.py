"""Training-label noise: documented transition matrices and one seeded draw per trial.

Every noise type is a row-stochastic ``K x K`` matrix ``T`` (``T[c, d]`` is the probability that
a sample of clean class ``c`` carries label ``d``); the off-diagonal mass of a row is the
fraction of that class that is flipped:

* ``symmetric``: ``T = (1 - f) I + f / (K - 1) (J - I)``: a flipped label is uniform over the
  *other* classes; every row flips ``f``.
* ``pairflip``: ``c -> (c + 1) mod K`` with probability ``f``.
* ``asymmetric``: a class map per dataset family; classes outside the map keep their label.

  - CIFAR-10 (``cifar10``, ``cifar10c``; SDD's "ELR/Co-teaching" map): truck -> automobile
    (9 -> 1), bird -> airplane (2 -> 0), cat <-> dog (3 <-> 5), deer -> horse (4 -> 7).
  - MNIST-like 10-class data (``cmnist``, ``fashion_mnist``; Patrini et al. 2017): 2 -> 7,
    3 -> 8, 5 <-> 6, 7 -> 1. On Fashion-MNIST the same indices mean pullover -> sneaker,
    dress -> bag, sandal <-> shirt, sneaker -> trouser: no visual similarity, so there it is
    only a fixed class-dependent noise, not a "plausible confusion" one.
  - CIFAR-100 (SDD): 20 blocks of 5 consecutive class indices, ``i -> next in block``
    cyclically. The indices are alphabetical fine labels, so blocks are not superclasses.

* ``random`` (``random_labels_fraction``; SDD/OpenLTH): ``T = (1 - f) I + f / K J``: that
  fraction of labels is redrawn uniformly over *all* classes, so ``f (K - 1) / K`` change.

The draw is exact per class, not per sample: in class ``c`` exactly ``ceil(m_c n_c)`` samples
(``m_c`` = the row's off-diagonal mass; SDD's count for its CIFAR-10 map) are chosen, and each
gets a label from the row's off-diagonal part renormalised. ``random`` chooses ``ceil(f N)``
samples over the whole split and draws their labels from all ``K`` classes. The generator is
seeded by (seed, ``"noise"``) alone, so it is independent of the data-order and augmentation
streams and the same seed always gives the same labels. Pure numpy (torch-free).
"""

from __future__ import annotations

import math

import numpy as np

from trainables.data.bias import stream_rng
from trainables.errors import UserError

NOISE_TYPES: tuple[str, ...] = ("symmetric", "asymmetric", "pairflip", "random")
CIFAR10_MAP: dict[int, int] = {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}
MNIST_MAP: dict[int, int] = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
# dataset -> asymmetric family; a dataset missing here has no asymmetric noise.
ASYMMETRIC_FAMILY: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar10c": "cifar10",
    "cmnist": "mnist",
    "mnist": "mnist",
    "fashion_mnist": "mnist",
    "cifar100": "cifar100",
}


def asymmetric_supported(dataset: str) -> bool:
    """Whether ``dataset`` has an asymmetric class map."""
    return dataset in ASYMMETRIC_FAMILY


def _class_map(dataset: str, num_classes: int) -> dict[int, int]:
    family = ASYMMETRIC_FAMILY.get(dataset)
    if family is None:
        allowed = ", ".join(ASYMMETRIC_FAMILY)
        raise UserError(f"noise_type: asymmetric has no map for {dataset!r}; allowed: {allowed}")
    if family == "cifar100":
        if num_classes % 5:
            raise UserError(f"num_classes: {num_classes} is not a multiple of 5 (CIFAR-100 map)")
        return {c: (c // 5) * 5 + (c % 5 + 1) % 5 for c in range(num_classes)}
    if num_classes != 10:
        raise UserError(f"num_classes: {num_classes} for the {family} map; allowed: 10")
    return CIFAR10_MAP if family == "cifar10" else MNIST_MAP


def transition_matrix(
    noise_type: str, fraction: float, num_classes: int, dataset: str = ""
) -> np.ndarray:
    """The row-stochastic ``K x K`` matrix of ``noise_type`` at ``fraction`` (module doc)."""
    if noise_type not in NOISE_TYPES:
        raise UserError(f"noise_type: {noise_type!r} is not allowed; allowed: {NOISE_TYPES}")
    if not 0 <= fraction < 1:
        raise UserError(f"noise_fraction: {fraction!r} is not allowed; allowed: [0, 1)")
    k = int(num_classes)
    if k < 2:
        raise UserError(f"num_classes: {k} is not allowed for label noise; allowed: >= 2")
    eye = np.eye(k)
    if noise_type == "symmetric":
        return (1 - fraction) * eye + fraction / (k - 1) * (1 - eye)
    if noise_type == "random":
        return (1 - fraction) * eye + fraction / k
    if noise_type == "pairflip":
        mapping = {c: (c + 1) % k for c in range(k)}
    else:
        mapping = _class_map(dataset, k)
    matrix = eye.copy()
    for source, target in mapping.items():
        matrix[source, source] = 1 - fraction
        matrix[source, target] += fraction
    return matrix


def noisy_labels(
    labels: np.ndarray,
    num_classes: int,
    noise_type: str,
    fraction: float,
    seed: int,
    dataset: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy labels, flipped mask)`` of ``labels``; ``flipped`` marks labels that changed."""
    clean = np.asarray(labels, dtype=np.int64)
    noisy = clean.copy()
    if fraction == 0 or noise_type == "none":
        return noisy, np.zeros(len(clean), dtype=bool)
    matrix = transition_matrix(noise_type, fraction, num_classes, dataset)
    rng = stream_rng(seed, "noise")
    k = int(num_classes)
    if noise_type == "random":
        chosen = rng.permutation(len(clean))[: math.ceil(fraction * len(clean))]
        noisy[chosen] = rng.integers(0, k, size=len(chosen))
        return noisy, noisy != clean
    for c in range(k):
        row = matrix[c].copy()
        row[c] = 0.0
        mass = row.sum()
        members = np.flatnonzero(clean == c)
        if mass <= 0 or not len(members):
            continue
        chosen = rng.permutation(members)[: math.ceil(mass * len(members) - 1e-9)]
        noisy[chosen] = rng.choice(k, size=len(chosen), p=row / mass)
    return noisy, noisy != clean


__all__ = [
    "ASYMMETRIC_FAMILY",
    "CIFAR10_MAP",
    "MNIST_MAP",
    "NOISE_TYPES",
    "asymmetric_supported",
    "noisy_labels",
    "transition_matrix",
]
