"""``run_trial``: train one trial to completion, resumably, without Ray.

The trial folder (a ``TrialStore``) is the single source of truth: it is where the trial
resumes from, whoever restarts it (a user re-running ``rest-sweep train``, Ray retrying a failed
trial, or a resumed sweep). Re-running a finished trial returns its summary and trains nothing.

Rows are written every epoch, checkpoints every ``checkpoint_every`` epochs and at the last one
(a full checkpoint of ResNet-18 with Adam is about 134 MB: writing one per epoch from many
trials saturates shared storage). A restart resumes from the newest checkpoint, drops the rows
of later epochs and recomputes them: data order and augmentation are drawn from (seed, epoch),
so the replay is bit-identical on the CPU. With ``final_checkpoint=weights`` a finished trial
keeps one ``final_weights.pt`` instead of its checkpoints.

The rows are checked, not trusted: before each row is appended and before ``summary.json`` is
written, ``metrics.jsonl`` must hold exactly the rows this attempt holds (the checkpoint's rows
and those trained since); a row lost at a line boundary or a torn line is rewritten from them
with a warning. The summary keeps the file's checksum (``metrics_sha256``), and a finished trial
whose results fail :meth:`~trainables.results.TrialStore.check_results` is *damaged*: its rows
are rebuilt from the checkpoint (or ``final_weights.pt``) that holds them, else its summary is set
aside and the trial continues from its newest checkpoint (:func:`plan_repair`).
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainables.config import TrialConfig
from trainables.errors import DivergenceError, error_line, first_line
from trainables.results import (
    CHECKPOINT_ROWS,
    FINAL_WEIGHTS_FILE,
    METRICS_DAMAGED_FILE,
    METRICS_FILE,
    METRICS_SHA256,
    SUMMARY_DAMAGED_FILE,
    Location,
    MetricsFileError,
    ResultsCheck,
    TrialStore,
    epochs_text,
    json_safe,
    metrics_digest,
    metrics_text,
    parse_metrics,
    summary_epochs,
)

if TYPE_CHECKING:
    from trainables.stages import StageStart
    from trainables.train.fused import FusedGroup
    from trainables.train.trial import Trial

Report = Callable[[dict[str, Any]], None]


def run_lifecycle(
    config: TrialConfig,
    report: Report | None,
    checkpoint_dir: str | Location,
    *,
    progress: bool = False,
    stage: StageStart | None = None,
    group: FusedGroup | None = None,
) -> dict[str, Any]:
    """Train ``config`` in ``checkpoint_dir`` (a local path, pyarrow URI or Location) and return
    its summary (see docs/architecture.md for the keys): an ordinary trial, or one stage of a
    staged one (``stage``: its span and start; :mod:`trainables.train.staged`).

    Each epoch ends with a metrics row, an atomic checkpoint on the epochs of
    ``config.checkpoint_every`` and the last one (the newest ``config.keep_checkpoints`` are
    kept), and a call to ``report(row)``. A crash leaves the folder resumable: the next call
    continues from the newest checkpoint, recomputes the epochs after it and never duplicates
    a row. A non-finite training loss raises :class:`DivergenceError` (the trial is marked
    errored). With a ``summary.json`` already there it returns it and trains nothing, once its
    results pass their check; a damaged trial is repaired first (:func:`plan_repair`, with a
    warning): rebuilt from its checkpoint's rows, else trained on from its newest checkpoint.

    ``group``: a fused group this lifecycle trains in (:mod:`trainables.train.fused`; called
    from the group's own thread per trial); everything else is as for a trial alone."""
    store = TrialStore(checkpoint_dir, keep_checkpoints=config.keep_checkpoints)
    if store.is_finished():
        check = store.check_results()
        if check.intact:
            _drop_checkpoints_kept_by_a_crash(config, store)
            return check.summary
        repair = plan_repair(store, check)
        warnings.warn(apply_repair(store, repair), RuntimeWarning, stacklevel=2)
        if repair.rows is not None:
            _drop_checkpoints_kept_by_a_crash(config, store)
            return store.read_summary()
    store.remove_stale_temporaries()  # left by a writer killed between write and rename
    attempt = int((store.read_state() or {}).get("attempt", 0)) + 1
    store.write_config(config.to_dict())
    try:
        return _train(config, store, report, progress, attempt, checkpoint_dir, stage, group)
    except (KeyboardInterrupt, SystemExit):
        _record(store.write_state, "interrupted", attempt=attempt)
        raise
    except BaseException as error:
        # Recorded when the storage allows (a full disk may not): the original error is raised
        # either way, never a second one from the recording.
        _record(store.write_error, traceback.format_exc())
        diverged = isinstance(error, DivergenceError)
        _record(
            store.write_state,
            "errored",
            attempt=attempt,
            # A divergence's reason is the message itself: "non-finite loss at epoch E step S".
            error=first_line(error) if diverged else error_line(error),
            diverged=diverged,
        )
        raise


def _drop_checkpoints_kept_by_a_crash(config: TrialConfig, store: TrialStore) -> None:
    """Finish what a crash between ``summary.json`` and the checkpoint removal left undone.

    Only with ``final_weights.pt`` present: a trial that finished under ``full`` and is re-run
    with ``weights`` keeps its checkpoints (no final weights were ever written from them)."""
    if config.final_checkpoint == "weights" and store.has_final_weights():
        store.delete_checkpoints()


def _record(write: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    # The error being handled matters more than its record.
    with contextlib.suppress(Exception):
        write(*args, **kwargs)


def _train(
    config: TrialConfig,
    store: TrialStore,
    report: Report | None,
    progress: bool,
    attempt: int,
    trial_dir: str | Location,
    stage: StageStart | None,
    group: FusedGroup | None = None,
) -> dict[str, Any]:
    from trainables.train.trial import Trial  # torch import deferred until a trial really runs

    # A group's trials are built and loaded one at a time: both set the process's RNG.
    with group.building() if group is not None else contextlib.nullcontext():
        trial = Trial(config, trial_dir=trial_dir, stage=stage)
        start_epoch, state = store.load_latest_checkpoint() or (0, None)
        rows, warning = _recover_rows(store, start_epoch, state)
        if rows is None:  # the rows of the checkpointed epochs are lost: start over, once
            store.delete_checkpoints()
            start_epoch, state, rows = 0, None, []
        if warning:
            warnings.warn(warning, RuntimeWarning, stacklevel=2)
        if state is not None:
            trial.load_state_dict(state)
    if group is not None:
        group.join(trial)
    # Drop the rows after the checkpoint (a sparser cadence leaves some, as does a crash
    # between a row and its checkpoint): they are recomputed, bit-identically.
    store.write_metrics(rows)
    total = trial.total_epochs
    every = config.checkpoint_every
    weights_only = config.final_checkpoint == "weights"
    # A failed attempt's error is history now: kept as last_error, never shown as current.
    earlier = (store.read_state() or {}).get("error")
    store.write_state(
        "running",
        attempt=attempt,
        resumed_from_epoch=start_epoch,
        epoch=start_epoch,
        checkpoint_epoch=start_epoch,
        host=socket.gethostname(),
        pid=os.getpid(),
        epochs=total,
        steps_per_epoch=trial.steps_per_epoch,
        diverged=False,
        error=None,
        warning=warning,
        **({"last_error": earlier} if earlier else {}),
    )
    bar = _progress_bar(config, trial.steps_per_epoch, start_epoch, total) if progress else None
    try:
        for epoch in range(start_epoch + 1, total + 1):
            row = trial.run_epoch(epoch, bar, attempt=attempt)
            # Row first, checkpoint second: a crash in between leaves a row without its
            # checkpoint, which the next attempt truncates and recomputes (never a gap). The
            # file must still hold the rows so far (a row lost at a line boundary is not
            # skipped: the whole file is rewritten from ``rows``).
            note = _rows_kept(store, rows)
            rows.append(row)
            store.write_metrics(rows)
            last = epoch == total
            saved: dict[str, int] = {}
            # The last epoch of a weights-only trial writes final_weights.pt below instead.
            if (last and not weights_only) or (not last and epoch % every == 0):
                # The checkpoint also keeps the rows so far (small), so a lost or corrupt
                # metrics.jsonl is rebuilt from it.
                state = trial.state_dict(epoch)
                state[CHECKPOINT_ROWS] = json_safe(rows)
                store.save_checkpoint(epoch, state)
                saved["checkpoint_epoch"] = epoch
            if note:
                saved["warning"] = note
                warnings.warn(note, RuntimeWarning, stacklevel=2)
            store.write_state("running", epoch=epoch, **saved)
            if bar is not None:
                bar.set_postfix_str(_postfix(row))
            if report is not None:
                report(row)
    finally:
        if bar is not None:
            bar.close()
    if weights_only:  # before the summary: a finished trial always has its weights
        store.save_final_weights(_final_weights(trial, total, rows))
    # The rows the summary is written over are those on storage, checked once more here.
    note = _rows_kept(store, rows)
    if note:
        store.write_metrics(rows)
        store.write_state("running", warning=note)
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    summary = trial.summary(rows, attempts=attempt)
    summary[METRICS_SHA256] = metrics_digest(rows)
    store.write_summary(summary)
    kept: dict[str, Any] = {}
    if weights_only:  # a crash before this is finished by the next call (run_trial's start)
        store.delete_checkpoints()
        kept = {"checkpoint_epoch": None}
    store.write_state("finished", epoch=total, **kept)
    return store.read_summary()  # as stored (NaN -> null), the same on every later call


def _final_weights(trial: Trial, epoch: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``final_weights.pt`` (layout in :mod:`trainables.results`): every network the method
    trained, with its buffers and masks, on the CPU; no optimizer or method training state;
    the metrics rows (as a checkpoint keeps them: a damaged metrics.jsonl is rebuilt from it)."""
    method = trial.method

    def cpu(state: dict[str, Any]) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    masks = method.engine.masks() if method.engine is not None else {}
    return {
        "epoch": epoch,
        "trial_hash": trial.cfg.trial_hash,
        "model": cpu(method.model.state_dict()),
        "masks": cpu(masks),
        "other_networks": [cpu(m.state_dict()) for m in method.modules() if m is not method.model],
        CHECKPOINT_ROWS: json_safe(rows),
    }


def _rows_kept(store: TrialStore, rows: list[dict[str, Any]]) -> str | None:
    """None when ``metrics.jsonl`` holds exactly ``rows`` (byte for byte, as written); else a
    warning saying what it holds instead, for the caller that rewrites it from ``rows``: the
    rows this attempt holds, i.e. the checkpoint's rows and the epochs trained since."""
    path = store.loc.file(METRICS_FILE)
    found = store.read_metrics_bytes()
    if found == metrics_text(rows).encode() or (found is None and not rows):
        return None
    want = [int(r["epoch"]) for r in rows]
    if found is None:
        problem = f"{path}: missing"
    else:
        try:
            have = [int(r["epoch"]) for r in parse_metrics(found, path)]
            problem = f"{path}: rows of epochs {epochs_text(want)} expected, found epochs "
            problem += epochs_text(have) if have != want else f"{epochs_text(have)} (edited)"
        except MetricsFileError as error:
            problem = str(error)
    return (
        f"{problem}; rewrote it from the rows of epochs {epochs_text(want)} this attempt holds "
        "(the checkpoint's rows and the epochs trained since), nothing lost"
    )


@dataclass(frozen=True)
class Repair:
    """How a damaged finished trial is repaired (:func:`plan_repair`).

    ``rows``: rows that rebuild ``metrics.jsonl`` in place, read from ``source`` and matching
    the summary (its checksum, else its epoch count and final row); None when nothing holds
    them, or the summary itself is unreadable: then the summary is set aside and the trial
    continues from its newest checkpoint, of epoch ``resume_from`` (0: none, from epoch 1)."""

    problem: str
    rows: list[dict[str, Any]] | None = None
    source: str = ""
    resume_from: int = 0
    epochs: int | None = None

    def describe(self) -> str:
        """What the repair does, in words (``verify``)."""
        if self.rows is not None:
            return (
                f"rebuild metrics.jsonl (epochs 1..{len(self.rows)}) from {self.source}, as "
                "summary.json recorded them"
            )
        return f"set summary.json aside; `rest-sweep resume` continues the trial {self.start()}"

    def start(self) -> str:
        """Where the trial continues once its summary is set aside."""
        if not self.resume_from:
            return "from epoch 1 (no checkpoint holds its state)"
        if self.epochs and self.epochs > self.resume_from:
            left = f"retrains epochs {self.resume_from + 1}..{self.epochs}"
        elif self.epochs == self.resume_from:
            left = "retrains nothing: it rebuilds the summary"
        else:
            left = "retrains the epochs after it"
        return f"from its checkpoint of epoch {self.resume_from} ({left})"


def plan_repair(store: TrialStore, check: ResultsCheck) -> Repair:
    """How to repair a finished trial whose ``check_results`` failed (``check``).

    Its rows come back from the newest checkpoint when that is of the summary's last epoch
    and holds rows matching the summary (its ``metrics_sha256``; a summary from before the
    checksum: epochs 1..E and its final row), or from ``final_weights.pt`` likewise. Otherwise
    (no such rows, or an unreadable summary) the trial has to run on from its newest
    checkpoint. Loads checkpoints (torch); writes nothing."""
    problem = check.problem or "intact"
    summary = check.summary
    checkpoints = store.checkpoint_epochs()
    resume_from = checkpoints[-1] if checkpoints else 0
    epochs = summary_epochs(summary) if summary is not None else None
    if summary is None or not epochs:
        # How long the trial is, for the words only: state.json's count (None if unknown).
        planned = (store.read_state() or {}).get("epochs")
        known = planned if isinstance(planned, int) and not isinstance(planned, bool) else None
        return Repair(problem, resume_from=resume_from, epochs=epochs or known)
    for source, rows in _kept_rows(store, epochs):
        if _rows_match(rows, summary, epochs):
            return Repair(problem, rows=rows, source=source, resume_from=resume_from, epochs=epochs)
    return Repair(problem, resume_from=resume_from, epochs=epochs)


def _kept_rows(store: TrialStore, epochs: int) -> Iterator[tuple[str, Any]]:
    """(where, rows) of the files that may keep the rows of epochs 1..``epochs``: the
    checkpoint of that epoch, then ``final_weights.pt`` (each loaded only when asked for)."""

    def checkpoint() -> Any:
        import torch

        data = store.checkpoints.read_bytes(store.checkpoint_name(epochs))
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        return state.get(CHECKPOINT_ROWS)

    def final_weights() -> Any:
        return (store.load_final_weights() or {}).get(CHECKPOINT_ROWS)

    sources = []
    if epochs in store.checkpoint_epochs():
        sources.append((f"the checkpoint of epoch {epochs}", checkpoint))
    if store.has_final_weights():
        sources.append((FINAL_WEIGHTS_FILE, final_weights))
    for where, load in sources:
        try:
            rows = load()
        except Exception:  # unloadable (truncated, garbled): nothing to rebuild from there
            continue
        yield where, rows


def _rows_match(rows: Any, summary: dict[str, Any], epochs: int) -> bool:
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "epoch" in r for r in rows):
        return False
    if [int(r["epoch"]) for r in rows] != list(range(1, epochs + 1)):
        return False
    digest = summary.get(METRICS_SHA256)
    if digest is not None:
        return metrics_digest(rows) == digest
    return json_safe(rows[-1]) == summary.get("final")  # a summary from before the checksum


def apply_repair(store: TrialStore, repair: Repair) -> str:
    """Carry ``repair`` out; returns the warning that says what was done. The damaged files
    are kept beside (``metrics.damaged.jsonl``, ``summary.damaged.json``)."""
    if repair.rows is not None:
        data = store.read_metrics_bytes()
        if data is not None:
            store.loc.write_bytes(METRICS_DAMAGED_FILE, data)
        store.write_metrics(repair.rows)
        if store.check_results().intact:
            return (
                f"{repair.problem}; rebuilt metrics.jsonl (epochs 1..{len(repair.rows)}) from "
                f"{repair.source}, as summary.json recorded them; nothing lost (the damaged file "
                f"is kept as {METRICS_DAMAGED_FILE})"
            )
        repair = Repair(repair.problem, resume_from=repair.resume_from, epochs=repair.epochs)
    store.set_aside_results()
    note = (
        f"{repair.problem}; summary.json set aside as {SUMMARY_DAMAGED_FILE}: the trial "
        f"continues {repair.start()}"
    )
    store.write_state("interrupted", warning=note)
    return note


def _recover_rows(
    store: TrialStore, start_epoch: int, state: dict[str, Any] | None
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The metrics rows of epochs 1..``start_epoch`` and a warning when they needed repair.

    ``metrics.jsonl`` first; when it is missing, corrupt or short, the rows kept in the
    checkpoint. None when neither has them: the trial restarts from epoch 1 (the warning names
    the file and what was lost), so a broken file never makes a trial fail on every attempt.
    """
    path = store.loc.file(METRICS_FILE)
    try:
        found, problem = store.read_metrics(), None
    except MetricsFileError as error:
        found, problem = error.rows, str(error)
    rows = [r for r in found if int(r["epoch"]) <= start_epoch]
    if len(rows) == start_epoch and problem is None:
        return rows, None
    if start_epoch == 0:
        return [], f"{problem}; no checkpoint: the trial starts from epoch 1"
    if problem is None:
        have = ", ".join(str(r["epoch"]) for r in rows) or "none"
        problem = f"{path}: rows of epochs 1..{start_epoch} expected, found epochs {have}"
    saved = (state or {}).get(CHECKPOINT_ROWS)
    epochs = [int(r["epoch"]) for r in saved or [] if int(r["epoch"]) <= start_epoch]
    if epochs == list(range(1, start_epoch + 1)):
        kept = [r for r in saved if int(r["epoch"]) <= start_epoch]
        return kept, (
            f"{problem}; rebuilt epochs 1..{start_epoch} from the checkpoint of epoch "
            f"{start_epoch}, nothing lost"
        )
    return None, (
        f"{problem}; the checkpoints hold no metrics rows, so the trial restarts from epoch 1 "
        f"(lost: the {start_epoch} trained epoch(s) and their checkpoints)"
    )


def _progress_bar(config: TrialConfig, steps_per_epoch: int, start_epoch: int, epochs: int):
    from tqdm.auto import tqdm

    total = steps_per_epoch * epochs
    return tqdm(
        total=total,
        initial=steps_per_epoch * start_epoch,
        desc=config.short_name(),
        unit="step",
        dynamic_ncols=True,
    )


def _postfix(row: dict[str, Any]) -> str:
    return (
        f"ep {row['epoch']} loss {row['train_loss']:.3f} "
        f"valid wg {row['valid_worst_group_acc']:.3f} "
        f"test conf {row['test_acc_conflicting']:.3f} unb {row['test_unbiased_acc']:.3f}"
    )
