"""The experiment ledger: what is planned, which launches ran, and when.

Ray Tune cannot add trials to an experiment, so the ledger is the experiment: it keeps every
planned trial (hash -> config) across launches, and each ``run``/``resume`` launch is a fresh
Tune experiment under ``tune/<launch-id>/`` holding only the trials not finished yet.

The ledger is one dict, stored in parts by ``trainables.results.ExperimentStore`` (the layout
is in its docstring): ``experiment.json`` holds the small keys, the planned trials live in
``plan/``, each launch record in its own file. Every read-modify-write here (:func:`modify`)
holds ``experiment.lock`` (:func:`rest_sweep.lock.ledger_lock`), reads only the parts it
changes and writes only the files whose content changed: a heartbeat, a launch update or its
end rewrites one launch record (a few hundred bytes, whatever the number of trials), an early
stop one small file, and planning the plan files that changed. Readers (status, list) never
lock: each file is replaced atomically.

A launch is alive while its driver runs (:func:`rest_sweep.lock.liveness`): on the same host,
its pid runs and is the same process (``/proc/<pid>/stat`` start time and the boot id,
``pid_start``); on another host, its heartbeat is younger than ``rest_sweep.lock.STALE_S``. The next ``run``,
``resume`` or ``status`` closes a dead launch (``outcome: "died"``, ``closed: {"by", "how",
"at"}``); ``--force`` takes over a live one (``outcome: "taken over"``).

Keys this module adds to the ledger of ``trainables.results.ExperimentStore``::

    trials        {hash: config}  every planned trial (TrialConfig.to_dict(), JSON values)
    order         [hash]  planned trials in plan order (grid order, then later additions)
    grids         [{"grid", "recipe", "overrides", "count"}]  every grid planned here
    pending_rows  {label: {"method", "values"}}  grid rows whose method is not registered yet
    stopped       {hash: {"launch", "epoch"}}   trials a scheduler (ASHA) stopped early
    data_root     the data root of the latest launch (resume reuses it)
    launches      [{"id", "command", "grid", "started", "heartbeat", "ended", "outcome", "host",
                    "pid", "pid_start", "trials", "settings", "resources", "tune_path", "counts",
                    "closed", "cluster", "hint", "interrupted_at"}]

``cluster`` is where the launch ran: ``{"address", "via"}``, ``via`` one of ``flag``
(``--address``), ``RAY_ADDRESS``, ``job`` (a Ray job's ``RAY_ADDRESS``) or ``embedded``
(address null); ``resume`` outside a job joins it. ``hint`` is the command that resumes an
interrupted launch, recorded first thing on SIGTERM (:func:`record_interruption`).

``settings`` is :class:`rest_sweep.launch_settings.LaunchSettings` as a dict (what the user
asked for; ``resume`` starts from the last launch's and overrides only what it is given;
``gpus_per_trial`` is a number, a ``{model: share}`` object or null, as given). ``resources``
is what each trial got, resolved once Ray is up: per model, ``{model: {"cpu", "gpu"}}``, for the
models of the launch (each trial's model is in its config); ``local`` launches and older ledgers
hold one ``{"cpu", "gpu"}`` for every trial. Ledgers written before ``settings`` existed kept
its fields flat in the launch record; ``LaunchSettings.of`` reads both, and ignores keys that no
longer exist (``pack_size``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from rest_sweep.lock import ledger_lock, liveness, owner_record
from rest_sweep.storage import storage_error
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.methods import METHODS
from trainables.results import LAUNCHES, STOPS, ExperimentStore, join

if TYPE_CHECKING:
    from rest_sweep.launch_settings import LaunchSettings
    from search_spaces import Expansion

HEARTBEAT_S = 30.0  # how often a live driver refreshes its launch's heartbeat
DIED, TAKEN_OVER, INTERRUPTED = "died", "taken over", "interrupted"


def write_ledger(store: ExperimentStore, ledger: dict[str, Any], action: str) -> None:
    try:
        store.write_ledger(ledger)
    except OSError as error:
        where = f"--storage {store.storage}"
        raise storage_error(where, f"{action} (the ledger in {store.uri})", error) from None


@contextlib.contextmanager
def modify(
    store: ExperimentStore,
    action: str = "update the ledger",
    parts: Collection[str] | None = None,
    *,
    launch: str | None = None,
    trial: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Read the ledger under the lock, let the caller change it, write it if it changed.

    ``parts``, ``launch`` and ``trial`` say what to read besides the small keys
    (``ExperimentStore.read_ledger``: all by default); only the files of what changed are
    written. Planned configs are replaced, never changed in place."""
    with ledger_lock(store):
        ledger = store.read_ledger(parts, launch=launch, trial=trial)
        before = _snapshot(ledger)
        yield ledger
        if ledger != before:
            write_ledger(store, ledger, action)


