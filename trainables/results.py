"""The on-disk result format: the one module that knows every file name.

An *experiment* lives at ``<storage>/<name>/`` (a local path or any pyarrow filesystem URI)::

    experiment.json            the ledger's head: grids, data root, ... (its layout: below)
    plan/NNNNN.json            the ledger's planned trials (hash -> config), 1,000 per file
    launches/<id>.json         one launch record each (its trial list: <id>.trials.json)
    stopped/<hash>.json        trials a scheduler stopped early
    trials/<hash>/             one folder per trial, owned by that trial only
        config.json            TrialConfig.to_dict()
        metrics.jsonl          one JSON object per finished epoch, de-duplicated by "epoch"
        summary.json           written once, when the trial finished (its presence = finished);
                                ``metrics_sha256``: the sha256 of metrics.jsonl as it was then
                                (:meth:`TrialStore.check_results` checks a finished trial by it)
        summary.damaged.json   a damaged trial's summary, set aside (with metrics.damaged.jsonl)
                                so that the trial continues from its newest checkpoint
        state.json             {"state": running|interrupted|finished|errored, "updated",
                                "attempt", "epoch" (the last row), "checkpoint_epoch" (where
                                a restart resumes; null once only final weights are kept),
                                "error" (null once the trial runs again), "last_error" (the
                                last failed attempt's), "warning" (the last repair's)}
        error.txt              the traceback of the last failed attempt (kept for the record)
        checkpoints/epoch_NNNN.pt   the newest ``keep_checkpoints`` checkpoints, written every
                                ``checkpoint_every`` epochs and at the last one, atomically
        final_weights.pt       ``final_checkpoint=weights`` only: replaces ``checkpoints/`` when
                                the trial finishes; {"epoch", "trial_hash", "model" (state_dict
                                of the evaluated network: weights and buffers), "masks" (layer
                                -> bool tensor; empty when dense), "other_networks" (state_dicts
                                of the method's other networks, ``Method.modules()`` order:
                                LfF's biased network, DisEnt's bias encoder and head, which its
                                prediction reads), "metrics_rows" (as in a checkpoint)}; no
                                optimizer or method training state
        stages/<stage>/        a staged trial (trainables/stages.py; prune's levels): one
                                ordinary trial folder per stage (config, metrics, state,
                                checkpoints or final weights, summary), trained in order; the
                                trial folder itself then holds config.json, the stages' rows
                                (metrics.jsonl: epochs numbered across stages, each row with
                                its stage's label columns), state.json and summary.json
                                (``stages``: one result per stage), all written by the runner
        <NAME>.pt              tensors a method keeps beside its checkpoints (``save_tensors``;
                                prune's ``rewind.pt``: {"step": the rewind iteration, "model":
                                level 0's state_dict there}, in the level-0 stage's folder)
        levels/                read only: prune trials stored before stages existed kept
                                ``level_NNNN.pt`` (masks, model) and ``rewind.pt`` here
    tune/<launch>/             Ray Tune's own experiment folders (result.json, TensorBoard...)

The ledger's files are :class:`ExperimentStore`'s (its docstring: what each holds, the one-file
ledger of before, and which update writes what). ``rest-sweep train --out DIR`` writes the same
trial folder layout at ``DIR``. Analysis and status read only these files, with no Ray running.
Every write is atomic: write a temporary name, then move it over the final one, so a crash
never leaves a half-written file that a reader would trust.

This module also names the per-epoch metrics (the keys of a ``metrics.jsonl`` row) and holds
the one rule that turns a trial folder into a state (:func:`trial_state`), which ``status``
and ``analysis`` both use.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from trainables.errors import first_line

EXPERIMENT_FILE = "experiment.json"  # the ledger's head (ExperimentStore: the ledger's files)
PLAN_DIR = "plan"
LAUNCHES_DIR = "launches"
STOPPED_DIR = "stopped"
PLAN_FILE_TRIALS = 1000  # planned trials per plan/ file
LEDGER_SCHEMA = 2  # experiment.json's "schema" since the ledger was split (1: one file)
# The parts of the ledger kept apart from experiment.json (ExperimentStore.read_ledger).
PLAN, LAUNCHES, LAUNCH_TRIALS, STOPS = "trials", "launches", "launch_trials", "stopped"
LEDGER_PARTS: frozenset[str] = frozenset((PLAN, LAUNCHES, LAUNCH_TRIALS, STOPS))
_PART_KEYS = ("trials", "order", "launches", "stopped")  # ledger keys not in experiment.json
TRIALS_DIR = "trials"
TUNE_DIR = "tune"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
STATE_FILE = "state.json"
ERROR_FILE = "error.txt"
CHECKPOINT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^epoch_(\d{4,})\.pt$")
FINAL_WEIGHTS_FILE = "final_weights.pt"
STAGES_DIR = "stages"
REWIND_FILE = "rewind.pt"  # a lottery trunk's level-0 stage keeps its rewind point in it
LEGACY_LEVELS_DIR = "levels"  # prune's layout before stages (read only)
# The temporary sibling of an atomic write (``Location.write_bytes``): ``.<name>.<8 hex>.tmp``.
_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
STALE_TMP_S = 60.0  # a writer that is alive renames its temporary well within this
# The metrics rows of epochs 1..E, kept inside the checkpoint of epoch E (a lost or corrupt
# metrics.jsonl is rebuilt from it).
CHECKPOINT_ROWS = "metrics_rows"
# summary.json's checksum of the rows: sha256 (hex) of metrics.jsonl's bytes as written then
# (:func:`metrics_text`); a torn, edited, shortened or emptied file no longer matches it.
METRICS_SHA256 = "metrics_sha256"
# A damaged trial's files, set aside (kept for the record) so the trial runs on from its
# newest checkpoint (:meth:`TrialStore.set_aside_results`).
SUMMARY_DAMAGED_FILE = "summary.damaged.json"
METRICS_DAMAGED_FILE = "metrics.damaged.jsonl"

# -- per-epoch metric names (the keys of a metrics.jsonl row; part of the result format) -----
EPOCH = "epoch"  # 1-based epoch number
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
DENSITY = "density"
TRAIN_FLOPS = "train_flops"  # cumulative
LR = "lr"
EPOCH_TIME_S = "epoch_time_s"
VALID = "valid"
TEST = "test"
SPLITS: tuple[str, ...] = (VALID, TEST)
# Per-split metric suffixes: the row key is ``split_metric(split, suffix)``, e.g. test_acc.
LOSS = "loss"
ACC = "acc"
ACC_ALIGNED = "acc_aligned"
ACC_CONFLICTING = "acc_conflicting"
WORST_GROUP_ACC = "worst_group_acc"
UNBIASED_ACC = "unbiased_acc"
SPLIT_METRIC_HELP: dict[str, str] = {
    LOSS: "cross-entropy loss",
    ACC: "accuracy (fraction 0-1)",
    ACC_ALIGNED: "accuracy on bias-aligned samples",
    ACC_CONFLICTING: "accuracy on bias-conflicting samples",
    WORST_GROUP_ACC: "min of aligned / conflicting accuracy",
    UNBIASED_ACC: "mean accuracy over the (label, bias) cells present",
}


def split_metric(split: str, metric: str) -> str:
    """The row key of a per-split metric: ``split_metric("test", ACC) == "test_acc"``."""
    return f"{split}_{metric}"


# Every metric of an epoch row except ``epoch`` itself, in file order, with its meaning.
METRIC_HELP: dict[str, str] = {
    TRAIN_LOSS: "training loss (epoch mean)",
    TRAIN_ACC: "training accuracy (fraction 0-1)",
    **{
        split_metric(split, name): f"{split}: {text}"
        for split in SPLITS
        for name, text in SPLIT_METRIC_HELP.items()
    },
    DENSITY: "global weight density at the end of the epoch",
    TRAIN_FLOPS: "training FLOPs so far (cumulative)",
    LR: "learning rate",
    EPOCH_TIME_S: "wall time of the epoch, seconds",
}
EPOCH_METRICS: tuple[str, ...] = tuple(METRIC_HELP)

# -- the trial-state rule -------------------------------------------------------------------
FINISHED, RUNNING, ERRORED, STOPPED, PENDING, DAMAGED = (
    "finished",
    "running",
    "errored",
    "stopped",
    "pending",
    "damaged",
)
TRIAL_STATES: tuple[str, ...] = (FINISHED, RUNNING, ERRORED, STOPPED, PENDING, DAMAGED)


@dataclass(frozen=True)
class TrialState:
    """A trial's state, and whether it started and will continue on ``rest-sweep resume``."""

    state: str
    interrupted: bool = False


