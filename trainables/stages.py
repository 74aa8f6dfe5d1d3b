"""Staged runs, declared: a trial made of stages, each an ordinary trial in its own folder.

A multi-stage protocol (iterative pruning: a dense level, then prune-and-retrain levels; its
branches) is a sequence of :class:`Stage` values that a method's :class:`StagePlan` declares
from the config alone. The runner (:mod:`trainables.train.staged`) trains each stage as an
unchanged trial lifecycle in ``<trial>/stages/<stage>/`` (idempotent: a stage with a summary
is never retrained), after asking the plan for the stage's *start* (its mask, starting weights
and schedule position), which the plan decides from the earlier stages' stored results only.
This is OpenLTH's lottery runner (``lottery/runner.py``: one folder per level around an
unchanged ``standard_train``). The training loop, the trial object, the result format, status
and the Ray trainable know stages only as this generic value: a name, the columns its rows
carry (``{"level": 3}``) and a :class:`~trainables.steps.Span` of its schedule.

Everything planning needs about a trial's length comes from its stages through
``MethodInfo.planned_epochs`` (status, ASHA's ``max_t``) and ``MethodInfo.cost_schedule``
(FLOPs and wall-time estimates). Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainables.datasets import planned_train_samples
from trainables.steps import Span

if TYPE_CHECKING:
    from trainables.config import TrialConfig
    from trainables.results import TrialStore


@dataclass(frozen=True)
class Stage:
    """One stage of a staged trial (a value: equal stages are the same folder and training)."""

    name: str  # its folder under ``<trial>/stages/``
    label: Mapping[str, Any]  # columns every metrics row of the stage carries
    span: Span = Span()  # where in its schedule it trains
    # The config field and value that placed the span, for a one-line error when it is empty.
    blame: tuple[str, object] = ("span", None)
    # (network-epochs, density) pairs a planning estimate charges; empty: (epochs, 1.0).
    cost: tuple[tuple[int, float], ...] = field(default=())

    @property
    def title(self) -> str:
        """How status and progress name it: ``level 3``."""
        return ", ".join(f"{k} {v}" for k, v in self.label.items()) or self.name


@dataclass(frozen=True)
class StageStart:
    """A stage as its trial runs it: the stage and the start its plan decided (tensors and
    values only the stage's method reads: masks, weights, schedule settings)."""

    stage: Stage
    start: Mapping[str, Any]


def planned_steps_per_epoch(cfg: TrialConfig) -> int:
    """Iterations per epoch as planning counts them: the dataset catalogue's training set
    (``planned_train_samples``) over the batch size. Approximate where the bundle on disk is
    smaller (a test subset): a stage whose span is given in iterations then runs more epochs."""
    return max(1, math.ceil(planned_train_samples(cfg) / cfg.batch_size))


class StagePlan:
    """What a staged method declares (``MethodInfo.stages``): its stages and their starts."""

    @classmethod
    def stages(cls, cfg: TrialConfig) -> list[Stage]:
        """Every stage of ``cfg``, in training order (torch-free, no data)."""
        raise NotImplementedError

    @classmethod
    def start(cls, cfg: TrialConfig, stage: Stage, trial: TrialStore) -> dict[str, Any]:
        """What stage ``stage``'s method starts from, read from the earlier stages' stored
        results in ``trial`` (and, for a branch, its parent's folder beside it): handed to the
        method as ``TrialContext.stage.start``. Called before every (re)start of the stage."""
        raise NotImplementedError

    @classmethod
    def adopt_legacy(cls, cfg: TrialConfig, trial: TrialStore) -> str | None:
        """Convert a trial folder written before stages existed into stage folders; a warning
        saying what was done, or None when there was nothing to convert."""
        return None
