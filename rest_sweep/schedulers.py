"""Trial schedulers a launch can use: ``fifo`` (the reported grid) and ``asha`` (exploration).

ASHA stops trials early on a metric reported per epoch. It is asynchronous, so which trials
it stops depends on the order in which trials reach a rung: the same grid in another order
stops other trials. Use it to explore, never for the numbers of a table. A trial it stops is
recorded in the ledger as *stopped early* (terminal, not an error, not resumed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from rest_sweep.ledger import mark_stopped
from trainables.registry import Registry
from trainables.results import ExperimentStore


@dataclass(frozen=True)
class SchedulerSpec:
    """How the launch builds the scheduler, and the TuneConfig metric/mode it needs."""

    build: Callable[..., TrialScheduler]
    needs_metric: bool


class RecordingASHA(AsyncHyperBandScheduler):
    """ASHA on ``epoch`` that writes each early stop to the experiment ledger."""

    def __init__(self, storage: str, name: str, launch_id: str, **kwargs: Any) -> None:
        super().__init__(time_attr="epoch", **kwargs)
        self._experiment = (storage, name, launch_id)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        epochs = int(trial.config["trial"]["config"]["epochs"])
        epoch = int(result.get("epoch", 0))
        if decision == TrialScheduler.STOP and epoch < epochs:
            storage, name, launch_id = self._experiment
            mark_stopped(
                ExperimentStore(storage, name), trial.config["trial"]["hash"], launch_id, epoch
            )
        return decision


def _fifo(**_: Any) -> TrialScheduler:
    return FIFOScheduler()


def _asha(*, storage: str, name: str, launch_id: str, max_epochs: int, **_: Any) -> TrialScheduler:
    # max_t above the last epoch: ASHA never stops a trial for having reached the end.
    return RecordingASHA(
        storage,
        name,
        launch_id,
        max_t=max_epochs + 1,
        grace_period=max(1, max_epochs // 10),
        reduction_factor=3,
    )


SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler")
SCHEDULERS.register("fifo", SchedulerSpec(_fifo, needs_metric=False))
SCHEDULERS.register("asha", SchedulerSpec(_asha, needs_metric=True))
