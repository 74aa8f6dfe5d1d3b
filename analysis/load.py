"""Read an experiment folder (no Ray, no torch): the ledger decides which trials exist.

Ray Tune's own folders can hold duplicate rows and orphan trial directories after restores
(docs/architecture.md, reference ray_tune.md section 3), so we enumerate trials from our ledger
``experiment.json`` and read each trial folder through :mod:`trainables.results`. A planned
trial that never started still yields a record (status ``pending``); folders under
``trials/`` that the ledger does not name are counted as orphans and otherwise ignored.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from trainables.errors import UserError
from trainables.results import (
    CONFIG_FILE,
    ERROR_FILE,
    METRICS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    TRIALS_DIR,
    ExperimentStore,
    TrialStore,
)

# state.json "state" -> the status we report (a summary.json always means finished).
_STATE_TO_STATUS = {
    "running": "running",
    "errored": "errored",
    "error": "errored",
    "pending": "pending",
    "stopped": "stopped",
    "paused": "stopped",
    "terminated": "stopped",
    "interrupted": "stopped",
    "finished": "stopped",  # state says finished but there is no summary: interrupted write
}


@dataclass
class TrialRecord:
    """What one planned trial's folder holds right now."""

    trial_hash: str
    config: dict[str, Any]
    status: str = "pending"
    error: str | None = None
    attempts: int | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    grids: tuple[str, ...] = ()


@dataclass
class Experiment:
    """The ledger plus one record per planned trial, in ledger order."""

    uri: str
    name: str
    ledger: dict[str, Any]
    trials: list[TrialRecord]
    orphans: list[str]


def error_line(text: str | None) -> str | None:
    """The line of a traceback that says what went wrong (its last non-empty line)."""
    if not text:
        return None
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None


def _status(names: set[str], state: dict[str, Any] | None) -> str:
    if SUMMARY_FILE in names:
        return "finished"
    if state and "state" in state:
        return _STATE_TO_STATUS.get(str(state["state"]), "stopped")
    if ERROR_FILE in names:
        return "errored"
    if METRICS_FILE in names:
        return "stopped"
    return "pending"


def read_trial(store: TrialStore, trial_hash: str, config: dict[str, Any]) -> TrialRecord:
    """One trial's record; a missing folder is a pending trial, not an error."""
    names = set(store.loc.list_names())
    record = TrialRecord(trial_hash=trial_hash, config=config)
    if not names:
        return record
    try:
        state = store.read_state() if STATE_FILE in names else None
        record.summary = store.read_summary() if SUMMARY_FILE in names else None
        record.metrics = store.read_metrics() if METRICS_FILE in names else []
        traceback = store.read_error() if ERROR_FILE in names else None
    except (json.JSONDecodeError, KeyError, ValueError) as error:
        raise UserError(f"{store.loc.path}: unreadable trial file ({error})") from None
    record.status = _status(names, state)
    # state.json's "error" is run_trial's own one-liner; error.txt is the full traceback.
    record.error = (state or {}).get("error") or error_line(traceback)
    attempts = (record.summary or {}).get("attempts") or (state or {}).get("attempt")
    record.attempts = int(attempts) if attempts is not None else None
    if record.summary is not None:
        final_epoch = (record.summary.get("final") or {}).get("epoch")
        if final_epoch is not None:  # rows past the summary's last epoch are stale leftovers
            record.metrics = [r for r in record.metrics if int(r["epoch"]) <= int(final_epoch)]
    if record.config == {} and CONFIG_FILE in names:
        record.config = store.read_config() or {}
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


def load_experiment(storage: str, name: str, *, workers: int = 8) -> Experiment:
    """Read the ledger and every planned trial (threads help on remote storage)."""
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

    def read(trial_hash: str) -> TrialRecord:
        record = read_trial(store.trial(trial_hash), trial_hash, dict(planned[trial_hash] or {}))
        record.grids = grids.get(trial_hash, ())
        if trial_hash in stopped and record.status in ("running", "stopped"):
            record.status = "stopped"  # a scheduler (ASHA) ended it early: terminal, not an error
        return record

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        records = list(pool.map(read, hashes))
    on_disk = store.loc.child(TRIALS_DIR).list_names()
    orphans = sorted(set(on_disk) - set(planned) - {n for n in on_disk if n.startswith(".")})
    return Experiment(uri=store.uri, name=name, ledger=ledger, trials=records, orphans=orphans)
