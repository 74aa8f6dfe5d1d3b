"""What a person watching a long sweep sees: one line per event and a periodic summary line.

Ray's own output is silenced (``RAY_AIR_NEW_OUTPUT=0``, ``verbose=0``, Tune's per-attempt
tracebacks and raylet messages routed off the console by ``rest_sweep.tuner``); its
TensorBoard, CSV and JSON loggers still write under ``tune/<launch>/``. These callbacks run in
the driver, so they see every result at once, with no polling of storage.

A failed attempt is described by one line (:func:`attempt_error`): the error the trial recorded
itself (``run_trial`` writes ``state.json`` and ``error.txt`` on an exception), else Tune's error
for it (a dead worker, or a trial that could not record its own error, e.g. on a full disk).
:class:`FailureRecorder` writes the latter into the trial folder, so ``status`` shows it.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, TextIO

from ray import tune

from rest_sweep.ledger import HEARTBEAT_S, heartbeat
from rest_sweep.sweep_status import format_duration
from trainables.errors import error_line
from trainables.results import ExperimentStore, TrialStore

SUMMARY_EVERY_S = 30.0
SHOWN_METRICS = ("valid_worst_group_acc", "test_unbiased_acc")


class ProgressCallback(tune.Callback):
    """Prints trial completions, errors and retries, and every 30 s: done/total, running,
    pending, errored, ETA.

    *Running* is what Tune runs now: a trial whose attempt failed and that waits for its retry
    (Tune's PENDING after an error) is queued, not running, until Tune starts it again. Its
    progress (``fraction``) and first start time are kept: the retry continues from its newest
    checkpoint, and its duration counts from the first start.

    Counts are of trials: a fused group (one Tune trial, ``--fuse``) counts as its members, and
    when it fails, its members that finished count as done (read from their folders).
    """

    def __init__(self, total: int, already_finished: int = 0, stream: TextIO | None = None):
        self.total = total
        self.already = already_finished
        self.stream = stream
        self.done = self.errors = self.stopped = 0
        self.started: dict[str, float] = {}  # trial id -> first start, until it ends
        self.running: set[str] = set()  # trial ids Tune runs now
        self.sizes: dict[str, int] = {}  # trial id -> trials it trains (a fused group's members)
        self.fraction: dict[str, float] = {}  # trial id -> epochs done / epochs, until it ends
        self.durations: list[float] = []
        self.t0 = time.time()
        self.last_line = self.t0  # first summary after SUMMARY_EVERY_S, not before any trial

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.time())
        self.running.add(trial.trial_id)
        self.fraction.setdefault(trial.trial_id, 0.0)
        self.sizes[trial.trial_id] = len(members(trial))

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        epochs = int(trial.config["trial"]["config"]["epochs"])
        self.fraction[trial.trial_id] = min(1.0, float(result.get("epoch", 0)) / epochs)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        epochs = int(trial.config["trial"]["config"]["epochs"])
        finished = int(result.get("epoch", 0)) >= epochs or not result
        if finished:
            self.done += len(members(trial))
        else:
            self.stopped += 1
        self._forget(trial)
        scores = " ".join(f"{k} {result[k]:.3f}" for k in SHOWN_METRICS if k in result)
        what = "finished" if finished else f"stopped early at epoch {result.get('epoch')}"
        self._print(f"{what} {self._name(trial)} {scores}".rstrip())

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        group = members(trial)
        finished = sum(_is_finished(m["uri"]) for m in group) if len(group) > 1 else 0
        self.done += finished
        self.errors += len(group) - finished
        self._forget(trial)
        self._print(
            f"errored {self._name(trial)}: {self._first_line(trial)} "
            f"(traceback: {_error_path(trial)})"
        )

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)  # queued for its retry: pending until it restarts
        self._print(
            f"retrying {self._name(trial)} from its newest checkpoint: {self._first_line(trial)}"
        )

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.time() - self.last_line >= SUMMARY_EVERY_S:
            self._print(self.summary_line())

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._print(self.summary_line(final=True))

    # ------------------------------------------------------------------ text
    def summary_line(self, final: bool = False) -> str:
        done = self.already + self.done
        grand = self.already + self.total
        parts = [
            f"{done}/{grand} done",
            f"{self._running_trials()} running",
            f"{self.pending()} pending",
            f"{self.errors} errored",
        ]
        if self.stopped:
            parts.append(f"{self.stopped} stopped early")
        parts.append(f"elapsed {format_duration(time.time() - self.t0)}")
        if not final:
            parts.append(f"ETA {format_duration(self.eta())}")
        return " | ".join(parts)

    def pending(self) -> int:
        """Trials not running and not ended: never started, or queued for a retry."""
        ended = self.done + self.errors + self.stopped
        return max(0, self.total - ended - self._running_trials())

    def _running_trials(self) -> int:
        return sum(self.sizes.get(t, 1) for t in self.running)

    def eta(self) -> float | None:
        """Remaining trial-work x mean trial time / trials running at once.

        The remaining work is one trial per trial never started plus the unfinished fraction of
        every started one, running or queued for a retry (a retry resumes from its checkpoint).
        """
        per_trial = self._mean_trial_s()
        if per_trial is None:
            return None
        ended = self.done + self.errors + self.stopped
        started = sum(self.sizes.get(t, 1) for t in self.fraction)
        never_started = max(0, self.total - ended - started)
        left = never_started + sum(
            (1.0 - f) * self.sizes.get(t, 1) for t, f in self.fraction.items()
        )
        return left * per_trial / max(1, self._running_trials())

    def _mean_trial_s(self) -> float | None:
        if self.durations:
            return sum(self.durations) / len(self.durations)
        now = time.time()
        rates = [(now - self.started[t]) / f for t, f in self.fraction.items() if f > 0]
        return sum(rates) / len(rates) if rates else None

    def _forget(self, trial: Any) -> None:
        started = self.started.pop(trial.trial_id, None)
        self.running.discard(trial.trial_id)
        self.fraction.pop(trial.trial_id, None)
        self.sizes.pop(trial.trial_id, None)
        if started is not None:
            self.durations.append(time.time() - started)

    @staticmethod
    def _name(trial: Any) -> str:
        return trial.config["trial"]["name"]

    @staticmethod
    def _first_line(trial: Any) -> str:
        return attempt_error(trial)[0]

    def _print(self, text: str) -> None:
        self.last_line = time.time()
        stream = self.stream or sys.stdout
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=stream, flush=True)


class HeartbeatCallback(tune.Callback):
    """Refreshes the launch's heartbeat in the ledger, so status can tell a live driver."""

    def __init__(self, storage: str, name: str, launch_id: str) -> None:
        self.storage, self.name, self.launch_id = storage, name, launch_id
        self.last = 0.0

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.time() - self.last >= HEARTBEAT_S:
            self.last = time.time()
            heartbeat(ExperimentStore(self.storage, self.name), self.launch_id)


# ---------------------------------------------------------------------- failed attempts
WORKER_DIED = "the worker process died"
_EXIT_RE = re.compile(r"Worker exit type: (\S+) Worker exit detail: (.+?)(?:\. Some common|$)")


def members(trial: Any) -> list[dict[str, Any]]:
    """The trial entries a Tune trial trains: its own, or a fused group's members'."""
    entry = trial.config["trial"]
    return list(entry.get("members") or [entry])


def _is_finished(uri: str) -> bool:
    try:
        return TrialStore(uri).is_finished()
    except (OSError, ValueError):
        return False


def attempt_error(trial: Any, uri: str | None = None) -> tuple[str, str | None]:
    """One line for the trial's failed attempt, and Tune's full error text when the trial did
    not record its own (None when it did: ``state.json`` says errored, ``error.txt`` holds it).
    ``uri``: the folder of one member of a fused group (default: the trial's own)."""
    try:
        state = TrialStore(uri or trial.config["trial"]["uri"]).read_state() or {}
    except (OSError, ValueError):
        state = {}
    if state.get("state") == "errored" and state.get("error"):
        return str(state["error"]), None
    error = _tune_error(trial)
    text = _tune_error_text(trial) or (str(error) if error is not None else "")
    return describe_error(error, text), text or None


def describe_error(error: BaseException | None, text: str = "") -> str:
    """One line naming the cause: the trial's own exception inside a Ray task error, or why
    the worker process died."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return error_line(cause)
    body = str(error) if error is not None else text
    match = _EXIT_RE.search(body)
    if match:
        return f"{WORKER_DIED} ({match.group(1)}: {match.group(2).strip()})"
    if error is not None and "died" in type(error).__name__.lower():
        return WORKER_DIED
    last = [ln.strip() for ln in body.splitlines() if ln.strip()]
    exception_lines = [ln for ln in last if re.match(r"^[\w.]+(Error|Exception)\b.*:", ln)]
    if exception_lines:
        return exception_lines[-1]
    return last[0] if last else f"{WORKER_DIED} (no error recorded)"


def _tune_error(trial: Any) -> BaseException | None:
    try:
        return trial.get_pickled_error()
    except Exception:  # noqa: BLE001 - an unreadable error file: fall back to its text
        return None


def _tune_error_text(trial: Any) -> str:
    """The last failure block of Tune's ``error.txt`` for the trial (its own tune/ folder)."""
    try:
        path = trial.error_file
        if not path:
            return ""
        with open(path) as handle:
            text = handle.read()
    except (OSError, AttributeError):
        return ""
    blocks = re.split(r"^Failure # \d+ \(occurred at [^)]*\)\n", text, flags=re.M)
    return blocks[-1].strip()


def _error_path(trial: Any) -> str:
    return f"{trial.config['trial']['uri']}/error.txt"


class FailureRecorder(tune.Callback):
    """Writes Tune's error into the trial folder when the trial could not record its own.

    Every failed attempt's traceback lands in ``trials/<hash>/error.txt``; a trial out of
    retries is marked ``errored`` in ``state.json`` with the one-line cause, so ``status`` and
    the launch's counts see it. A write that fails (a full disk) is tried again at the end of
    the launch."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[str, str, bool]] = {}  # uri -> (line, text, final)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, final=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, final=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for uri, (line, text, final) in list(self.pending.items()):
            self._write(uri, line, text, final)

    def _record(self, trial: Any, final: bool) -> None:
        group = members(trial)
        for member in group:  # a fused group: each member that did not record its own
            if len(group) > 1 and _is_finished(member["uri"]):
                continue
            line, text = attempt_error(trial, member["uri"])
            if text is not None:  # the trial recorded nothing for this attempt
                self._write(member["uri"], line, text, final)

    def _write(self, uri: str, line: str, text: str, final: bool) -> None:
        store = TrialStore(uri)
        try:
            store.write_error(f"{line}\n\nRay Tune's error for this attempt:\n{text}\n")
            if final and not store.is_finished():
                store.write_state("errored", error=line)
        except OSError:
            self.pending[uri] = (line, text, final)
        else:
            self.pending.pop(uri, None)
