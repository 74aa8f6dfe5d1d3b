"""How big a trial's checkpoints are, and what a grid writes and keeps: an estimate, torch-free.

A full checkpoint of ResNet-18 with Adam is about 134 MB; written every epoch by a 1,000-trial
grid that is terabytes, so ``grids show`` prints the volume before anything runs. A method
says what its checkpoints hold (:meth:`trainables.methods.base.Method.checkpoint_schedule`), in
units priced here without torch or a built model:

* ``networks``: the networks it trains (weights and buffers, float32), what ``final_weights.pt``
  keeps too;
* ``weight_sized``: other float32 tensors the size of the weights: optimizer moments (Adam 2
  per network, SGD momentum 1, none without momentum), copies of a network (prune's rewind
  point, MRM's initialisation), MRM's mask logits and their Adam moments;
* ``masks``: bool masks, one byte per maskable weight;
* ``sample_bytes``: per training sample (LfF and DisEnt keep two loss EMAs of two float32 each,
  JTT one bool per sample).

One network's size is the model catalogue's analytic count of Conv2d/Linear weights
(:meth:`trainables.models.ModelInfo.layers`); norm layers and biases, about 1 % of these models,
are left out. Each checkpoint also carries a fixed allowance (RNG states, pickled structure) and
the metrics rows so far (``CHECKPOINT_ROWS``). Approximate: within 10 % of real files
(``tests/test_checkpoint_cadence.py``). Train-set sizes are the approximate real bundle sizes
(:func:`trainables.datasets.planned_train_samples`), as in the FLOPs estimate.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.config import TrialConfig

FLOAT_BYTES = 4
# Measured on real CPU checkpoints (tests/test_checkpoint_cadence.py): the RNG states of torch,
# numpy, Python and the sparse engine's generator, the pickled dicts and the zip records.
FIXED_BYTES = 24_000
ROW_BYTES = 512  # one metrics row as pickled inside a checkpoint (``CHECKPOINT_ROWS``)
WEIGHTS_FIXED_BYTES = 2_000  # final_weights.pt: its zip records and keys
LOSS_EMA_BYTES = 8  # one LossEma per sample: value and seen, float32 each
# Parameter-sized float32 moments an optimizer keeps per network (SGD without momentum: none).
OPTIMIZER_MOMENTS: dict[str, int] = {"adam": 2, "sgd": 1}


def optimizer_moments(cfg: TrialConfig) -> float:
    """Weight-sized tensors one network's optimizer keeps (``OPTIMIZER_MOMENTS``)."""
    if cfg.optimizer == "sgd" and cfg.momentum == 0:
        return 0.0
    return float(OPTIMIZER_MOMENTS[cfg.optimizer])


@dataclass(frozen=True)
class CheckpointTensors:
    """What one saved file holds, in units of one network's weights (module docstring)."""

    networks: float = 1.0
    weight_sized: float = 0.0
    masks: float = 0.0
    sample_bytes: float = 0.0

    def plus(self, **more: float) -> CheckpointTensors:
        """These contents with ``more`` added, field by field."""
        return dataclasses.replace(self, **{k: getattr(self, k) + v for k, v in more.items()})

    def bytes(self, weights: int, train_samples: int) -> float:
        """Tensor bytes for a network of ``weights`` weights and ``train_samples`` samples."""
        floats = FLOAT_BYTES * (self.networks + self.weight_sized) * weights
        return floats + self.masks * weights + self.sample_bytes * train_samples


@dataclass(frozen=True)
class CheckpointStage:
    """``epochs`` consecutive epochs whose checkpoints hold ``holds``; ``stage_file``, when set,
    is a file written once when the stage ends and always kept (prune's level file)."""

    epochs: int
    holds: CheckpointTensors
    stage_file: CheckpointTensors | None = None


def add_to_every_stage(stages: list[CheckpointStage], **more: float) -> list[CheckpointStage]:
    """``stages`` with ``more`` added to what each stage's checkpoints hold (method overrides
    extend their base class's schedule this way, so objective x sparse combinations add up)."""
    return [dataclasses.replace(s, holds=s.holds.plus(**more)) for s in stages]


@lru_cache(maxsize=64)
def network_weights(model: str, num_classes: int, width: int, stem: str) -> int:
    """Conv2d/Linear weights of one network, from the catalogue's analytic layer table."""
    from trainables.models import MODELS

    layers = MODELS.get(model).layers(num_classes, width, stem, 32)
    return sum(layer.numel for layer in layers.values())


@dataclass(frozen=True)
class TrialVolume:
    """The checkpoint files of one trial under its cadence: how many full checkpoints it
    writes, the bytes of every file written, what is left when it finishes, and its largest
    checkpoint."""

    writes: int
    written_bytes: float
    kept_bytes: float
    largest_checkpoint_bytes: float


def _schedule(cfg: TrialConfig, steps_per_epoch: int) -> list[CheckpointStage]:
    from trainables.methods import effective_method

    implementation = effective_method(cfg.method, cfg.objective).implementation
    return [s for s in implementation.checkpoint_schedule(cfg, steps_per_epoch) if s.epochs > 0]


