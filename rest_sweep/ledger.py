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
                    "pid", "trials", "address", "resources", "max_concurrent", "scheduler",
                    "metric", "max_failures", "tune_path", "counts"}]
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.methods import METHODS
from trainables.results import ExperimentStore, join

HEARTBEAT_S = 30.0  # how often a live driver refreshes its launch's heartbeat
STALE_S = 120.0  # a launch on another host with an older heartbeat is considered dead
RESUMABLE = ("resources", "max_concurrent", "scheduler", "metric", "max_failures", "address")


def record_plan(store: ExperimentStore, expansion: Any, data_root: str) -> dict[str, Any]:
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


def start_launch(store: ExperimentStore, command: str, grid: str, hashes: list[str],
                 settings: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Append a launch record (refusing if another driver is live on this experiment)."""
    ledger = store.read_ledger()
    ensure_no_live_driver(store, ledger)
    number = len(ledger.get("launches", [])) + 1
    launch_id = f"L{number:03d}-{time.strftime('%Y%m%d-%H%M%S')}"
    now = time.time()
    launch = {
        "id": launch_id, "command": command, "grid": grid, "started": now, "heartbeat": now,
        "ended": None, "outcome": None, "host": socket.gethostname(), "pid": os.getpid(),
        "trials": hashes, "tune_path": join(store.uri, "tune", launch_id), **settings,
    }  # fmt: skip
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


def last_settings(ledger: dict[str, Any]) -> dict[str, Any]:
    """The resource/scheduler settings of the latest launch (what ``resume`` reuses)."""
    launches = ledger.get("launches", [])
    return {k: launches[-1].get(k) for k in RESUMABLE} if launches else {}
