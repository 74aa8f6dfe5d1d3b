"""Map one launch (a list of trials plus settings) onto a fresh ``tune.Tuner``.

Each launch is its own Tune experiment at ``<exp>/tune/<launch-id>/`` with exactly the trials
still to run, one ``grid_search`` value per trial, in grid order. Tune's TensorBoard/CSV/JSON
outputs land there; the trials' own results live in ``<exp>/trials/<hash>/``. The trainable,
callbacks, scheduler, name creators and the per-trial resources (:class:`ResourcesByModel`)
live at stable import paths because ``tuner.pkl`` refers to them by name.

Ray's output stays off the console (:func:`route_ray_output`): Tune's traceback for each failed
attempt goes to the trial's ``error.txt`` (``progress.FailureRecorder``) and the console gets
one line per failed attempt (``progress.ProgressCallback``); raylet messages (a worker killed,
OOM notices) and Ray's own logged tracebacks (a sync or an experiment-state snapshot that fails
on a full disk) go to ``tune/<launch>/ray-messages.log``, the tracebacks with one console line
per distinct cause.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import tempfile
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
from trainables.errors import error_line
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
    fuse: int = 1  # up to this many same-shape trials as one fused group, one Tune trial
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


def launch_units(plan: LaunchPlan) -> list[list[str]]:
    """The launch's Tune trials as trial hashes, in plan order: one trial each, or with
    ``fuse`` > 1 fused groups of up to ``fuse`` same-shape trials (``trainables.fusion``)."""
    from trainables.fusion import fuse_groups

    groups = fuse_groups(list(plan.configs.values()), plan.fuse)
    return [[cfg.trial_hash for cfg in group] for group in groups]


def param_space(plan: LaunchPlan) -> dict[str, Any]:
    """One ``grid_search`` value per Tune trial, in plan order: a trial's entry, or a fused
    group's (its first member's entry, so resources, names and progress read it as they read
    a trial's, plus ``members``: every member's entry; ``trainables.ray_trainable``)."""
    entries = []
    for unit in launch_units(plan):
        entry = trial_entry(plan, unit[0])
        if len(unit) > 1:
            entry["name"] = f"{entry['name']} +{len(unit) - 1} fused"
            entry["members"] = [trial_entry(plan, h) for h in unit]
        entries.append(entry)
    return {"trial": tune.grid_search(entries)}


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
    route_ray_output(messages_path(tune_root, plan.launch_id))
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


# Tune's ExperimentAnalysis warns "Failed to fetch metrics for N trial(s):" with one
# "- TRIAL: ERROR" line each; a trial that never started (no result file yet) is a
# FileNotFoundError there, which is no failure: its lines are dropped, other causes kept.
ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"
_FETCH_FAILED = "Failed to fetch metrics for "


class _NotStartedFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith(_FETCH_FAILED):
            return True
        lines = text.splitlines()[1:]
        kept = [line for line in lines if ": FileNotFoundError(" not in line]
        if len(kept) == len(lines):
            return True
        if not kept:
            return False
        record.msg = f"{_FETCH_FAILED}{len(kept)} trial(s):\n" + "\n".join(kept)
        record.args = ()
        return True


_raylet_log: list[str | None] = [None]

# Ray's storage bookkeeping: on a full or unreachable disk these log a traceback every few
# seconds (the syncer's retries, each experiment-state snapshot). Any of their warnings, and any
# Ray record with a traceback that reaches Ray's console handler, goes to the launch's log.
ROUTED_LOGGERS = ("ray.train._internal.syncer", "ray.tune.execution.experiment_state")
_FORMAT = logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s")
_EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception|Interrupt)\b.*")


def messages_path(tune_root: Location, launch_id: str) -> str:
    """Where a launch keeps Ray's messages: ``tune/<launch>/ray-messages.log``; with remote
    storage, a file of that launch in this machine's temporary folder."""
    if _is_local(tune_root):
        return tune_root.child(launch_id).file(RAY_MESSAGES)
    # The experiment's path in the name: launch ids repeat across experiments.
    where = hashlib.sha256(tune_root.path.encode()).hexdigest()[:8]
    return os.path.join(tempfile.gettempdir(), f"rest-sweep-{where}-{launch_id}-{RAY_MESSAGES}")


