"""How big a trial's checkpoints are, and what a grid writes and keeps: an estimate, torch-free.

A full checkpoint of ResNet-18 with Adam is about 134 MB; written every epoch by a 1,000-trial
grid that is terabytes, so ``grids show`` prints the volume before anything runs. Each trial's
method says what its checkpoints hold (:meth:`trainables.methods.base.Method.checkpoint_schedule`,
in the units of :mod:`trainables.checkpoints`), priced here.

One network's size is the model catalogue's analytic count of Conv2d/Linear weights
(:meth:`trainables.models.ModelInfo.layers`); norm layers and biases, about 1 % of these models,
are left out. Each checkpoint also carries a fixed allowance (RNG states, pickled structure) and
the metrics rows so far (``CHECKPOINT_ROWS``). Approximate: within 10 % of real files
(``tests/test_checkpoint_cadence.py``). Train-set sizes are the approximate real bundle sizes
(:func:`trainables.datasets.planned_train_samples`), as in the FLOPs estimate.

Above the method registry (it asks each trial's method for its schedule); planning imports it.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from trainables.checkpoints import CheckpointStage, CheckpointTensors
from trainables.datasets import planned_train_samples
from trainables.models import MODELS

if TYPE_CHECKING:
    from trainables.config import TrialConfig

# Measured on real CPU checkpoints (tests/test_checkpoint_cadence.py): the RNG states of torch,
# numpy, Python and the sparse engine's generator, the pickled dicts and the zip records.
FIXED_BYTES = 24_000
ROW_BYTES = 512  # one metrics row as pickled inside a checkpoint (``CHECKPOINT_ROWS``)
WEIGHTS_FIXED_BYTES = 2_000  # final_weights.pt: its zip records and keys


@lru_cache(maxsize=64)
def network_weights(model: str, num_classes: int, width: int, stem: str) -> int:
    """Conv2d/Linear weights of one network, from the catalogue's analytic layer table."""
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
    implementation = cfg.method_info.implementation
    return [s for s in implementation.checkpoint_schedule(cfg, steps_per_epoch) if s.epochs > 0]


def trial_volume(cfg: TrialConfig, train_samples: int | None = None) -> TrialVolume:
    """The checkpoint volume of ``cfg`` (``train_samples``: the real bundle size by default).

    Checkpoints are written at the epochs ``checkpoint_every`` divides and at the last one
    (the last one replaced by ``final_weights.pt`` under ``final_checkpoint=weights``); the
    newest ``keep_checkpoints`` stay. A staged trial (prune's levels) runs each stage as a
    trial of its own, so the cadence, the last checkpoint (or final weights) and what stays
    count per stage: every stage but the last keeps only its final weights (what the next
    stage starts from), the last one what ``final_checkpoint`` says; stage files (a lottery
    trunk's rewind point) are written and kept."""
    if train_samples is None:  # as the cost estimate counts them (train_on_valid included)
        train_samples = planned_train_samples(cfg)
    weights = network_weights(cfg.model, cfg.num_classes, cfg.width, cfg.stem)
    stages = _schedule(cfg, max(1, math.ceil(train_samples / cfg.batch_size)))
    # Each lifecycle is one trial folder: the whole trial, or each stage of a staged one.
    if cfg.method_info.stages is None:
        parts = [_lifecycle(cfg, stages, weights, train_samples, cfg.final_checkpoint)]
    else:
        finals = ["weights"] * (len(stages) - 1) + [cfg.final_checkpoint]
        parts = [
            _lifecycle(cfg, [stage], weights, train_samples, final)
            for stage, final in zip(stages, finals, strict=True)
        ]
    return TrialVolume(
        writes=sum(p.writes for p in parts),
        written_bytes=math.fsum(p.written_bytes for p in parts),
        kept_bytes=math.fsum(p.kept_bytes for p in parts),
        largest_checkpoint_bytes=max(p.largest_checkpoint_bytes for p in parts),
    )


def _lifecycle(
    cfg: TrialConfig,
    stages: list[CheckpointStage],
    weights: int,
    train_samples: int,
    final_checkpoint: str,
) -> TrialVolume:
    """The volume of one trial folder's lifecycle of ``stages`` (epochs counted from 1) that
    ends under ``final_checkpoint``."""
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
    if final_checkpoint == "weights":
        kept_file = CheckpointTensors(networks=final.networks, masks=min(final.masks, 1.0))
        # final_weights.pt also keeps the (last stage's) metrics rows, as a checkpoint does
        rows = ROW_BYTES * stages[-1].epochs
        final_bytes = kept_file.bytes(weights, train_samples) + WEIGHTS_FIXED_BYTES + rows
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
    "FIXED_BYTES",
    "ROW_BYTES",
    "WEIGHTS_FIXED_BYTES",
    "TrialVolume",
    "VolumeEstimate",
    "estimate_volume",
    "format_bytes",
    "network_weights",
    "trial_volume",
]