def trial_state(
    files: Iterable[str],
    state: Mapping[str, Any] | None,
    *,
    launch_alive: bool | None,
    ledger_stopped: bool,
    damaged: bool = False,
) -> TrialState:
    """The one rule deciding a trial's state from its folder (status and analysis use it).

    ``files`` are the names in the trial folder, ``state`` its ``state.json`` (None if absent),
    ``launch_alive`` whether the launch that owns the trial still runs (None when unknown) and
    ``ledger_stopped`` whether the ledger marks it stopped by a scheduler and ``damaged``
    whether its stored results fail their check (:meth:`TrialStore.check_results`). In this
    order:

    * *finished*: ``summary.json`` exists and the results are intact, else *damaged* (the
      rows or the summary are torn, garbled, edited or short: ``rest-sweep verify --repair``
      rebuilds them from the checkpoint where it holds them, ``resume`` retrains the rest);
    * *stopped*: a scheduler (ASHA) ended it early (terminal, not an error);
    * *errored*: ``state.json`` says so (or there is no state but an ``error.txt``);
    * *running*: ``state.json`` says running and its launch is alive or not known to be dead;
    * else *pending*: never started, or ``interrupted`` (it left files: a dead launch's
      "running", "interrupted", "finished" without a summary, metrics without a state) and
      waits for ``rest-sweep resume``.
    """
    names = set(files)
    if SUMMARY_FILE in names:
        return TrialState(DAMAGED if damaged else FINISHED)
    if ledger_stopped:
        return TrialState(STOPPED)
    written = str(state["state"]) if state and state.get("state") is not None else None
    if written in ("errored", "error") or (written is None and ERROR_FILE in names):
        return TrialState(ERRORED)
    if written == RUNNING and launch_alive is not False:
        return TrialState(RUNNING)
    started = written is not None or bool(
        names & {METRICS_FILE, CHECKPOINT_DIR, ERROR_FILE, STAGES_DIR}
    )
    return TrialState(PENDING, interrupted=started)


def repair_command(storage: str, name: str) -> str:
    """The command that repairs the damaged trials of an experiment (status, analysis)."""
    return f"rest-sweep verify --storage {storage} --name {name} --repair"


# The ledger keys readers index, and the JSON type each must have when present.
_LEDGER_SHAPE: dict[str, tuple[type, str]] = {
    "trials": (dict, "an object mapping trial hash -> config object"),
    "order": (list, "a list of trial hashes"),
    "launches": (list, "a list of launch records (objects)"),
    "grids": (list, "a list of grid records (objects)"),
    "stopped": (dict, "an object mapping trial hash -> record"),
    "pending_rows": (dict, "an object mapping grid-row label -> record"),
}


def ledger_problem(ledger: Mapping[str, Any]) -> str | None:
    """What is wrong with the shape of a ledger read from ``experiment.json`` (None: nothing).

    Checks what status, analysis and the launch code index: the top-level keys' types, each
    planned trial's config, each launch record and its ``trials``, each grid record and
    not-runnable row. The caller names the file."""

    def found(value: Any) -> str:
        return f"found {type(value).__name__} {json.dumps(value, default=str)[:40]}"

    for key, (kind, what) in _LEDGER_SHAPE.items():
        if key in ledger and not isinstance(ledger[key], kind):
            return f"{key!r} must be {what}, {found(ledger[key])}"
    for trial_hash, config in (ledger.get("trials") or {}).items():
        if not isinstance(config, dict):
            return f"'trials' must map hash -> config object, {found(config)} for {trial_hash!r}"
    for key in ("launches", "grids"):
        for number, record in enumerate(ledger.get(key) or [], start=1):
            if not isinstance(record, dict):
                return f"{key!r} must hold objects, {found(record)} at position {number}"
    for number, launch in enumerate(ledger.get("launches") or [], start=1):
        trials = launch.get("trials")
        if trials is not None and not isinstance(trials, list):
            return f"launch {number}: 'trials' must be a list of trial hashes, {found(trials)}"
    for label, row in (ledger.get("pending_rows") or {}).items():
        if not isinstance(row, dict) or "method" not in row:
            return (
                f"'pending_rows' must map label -> {{method, values}}, {found(row)} for {label!r}"
            )
    return None


