"""Where an experiment stands, read from storage only (the ledger and the trial folders).

Works while a sweep runs and with no Ray at all. A trial's state comes from the one rule of
the result format, :func:`trainables.results.trial_state` (finished, stopped, errored, running,
else pending, possibly interrupted), given the liveness of the launch that owns it
(:func:`rest_sweep.ledger.launch_alive`); the first line of an error is shown. Grid rows of
methods that are not registered yet are counted apart as ``not_runnable``. A finished trial's
results are checked (:meth:`trainables.results.TrialStore.check_results`: the summary reads,
the rows are epochs 1..E and match the summary's checksum); one that fails is *damaged*, listed
with why and the command that repairs it. A garbled ``state.json`` counts as absent (a note).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from rest_sweep import ledger as ledgers
from rest_sweep.ledger import launch_alive, planned_hashes
from rest_sweep.storage import open_store
from trainables.config import trial_label
from trainables.errors import UserError
from trainables.results import (
    DAMAGED,
    EPOCH_TIME_S,
    ERRORED,
    FINISHED,
    PENDING,
    RUNNING,
    SUMMARY_FILE,
    TRIAL_STATES,
    ExperimentStore,
    MetricsFileError,
    list_experiments,
    owning_launches,
    repair_command,
    trial_state,
)

STATES = TRIAL_STATES
ETA_SAMPLE = 20  # finished trials whose summary gives a time per epoch when none is running


@dataclass
class TrialStatus:
    hash: str
    name: str
    method: str
    state: str
    epoch: int  # finished: all; running/pending: the epochs its newest checkpoint holds
    epochs: int
    error: str = ""
    redo: int = 0  # running/pending: rows after the newest checkpoint, trained again on resume
    interrupted: bool = False
    stage: str = ""  # a staged trial's current stage as state.json names it ("level 3")
    problem: str = ""  # why a damaged trial's results fail their check
    note: str = ""  # a file read as absent (a garbled state.json)


@dataclass
class StatusReport:
    """Counts per state (overall and per method), errors, epochs and an ETA."""

    name: str
    storage: str
    planned: int
    finished: int
    running: int
    errored: int
    stopped: int
    pending: int
    interrupted: int
    not_runnable: int
    per_method: dict[str, dict[str, int]]
    epochs_done: int
    epochs_total: int
    eta_s: float | None
    live_launch: str | None
    last_launch: dict[str, Any] | None
    grids: list[str]
    errors: list[dict[str, str]] = field(default_factory=list)
    trials: list[TrialStatus] = field(default_factory=list)
    unreadable: str = ""  # why the experiment could not be read (``list`` shows it)
    damaged: int = 0  # finished trials whose results fail their check
    # {"hash", "name", "problem"} per damaged trial, and the command that repairs them
    damaged_trials: list[dict[str, str]] = field(default_factory=list)
    repair: str = ""
    notes: list[dict[str, str]] = field(default_factory=list)  # {"hash", "name", "note"}

    @property
    def state(self) -> str:
        """One word for ``rest-sweep list``."""
        if self.unreadable:
            return "unreadable"
        if self.live_launch:
            return "running"
        if self.planned and self.finished + self.stopped == self.planned:
            return "finished"
        if self.errored:
            return "errors"
        if self.damaged:
            return "damaged"
        if self.last_launch is None:
            return "planned"
        return "interrupted"

    def to_dict(self, with_trials: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state
        if not with_trials:
            out.pop("trials")
        return out


def status(storage: str, name: str, *, close_dead: bool = True) -> StatusReport:
    """Read the experiment ``name`` in ``storage``; no Ray needed.

    ``close_dead``: record launches whose driver died as ended (``outcome: "died"``); skipped
    silently where the storage cannot be written.
    """
    store = open_store(storage, name)
    if not store.exists():
        known = ", ".join(list_experiments(storage)) or "none"
        raise UserError(f"--name {name}: no experiment in {storage}; allowed: {known}")
    ledger = store.read_ledger()
    if close_dead and any(not x.get("ended") for x in ledger.get("launches", [])):
        with contextlib.suppress(UserError):  # read-only storage: judge liveness in memory
            ledger = ledgers.close_dead_launches(store, "status")
    launches = ledger.get("launches", [])
    alive = {launch.get("id"): launch_alive(launch) for launch in launches}
    live = next((launch for launch in reversed(launches) if alive[launch.get("id")]), None)
    owners = owning_launches(ledger)
    stopped = ledger.get("stopped", {})
    configs = ledger.get("trials", {})
    trials = [
        _trial_status(store, h, configs[h], h in stopped, alive.get(owners.get(h, {}).get("id")))
        for h in planned_hashes(ledger)
    ]
    counts = Counter(t.state for t in trials)
    per_method: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
    for t in trials:
        per_method[t.method][t.state] += 1
    for row in ledger.get("pending_rows", {}).values():
        per_method[row["method"]].setdefault("not_runnable", 0)
        per_method[row["method"]]["not_runnable"] += 1
    return StatusReport(
        name=name,
        storage=storage,
        planned=len(trials),
        finished=counts["finished"],
        running=counts["running"],
        errored=counts["errored"],
        stopped=counts["stopped"],
        pending=counts["pending"],
        interrupted=sum(t.interrupted for t in trials),
        not_runnable=len(ledger.get("pending_rows", {})),
        per_method={m: dict(v) for m, v in per_method.items()},
        epochs_done=sum(t.epoch for t in trials),
        epochs_total=sum(t.epochs for t in trials),
        eta_s=_eta(store, trials, live is not None),
        live_launch=live["id"] if live else None,
        last_launch=_launch_brief(launches[-1]) if launches else None,
        grids=[g["grid"] for g in ledger.get("grids", [])],
        errors=[
            {"hash": t.hash, "name": t.name, "error": t.error} for t in trials if t.state == ERRORED
        ],
        trials=trials,
        damaged=counts[DAMAGED],
        damaged_trials=[
            {"hash": t.hash, "name": t.name, "problem": t.problem}
            for t in trials
            if t.state == DAMAGED
        ],
        repair=repair_command(storage, name) if counts[DAMAGED] else "",
        notes=[{"hash": t.hash, "name": t.name, "note": t.note} for t in trials if t.note],
    )


def _trial_status(
    store: ExperimentStore, trial_hash: str, cfg: dict[str, Any], stopped: bool, alive: bool | None
) -> TrialStatus:
    """``alive``: whether the launch owning the trial runs (None: no launch lists it = dead)."""
    trial = store.trial(trial_hash)
    base = {"hash": trial_hash, "name": trial_label(cfg), "method": cfg.get("method", "?")}
    files = trial.loc.list_names()
    read, note = trial.read_state_checked()
    state = read or {}
    problem = ""
    if SUMMARY_FILE in files:  # finished, unless its results fail their check
        problem = trial.check_results().problem or ""
    # The loop writes the trial's own epoch count (a staged trial's: every stage's) once it runs.
    epochs = _int(state.get("epochs")) or _planned_epochs(cfg)
    verdict = trial_state(
        files, read, launch_alive=bool(alive), ledger_stopped=stopped, damaged=bool(problem)
    )
    epoch = epochs if verdict.state == FINISHED else _int(state.get("epoch"))
    redo = 0
    # A restart continues from the newest checkpoint: the rows after it are trained again.
    held = state.get("checkpoint_epoch")
    if verdict.state in (RUNNING, PENDING) and isinstance(held, int) and 0 <= held < epoch:
        epoch, redo = held, epoch - held
    error = _first_line(state, trial) if verdict.state == ERRORED else ""
    return TrialStatus(
        state=verdict.state,
        epoch=epoch,
        epochs=epochs,
        error=error,
        redo=redo,
        interrupted=verdict.interrupted,
        stage=str(state.get("stage") or ""),
        problem=problem,
        note=note or "",
        **base,
    )


def _planned_epochs(cfg: dict[str, Any]) -> int:
    """A trial's length before it reports one: ``epochs``, or a staged trial's every stage
    (``MethodInfo.planned_epochs``); ``epochs`` for a config this version cannot read."""
    from trainables.config import TrialConfig
    from trainables.methods import METHODS

    if cfg.get("method") not in METHODS or METHODS.get(cfg["method"]).stages is None:
        return _int(cfg.get("epochs"))
    try:
        planned = TrialConfig.from_dict(cfg, validated=True)
        return planned.method_info.planned_epochs(planned)
    except Exception:  # status reads any ledger: a stored config it cannot rebuild
        return _int(cfg.get("epochs"))


def _int(value: Any) -> int:
    """A count read from a stored file; 0 when it is not a number."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _first_line(state: dict[str, Any], trial: Any) -> str:
    if state.get("error"):
        return str(state["error"]).splitlines()[0]
    text = trial.read_error() or ""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error (no error.txt)"