def trial_volume(cfg: TrialConfig, train_samples: int | None = None) -> TrialVolume:
    """The checkpoint volume of ``cfg`` (``train_samples``: the real bundle size by default).

    Checkpoints are written at the epochs ``checkpoint_every`` divides and at the last one
    (the last one replaced by ``final_weights.pt`` under ``final_checkpoint=weights``); the
    newest ``keep_checkpoints`` stay. Stage files (prune's levels) are written and kept."""
    from trainables.datasets import planned_train_samples

    if train_samples is None:  # as the cost estimate counts them (train_on_valid included)
        train_samples = planned_train_samples(cfg)
    weights = network_weights(cfg.model, cfg.num_classes, cfg.width, cfg.stem)
    stages = _schedule(cfg, max(1, math.ceil(train_samples / cfg.batch_size)))
    total = sum(s.epochs for s in stages)
    every = cfg.checkpoint_every

    def checkpoint(holds: CheckpointTensors, epoch: int) -> float:
        return holds.bytes(weights, train_samples) + FIXED_BYTES + ROW_BYTES * epoch

    sizes: list[float] = []  # every full checkpoint written, in epoch order
    stage_files = 0.0
    first = 1
    for stage in stages:
        end = first + stage.epochs  # this stage's epochs are first..end-1
        start = math.ceil(first / every) * every
        sizes += [checkpoint(stage.holds, e) for e in range(start, min(end, total), every)]
        if stage.stage_file is not None:
            stage_files += stage.stage_file.bytes(weights, train_samples) + WEIGHTS_FIXED_BYTES
        first = end
    final = stages[-1].holds
    if cfg.final_checkpoint == "weights":
        kept_file = CheckpointTensors(networks=final.networks, masks=min(final.masks, 1.0))
        final_bytes = kept_file.bytes(weights, train_samples) + WEIGHTS_FIXED_BYTES
        written = math.fsum(sizes) + final_bytes
        kept = final_bytes
    else:
        sizes.append(checkpoint(final, total))
        written = math.fsum(sizes)
        kept = math.fsum(sizes[-cfg.keep_checkpoints :])
    return TrialVolume(
        writes=len(sizes),
        written_bytes=written + stage_files,
        kept_bytes=kept + stage_files,
        largest_checkpoint_bytes=max(sizes, default=0.0),
    )


ASSUMPTION = (
    "approximate (within about 10 %): the catalogue's Conv2d/Linear weight counts times what "
    "each method keeps (optimizer moments, second networks, masks, per-sample state)"
)


@dataclass(frozen=True)
class VolumeEstimate:
    """A grid's checkpoint volume: totals, per model, and the cadence(s) it was priced at."""

    trials: int
    writes: int
    written_bytes: float
    kept_bytes: float
    largest_checkpoint_bytes: float
    per_model: dict[str, dict[str, float]]
    cadences: list[dict[str, Any]]
    assumption: str = ASSUMPTION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary_line(self) -> str:
        """One line for ``grids show`` (decimal units: 134 MB is 134e6 bytes)."""
        mixed = len(self.cadences) > 1
        cadence = "; ".join(_cadence_text(c, mixed) for c in self.cadences)
        models = ", ".join(
            f"{model} {format_bytes(v['written_bytes'])}" for model, v in self.per_model.items()
        )
        return (
            f"estimated checkpoint volume: {format_bytes(self.written_bytes)} written "
            f"({models}; {self.writes:,} checkpoints of up to "
            f"{format_bytes(self.largest_checkpoint_bytes)}), {format_bytes(self.kept_bytes)} "
            f"kept at the end; {cadence}; {self.assumption}"
        )


def _cadence_text(cadence: dict[str, Any], mixed: bool) -> str:
    every = cadence["checkpoint_every"]
    when = "every epoch" if every == 1 else f"every {every} epochs and at the last"
    kept = (
        "final weights only"
        if cadence["final_checkpoint"] == "weights"
        else f"newest {cadence['keep_checkpoints']} kept"
    )
    prefix = f"{cadence['trials']} trials: " if mixed else ""
    return f"{prefix}checkpoint {when}, {kept}"


def estimate_volume(trials: Iterable[TrialConfig]) -> VolumeEstimate:
    """Sum :func:`trial_volume` over ``trials`` (a grid expansion)."""
    writes = 0
    written = kept = largest = 0.0
    per_model: dict[str, dict[str, float]] = defaultdict(
        lambda: {"trials": 0, "written_bytes": 0.0, "kept_bytes": 0.0}
    )
    cadences: dict[tuple[int, int, str], int] = defaultdict(int)
    count = 0
    for cfg in trials:
        volume = trial_volume(cfg)
        count += 1
        writes += volume.writes
        written += volume.written_bytes
        kept += volume.kept_bytes
        largest = max(largest, volume.largest_checkpoint_bytes)
        entry = per_model[cfg.model]
        entry["trials"] += 1
        entry["written_bytes"] += volume.written_bytes
        entry["kept_bytes"] += volume.kept_bytes
        cadences[(cfg.checkpoint_every, cfg.keep_checkpoints, cfg.final_checkpoint)] += 1
    listed = [
        {
            "checkpoint_every": every,
            "keep_checkpoints": keep,
            "final_checkpoint": final,
            "trials": n,
        }
        for (every, keep, final), n in sorted(cadences.items())
    ]
    return VolumeEstimate(count, writes, written, kept, largest, dict(per_model), listed)


def format_bytes(n: float) -> str:
    """Decimal units, three significant digits: ``134 MB``, ``6.12 TB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 999.5:  # what still prints as three digits in this unit
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


__all__ = [
    "ASSUMPTION",
    "CheckpointStage",
    "CheckpointTensors",
    "TrialVolume",
    "VolumeEstimate",
    "add_to_every_stage",
    "estimate_volume",
    "format_bytes",
    "network_weights",
    "optimizer_moments",
    "trial_volume",
]
