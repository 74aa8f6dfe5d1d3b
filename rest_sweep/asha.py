"""ASHA that records its early stops: the ``asha`` scheduler of :mod:`rest_sweep.schedulers`.

Apart from the registry because it subclasses Ray Tune's scheduler: the registry (read by
``run --help`` and the launch-settings checks) must not import Ray.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from rest_sweep.ledger import mark_stopped
from trainables.ray_trainable import TRIAL_EPOCHS
from trainables.results import ExperimentStore


class RecordingASHA(AsyncHyperBandScheduler):
    """ASHA on ``epoch`` that writes each early stop to the experiment ledger."""

    def __init__(self, storage: str, name: str, launch_id: str, **kwargs: Any) -> None:
        super().__init__(time_attr="epoch", **kwargs)
        self._experiment = (storage, name, launch_id)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        # The trial's own last epoch, as it reports it (a staged trial's: every stage's).
        epochs = int(result.get(TRIAL_EPOCHS) or trial.config["trial"]["config"]["epochs"])
        epoch = int(result.get("epoch", 0))
        if decision == TrialScheduler.STOP and epoch < epochs:
            storage, name, launch_id = self._experiment
            mark_stopped(
                ExperimentStore(storage, name), trial.config["trial"]["hash"], launch_id, epoch
            )
        return decision
