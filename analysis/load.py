"""Read an experiment folder (no Ray, no torch): the ledger decides which trials exist.

Ray Tune's own folders can hold duplicate rows and orphan trial directories after restores
(docs/architecture.md, reference ray_tune.md section 3), so we enumerate trials from our ledger
(``ExperimentStore.read_ledger``: ``experiment.json`` and its parts, or the one-file ledger of
before) and read each trial folder through :mod:`trainables.results`. A planned
trial that never started still yields a record (status ``pending``); folders under
``trials/`` that the ledger does not name are counted as orphans and otherwise ignored.

A trial's status is the result format's one rule, :func:`trainables.results.trial_state`, the
same ``rest-sweep status`` applies. It needs to know whether the launch owning the trial is
alive: a caller that can tell (``rest-sweep analyze`` passes ``rest_sweep.ledger.launch_alive``)
gives ``launch_alive``; without it a launch with ``ended`` set is dead and any other is unknown,
so a trial whose ``state.json`` says running is reported running.

A finished trial's results are checked as they are read
(:meth:`trainables.results.TrialStore.check_results`): a torn ``summary.json``, a garbled,
empty, short or edited ``metrics.jsonl`` makes the trial *damaged* (no rows, no summary; its
``error`` says why and names the repair command) and never stops the other trials from being
read. A garbled ``state.json`` counts as absent, a garbled line in an unfinished trial's rows
keeps the rows before it (the trial rebuilds the rest when it runs again).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from trainables.errors import UserError
from trainables.results import (
    CONFIG_FILE,
    DAMAGED,
    EPOCH,
    ERROR_FILE,
    METRICS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    TRIALS_DIR,
    ExperimentStore,
    MetricsFileError,
    TrialStore,
    owning_launches,
    repair_command,
    trial_state,
)

LaunchAlive = Callable[[dict[str, Any]], bool]


@dataclass
class TrialRecord:
    """What one planned trial's folder holds right now."""

    trial_hash: str
    config: dict[str, Any]
    status: str = "pending"
    interrupted: bool = False
    error: str | None = None
    attempts: int | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    grids: tuple[str, ...] = ()
    problem: str | None = None  # why a damaged trial's results fail their check


@dataclass
class Experiment:
    """The ledger plus one record per planned trial, in ledger order."""

    uri: str
    name: str
    ledger: dict[str, Any]
    trials: list[TrialRecord]
    orphans: list[str]
    repair: str = ""  # the command that repairs the damaged trials ("" when none is)

    @property
    def damaged(self) -> list[TrialRecord]:
        """The planned trials whose finished results fail their check."""
        return [t for t in self.trials if t.status == DAMAGED]


def error_line(text: str | None) -> str | None:
    """The line of a traceback that says what went wrong (its last non-empty line)."""
    if not text:
        return None
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None


def read_trial(
    store: TrialStore,
    trial_hash: str,
    config: dict[str, Any],
    *,
    launch_alive: bool | None = None,
    ledger_stopped: bool = False,
) -> TrialRecord:
    """One trial's record; a missing folder is a pending trial, not an error.

    ``launch_alive``: whether the launch owning the trial runs (None: unknown);
    ``ledger_stopped``: whether the ledger marks it stopped by a scheduler.
    """
    names = set(store.loc.list_names())
    record = TrialRecord(trial_hash=trial_hash, config=config)
    if not names:
        record.status = trial_state(
            names, None, launch_alive=launch_alive, ledger_stopped=ledger_stopped
        ).state
        return record
    state = store.read_state() if STATE_FILE in names else None  # garbled: None
    traceback = store.read_error() if ERROR_FILE in names else None
    problem = None
    if SUMMARY_FILE in names:
        check = store.check_results(rows=True)
        problem = check.problem
        record.summary, record.metrics = check.summary, check.rows or []
        if problem is not None:  # damaged: neither its summary nor its rows are to be trusted
            record.summary, record.metrics = None, []
    elif METRICS_FILE in names:
        try:
            record.metrics = store.read_metrics()
        except MetricsFileError as error:  # not finished: it rebuilds its rows when it runs
            record.metrics = error.rows
    verdict = trial_state(
        names,
        state,
        launch_alive=launch_alive,
        ledger_stopped=ledger_stopped,
        damaged=problem is not None,
    )
    record.status, record.interrupted = verdict.state, verdict.interrupted
    record.problem = problem
    # state.json's "error" is run_trial's own one-liner (cleared when the trial runs again, the
    # failed attempt's kept as "last_error"); error.txt is the full traceback of the last failed
    # attempt. A damaged trial's error says why it is damaged.
    state = state or {}
    record.error = problem or (
        state.get("error") or state.get("last_error") or error_line(traceback)
    )
    attempts = (record.summary or {}).get("attempts") or (state or {}).get("attempt")
    record.attempts = int(attempts) if attempts is not None else None
    if record.summary is not None:
        final_epoch = (record.summary.get("final") or {}).get(EPOCH)
        if final_epoch is not None:  # rows past the summary's last epoch are stale leftovers
            record.metrics = [r for r in record.metrics if int(r[EPOCH]) <= int(final_epoch)]
    if record.config == {} and CONFIG_FILE in names:
        try:
            record.config = store.read_config() or {}
        except ValueError:  # a garbled config.json: the ledger's config is what counts
            record.config = {}
    return record


