"""The experiment ledger (``experiment.json``): what is planned, which launches ran, and when.

Ray Tune cannot add trials to an experiment, so the ledger is the experiment: it keeps every
planned trial (hash -> config) across launches, and each ``run``/``resume`` launch is a fresh
Tune experiment under ``tune/<launch-id>/`` holding only the trials not finished yet. Only the
driver of the current launch writes the ledger (one writer); readers (status, list) never lock.

Keys this module adds to the ledger of ``trainables.results.ExperimentStore``::

    order         [hash]  planned trials in plan order (grid order, then later additions)
    grids         [{"grid", "recipe", "overrides", "count"}]  every grid planned here
    pending_rows  {label: {"method", "values"}}  grid rows whose method is not registered yet
    stopped       {hash: {"launch", "epoch"}}   trials a scheduler (ASHA) stopped early
    data_root     the data root of the latest launch (resume reuses it)
    launches      [{"id", "command", "grid", "started", "heartbeat", "ended", "outcome", "host",
                    "pid", "trials", "settings", "resources", "tune_path", "counts"}]

``settings`` is :class:`LaunchSettings` as a dict (what the user asked for; ``resume`` starts
from the last launch's and overrides only what it is given); ``resources`` is what each trial
got, ``{"cpu", "gpu"}`` (``gpus_per_trial`` None resolves per model at launch). Ledgers written
before ``settings`` existed kept its fields flat in the launch record; :meth:`LaunchSettings.of`
reads both, and ignores keys that no longer exist (``pack_size``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.methods import METHODS
from trainables.results import ExperimentStore, join

if TYPE_CHECKING:
    from search_spaces import Expansion

HEARTBEAT_S = 30.0  # how often a live driver refreshes its launch's heartbeat
STALE_S = 120.0  # a launch on another host with an older heartbeat is considered dead
DEFAULT_METRIC = "valid_worst_group_acc"
SCHEDULER_NAMES = ("fifo", "asha")


@dataclass(frozen=True)
class LaunchSettings:
    """Every setting of a launch, as stored in its ledger record (``settings``).

    ``gpus_per_trial`` None means "per model": on a cluster with GPUs each launch gives a trial
    the largest ``gpu_share`` (``trainables.models.MODELS``) of the models it runs, on a
    CPU-only cluster 0. ``num_cpus``/``num_gpus`` size an embedded Ray; ``reuse_actors`` reuses
    worker processes between trials. Console output (``quiet``) is not a setting.
    """

    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    max_failures: int = 2
    scheduler: str = "fifo"
    metric: str = DEFAULT_METRIC
    num_cpus: int | None = None
    num_gpus: int | None = None
    reuse_actors: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, launch: dict[str, Any]) -> LaunchSettings:
        """The settings of a launch record (current or flat older format; unknown keys dropped)."""
        stored = dict(launch.get("settings") or {})
        if not stored:  # older ledgers: flat keys, resources as {"cpu", "gpu"}
            keys = ("address", "max_concurrent", "max_failures", "scheduler", "metric")
            stored = {k: launch[k] for k in keys if k in launch}
            resources = launch.get("resources") or {}
            if "cpu" in resources:
                stored["cpus_per_trial"] = resources["cpu"]
            if "gpu" in resources:
                stored["gpus_per_trial"] = resources["gpu"]
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in stored.items() if k in fields}
        return cls(**{k: v for k, v in kept.items() if v is not None or fields[k] is None})

    def override(self, **given: object) -> LaunchSettings:
        """A copy with the values that are not None (what the user passed) replaced."""
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})

    def validate(self) -> None:
        """One-line errors for values that cannot launch (checked before Ray starts)."""
        from rest_sweep.cluster import TrialResources

        TrialResources(self.cpus_per_trial, self.gpus_per_trial or 0.0).validate()
        if self.scheduler not in SCHEDULER_NAMES:
            allowed = ", ".join(SCHEDULER_NAMES)
            raise UserError(f"--scheduler: {self.scheduler!r} is not allowed; allowed: {allowed}")
        if self.max_failures < -1:
            raise UserError(
                f"--max-failures: {self.max_failures} is not allowed; allowed: -1 (forever) or a "
                "count >= 0"
            )
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise UserError(
                f"--max-concurrent: {self.max_concurrent} is not allowed; allowed: >= 1"
            )
        if self.address and (self.num_cpus is not None or self.num_gpus is not None):
            raise UserError("--num-cpus/--num-gpus apply to embedded Ray only; drop --address")


def record_plan(store: ExperimentStore, expansion: Expansion, data_root: str) -> dict[str, Any]:
    """Merge a grid expansion into the ledger (idempotent) and return the updated ledger."""
    ledger = store.read_ledger()
    trials = ledger.setdefault("trials", {})
    order = ledger.setdefault("order", [])
    for cfg in expansion.trials:
        if cfg.trial_hash not in trials:
            trials[cfg.trial_hash] = cfg.to_dict()
            order.append(cfg.trial_hash)
    entry = {
        "grid": expansion.grid,
        "recipe": expansion.recipe,
        "overrides": {k: v for k, v in expansion.overrides},
        "count": expansion.count,
    }
    grids = ledger.setdefault("grids", [])
    if _key(entry) not in [_key(g) for g in grids]:
        grids.append(entry)
    pending = ledger.setdefault("pending_rows", {})
    for row in expansion.pending:
        pending.setdefault(row.label(), {"method": row.method, "values": row.values})
    for label in [k for k, v in pending.items() if v["method"] in METHODS]:
        pending.pop(label)  # registered since: the grid now expands it into real trials
    ledger["data_root"] = data_root
    store.write_ledger(ledger)
    return ledger


def _key(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry.get(k) for k in ("grid", "recipe", "overrides")}


def planned_hashes(ledger: dict[str, Any]) -> list[str]:
    """Planned trials in plan order (the JSON file sorts ``trials`` by hash)."""
    trials = ledger.get("trials", {})
    order = [h for h in ledger.get("order", []) if h in trials]
    return order + sorted(set(trials) - set(order))


def planned_configs(ledger: dict[str, Any]) -> dict[str, TrialConfig]:
    trials = ledger.get("trials", {})
    return {h: TrialConfig.from_dict(trials[h]) for h in planned_hashes(ledger)}


def ensure_no_live_driver(store: ExperimentStore, ledger: dict[str, Any] | None = None) -> None:
    """One writer per ledger: refuse while another launch of this experiment is alive."""
    ledger = store.read_ledger() if ledger is None else ledger
    live = [launch for launch in ledger.get("launches", []) if launch_alive(launch)]
    if live:
        other = live[-1]
        raise UserError(
            f"experiment {store.name!r} is being run by launch {other['id']} (pid {other['pid']} "
            f"on {other['host']}); wait for it, or stop it and run `rest-sweep resume`"
        )


def start_launch(
    store: ExperimentStore,
    command: str,
    grid: str,
    hashes: list[str],
    settings: LaunchSettings,
    resources: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Append a launch record (refusing if another driver is live on this experiment).

    ``resources`` is what each trial gets (``{"cpu", "gpu"}``, GPUs resolved per model).
    """
    ledger = store.read_ledger()
    ensure_no_live_driver(store, ledger)
    number = len(ledger.get("launches", [])) + 1
    launch_id = f"L{number:03d}-{time.strftime('%Y%m%d-%H%M%S')}"
    now = time.time()
    launch = {
        "id": launch_id,
        "command": command,
        "grid": grid,
        "started": now,
        "heartbeat": now,
        "ended": None,
        "outcome": None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "trials": hashes,
        "settings": settings.to_dict(),
        "resources": dict(resources or {}),
        "tune_path": join(store.uri, "tune", launch_id),
    }
    ledger.setdefault("launches", []).append(launch)
    store.write_ledger(ledger)
    return launch