def owning_launches(ledger: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Trial hash -> the latest launch record of the ledger that lists it in ``trials``."""
    owners: dict[str, dict[str, Any]] = {}
    for launch in ledger.get("launches") or []:
        if isinstance(launch, dict):
            for trial_hash in launch.get("trials") or []:
                owners[str(trial_hash)] = launch
    return owners


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """A (filesystem, path) pair for a local path, ``file://`` or any pyarrow URI (s3://...)."""
    if "://" in uri:
        import pyarrow as pa

        from trainables.errors import UserError

        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except pa.ArrowInvalid as error:
            scheme = uri.split("://", 1)[0]
            first = (str(error).splitlines() or ["invalid URI"])[0]
            raise UserError(
                f"{uri}: unknown or unusable URI scheme {scheme!r} ({first}); allowed: a local "
                "path, file://, s3://, gs://, hdfs://, abfs://"
            ) from None
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def json_safe(obj: Any) -> Any:
    """NaN/inf become null (strict JSON; e.g. the accuracy of a group absent from a split)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def metrics_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """``metrics.jsonl`` as written: one canonical JSON line per epoch (of several rows of an
    epoch the last wins), sorted by epoch, NaN/inf as null. The rows read back from it give
    the same text again, so its sha256 (:func:`metrics_digest`) checks the file."""
    by_epoch = {int(r[EPOCH]): r for r in rows}
    return "".join(
        json.dumps(json_safe(by_epoch[k]), sort_keys=True, allow_nan=False) + "\n"
        for k in sorted(by_epoch)
    )


def metrics_digest(rows: Iterable[Mapping[str, Any]]) -> str:
    """summary.json's ``metrics_sha256``: sha256 (hex) of :func:`metrics_text` of ``rows``."""
    return hashlib.sha256(metrics_text(rows).encode()).hexdigest()


def parse_metrics(data: bytes | str, path: str) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` text (``path`` names it in errors), one per epoch (the
    last written wins), sorted by epoch.

    A line that is not a JSON object with an integer ``epoch`` raises
    :class:`MetricsFileError` naming the file and the line."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    rows: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            epoch = int(row[EPOCH])
        except (ValueError, KeyError, TypeError, IndexError) as error:
            problem = f"not a metrics row ({type(error).__name__}: {error})"
            done = [rows[k] for k in sorted(rows)]
            raise MetricsFileError(path, number, problem, done) from None
        rows[epoch] = row
    return [rows[k] for k in sorted(rows)]


def epochs_text(epochs: list[int]) -> str:
    """``[1, 2, 3]`` -> ``1..3``, ``[1, 3]`` -> ``1, 3``, ``[]`` -> ``none``."""
    if not epochs:
        return "none"
    if epochs == list(range(epochs[0], epochs[-1] + 1)) and len(epochs) > 2:
        return f"{epochs[0]}..{epochs[-1]}"
    shown = ", ".join(str(e) for e in epochs[:12])
    return shown + (f", ... ({len(epochs)} in all)" if len(epochs) > 12 else "")


def rows_problem(rows: list[dict[str, Any]], epochs: int | None, path: str) -> str | None:
    """Whether ``rows`` (sorted, one per epoch) hold epochs 1..E with no gap; E is ``epochs``
    (the summary's count) or, when unknown, the last row's epoch. None when they do."""
    have = [int(r[EPOCH]) for r in rows]
    if not have:
        counted = f" (summary.json counts {epochs} epochs)" if epochs else ""
        return f"{path}: no rows{counted}"
    last = epochs if epochs is not None else have[-1]
    if have[:last] == list(range(1, last + 1)):
        return None
    missing = sorted(set(range(1, last + 1)) - set(have))
    gap = f", missing {epochs_text(missing)}" if missing else ""
    return f"{path}: rows of epochs 1..{last} expected, found epochs {epochs_text(have)}{gap}"


def join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts if p)


@dataclass(frozen=True)
class Location:
    """A folder on some filesystem, with atomic read/write helpers."""

    fs: pafs.FileSystem
    path: str

    @classmethod
    def of(cls, uri: str) -> Location:
        fs, path = resolve(uri)
        return cls(fs, path)

    def child(self, *parts: str) -> Location:
        return Location(self.fs, join(self.path, *parts))

    def file(self, name: str) -> str:
        return join(self.path, name)

    def exists(self, name: str = "") -> bool:
        info = self.fs.get_file_info(self.file(name) if name else self.path)
        return info.type != pafs.FileType.NotFound

    def makedirs(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Atomic write: temporary sibling, then move over the final name.

        A write that fails anywhere (a full disk at the write or at the close, an interrupt,
        a failed move) removes its temporary before the error goes on, so a torn or empty
        ``.<name>.<8 hex>.tmp`` never stays behind to keep a full disk full."""
        self.makedirs()
        final = self.file(name)
        tmp = self.file(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            if isinstance(self.fs, pafs.LocalFileSystem):
                os.replace(tmp, final)  # atomic on POSIX, also over an existing file
            else:
                self.fs.move(tmp, final)
        except BaseException:
            self._remove_temporary(tmp)
            raise

    def _remove_temporary(self, tmp: str) -> None:
        """Delete a failed write's temporary (absent when it was never created); a failure
        to delete it never replaces the write's own error."""
        try:
            if isinstance(self.fs, pafs.LocalFileSystem):
                os.unlink(tmp)
            else:
                self.fs.delete_file(tmp)
        except OSError:  # never created, or already gone
            pass

    def read_bytes(self, name: str) -> bytes:
        with self.fs.open_input_stream(self.file(name)) as src:
            return src.read()

    def write_json(self, name: str, obj: Any) -> None:
        text = json.dumps(json_safe(obj), indent=1, sort_keys=True, allow_nan=False)
        self.write_bytes(name, (text + "\n").encode())

    def read_json(self, name: str, default: Any = None) -> Any:
        if not self.exists(name):
            return default
        return json.loads(self.read_bytes(name))

    def list_names(self) -> list[str]:
        if not self.exists():
            return []
        selector = pafs.FileSelector(self.path, recursive=False)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    def delete(self, name: str) -> None:
        if self.exists(name):
            self.fs.delete_file(self.file(name))


class TrialStore:
    """Read and write one trial folder (see the module docstring for the layout)."""

    def __init__(self, uri_or_location: str | Location, keep_checkpoints: int = 2) -> None:
        self.loc = (
            uri_or_location
            if isinstance(uri_or_location, Location)
            else Location.of(uri_or_location)
        )
        self.keep_checkpoints = max(1, keep_checkpoints)

    # -- config / summary / state ------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        self.loc.write_json(CONFIG_FILE, config)

    def read_config(self) -> dict[str, Any] | None:
        return self.loc.read_json(CONFIG_FILE)

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.loc.write_json(SUMMARY_FILE, summary)

    def read_summary(self) -> dict[str, Any] | None:
        return self.loc.read_json(SUMMARY_FILE)

    def is_finished(self) -> bool:
        return self.loc.exists(SUMMARY_FILE)

    def holds_results(self) -> bool:
        """Finished, with results that pass their check (:meth:`check_results`): what
        ``resume`` leaves alone; a damaged trial runs again, and its run repairs it."""
        return self.is_finished() and self.check_results().intact

    def write_state(self, state: str, **extra: Any) -> None:
        """Update ``state.json`` (a garbled one is replaced by what is written now)."""
        current = self.read_state() or {}
        current.update(extra)
        current.update(state=state, updated=time.time())
        self.loc.write_json(STATE_FILE, current)

    def read_state(self) -> dict[str, Any] | None:
        """``state.json``; None when absent, and when garbled or not a JSON object (a torn
        write): the state is bookkeeping, rewritten by the trial's next write, and must never
        stop the trial, ``status`` or ``list`` (:meth:`read_state_checked` says why)."""
        return self.read_state_checked()[0]

    def read_state_checked(self) -> tuple[dict[str, Any] | None, str | None]:
        """``state.json`` and, when it cannot be read as a JSON object, why (None: fine)."""
        path = self.loc.file(STATE_FILE)
        try:
            state = self.loc.read_json(STATE_FILE)
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            return None, f"{path}: unreadable ({first_line(error)}); treated as absent"
        if state is not None and not isinstance(state, dict):
            return None, f"{path}: not a JSON object; treated as absent"
        return state, None

    def write_error(self, text: str) -> None:
        self.loc.write_bytes(ERROR_FILE, text.encode())

    def read_error(self) -> str | None:
        return self.loc.read_bytes(ERROR_FILE).decode() if self.loc.exists(ERROR_FILE) else None

    # -- metrics ----------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        """Per-epoch rows, one per epoch (the last written wins), sorted by epoch.

        A line that is not a JSON object with an integer ``epoch`` raises
        :class:`MetricsFileError` naming the file and the line."""
        if not self.loc.exists(METRICS_FILE):
            return []
        return parse_metrics(self.loc.read_bytes(METRICS_FILE), self.loc.file(METRICS_FILE))

    def read_metrics_bytes(self) -> bytes | None:
        """``metrics.jsonl`` as stored; None when absent."""
        if not self.loc.exists(METRICS_FILE):
            return None
        return self.loc.read_bytes(METRICS_FILE)

    def write_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rewrite the whole metrics file atomically (one row per epoch, :func:`metrics_text`)."""
        self.loc.write_bytes(METRICS_FILE, metrics_text(rows).encode())

    # -- the check of a finished trial's results -----------------------------------
    def check_results(self, *, rows: bool = False) -> ResultsCheck:
        """Whether a finished trial's stored results hold together (call it when
        ``summary.json`` exists; status, analysis, ``resume`` and ``verify`` do).

        ``summary.json`` must be a JSON object; ``metrics.jsonl`` must hold epochs 1..E (the
        summary's ``epochs``), each once, no gap and no garbled line, and, when the summary
        has ``metrics_sha256`` (every summary written since it existed), exactly the bytes it
        was written with. ``rows``: also parse and return the rows when intact (analysis)."""
        summary_path, metrics_path = self.loc.file(SUMMARY_FILE), self.loc.file(METRICS_FILE)
        try:
            summary = self.loc.read_json(SUMMARY_FILE)
        except ValueError as error:  # JSONDecodeError (a torn write), UnicodeDecodeError
            return ResultsCheck(f"{summary_path}: unreadable ({first_line(error)})")
        if summary is None:
            return ResultsCheck(f"{summary_path}: missing")
        if not isinstance(summary, dict):
            return ResultsCheck(f"{summary_path}: not a JSON object")
        data = self.read_metrics_bytes()
        if data is None:
            return ResultsCheck(f"{metrics_path}: missing", summary)
        digest = summary.get(METRICS_SHA256)
        matches = digest is not None and hashlib.sha256(data).hexdigest() == digest
        if matches and not rows:
            return ResultsCheck(None, summary)
        try:
            parsed = parse_metrics(data, metrics_path)
        except MetricsFileError as error:
            return ResultsCheck(str(error), summary)
        problem = rows_problem(parsed, summary_epochs(summary), metrics_path)
        if problem is None and digest is not None and not matches:
            problem = (
                f"{metrics_path}: its rows differ from those summary.json was written with "
                "(checksum mismatch)"
            )
        return ResultsCheck(problem, summary, parsed if problem is None else None)

    def set_aside_results(self) -> list[str]:
        """Set a damaged trial's ``summary.json`` aside (``summary.damaged.json``) with a copy
        of its ``metrics.jsonl`` (``metrics.damaged.jsonl``), both kept for the record: the
        trial then reads as interrupted and continues from its newest checkpoint (whose rows
        rebuild a broken ``metrics.jsonl``). Returns the names written."""
        written = []
        if self.loc.exists(METRICS_FILE):
            self.loc.write_bytes(METRICS_DAMAGED_FILE, self.loc.read_bytes(METRICS_FILE))
            written.append(METRICS_DAMAGED_FILE)
        if self.loc.exists(SUMMARY_FILE):
            self.loc.write_bytes(SUMMARY_DAMAGED_FILE, self.loc.read_bytes(SUMMARY_FILE))
            self.loc.delete(SUMMARY_FILE)  # last: until here the trial reads as damaged
            written.append(SUMMARY_DAMAGED_FILE)
        return written

    def append_metrics(self, row: dict[str, Any]) -> None:
        rows = [r for r in self.read_metrics() if int(r["epoch"]) < int(row["epoch"])]
        self.write_metrics([*rows, row])

    # -- checkpoints ------------------------------------------------------------
    @property
    def checkpoints(self) -> Location:
        return self.loc.child(CHECKPOINT_DIR)

    def checkpoint_epochs(self) -> list[int]:
        epochs = []
        for name in self.checkpoints.list_names():
            match = _CKPT_RE.match(name)
            if match:
                epochs.append(int(match.group(1)))
        return sorted(epochs)

    @staticmethod
    def checkpoint_name(epoch: int) -> str:
        """The file name of epoch ``epoch``'s checkpoint in ``checkpoints/``."""
        return f"epoch_{epoch:04d}.pt"

    def save_checkpoint(self, epoch: int, state: dict[str, Any]) -> None:
        """Write ``state`` as the checkpoint of ``epoch``, then keep the newest
        ``keep_checkpoints`` up to it.

        A file of a later epoch is stale: training is at ``epoch``, so it resumed from before
        it, which means that file did not load (``load_latest_checkpoint`` skipped it). It is
        removed; left there it would outrank every new checkpoint in the pruning below."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.checkpoints.write_bytes(self.checkpoint_name(epoch), buffer.getvalue())
        epochs = self.checkpoint_epochs()
        stale = [e for e in epochs if e > epoch]
        older = [e for e in epochs if e <= epoch][: -self.keep_checkpoints]
        for old in stale + older:
            self.checkpoints.delete(self.checkpoint_name(old))

    def load_latest_checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """The newest checkpoint that loads, as (epoch, state); None when there is none.

        A checkpoint that does not load (truncated by a crash, garbled) is skipped with a
        warning naming it, and the previous one is used."""
        import torch

        for epoch in reversed(self.checkpoint_epochs()):
            name = self.checkpoint_name(epoch)
            try:
                data = self.checkpoints.read_bytes(name)
                state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
            except Exception as error:  # a truncated file from a crash: use the previous one
                warnings.warn(
                    f"{self.checkpoints.file(name)}: cannot load ({type(error).__name__}); "
                    "using the previous checkpoint",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            return epoch, state
        return None

    # -- stages and method tensor files ---------------------------------------------
    def stage(self, name: str) -> TrialStore:
        """The folder of stage ``name`` of a staged trial: an ordinary trial folder."""
        return TrialStore(self.loc.child(STAGES_DIR, name), self.keep_checkpoints)

    def stage_names(self) -> list[str]:
        return self.loc.child(STAGES_DIR).list_names()

    def save_tensors(self, name: str, state: dict[str, Any]) -> None:
        """Write ``state`` (tensors on the CPU) as ``<name>``, atomically."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.loc.write_bytes(name, buffer.getvalue())

    def load_tensors(self, name: str) -> dict[str, Any] | None:
        """``<name>`` on the CPU, or None when it is not stored."""
        import torch

        if not self.loc.exists(name):
            return None
        data = self.loc.read_bytes(name)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def delete_checkpoints(self) -> list[int]:
        """Remove every checkpoint (a restart from epoch 1, or a finished trial that keeps only
        its final weights); returns the epochs removed. The folder goes too once empty."""
        epochs = self.checkpoint_epochs()
        for epoch in epochs:
            self.checkpoints.delete(self.checkpoint_name(epoch))
        if self.checkpoints.exists() and not self.checkpoints.list_names():
            self.checkpoints.fs.delete_dir(self.checkpoints.path)
        return epochs

    # -- final weights (final_checkpoint=weights) -------------------------------------
    def save_final_weights(self, state: dict[str, Any]) -> None:
        """Write ``final_weights.pt`` (tensors on the CPU; layout in the module docstring)."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.loc.write_bytes(FINAL_WEIGHTS_FILE, buffer.getvalue())

    def has_final_weights(self) -> bool:
        return self.loc.exists(FINAL_WEIGHTS_FILE)

    def load_final_weights(self) -> dict[str, Any] | None:
        """``final_weights.pt`` on the CPU, or None when the trial kept none."""
        import torch

        if not self.has_final_weights():
            return None
        data = self.loc.read_bytes(FINAL_WEIGHTS_FILE)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    # -- temporaries ------------------------------------------------------------
    def remove_stale_temporaries(self, min_age_s: float = STALE_TMP_S) -> list[str]:
        """Delete the temporaries of atomic writes that a killed writer left behind.

        Only names of the ``Location.write_bytes`` form (``.<name>.<8 hex>.tmp``) in the trial
        folder and its ``checkpoints/`` are touched, and only when older than ``min_age_s``: a
        live writer renames its temporary within a second or so. Returns the paths removed."""
        removed = []
        now = time.time()
        for loc in (self.loc, self.checkpoints):
            if not loc.exists():
                continue
            selector = pafs.FileSelector(loc.path, recursive=False)
            for info in loc.fs.get_file_info(selector):
                if info.type != pafs.FileType.File or not _TMP_RE.match(info.base_name):
                    continue
                mtime = info.mtime.timestamp() if info.mtime is not None else None
                if mtime is not None and now - mtime < min_age_s:
                    continue
                try:
                    loc.fs.delete_file(info.path)
                except OSError:  # removed meanwhile, or not ours to remove: leave it
                    continue
                removed.append(info.path)
        return removed


def summary_epochs(summary: Mapping[str, Any]) -> int | None:
    """The number of epochs a summary counts (``epochs``, else its final row's epoch)."""
    final = summary.get("final")
    for value in (summary.get("epochs"), final.get(EPOCH) if isinstance(final, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


@dataclass(frozen=True)
class ResultsCheck:
    """What :meth:`TrialStore.check_results` found: ``problem`` (None: intact, else one line
    naming the file), the summary when it reads as a JSON object, and the rows when asked
    for and intact."""

    problem: str | None = None
    summary: dict[str, Any] | None = None
    rows: list[dict[str, Any]] | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


class MetricsFileError(ValueError):
    """``metrics.jsonl`` has a line that is not a JSON row; names the file and the line.

    ``rows`` holds the rows read before that line (a truncated tail keeps its head)."""

    def __init__(self, path: str, line: int, problem: str, rows: list[dict[str, Any]]) -> None:
        super().__init__(f"{path} line {line}: {problem}")
        self.path, self.line, self.rows = path, line, rows


class Ledger(dict):
    """A ledger as :meth:`ExperimentStore.read_ledger` read it: a dict of the ledger's keys that
    also remembers what its files held then (``source``), so that
    :meth:`ExperimentStore.write_ledger` rewrites only the files whose content changed. A plain
    dict given to ``write_ledger`` is a whole ledger instead: every file is written, and the
    ledger files it does not name are removed."""

    __slots__ = ("source",)

    def __init__(self, values: Mapping[str, Any], source: _LedgerSource) -> None:
        super().__init__(values)
        self.source = source


@dataclass
class _LedgerSource:
    """What a ledger's files held when read or last written (relative paths)."""

    parts: frozenset[str]  # the parts read (LEDGER_PARTS); the head is always read
    whole: bool = False  # no split ledger was read (none yet, or one experiment.json): write all
    files: dict[str, bytes] = field(default_factory=dict)  # head, launch files, stop marks
    plan: list[list[tuple[str, Any]]] = field(default_factory=list)  # (hash, config) per file
    layout: dict[str, Any] = field(default_factory=dict)  # the head's "layout"
    launch_keys: dict[str, str] = field(default_factory=dict)  # launch id -> its file key
    stop_keys: dict[str, str] = field(default_factory=dict)  # trial hash -> its file key


def _file_key(name: str) -> str:
    """A launch id or trial hash as a file name: letters, digits, ``-`` and ``_`` kept, every
    other byte of its UTF-8 as ``%XX`` (so no key holds a ``.``, and two names never share one)."""
    return "".join(
        c
        if c.isascii() and (c.isalnum() or c in "-_")
        else "".join(f"%{b:02X}" for b in c.encode())
        for c in name
    )


def _stage(
    rel: str,
    data: bytes,
    old: _LedgerSource,
    new: _LedgerSource,
    writes: list[tuple[str, bytes]],
    whole: bool,
) -> None:
    """Record ``data`` as the ledger file ``rel`` and queue its write when it changed (every
    file on a whole rewrite)."""
    new.files[rel] = data
    if whole or old.files.get(rel) != data:
        writes.append((rel, data))


def _json_bytes(obj: Any, indent: int | None = None) -> bytes:
    """A small ledger file (launch record, stop mark: compact; the head: indented), keys
    sorted, so that the same content is always the same bytes."""
    text = json.dumps(
        json_safe(obj),
        indent=indent,
        sort_keys=True,
        separators=None if indent else (",", ":"),
        allow_nan=False,
    )
    return (text + "\n").encode()


_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _compact(obj: Any) -> str:
    try:
        return _COMPACT.encode(obj)
    except ValueError:  # NaN or inf: null, as every file of the format writes them
        return _COMPACT.encode(json_safe(obj))


def _plan_bytes(entries: list[tuple[str, Any]]) -> bytes:
    """A plan file: ``{"trials": [[hash, config], ...]}``, one trial per line, compact JSON."""
    lines = ",\n".join(f"[{_compact(h)},{_compact(config)}]" for h, config in entries)
    return ('{"trials":[\n' + lines + "\n]}\n").encode()


def _same_entries(new: list[tuple[str, Any]], old: list[tuple[str, Any]]) -> bool:
    return len(new) == len(old) and all(
        a[0] == b[0] and (a[1] is b[1] or a[1] == b[1]) for a, b in zip(new, old, strict=True)
    )


def _plan_order(ledger: Mapping[str, Any]) -> list[str]:
    """Planned trials in plan order: ``order``, then any other planned trial by hash (the rule
    of ``rest_sweep.ledger.planned_hashes``)."""
    trials = ledger.get("trials") or {}
    order = [h for h in dict.fromkeys(ledger.get("order") or []) if h in trials]
    listed = set(order)
    return order + sorted(h for h in trials if h not in listed)


def _launch_number(record: Mapping[str, Any]) -> tuple[int, float, str]:
    """Launch records in the order they were started: ``L<number>-...`` ids, then start time."""
    launch_id = str(record.get("id", ""))
    match = re.match(r"L(\d+)", launch_id)
    started = record.get("started")
    return (
        int(match.group(1)) if match else 0,
        float(started) if isinstance(started, int | float) else 0.0,
        launch_id,
    )


class ExperimentStore:
    """The experiment folder and its ledger.

    The ledger is one dict (``rest_sweep/ledger.py`` documents its keys), stored in parts so
    that an update touches only what it changes::

        experiment.json            the head: every key but the parts below ("name", "grids",
                                    "pending_rows", "data_root", ...), "schema": 2 and
                                    "layout": {"plan_files", "planned"}
        plan/NNNNN.json            the planned trials in plan order, PLAN_FILE_TRIALS per file:
                                    {"trials": [[hash, config], ...]}, one trial per line;
                                    written when the plan changes, and only the files that do
        launches/<id>.json         one launch record (without its trial list): a heartbeat, a
                                    launch update or its end rewrites only this file
        launches/<id>.trials.json  the launch's trial hashes, written once, when it starts
        stopped/<hash>.json        {"launch", "epoch"}: a trial a scheduler stopped early

    ``<id>`` and ``<hash>`` are written as :func:`_file_key` spells them. A ledger written
    before the split (schema 1: everything in ``experiment.json``) is read as it is and
    rewritten in this layout by its first update; ``experiment.json`` is written last, so until
    then it is still the whole old ledger. Every file is written atomically; the updates that
    read, change and write (``rest_sweep.ledger``) hold ``experiment.lock``.
    """

    def __init__(self, storage: str, name: str) -> None:
        self.storage = storage
        self.name = name
        self.loc = Location.of(storage).child(name)

    @property
    def uri(self) -> str:
        return join(self.storage.rstrip("/"), self.name)

    def exists(self) -> bool:
        return self.loc.exists(EXPERIMENT_FILE)

    # -- reading ----------------------------------------------------------------
    def _unreadable(self, rel: str, why: str) -> Exception:
        from trainables.errors import UserError

        return UserError(
            f"{join(self.uri, rel)}: unreadable ledger ({why}); restore it from a copy or move "
            "the experiment away"
        )

    def _read_json(self, rel: str) -> tuple[Any, bytes] | None:
        """(parsed, bytes) of a ledger file; None when it does not exist."""
        folder, _, name = rel.rpartition("/")
        loc = self.loc.child(folder) if folder else self.loc
        try:
            data = loc.read_bytes(name)
        except FileNotFoundError:
            return None
        try:
            return json.loads(data), data
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            raise self._unreadable(rel, first_line(error)) from None

    def read_ledger(
        self,
        parts: Iterable[str] | None = None,
        *,
        launch: str | None = None,
        trial: str | None = None,
    ) -> Ledger:
        """The ledger, assembled from its files (layout in the class docstring); a garbled file
        is a one-line ``UserError`` naming it.

        ``parts`` (default: all of :data:`LEDGER_PARTS`) picks what is read besides the head:
        ``trials`` (the plan, with ``order``), ``launches`` (records without their trial lists),
        ``launch_trials`` (records with them), ``stopped``; ``launch`` reads only that launch's
        record, ``trial`` only that trial's stop mark. A ledger of the one-file layout (or none
        yet) is read whole. Writing the result back (:meth:`write_ledger`) writes only what
        changed in the parts read."""
        wanted = LEDGER_PARTS if parts is None else frozenset(parts)
        if LAUNCH_TRIALS in wanted:
            wanted |= {LAUNCHES}
        found = self._read_json(EXPERIMENT_FILE)
        if found is None:
            default = {"name": self.name, "schema": 1, "trials": {}, "launches": []}
            return Ledger(default, _LedgerSource(LEDGER_PARTS, whole=True))
        head, data = found
        if not isinstance(head, dict):
            raise self._unreadable(EXPERIMENT_FILE, "not a JSON object")
        schema = head.get("schema")
        if not (isinstance(schema, int) and schema >= LEDGER_SCHEMA):  # the one-file layout
            self._check_shape(head)
            return Ledger(head, _LedgerSource(LEDGER_PARTS, whole=True))
        layout = head.pop("layout", None)
        if not isinstance(layout, dict):
            raise self._unreadable(EXPERIMENT_FILE, "'layout' must be an object")
        source = _LedgerSource(wanted, files={EXPERIMENT_FILE: data}, layout=layout)
        ledger = {k: v for k, v in head.items() if k not in _PART_KEYS}
        if PLAN in wanted:
            ledger["trials"] = self._read_plan(int(layout.get("plan_files") or 0), source)
            ledger["order"] = list(ledger["trials"])
        if LAUNCHES in wanted:
            ledger["launches"] = self._read_launches(launch, LAUNCH_TRIALS in wanted, source)
        if STOPS in wanted:
            ledger["stopped"] = self._read_stops(trial, source)
        self._check_shape(ledger)
        return Ledger(ledger, source)

    def _check_shape(self, ledger: dict[str, Any]) -> None:
        if (problem := ledger_problem(ledger)) is not None:
            raise self._unreadable(EXPERIMENT_FILE, f"wrong shape: {problem}")

    def _read_plan(self, files: int, source: _LedgerSource) -> dict[str, Any]:
        trials: dict[str, Any] = {}
        for number in range(files):
            rel = f"{PLAN_DIR}/{number:05d}.json"
            found = self._read_json(rel)
            if found is None:
                raise self._unreadable(rel, "missing: experiment.json lists it")
            pairs = found[0].get("trials") if isinstance(found[0], dict) else None
            if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[1], dict) for p in pairs
            ):
                raise self._unreadable(rel, "'trials' must be a list of [hash, config] pairs")
            entries = [(str(h), config) for h, config in pairs]
            trials.update(entries)
            source.plan.append(entries)
        return trials

    def _read_launches(
        self, launch: str | None, with_trials: bool, source: _LedgerSource
    ) -> list[dict[str, Any]]:
        folder = self.loc.child(LAUNCHES_DIR)
        if launch is not None:
            keys = [_file_key(launch)]
        else:
            names = folder.list_names()
            keys = [n[: -len(".json")] for n in names if n.endswith(".json") and "." not in n[:-5]]
        records = []
        for key in keys:
            rel = f"{LAUNCHES_DIR}/{key}.json"
            found = self._read_json(rel)
            if found is None:  # dropped meanwhile, or no such launch
                continue
            record, data = found
            if not isinstance(record, dict):
                raise self._unreadable(rel, "a launch record must be a JSON object")
            source.files[rel] = data
            source.launch_keys[str(record.get("id"))] = key
            if with_trials:
                trials_rel = f"{LAUNCHES_DIR}/{key}.trials.json"
                listed = self._read_json(trials_rel)
                if listed is not None:
                    source.files[trials_rel] = listed[1]
                record["trials"] = listed[0] if listed is not None else []
            records.append(record)
        return sorted(records, key=_launch_number)

    def _read_stops(self, trial: str | None, source: _LedgerSource) -> dict[str, Any]:
        from urllib.parse import unquote

        folder = self.loc.child(STOPPED_DIR)
        if trial is not None:
            keys = [_file_key(trial)]
        else:
            keys = [n[: -len(".json")] for n in folder.list_names() if n.endswith(".json")]
        stopped = {}
        for key in keys:
            rel = f"{STOPPED_DIR}/{key}.json"
            found = self._read_json(rel)
            if found is None:
                continue
            source.files[rel] = found[1]
            source.stop_keys[unquote(key)] = key
            stopped[unquote(key)] = found[0]
        return stopped

    # -- writing ----------------------------------------------------------------
    def write_ledger(self, ledger: Mapping[str, Any]) -> None:
        """Write ``ledger`` in the layout of the class docstring.

        A :class:`Ledger` read by :meth:`read_ledger` writes only the files of the parts it read
        whose content changed (a heartbeat: one launch record), and removes those of launches
        and stop marks it no longer holds; any other mapping is the whole ledger (every file
        written, the ledger files it does not name removed). ``experiment.json`` is written
        last, and plan files it no longer lists are removed after it."""
        source = getattr(ledger, "source", None)
        whole = source is None or source.whole
        old = _LedgerSource(LEDGER_PARTS) if whole else source
        new = _LedgerSource(old.parts, layout=dict(old.layout))
        writes: list[tuple[str, bytes]] = []
        removals: list[str] = []
        if PLAN in new.parts:
            self._plan_changes(ledger, old, new, writes, whole)
        if LAUNCHES in new.parts:
            self._launch_changes(ledger, old, new, writes, removals, whole)
        if STOPS in new.parts:
            self._stop_changes(ledger, old, new, writes, removals, whole)
        head = {k: v for k, v in ledger.items() if k not in _PART_KEYS}
        head.update(schema=LEDGER_SCHEMA, layout=new.layout)
        head_bytes = _json_bytes(head, indent=1)
        new.files[EXPERIMENT_FILE] = head_bytes
        for rel, data in writes:
            self._put(rel, data)
        for rel in removals:
            self._remove(rel)
        if whole or old.files.get(EXPERIMENT_FILE) != head_bytes:
            self._put(EXPERIMENT_FILE, head_bytes)
        stale = range(len(new.plan), len(old.plan)) if not whole else ()
        for number in stale:
            self._remove(f"{PLAN_DIR}/{number:05d}.json")
        if whole:  # plan files beyond the new plan (a whole ledger replaced a longer one)
            keep = {f"{number:05d}.json" for number in range(len(new.plan))}
            for name in self.loc.child(PLAN_DIR).list_names():
                if name.endswith(".json") and name not in keep:
                    self._remove(f"{PLAN_DIR}/{name}")
        if isinstance(ledger, Ledger):
            ledger.source = new

    def _plan_changes(
        self,
        ledger: Mapping[str, Any],
        old: _LedgerSource,
        new: _LedgerSource,
        writes: list[tuple[str, bytes]],
        whole: bool,
    ) -> None:
        trials = ledger.get("trials") or {}
        order = _plan_order(ledger)
        for start in range(0, len(order), PLAN_FILE_TRIALS):
            entries = [(h, trials[h]) for h in order[start : start + PLAN_FILE_TRIALS]]
            number = len(new.plan)
            before = old.plan[number] if number < len(old.plan) else None
            if whole or before is None or not _same_entries(entries, before):
                writes.append((f"{PLAN_DIR}/{number:05d}.json", _plan_bytes(entries)))
            new.plan.append(entries)
        new.layout = {"plan_files": len(new.plan), "planned": len(order)}

    def _launch_changes(
        self,
        ledger: Mapping[str, Any],
        old: _LedgerSource,
        new: _LedgerSource,
        writes: list[tuple[str, bytes]],
        removals: list[str],
        whole: bool,
    ) -> None:
        used: set[str] = set()
        for record in ledger.get("launches") or []:
            launch_id = str(record.get("id"))
            key = old.launch_keys.get(launch_id) or _file_key(launch_id)
            while key in used:  # the same id twice (an old ledger): keep both records
                key += "~"
            used.add(key)
            new.launch_keys[launch_id] = key
            rel, trials_rel = f"{LAUNCHES_DIR}/{key}.json", f"{LAUNCHES_DIR}/{key}.trials.json"
            if "trials" in record:  # written once; a record read without its list keeps it
                data = _compact(list(record["trials"])).encode()
                _stage(trials_rel, data, old, new, writes, whole)
            elif whole:
                removals.append(trials_rel)
            data = _json_bytes({k: v for k, v in record.items() if k != "trials"})
            _stage(rel, data, old, new, writes, whole)
        gone = self._keys_on_file(LAUNCHES_DIR, old.launch_keys, whole) - used
        for key in sorted(gone):  # the record first: a list without its record is never read
            removals += [f"{LAUNCHES_DIR}/{key}.json", f"{LAUNCHES_DIR}/{key}.trials.json"]

    def _stop_changes(
        self,
        ledger: Mapping[str, Any],
        old: _LedgerSource,
        new: _LedgerSource,
        writes: list[tuple[str, bytes]],
        removals: list[str],
        whole: bool,
    ) -> None:
        for trial_hash, mark in (ledger.get("stopped") or {}).items():
            key = _file_key(str(trial_hash))
            new.stop_keys[str(trial_hash)] = key
            _stage(f"{STOPPED_DIR}/{key}.json", _json_bytes(mark), old, new, writes, whole)
        gone = self._keys_on_file(STOPPED_DIR, old.stop_keys, whole)
        removals += [
            f"{STOPPED_DIR}/{key}.json" for key in sorted(gone - set(new.stop_keys.values()))
        ]

    def _keys_on_file(self, folder: str, known: Mapping[str, str], whole: bool) -> set[str]:
        """The file keys that ``folder`` holds: listed from storage for a whole rewrite, else
        the ones the ledger was read with (``known``). No key holds a ``.`` (:func:`_file_key`),
        so a file's key is its name up to the first one."""
        if not whole:
            return set(known.values())
        names = self.loc.child(folder).list_names()
        return {n.split(".", 1)[0] for n in names if n.endswith(".json")}

    def _put(self, rel: str, data: bytes) -> None:
        folder, _, name = rel.rpartition("/")
        (self.loc.child(folder) if folder else self.loc).write_bytes(name, data)

    def _remove(self, rel: str) -> None:
        folder, _, name = rel.rpartition("/")
        (self.loc.child(folder) if folder else self.loc).delete(name)

    def delete_ledger(self) -> None:
        """Remove the ledger (``experiment.json`` first, so the experiment is gone at once, then
        its other files); trial folders and ``tune/`` are not touched."""
        self.loc.delete(EXPERIMENT_FILE)
        for folder in (PLAN_DIR, LAUNCHES_DIR, STOPPED_DIR):
            loc = self.loc.child(folder)
            if loc.exists():
                loc.fs.delete_dir(loc.path)

    def trial(self, trial_hash: str, keep_checkpoints: int = 2) -> TrialStore:
        return TrialStore(self.loc.child(TRIALS_DIR, trial_hash), keep_checkpoints)

    def trial_uri(self, trial_hash: str) -> str:
        return join(self.uri, TRIALS_DIR, trial_hash)

    def tune_location(self) -> Location:
        return self.loc.child(TUNE_DIR)


def list_experiments(storage: str) -> list[str]:
    """Names of the experiment folders (those holding an ``experiment.json``) in ``storage``."""
    root = Location.of(storage)
    return [n for n in root.list_names() if root.child(n).exists(EXPERIMENT_FILE)]