def _grids_by_trial(ledger: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Grid names per trial hash, from launches that list their trials (``trials``)."""
    out: dict[str, list[str]] = {}
    for launch in ledger.get("launches") or []:
        if not isinstance(launch, dict):
            continue
        grids = launch.get("grids") or ([launch["grid"]] if launch.get("grid") else [])
        grids = [str(g) for g in (grids if isinstance(grids, list) else [grids])]
        for trial_hash in launch.get("trials") or []:
            bucket = out.setdefault(str(trial_hash), [])
            bucket.extend(g for g in grids if g not in bucket)
    return {k: tuple(v) for k, v in out.items()}


def _launch_liveness(launch: dict[str, Any], launch_alive: LaunchAlive | None) -> bool | None:
    if launch_alive is not None:
        return bool(launch_alive(launch))
    return False if launch.get("ended") else None


def load_experiment(
    storage: str, name: str, *, workers: int = 8, launch_alive: LaunchAlive | None = None
) -> Experiment:
    """Read the ledger and every planned trial (threads help on remote storage).

    ``launch_alive(launch_record) -> bool`` tells whether a launch's driver still runs (see the
    module docstring for what is assumed without it).
    """
    store = ExperimentStore(storage, name)
    if not store.exists():
        raise UserError(
            f"{store.uri}: no experiment.json (is --storage/--name right? "
            "`rest-sweep list --storage ...` shows the experiments)"
        )
    try:
        ledger = store.read_ledger()
    except json.JSONDecodeError as error:
        raise UserError(f"{store.uri}/experiment.json: not valid JSON ({error})") from None
    planned = ledger.get("trials")
    if not isinstance(planned, dict):
        raise UserError(f"{store.uri}/experiment.json: 'trials' must map trial hash -> config")
    grids = _grids_by_trial(ledger)
    hashes = list(planned)

    stopped = ledger.get("stopped") or {}
    owners = owning_launches(ledger)
    alive = {id(launch): _launch_liveness(launch, launch_alive) for launch in owners.values()}
    # A trial no launch lists: dead if the caller can tell liveness (as status), else unknown.
    unowned = False if launch_alive is not None else None

    def read(trial_hash: str) -> TrialRecord:
        owner = owners.get(trial_hash)
        record = read_trial(
            store.trial(trial_hash),
            trial_hash,
            dict(planned[trial_hash] or {}),
            launch_alive=alive[id(owner)] if owner is not None else unowned,
            ledger_stopped=trial_hash in stopped,
        )
        record.grids = grids.get(trial_hash, ())
        return record

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        records = list(pool.map(read, hashes))
    on_disk = store.loc.child(TRIALS_DIR).list_names()
    orphans = sorted(set(on_disk) - set(planned) - {n for n in on_disk if n.startswith(".")})
    repair = repair_command(storage, name) if any(r.status == DAMAGED for r in records) else ""
    for record in records:
        if record.status == DAMAGED:
            record.error = f"{record.error} (repair: {repair})"
    return Experiment(
        uri=store.uri, name=name, ledger=ledger, trials=records, orphans=orphans, repair=repair
    )
