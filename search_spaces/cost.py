"""An estimate of a grid's training compute, before anything runs.

cost(trial) = epochs x train samples x training FLOPs per sample, where the FLOPs per sample
follow the trial engine's own accounting (``trainables.sparse``: per-layer forward FLOPs of the
real model at its training input size, scaled by the layer densities of the trial's
``sparse_init`` rule, times 3 for forward + backward). RigL/REST's occasional dense-gradient
steps (one per ``update_frequency`` steps) are left out: under 0.1 % at the paper's settings.

Train-set sizes are the approximate sizes of the real DisEnt bundles (the dataset notes), not
of the bundle on disk: the estimate is for planning, and says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from trainables.config import TrialConfig

# Approximate train split sizes of the real bundles (docs: reference/datasets.md, table 1.5).
TRAIN_SAMPLES: dict[str, int] = {"cmnist": 55_000, "cifar10c": 45_000, "bffhq": 19_200}
ASSUMPTION = (
    "approximate real train-set sizes (cmnist 55,000, cifar10c 45,000, bffhq 19,200 images); "
    "3 x forward FLOPs per sample at the trial's layer densities; dense-gradient mask-update "
    "steps ignored"
)


@dataclass(frozen=True)
class CostEstimate:
    """Total and per-method training FLOPs, and the dense-equivalent for comparison."""

    train_flops: float
    dense_train_flops: float
    per_method: dict[str, float]
    sample_epochs: int
    assumption: str = ASSUMPTION

    def to_dict(self) -> dict:
        return {
            "train_flops": self.train_flops,
            "dense_train_flops": self.dense_train_flops,
            "per_method_train_flops": self.per_method,
            "sample_epochs": self.sample_epochs,
            "assumption": self.assumption,
        }


def estimate(trials: Iterable[TrialConfig]) -> CostEstimate:
    total = dense_total = 0.0
    samples = 0
    per_method: dict[str, float] = defaultdict(float)
    for cfg in trials:
        n = cfg.epochs * TRAIN_SAMPLES[cfg.dataset]
        forward, dense = forward_flops(
            cfg.model, cfg.dataset, cfg.augment, cfg.width, cfg.stem,
            cfg.density if cfg.is_sparse else 1.0, cfg.sparse_init,
            cfg.dense_first_layer, cfg.dense_last_layer,
        )  # fmt: skip
        total += 3.0 * forward * n
        dense_total += 3.0 * dense * n
        per_method[cfg.method] += 3.0 * forward * n
        samples += n
    return CostEstimate(total, dense_total, dict(per_method), samples)


@lru_cache(maxsize=256)
def forward_flops(
    model: str,
    dataset: str,
    augment: str,
    width: int,
    stem: str,
    density: float,
    sparse_init: str,
    dense_first: bool,
    dense_last: bool,
) -> tuple[float, float]:
    """(sparse, dense) forward FLOPs per image; cached, since a grid has few distinct shapes."""
    layers = _layer_flops(model, dataset, augment, width, stem)
    dense = float(sum(layers.values()))
    if density >= 1.0:
        return dense, dense
    from trainables.sparse.densities import layer_densities
    from trainables.sparse.flops import sparse_forward_flops

    shapes = _layer_shapes(model, dataset, width, stem)
    names = list(shapes)
    if dense_last and names:
        names = names[:-1]
    if dense_first and names:
        names = names[1:]
    densities = layer_densities({n: shapes[n] for n in names}, density, sparse_init)
    return float(sparse_forward_flops(layers, densities)), dense


@lru_cache(maxsize=32)
def _layer_flops(model: str, dataset: str, augment: str, width: int, stem: str) -> dict:
    from trainables.sparse.flops import layer_flops

    net = _model(model, dataset, width, stem)
    return layer_flops(net, _input_size(dataset, augment))


@lru_cache(maxsize=32)
def _layer_shapes(model: str, dataset: str, width: int, stem: str) -> dict:
    from trainables.sparse.masks import maskable_parameters

    net = _model(model, dataset, width, stem)
    return {n: tuple(p.shape) for n, p in maskable_parameters(net).items()}


def _model(model: str, dataset: str, width: int, stem: str):
    from trainables.config import DATASETS
    from trainables.models import build_model

    return build_model(model, DATASETS[dataset]["num_classes"], width=width, stem=stem)


def _input_size(dataset: str, augment: str) -> int:
    """The training input size of the data pipeline (e.g. a crop), else the stored size."""
    from trainables.config import DATASETS

    try:
        from trainables.data import make_transform

        return int(make_transform(augment, dataset, train=True).output_size)
    except (ImportError, AttributeError):
        return int(DATASETS[dataset]["image_size"])
