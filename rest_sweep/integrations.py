"""Tracking integrations: ``--callback mlflow`` and ``--callback wandb`` through Ray's own callbacks.

A registry maps each name to an :class:`Integration`: the package it needs, where its runs go
and how to build Ray's callback (``ray.air.integrations.mlflow.MLflowLoggerCallback``,
``ray.air.integrations.wandb.WandbLoggerCallback``). A new integration is one ``register``
call. The packages are optional (the ``tracking`` extra), so nothing here imports them, or Ray,
until a launch builds its Tuner; what can be checked before Ray starts is checked then, each
problem a one-line ``UserError``:

* :func:`check_installed`: the names are registered and their packages importable
  (``LaunchSettings.validate``);
* :func:`targets`: where each integration's runs go, from the usual environment variables, with
  defaults tied to the experiment (an MLflow file store under the experiment folder, the W&B
  group named after it), and whether it can go there (W&B online needs an API key).

The same targets are printed in the launch line and built into Ray's callbacks, so what the
line says is what the callbacks do. The environment is read when a target is resolved: the
trials' workers never need it, because Ray's callbacks run in the driver (W&B's logging actors
get every setting as an argument).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainables.errors import UserError
from trainables.registry import Registry

EXTRA = "tracking"
INSTALL = f"pip install 'rest-sweep[{EXTRA}]'"
WANDB_DEFAULT_PROJECT = "rest-sweep"
WANDB_NO_KEY_MODES = ("offline", "disabled", "dryrun")


@dataclass(frozen=True)
class TrackingContext:
    """The launch a tracking integration records: the rest-sweep experiment and its folder."""

    experiment: str  # the rest-sweep experiment name: MLflow experiment, W&B group
    experiment_uri: str  # <storage>/<name>: a local path or a pyarrow URI
    launch_id: str = ""  # recorded as a tag, so runs of one launch can be told apart


@dataclass(frozen=True)
class Target:
    """Where one integration sends a launch's runs: a line for the console and the keyword
    arguments of Ray's callback."""

    name: str
    line: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Integration:
    """A tracking integration: its import name, how it resolves its target, how it builds
    Ray's callback from that target (importing Ray's integration only then)."""

    name: str
    package: str
    resolve: Callable[[TrackingContext], Target]
    build: Callable[[Target], Any]


INTEGRATIONS: Registry[Integration] = Registry("callback")


def check_installed(names: Iterable[str]) -> None:
    """Every name is registered and its package importable (without importing it)."""
    for name in names:
        integration = get(name)
        if importlib.util.find_spec(integration.package) is None:
            raise UserError(
                f"--callback {name}: the {integration.package} package is not installed; "
                f"install the {EXTRA} extra: {INSTALL}"
            )


def get(name: str) -> Integration:
    if name not in INTEGRATIONS:
        raise UserError(
            f"--callback: {name!r} is not allowed; allowed: {', '.join(INTEGRATIONS.names())}"
        )
    return INTEGRATIONS.get(name)


def targets(names: Sequence[str], context: TrackingContext) -> list[Target]:
    """Where each integration's runs go; a one-line ``UserError`` when one cannot record."""
    check_installed(names)
    return [get(name).resolve(context) for name in names]


def build_callbacks(resolved: Iterable[Target]) -> list[Any]:
    """Ray's callbacks for the resolved targets (imports Ray's integrations and packages)."""
    return [get(target.name).build(target) for target in resolved]


# ---------------------------------------------------------------------- MLflow

MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
# MLflow 3 refuses a file store unless this is "true"; `mlflow-skinny` (the tracking extra)
# has no database backend, so rest-sweep opts in for file stores (a value you set wins).
MLFLOW_FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"


def _mlflow_target(context: TrackingContext) -> Target:
    uri = os.environ.get(MLFLOW_URI_ENV, "").strip()
    where = f"{MLFLOW_URI_ENV}={uri}"
    if not uri:
        folder = _local_path(context.experiment_uri)
        if folder is None:
            raise UserError(
                f"--callback mlflow: {MLFLOW_URI_ENV} is not set and the experiment folder "
                f"{context.experiment_uri} is not local, so there is no default MLflow store; "
                f"allowed: set {MLFLOW_URI_ENV} (an MLflow server, e.g. http://HOST:5000)"
            )
        uri = Path(folder, "mlruns").as_uri()
        where = f"file store {uri} ({MLFLOW_URI_ENV} not set)"
    tags = {"rest_sweep.experiment": context.experiment}
    if context.launch_id:
        tags["rest_sweep.launch"] = context.launch_id
    return Target(
        "mlflow",
        f"mlflow: experiment {context.experiment!r} in {where}",
        {"tracking_uri": uri, "experiment_name": context.experiment, "tags": tags},
    )


def _build_mlflow(target: Target) -> Any:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    if _is_file_store(str(target.options["tracking_uri"])):
        os.environ.setdefault(MLFLOW_FILE_STORE_ENV, "true")
    return MLflowLoggerCallback(**target.options)


def _is_file_store(uri: str) -> bool:
    return uri.partition(":")[0] == "file" or "://" not in uri


# ---------------------------------------------------------------------- Weights & Biases


def _wandb_target(context: TrackingContext) -> Target:
    mode = os.environ.get("WANDB_MODE", "").strip()
    project = os.environ.get("WANDB_PROJECT", "").strip() or WANDB_DEFAULT_PROJECT
    group = os.environ.get("WANDB_RUN_GROUP", "").strip() or context.experiment
    if mode not in WANDB_NO_KEY_MODES and not _wandb_logged_in():
        raise UserError(
            "--callback wandb: no W&B API key (WANDB_API_KEY unset and not logged in); allowed: "
            "set WANDB_API_KEY, run `wandb login`, or set WANDB_MODE=offline"
        )
    # Explicit arguments: W&B's logging actors are Ray workers that may predate this env.
    options: dict[str, Any] = {"project": project, "group": group}
    if mode:
        options["mode"] = mode
    folder = os.environ.get("WANDB_DIR", "").strip()
    if folder:
        options["dir"] = folder
    files = f"run files in {folder}" if folder else "run files in each trial's Tune folder"
    shown_mode = mode or "online"
    return Target(
        "wandb",
        f"wandb: project {project!r}, group {group!r}, mode {shown_mode} ({files})",
        options,
    )


def _wandb_logged_in() -> bool:
    """An API key in the environment, W&B's own login, or Ray's key hook (as Ray checks)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_SETUP_API_KEY_HOOK"):
        return True
    import wandb

    try:
        wandb.ensure_configured()
        return bool(wandb.api.api_key)
    except AttributeError:  # a wandb without these: let Ray's own check decide
        return True


def _build_wandb(target: Target) -> Any:
    from rest_sweep.wandb_logging import WandbCallback  # Ray's, flushing each run (see there)

    return WandbCallback(**target.options)


def _local_path(uri: str) -> str | None:
    """The local folder of ``uri``; None for another filesystem (s3://...), judged by the
    scheme alone (resolving an object store would contact it)."""
    if "://" not in uri:
        return uri
    scheme, _, rest = uri.partition("://")
    return rest if scheme == "file" else None


INTEGRATIONS.register(
    "mlflow", Integration("mlflow", "mlflow", resolve=_mlflow_target, build=_build_mlflow)
)
INTEGRATIONS.register(
    "wandb", Integration("wandb", "wandb", resolve=_wandb_target, build=_build_wandb)
)
