"""Map one launch (a list of trials plus settings) onto a fresh ``tune.Tuner``.

Each launch is its own Tune experiment at ``<exp>/tune/<launch-id>/`` with exactly the trials
still to run, one ``grid_search`` value per trial, in grid order. Tune's TensorBoard/CSV/JSON
outputs land there; the trials' own results live in ``<exp>/trials/<hash>/``. The trainable,
callbacks, scheduler, name creators and the per-trial resources (:class:`ResourcesByModel`)
live at stable import paths because ``tuner.pkl`` refers to them by name.

Ray's output stays off the console (:func:`route_ray_output`): Tune's traceback for each failed
attempt goes to the trial's ``error.txt`` (``progress.FailureRecorder``) and the console gets
one line per failed attempt (``progress.ProgressCallback``); raylet messages (a worker killed,
OOM notices) go to ``tune/<launch>/ray-messages.log``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray import tune

from rest_sweep.cluster import TrialResources
from rest_sweep.integrations import Target, build_callbacks
from rest_sweep.progress import FailureRecorder, HeartbeatCallback, ProgressCallback
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
    resources: Mapping[str, TrialResources]  # model -> what one trial of it asks for
    max_concurrent: int | None
    scheduler: str
    metric: str
    max_failures: int
    already_finished: int = 0
    reuse_actors: bool = False
    quiet: bool = False
    tracking: tuple[Target, ...] = ()  # resolved --callback integrations (MLflow, W&B)


@dataclass(frozen=True)
class ResourcesByModel:
    """Tune's per-trial resources: each trial asks for its model's ``{"cpu", "gpu"}``.

    Tune calls it with a trial's resolved config (``tune.with_resources(trainable, resources=
    ...)``), so one launch can give a small network 1/8 of a GPU and a 224-px ResNet half of
    one. A module-level frozen dataclass: ``tuner.pkl`` pickles it by its import path, and it
    holds no state beyond the table.
    """

    by_model: Mapping[str, Mapping[str, float]]  # model -> {"cpu", "gpu"}

    @classmethod
    def of(cls, resources: Mapping[str, TrialResources]) -> ResourcesByModel:
        return cls({model: r.as_dict() for model, r in resources.items()})

    def __call__(self, config: Mapping[str, Any]) -> dict[str, float]:
        model = config["trial"]["config"]["model"]
        try:
            return dict(self.by_model[model])
        except KeyError:  # a trial the launch did not plan resources for: a bug, say which
            raise KeyError(
                f"no resources planned for model {model!r}; planned: {', '.join(self.by_model)}"
            ) from None


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
        # ASHA's max_t: the longest trial, staged trials counted over all their stages.
        max_epochs=max(cfg.method_info.planned_epochs(cfg) for cfg in plan.configs.values()),
    )
    metric_mode = {"metric": plan.metric, "mode": "max"} if spec.needs_metric else {}
    tune_root = plan.store.tune_location()
    storage: dict[str, Any] = {"storage_path": tune_root.path}
    if not _is_local(tune_root):
        storage["storage_filesystem"] = tune_root.fs
    route_ray_output(tune_root.child(plan.launch_id) if _is_local(tune_root) else None)
    callbacks: list[tune.Callback] = [
        HeartbeatCallback(plan.store.storage, plan.store.name, plan.launch_id),
        FailureRecorder(),  # before the progress lines, which read what it records
    ]
    if not plan.quiet:
        callbacks.append(ProgressCallback(len(plan.configs), plan.already_finished))
    callbacks.extend(build_callbacks(plan.tracking))
    trainable = tune.with_resources(train_trial, ResourcesByModel.of(plan.resources))
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


# ---------------------------------------------------------------------- Ray's console output
RAY_MESSAGES = "ray-messages.log"
# Tune logs each failed attempt's traceback (~50 lines) unless this is 0; read at fit().
TUNE_TRACEBACKS_ENV = "TUNE_PRINT_ALL_TRIAL_ERRORS"
_DROPPED = ("Trials did not complete",)  # the service prints its own outcome line


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_DROPPED)


_raylet_log: list[str | None] = [None]


def route_ray_output(launch_dir: Location | None) -> None:
    """Keep Ray's per-failure output off the console (idempotent; a user's setting wins).

    Raylet messages, which Ray's driver prints from a background thread even with
    ``log_to_driver=False``, are appended to ``<launch_dir>/ray-messages.log`` (dropped when
    the launch folder is not local). Relies on ``ray._private.worker.print_to_stdstream``; if a
    Ray release renames it, those messages reach the console again, nothing breaks.
    """
    os.environ.setdefault(TUNE_TRACEBACKS_ENV, "0")
    tune_logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _DropFilter) for f in tune_logger.filters):
        tune_logger.addFilter(_DropFilter())
    _raylet_log[0] = launch_dir.file(RAY_MESSAGES) if launch_dir is not None else None
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover - a Ray without this module
        return
    real = getattr(worker, "print_to_stdstream", None)
    if real is None or getattr(real, "_rest_sweep", False):
        return

    def print_to_stdstream(data: dict, *args: Any, **kwargs: Any) -> None:
        if data.get("pid") != "raylet":
            real(data, *args, **kwargs)
            return
        path = _raylet_log[0]
        if path is None:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a") as out:
                for line in data.get("lines", []):
                    out.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}\n")
        except OSError:
            pass

    print_to_stdstream._rest_sweep = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stdstream