def _snapshot(ledger: dict[str, Any]) -> dict[str, Any]:
    """A copy to compare with: deep, but the planned configs are shared (a copy of 10,000 of
    them costs seconds; they are replaced, never changed in place)."""
    return {
        key: dict(value) if key == "trials" and isinstance(value, dict) else copy.deepcopy(value)
        for key, value in ledger.items()
    }


def _close_dead(ledger: dict[str, Any], by: str) -> list[dict[str, Any]]:
    now = time.time()
    closed = []
    for launch in ledger.get("launches", []):
        if launch.get("ended"):
            continue
        alive, how = liveness(launch, now)
        if not alive:
            # a driver killed after recording its SIGTERM stays "interrupted" (with its hint)
            outcome = INTERRUPTED if launch.get("outcome") == INTERRUPTED else DIED
            launch.update(ended=now, outcome=outcome, closed={"by": by, "how": how, "at": now})
            closed.append(launch)
    return closed


def close_dead_launches(store: ExperimentStore, by: str) -> dict[str, Any]:
    """Close every launch whose driver is dead (``outcome: "died"``); the updated ledger."""
    with modify(store, "close dead launches", (LAUNCHES,)) as ledger:
        _close_dead(ledger, by)
    return store.read_ledger()


def _claim(ledger: dict[str, Any], name: str, by: str, force: bool) -> None:
    """Close dead launches; refuse a live one, or take it over with ``force``."""
    _close_dead(ledger, by)
    live = [launch for launch in ledger.get("launches", []) if not launch.get("ended")]
    if not live:
        return
    other = live[-1]
    how = liveness(other)[1]
    if not force:
        raise UserError(
            f"experiment {name!r} is being run by launch {other['id']} (pid {other['pid']} "
            f"on {other['host']}: {how}); wait for it, or stop it and run `rest-sweep resume` "
            "(--force takes over if that driver is really gone)"
        )
    now = time.time()
    for launch in live:
        launch.update(
            ended=now,
            outcome=TAKEN_OVER,
            closed={"by": by, "how": f"--force ({liveness(launch)[1]})", "at": now},
        )
        print(
            f"warning: --force: taking over {name!r} from launch {launch['id']} (pid "
            f"{launch['pid']} on {launch['host']}, believed live: {liveness(launch)[1]}); if it "
            "still runs, both drivers write the same trials",
            file=sys.stderr,
            flush=True,
        )


# ---------------------------------------------------------------------- ledger updates


def record_plan(store: ExperimentStore, expansion: Expansion, data_root: str) -> dict[str, Any]:
    """Merge a grid expansion into the ledger (idempotent) and return the updated ledger."""
    with modify(store, "record the plan") as ledger:
        _merge_plan(ledger, expansion, data_root)
    return ledger


def _merge_plan(ledger: dict[str, Any], expansion: Expansion, data_root: str) -> None:
    trials = ledger.setdefault("trials", {})
    order = ledger.setdefault("order", [])
    for cfg in expansion.trials:
        trial_hash = cfg.trial_hash
        if trial_hash not in trials:
            order.append(trial_hash)
        # Always the latest plan's config: the hash fixes the trial's identity, so only the
        # fields outside it can differ: how it runs or is stored (checkpoint_every, ...) and
        # prune's `levels`, which extends or shortens a staged trial. The latest `run` is
        # what the next `resume` uses (docs/sweeps.md). As JSON reads it back (lists, not
        # tuples), so that planning the same grid again changes nothing and writes nothing.
        trials[trial_hash] = _as_json(cfg.to_dict())
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


def set_data_root(store: ExperimentStore, data_root: str) -> None:
    with modify(store, "record the data root", ()) as ledger:
        ledger["data_root"] = data_root


def _key(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry.get(k) for k in ("grid", "recipe", "overrides")}