def _eta(store: ExperimentStore, trials: list[TrialStatus], live: bool) -> float | None:
    """Epochs left x mean epoch time / trials running at once; None when nothing runs."""
    if not live:
        return None
    running = [t for t in trials if t.state == RUNNING]
    left = sum(t.epochs - t.epoch for t in trials if t.state in (RUNNING, PENDING))
    if left == 0:
        return 0.0
    times = []
    for t in running:
        try:
            rows = store.trial(t.hash).read_metrics()
        except MetricsFileError as error:  # a torn line: the trial rebuilds it; time the rest
            rows = error.rows
        times += [float(r.get(EPOCH_TIME_S) or 0) for r in rows]
    if not times:
        for t in [t for t in trials if t.state == FINISHED][:ETA_SAMPLE]:
            summary = store.trial(t.hash).read_summary() or {}
            if summary.get("wall_time_s") and t.epochs:
                times.append(float(summary["wall_time_s"]) / t.epochs)
    times = [x for x in times if x > 0]
    if not times:
        return None
    return left * (sum(times) / len(times)) / max(1, len(running))


def _launch_brief(launch: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "command", "grid", "started", "ended", "outcome", "host", "pid", "tune_path")
    brief = {k: launch.get(k) for k in keys}
    brief["trials"] = len(launch.get("trials", []))
    return brief


