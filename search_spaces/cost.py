"""An estimate of a grid's training compute, before anything runs (no torch, no model built).

cost(trial) = epochs x train samples x training FLOPs per sample, with the accounting of
:mod:`trainables.flops`: per-layer forward FLOPs from the model catalogue's analytic table at
the trial's training input size (``DatasetInfo.trained_size(augment)``: BFFHQ is 224 px under
``disent``, 128 under the rest-code presets), scaled by the layer densities of the trial's
``sparse_init`` rule, times 3 for forward + backward. RigL/REST's occasional dense-gradient
steps (one per ``update_frequency`` steps) are left out: under 0.1 % at the paper's settings.

Train-set sizes are the approximate sizes of the real DisEnt bundles
(``DatasetInfo.train_samples``, plus ``valid_samples`` under ``train_on_valid``:
``planned_train_samples``), not of the bundle on disk: the estimate is for planning, and
says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from trainables.datasets import DATASETS, planned_train_samples
from trainables.flops import dense_train_flops, training_step_flops
from trainables.flops import forward_flops as _forward_flops

if TYPE_CHECKING:
    from trainables.config import TrialConfig


def _assumption() -> str:
    sizes = ", ".join(f"{d} {DATASETS.get(d).train_samples:,}" for d in DATASETS)
    return (
        f"approximate real train-set sizes ({sizes} images); 3 x forward FLOPs per sample at "
        "the trial's layer densities and training input size; dense-gradient mask-update "
        "steps ignored"
    )


ASSUMPTION = _assumption()


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
        train_samples = planned_train_samples(cfg)  # train + valid under train_on_valid
        schedule = cfg.method_info.cost_schedule(cfg)
        for epochs, density in schedule:
            forward, dense = forward_flops(
                cfg.model,
                cfg.dataset,
                cfg.augment,
                cfg.width,
                cfg.stem,
                density,
                cfg.sparse_init,
                cfg.dense_first_layer,
                cfg.dense_last_layer,
            )
            flops = training_step_flops(forward, dense, dense_gradient=False) * train_samples
            total += flops * epochs
            per_method[cfg.method] += flops * epochs
            samples += epochs * train_samples
        dense_total += dense_train_flops(dense, train_samples, cfg.epochs)
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
    info = DATASETS.get(dataset)
    return _forward_flops(
        model,
        info.num_classes,
        width,
        stem,
        info.trained_size(augment),
        density,
        sparse_init,
        dense_first_layer=dense_first,
        dense_last_layer=dense_last,
    )
