"""What a trial's checkpoints hold, in units priced without torch or a built model.

A method says what its checkpoints hold (:meth:`trainables.methods.base.Method.checkpoint_schedule`)
as a list of :class:`CheckpointStage`, each holding a :class:`CheckpointTensors`:

* ``networks``: the networks it trains (weights and buffers, float32), what ``final_weights.pt``
  keeps too;
* ``weight_sized``: other float32 tensors the size of the weights: optimizer moments (Adam 2
  per network, SGD momentum 1, none without momentum; :func:`optimizer_moments`), copies of a
  network (prune's rewind point, MRM's initialisation), MRM's mask logits and their Adam moments;
* ``masks``: bool masks, one byte per maskable weight;
* ``sample_bytes``: per training sample (LfF and DisEnt keep two loss EMAs of two float32 each,
  JTT one bool per sample).

Declarations only: this module sits below the method registry (every method module imports
it) and imports nothing above it. The grid-level estimate that prices these units for every
trial of a grid (it reads the method registry) is :mod:`trainables.checkpoint_volume`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainables.config import TrialConfig

FLOAT_BYTES = 4
LOSS_EMA_BYTES = 8  # one LossEma per sample: value and seen, float32 each


def optimizer_moments(cfg: TrialConfig) -> float:
    """Weight-sized tensors one network's optimizer keeps (the optimizer registry's facts)."""
    from trainables.optimizers import OPTIMIZERS

    return float(OPTIMIZERS.get(cfg.optimizer).state_tensors(cfg.momentum))


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
    is a file written once in the stage and always kept (a lottery trunk's rewind point)."""

    epochs: int
    holds: CheckpointTensors
    stage_file: CheckpointTensors | None = None


def add_to_every_stage(stages: list[CheckpointStage], **more: float) -> list[CheckpointStage]:
    """``stages`` with ``more`` added to what each stage's checkpoints hold (method overrides
    extend their base class's schedule this way, so objective x sparse combinations add up)."""
    return [dataclasses.replace(s, holds=s.holds.plus(**more)) for s in stages]


__all__ = [
    "FLOAT_BYTES",
    "LOSS_EMA_BYTES",
    "CheckpointStage",
    "CheckpointTensors",
    "add_to_every_stage",
    "optimizer_moments",
]
