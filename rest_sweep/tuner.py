"""Map one launch (a list of trials plus settings) onto a fresh ``tune.Tuner``.

Each launch is its own Tune experiment at ``<exp>/tune/<launch-id>/`` with exactly the trials
still to run, one ``grid_search`` value per trial, in grid order. Tune's TensorBoard/CSV/JSON
outputs land there; the trials' own results live in ``<exp>/trials/<hash>/``. The trainable,
callbacks, scheduler and name creators live at stable import paths because ``tuner.pkl``
refers to them by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray import tune

from rest_sweep.cluster import TrialResources
from rest_sweep.progress import HeartbeatCallback, ProgressCallback
from rest_sweep.schedulers import SCHEDULERS
from trainables.config import TrialConfig
from trainables.ray_trainable import train_trial
from trainables.results import ExperimentStore, Location


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a launch needs to build its Tuner."""

    store: ExperimentStore
    launch_id: str
    configs: dict[str, TrialConfig]  # hash -> config (with this launch's data_root/device)
    resources: TrialResources
    max_concurrent: int | None
    scheduler: str
    metric: str
    max_failures: int
    already_finished: int = 0
    reuse_actors: bool = False
    quiet: bool = False


def trial_name(trial: Any) -> str:
    return trial.config["trial"]["name"]


def trial_dirname(trial: Any) -> str:
    return f"{trial.config['trial']['hash']}_{trial.trial_id}"


def trial_entry(plan: LaunchPlan, trial_hash: str) -> dict[str, Any]:
    cfg = plan.configs[trial_hash]
    return {
        "hash": trial_hash,
        "name": cfg.short_name(),
        "uri": plan.store.trial_uri(trial_hash),
        "config": cfg.to_dict(),
    }


def param_space(plan: LaunchPlan) -> dict[str, Any]:
    """One ``grid_search`` value per trial, in plan order."""
    return {"trial": tune.grid_search([trial_entry(plan, h) for h in plan.configs])}


def build_tuner(plan: LaunchPlan) -> tune.Tuner:
    spec = SCHEDULERS.get(plan.scheduler)
    scheduler = spec.build(
        storage=plan.store.storage,
        name=plan.store.name,
        launch_id=plan.launch_id,
        max_epochs=max(cfg.epochs for cfg in plan.configs.values()),
    )
    metric_mode = {"metric": plan.metric, "mode": "max"} if spec.needs_metric else {}
    tune_root = plan.store.tune_location()
    storage: dict[str, Any] = {"storage_path": tune_root.path}
    if not _is_local(tune_root):
        storage["storage_filesystem"] = tune_root.fs
    callbacks: list[tune.Callback] = [
        HeartbeatCallback(plan.store.storage, plan.store.name, plan.launch_id)
    ]
    if not plan.quiet:
        callbacks.append(ProgressCallback(len(plan.configs), plan.already_finished))
    trainable = tune.with_resources(train_trial, plan.resources.as_dict())
    return tune.Tuner(
        trainable,
        param_space=param_space(plan),
        tune_config=tune.TuneConfig(
            scheduler=scheduler,
            max_concurrent_trials=plan.max_concurrent,
            reuse_actors=plan.reuse_actors,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
            **metric_mode,
        ),
        run_config=tune.RunConfig(
            name=plan.launch_id,
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
            verbose=0,
            callbacks=callbacks,
            **storage,
        ),
    )


def _is_local(location: Location) -> bool:
    import pyarrow.fs as pafs

    return isinstance(location.fs, pafs.LocalFileSystem)
