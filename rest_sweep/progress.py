"""What a person watching a long sweep sees: one line per event and a periodic summary line.

Ray's own output is silenced (``RAY_AIR_NEW_OUTPUT=0``, ``verbose=0``); its TensorBoard, CSV
and JSON loggers still write under ``tune/<launch>/``. These callbacks run in the driver, so
they see every result at once, with no polling of storage.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray import tune

from rest_sweep.ledger import HEARTBEAT_S, heartbeat
from rest_sweep.sweep_status import format_duration
from trainables.results import ExperimentStore

SUMMARY_EVERY_S = 30.0
SHOWN_METRICS = ("valid_worst_group_acc", "test_unbiased_acc")


class ProgressCallback(tune.Callback):
    """Prints trial completions, errors and retries, and every 30 s: done/total, running, ETA."""

    def __init__(self, total: int, already_finished: int = 0, stream: TextIO | None = None):
        self.total = total
        self.already = already_finished
        self.stream = stream
        self.done = self.errors = self.stopped = 0
        self.started: dict[str, float] = {}
        self.fraction: dict[str, float] = {}
        self.durations: list[float] = []
        self.t0 = time.time()
        self.last_line = self.t0  # first summary after SUMMARY_EVERY_S, not before any trial

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.time())
        self.fraction.setdefault(trial.trial_id, 0.0)

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
            self.done += 1
        else:
            self.stopped += 1
        self._forget(trial)
        scores = " ".join(f"{k} {result[k]:.3f}" for k in SHOWN_METRICS if k in result)
        what = "finished" if finished else f"stopped early at epoch {result.get('epoch')}"
        self._print(f"{what} {self._name(trial)} {scores}".rstrip())

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.errors += 1
        self._forget(trial)
        self._print(f"errored {self._name(trial)}: {self._first_line(trial)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
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
        parts = [f"{done}/{grand} done", f"{len(self.started)} running", f"{self.errors} errored"]
        if self.stopped:
            parts.append(f"{self.stopped} stopped early")
        parts.append(f"elapsed {format_duration(time.time() - self.t0)}")
        if not final:
            parts.append(f"ETA {format_duration(self.eta())}")
        return " | ".join(parts)

    def eta(self) -> float | None:
        """Remaining trial-work x mean trial time / trials running at once."""
        per_trial = self._mean_trial_s()
        if per_trial is None:
            return None
        ended = self.done + self.errors + self.stopped
        running = len(self.started)
        queued = max(0, self.total - ended - running)
        left = queued + sum(1.0 - f for f in self.fraction.values())
        return left * per_trial / max(1, running)

    def _mean_trial_s(self) -> float | None:
        if self.durations:
            return sum(self.durations) / len(self.durations)
        now = time.time()
        rates = [(now - self.started[t]) / f for t, f in self.fraction.items() if f > 0]
        return sum(rates) / len(rates) if rates else None

    def _forget(self, trial: Any) -> None:
        started = self.started.pop(trial.trial_id, None)
        self.fraction.pop(trial.trial_id, None)
        if started is not None:
            self.durations.append(time.time() - started)

    @staticmethod
    def _name(trial: Any) -> str:
        return trial.config["trial"]["name"]

    @staticmethod
    def _first_line(trial: Any) -> str:
        """The error line ``run_trial`` wrote to state.json; a dead worker leaves none."""
        from trainables.results import TrialStore

        try:
            state = TrialStore(trial.config["trial"]["uri"]).read_state() or {}
        except (OSError, ValueError):
            state = {}
        if state.get("state") == "errored" and state.get("error"):
            return str(state["error"])
        return "the worker process died (see error.txt in its tune/ trial folder)"

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
