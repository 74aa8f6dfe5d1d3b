"""The on-disk result format: the one module that knows every file name.

An *experiment* lives at ``<storage>/<name>/`` (a local path or any pyarrow filesystem URI)::

    experiment.json            the ledger: planned trials (hash -> config), launches, grid names
    trials/<hash>/             one folder per trial, owned by that trial only
        config.json            TrialConfig.to_dict()
        metrics.jsonl          one JSON object per finished epoch, de-duplicated by "epoch"
        summary.json           written once, when the trial finished (its presence = finished)
        state.json             {"state": running|interrupted|finished|errored, "updated",
                                "attempt", "epoch" (the last row), "checkpoint_epoch" (where
                                a restart resumes; null once only final weights are kept),
                                "error"}
        error.txt              the traceback of the last failed attempt (kept for the record)
        checkpoints/epoch_NNNN.pt   the newest ``keep_checkpoints`` checkpoints, written every
                                ``checkpoint_every`` epochs and at the last one, atomically
        final_weights.pt       ``final_checkpoint=weights`` only: replaces ``checkpoints/`` when
                                the trial finishes; {"epoch", "trial_hash", "model" (state_dict
                                of the evaluated network: weights and buffers), "masks" (layer
                                -> bool tensor; empty when dense), "other_networks" (state_dicts
                                of the method's other networks, ``Method.modules()`` order:
                                LfF's biased network, DisEnt's bias encoder and head, which its
                                prediction reads)}; no optimizer or method training state
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

``rest-sweep train --out DIR`` writes the same trial folder layout at ``DIR``. Analysis and
status read only these files, with no Ray running. Every write is atomic: write a temporary
name, then move it over the final one, so a crash never leaves a half-written file that a
reader would trust.

This module also names the per-epoch metrics (the keys of a ``metrics.jsonl`` row) and holds
the one rule that turns a trial folder into a state (:func:`trial_state`), which ``status``
and ``analysis`` both use.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

EXPERIMENT_FILE = "experiment.json"
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
FINISHED, RUNNING, ERRORED, STOPPED, PENDING = (
    "finished",
    "running",
    "errored",
    "stopped",
    "pending",
)
TRIAL_STATES: tuple[str, ...] = (FINISHED, RUNNING, ERRORED, STOPPED, PENDING)


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
) -> TrialState:
    """The one rule deciding a trial's state from its folder (status and analysis use it).

    ``files`` are the names in the trial folder, ``state`` its ``state.json`` (None if absent),
    ``launch_alive`` whether the launch that owns the trial still runs (None when unknown) and
    ``ledger_stopped`` whether the ledger marks it stopped by a scheduler. In this order:

    * *finished*: ``summary.json`` exists;
    * *stopped*: a scheduler (ASHA) ended it early (terminal, not an error);
    * *errored*: ``state.json`` says so (or there is no state but an ``error.txt``);
    * *running*: ``state.json`` says running and its launch is alive or not known to be dead;
    * else *pending*: never started, or ``interrupted`` (it left files: a dead launch's
      "running", "interrupted", "finished" without a summary, metrics without a state) and
      waits for ``rest-sweep resume``.
    """
    names = set(files)
    if SUMMARY_FILE in names:
        return TrialState(FINISHED)
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
        """Atomic write: temporary sibling, then move over the final name."""
        self.makedirs()
        final = self.file(name)
        tmp = self.file(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        if isinstance(self.fs, pafs.LocalFileSystem):
            os.replace(tmp, final)  # atomic on POSIX, also over an existing file
        else:
            self.fs.move(tmp, final)

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

    def write_state(self, state: str, **extra: Any) -> None:
        current = self.read_state() or {}
        current.update(extra)
        current.update(state=state, updated=time.time())
        self.loc.write_json(STATE_FILE, current)

    def read_state(self) -> dict[str, Any] | None:
        return self.loc.read_json(STATE_FILE)

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
        rows: dict[int, dict[str, Any]] = {}
        text = self.loc.read_bytes(METRICS_FILE).decode(errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                epoch = int(row["epoch"])
            except (ValueError, KeyError, TypeError) as error:
                problem = f"not a metrics row ({type(error).__name__}: {error})"
                done = [rows[k] for k in sorted(rows)]
                raise MetricsFileError(self.loc.file(METRICS_FILE), number, problem, done) from None
            rows[epoch] = row
        return [rows[k] for k in sorted(rows)]

    def write_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rewrite the whole metrics file atomically (one row per epoch)."""
        by_epoch = {int(r["epoch"]): r for r in rows}
        text = "".join(
            json.dumps(json_safe(by_epoch[k]), sort_keys=True, allow_nan=False) + "\n"
            for k in sorted(by_epoch)
        )
        self.loc.write_bytes(METRICS_FILE, text.encode())

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


class MetricsFileError(ValueError):
    """``metrics.jsonl`` has a line that is not a JSON row; names the file and the line.

    ``rows`` holds the rows read before that line (a truncated tail keeps its head)."""

    def __init__(self, path: str, line: int, problem: str, rows: list[dict[str, Any]]) -> None:
        super().__init__(f"{path} line {line}: {problem}")
        self.path, self.line, self.rows = path, line, rows


class ExperimentStore:
    """The experiment folder and its ledger (``experiment.json``)."""

    def __init__(self, storage: str, name: str) -> None:
        self.storage = storage
        self.name = name
        self.loc = Location.of(storage).child(name)

    @property
    def uri(self) -> str:
        return join(self.storage.rstrip("/"), self.name)

    def exists(self) -> bool:
        return self.loc.exists(EXPERIMENT_FILE)

    def read_ledger(self) -> dict[str, Any]:
        """The ledger; a garbled file is a one-line ``UserError`` naming it."""
        from trainables.errors import UserError

        default = {"name": self.name, "schema": 1, "trials": {}, "launches": []}
        try:
            ledger = self.loc.read_json(EXPERIMENT_FILE, default=default)
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            first = (str(error).splitlines() or [type(error).__name__])[0]
            raise UserError(
                f"{join(self.uri, EXPERIMENT_FILE)}: unreadable ledger ({first}); restore it "
                "from a copy or move the experiment away"
            ) from None
        if not isinstance(ledger, dict):
            raise UserError(
                f"{join(self.uri, EXPERIMENT_FILE)}: unreadable ledger (not a JSON object); "
                "restore it from a copy or move the experiment away"
            )
        return ledger

    def write_ledger(self, ledger: dict[str, Any]) -> None:
        self.loc.write_json(EXPERIMENT_FILE, ledger)

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