def _as_json(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its tuples as lists (what reading the stored JSON gives)."""
    for key, value in config.items():
        if type(value) is tuple:
            config[key] = _as_json_value(value)
    return config


def _as_json_value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_as_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_json_value(v) for k, v in value.items()}
    return value


def planned_hashes(ledger: dict[str, Any]) -> list[str]:
    """Planned trials in plan order (the JSON file sorts ``trials`` by hash)."""
    trials = ledger.get("trials", {})
    order = [h for h in ledger.get("order", []) if h in trials]
    return order + sorted(set(trials) - set(order))


def planned_configs(ledger: dict[str, Any]) -> dict[str, TrialConfig]:
    trials = ledger.get("trials", {})
    return {h: TrialConfig.from_dict(trials[h]) for h in planned_hashes(ledger)}


def ensure_no_live_driver(
    store: ExperimentStore,
    ledger: dict[str, Any] | None = None,
    *,
    force: bool = False,
    by: str = "run",
) -> None:
    """One writer per ledger: close dead launches, then refuse while another launch of this
    experiment is alive (``force``: take it over, with a warning). ``ledger`` is ignored: the
    check reads it under the lock."""
    if not store.exists():
        return
    with modify(store, "close dead launches", (LAUNCHES,)) as current:
        _claim(current, store.name, by, force)


def start_launch(
    store: ExperimentStore,
    command: str,
    grid: str,
    hashes: list[str],
    settings: LaunchSettings,
    resources: dict[str, float] | None = None,
    *,
    force: bool = False,
    cluster: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append a launch record (refusing if another driver is live on this experiment).

    Check and append happen under the ledger lock, so of two drivers starting together exactly
    one is accepted. ``resources`` is what each trial gets (``{"cpu", "gpu"}``, GPUs resolved
    per model; a Ray launch records them once Ray is up). The launch's trial list is written
    once, here, apart from its record.
    """
    with modify(store, "record the launch", (LAUNCHES,)) as ledger:
        _claim(ledger, store.name, command, force)
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
            **owner_record(),
            "trials": hashes,
            "settings": settings.to_dict(),
            "resources": dict(resources or {}),
            "tune_path": join(store.uri, "tune", launch_id),
        }
        if cluster is not None:  # where it ran: {"address", "via": flag|RAY_ADDRESS|job|embedded}
            launch["cluster"] = dict(cluster)
        ledger.setdefault("launches", []).append(launch)
    return launch


def update_launch(store: ExperimentStore, launch_id: str, **fields: Any) -> None:
    with modify(store, f"update launch {launch_id}", (LAUNCHES,), launch=launch_id) as ledger:
        for launch in ledger.get("launches", []):
            if launch["id"] == launch_id:
                launch.update(fields)


def drop_launch(store: ExperimentStore, launch_id: str) -> None:
    """Remove a launch rejected before any trial ran (resources no node can hold)."""
    with modify(store, f"drop launch {launch_id}", (LAUNCHES,), launch=launch_id) as ledger:
        ledger["launches"] = [x for x in ledger.get("launches", []) if x["id"] != launch_id]


def discard_if_unlaunched(store: ExperimentStore) -> None:
    """Remove an experiment this command created when nothing was ever launched in it."""
    if not isinstance(store.loc.fs, pafs.LocalFileSystem):
        return
    with ledger_lock(store):
        ledger = store.read_ledger((LAUNCHES,))
        if ledger.get("launches") or store.loc.child("trials").exists():
            return
        store.delete_ledger()
    with contextlib.suppress(OSError):
        os.rmdir(store.loc.path)  # only when empty


def heartbeat(store: ExperimentStore, launch_id: str) -> None:
    """Refresh the launch's heartbeat; a launch closed as dead while it ran is reopened.

    A failed write (full disk) is reported on stderr and does not stop the sweep.
    """
    try:
        with modify(store, "refresh the heartbeat", (LAUNCHES,), launch=launch_id) as ledger:
            for launch in ledger.get("launches", []):
                if launch["id"] == launch_id:
                    launch["heartbeat"] = time.time()
                    if launch.get("closed") and launch.get("outcome") in (DIED, INTERRUPTED):
                        # judged dead by a stale heartbeat
                        launch.update(ended=None, outcome=None, reopened=launch.pop("closed"))
    except UserError as error:
        print(f"warning: heartbeat not recorded: {error}", file=sys.stderr, flush=True)


def record_interruption(store: ExperimentStore, launch_id: str, hint: str) -> None:
    """On SIGTERM, before anything else: the launch's outcome becomes ``interrupted`` with the
    command that resumes it (``hint``), so a driver killed seconds later (``ray job stop``'s
    grace) leaves both. The launch stays open (``ended`` None) while the driver stops;
    :func:`end_launch` writes the final outcome, and a driver killed first is closed by the
    next ``status`` or ``resume`` keeping ``interrupted``."""
    update_launch(store, launch_id, outcome=INTERRUPTED, hint=hint, interrupted_at=time.time())


def end_launch(store: ExperimentStore, launch_id: str, outcome: str, counts: dict) -> None:
    """Record how the launch ended; a failed write is a one-line error (the trial folders are
    intact, and the next ``status`` closes the launch as died)."""
    try:
        update_launch(store, launch_id, ended=time.time(), outcome=outcome, counts=counts)
    except UserError as error:
        raise UserError(
            f"launch {launch_id} ended ({outcome}) but {error}; the trial folders are intact and "
            "the next `rest-sweep status` or `resume` closes the launch"
        ) from None


def mark_stopped(store: ExperimentStore, trial_hash: str, launch_id: str, epoch: int) -> None:
    """Record that a scheduler stopped this trial early (terminal, not an error)."""
    with modify(store, "record an early stop", (STOPS,), trial=trial_hash) as ledger:
        ledger.setdefault("stopped", {})[trial_hash] = {"launch": launch_id, "epoch": epoch}


def launch_alive(launch: dict[str, Any], now: float | None = None) -> bool:
    """Whether the launch's driver still runs (see :func:`liveness`)."""
    return liveness(launch, now)[0]