def _append(path: str | None, lines: list[str]) -> str | None:
    """Append ``lines`` to ``path``; None when done, else why not (a full disk, no path)."""
    if path is None:
        return "no file for them"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as out:
            out.writelines(f"{line}\n" for line in lines)
    except OSError as error:
        return error.strerror or str(error)
    return None


def ray_summary(record: logging.LogRecord) -> str:
    """One line for a Ray log record: its first line, and the exception it carries (its
    ``exc_info``, else the last exception line of a traceback in its text)."""
    text = record.getMessage()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    headline = (lines[0] if lines else record.name).rstrip(" :")
    if len(headline) > 160:
        headline = headline[:157] + "..."
    cause = ""
    if record.exc_info and record.exc_info[1] is not None:
        cause = error_line(record.exc_info[1])
    else:
        found = [line for line in lines[1:] if _EXCEPTION_LINE.match(line)]
        cause = found[-1] if found else ""
    return f"{headline}: {cause}" if cause and cause not in headline else headline


def _has_traceback(record: logging.LogRecord) -> bool:
    has_exc = bool(record.exc_info and record.exc_info[0] is not None)
    return has_exc or "Traceback (most recent call last)" in record.getMessage()


class _ToLaunchLog(logging.Filter):
    """Keeps Ray's tracebacks off the console: the full record goes to the launch's
    ``ray-messages.log`` and the console (stderr) gets one line per distinct cause."""

    def __init__(self) -> None:
        super().__init__()
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if record.name not in ROUTED_LOGGERS and not _has_traceback(record):
            return True
        path = _raylet_log[0]
        failed = _append(path, _FORMAT.format(record).splitlines())
        line = ray_summary(record)
        if line not in self.said:
            self.said.add(line)
            kept = f"full text in {path}" if failed is None else f"full text not kept: {failed}"
            print(
                f"[{time.strftime('%H:%M:%S')}] Ray: {line} ({kept})", file=sys.stderr, flush=True
            )
        return False


_TO_LOG = _ToLaunchLog()


def _route_tracebacks() -> None:
    """Install :class:`_ToLaunchLog` on the routed loggers and on Ray's console handlers."""
    for name in ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        if _TO_LOG not in logger.filters:
            logger.addFilter(_TO_LOG)
    for handler in logging.getLogger("ray").handlers:
        if _TO_LOG not in handler.filters:
            handler.addFilter(_TO_LOG)


def route_ray_output(messages: str | None) -> None:
    """Keep Ray's per-failure output off the console (idempotent; a user's setting wins).

    Raylet messages, which Ray's driver prints from a background thread even with
    ``log_to_driver=False``, are appended to ``messages`` (the launch's ``ray-messages.log``,
    :func:`messages_path`), and so are Ray's logged tracebacks (a failed sync or experiment
    snapshot, e.g. on a full disk), each distinct cause also as one line on stderr. The raylet
    part relies on ``ray._private.worker.print_to_stdstream``; if a Ray release renames it,
    those messages reach the console again, nothing breaks.
    """
    os.environ.setdefault(TUNE_TRACEBACKS_ENV, "0")
    tune_logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _DropFilter) for f in tune_logger.filters):
        tune_logger.addFilter(_DropFilter())
    analysis_logger = logging.getLogger(ANALYSIS_LOGGER)
    if not any(isinstance(f, _NotStartedFilter) for f in analysis_logger.filters):
        analysis_logger.addFilter(_NotStartedFilter())
    _raylet_log[0] = messages
    _TO_LOG.said.clear()
    _route_tracebacks()
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
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        _append(_raylet_log[0], [f"[{stamp}] {line}" for line in data.get("lines", [])])

    print_to_stdstream._rest_sweep = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stdstream