def update_launch(store: ExperimentStore, launch_id: str, **fields: Any) -> None:
    ledger = store.read_ledger()
    for launch in ledger.get("launches", []):
        if launch["id"] == launch_id:
            launch.update(fields)
    store.write_ledger(ledger)


def heartbeat(store: ExperimentStore, launch_id: str) -> None:
    update_launch(store, launch_id, heartbeat=time.time())


def end_launch(store: ExperimentStore, launch_id: str, outcome: str, counts: dict) -> None:
    update_launch(store, launch_id, ended=time.time(), outcome=outcome, counts=counts)


def mark_stopped(store: ExperimentStore, trial_hash: str, launch_id: str, epoch: int) -> None:
    """Record that a scheduler stopped this trial early (terminal, not an error)."""
    ledger = store.read_ledger()
    ledger.setdefault("stopped", {})[trial_hash] = {"launch": launch_id, "epoch": epoch}
    store.write_ledger(ledger)


def launch_alive(launch: dict[str, Any], now: float | None = None) -> bool:
    """Whether the launch's driver still runs: its pid on this host, else a fresh heartbeat."""
    if launch.get("ended"):
        return False
    if launch.get("host") == socket.gethostname():
        try:
            os.kill(int(launch["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return ((now or time.time()) - float(launch.get("heartbeat", 0))) < STALE_S


def last_settings(ledger: dict[str, Any]) -> LaunchSettings:
    """The settings of the latest launch (what ``resume`` starts from); defaults if none."""
    launches = ledger.get("launches", [])
    return LaunchSettings.of(launches[-1]) if launches else LaunchSettings()