def experiments(storage: str) -> list[StatusReport]:
    """Every experiment in ``storage`` (for ``rest-sweep list``), newest launch last."""
    reports = []
    for name in list_experiments(storage):
        try:
            reports.append(status(storage, name, close_dead=False))
        except (UserError, OSError) as error:  # one bad experiment must not hide the others
            reports.append(_unreadable(storage, name, str(error)))
        except (ValueError, TypeError, KeyError, AttributeError) as error:  # a stored file of
            # a shape nothing checked: still only this experiment is unreadable
            first = (str(error).splitlines() or [""])[0]
            reports.append(_unreadable(storage, name, f"{type(error).__name__}: {first}"))
    return sorted(reports, key=lambda r: (r.last_launch or {}).get("started") or 0)


def _unreadable(storage: str, name: str, why: str) -> StatusReport:
    zero = dict.fromkeys(
        ("planned", "finished", "running", "errored", "stopped", "pending", "interrupted"), 0
    )
    return StatusReport(
        name=name,
        storage=storage,
        **zero,
        not_runnable=0,
        per_method={},
        epochs_done=0,
        epochs_total=0,
        eta_s=None,
        live_launch=None,
        last_launch=None,
        grids=[],
        unreadable=why,
    )


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def age(seconds_since_epoch: float | None) -> str:
    if not seconds_since_epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds_since_epoch))
