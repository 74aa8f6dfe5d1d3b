"""``run_trial``: train one trial to completion, resumably, without Ray.

The trial folder (a ``TrialStore``) is the single source of truth: it is where the trial
resumes from, whoever restarts it (a user re-running ``rest-sweep train``, Ray retrying a failed
trial, or a resumed sweep). Re-running a finished trial returns its summary and trains nothing.
"""

from __future__ import annotations

import os
import socket
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

from trainables.config import TrialConfig
from trainables.results import TrialStore

Report = Callable[[dict[str, Any]], None]


def run_trial(
    config: TrialConfig,
    report: Report | None = None,
    checkpoint_dir: str | None = None,
    *,
    progress: bool = False,
    keep_checkpoints: int = 2,
) -> dict[str, Any]:
    """Train ``config`` and return its summary (see docs/architecture.md for the keys).

    ``checkpoint_dir`` is the trial folder (local path or pyarrow URI). Each epoch ends with an
    atomic checkpoint, a metrics row and a call to ``report(row)``. A crash leaves the folder
    resumable: the next call continues from the newest checkpoint and never duplicates a row.
    """
    if checkpoint_dir is None:
        checkpoint_dir = tempfile.mkdtemp(prefix=f"trial-{config.trial_hash}-")
    store = TrialStore(checkpoint_dir, keep_checkpoints=keep_checkpoints)
    summary = store.read_summary()
    if summary is not None:
        return summary
    attempt = int((store.read_state() or {}).get("attempt", 0)) + 1
    store.write_config(config.to_dict())
    try:
        return _train(config, store, report, progress, attempt)
    except (KeyboardInterrupt, SystemExit):
        store.write_state("interrupted", attempt=attempt)
        raise
    except BaseException as error:
        store.write_error(traceback.format_exc())
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        store.write_state("errored", attempt=attempt, error=f"{type(error).__name__}: {first_line}")
        raise


def _train(
    config: TrialConfig, store: TrialStore, report: Report | None, progress: bool, attempt: int
) -> dict[str, Any]:
    from trainables.train.trial import Trial  # torch import deferred until a trial really runs

    trial = Trial(config)
    start_epoch = 0
    latest = store.load_latest_checkpoint()
    if latest is not None:
        start_epoch, state = latest
        trial.load_state_dict(state)
    rows = [r for r in store.read_metrics() if int(r["epoch"]) <= start_epoch]
    if len(rows) != start_epoch:
        raise RuntimeError(
            f"metrics of epochs 1..{start_epoch} are missing next to their checkpoint"
        )
    store.write_metrics(rows)  # drop rows of epochs whose checkpoint did not survive
    store.write_state(
        "running",
        attempt=attempt,
        resumed_from_epoch=start_epoch,
        epoch=start_epoch,
        host=socket.gethostname(),
        pid=os.getpid(),
        epochs=config.epochs,
    )
    bar = _progress_bar(config, trial.steps_per_epoch, start_epoch) if progress else None
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            row = trial.run_epoch(epoch, bar, attempt=attempt)
            # Row first, checkpoint second: a crash in between leaves a row without its
            # checkpoint, which the next attempt truncates and recomputes (never a gap).
            store.append_metrics(row)
            store.save_checkpoint(epoch, trial.state_dict(epoch))
            rows.append(row)
            store.write_state("running", epoch=epoch)
            if bar is not None:
                bar.set_postfix_str(_postfix(row))
            if report is not None:
                report(row)
    finally:
        if bar is not None:
            bar.close()
    store.write_summary(trial.summary(rows, attempts=attempt))
    store.write_state("finished", epoch=config.epochs)
    return store.read_summary()  # as stored (NaN -> null), the same on every later call


def _progress_bar(config: TrialConfig, steps_per_epoch: int, start_epoch: int):
    from tqdm.auto import tqdm

    total = steps_per_epoch * config.epochs
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
