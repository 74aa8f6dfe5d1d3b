"""``run_pack``: train N trials in one process, each resumable and reported as a single trial.

The pack is the unit of scheduling and failure; the trial stays the unit of results. Every
trial folder gets exactly what ``run_trial`` writes (``config.json``, ``metrics.jsonl``,
``checkpoints/epoch_NNNN.pt`` in the single-trial checkpoint format, ``state.json``,
``summary.json``, ``error.txt`` on failure), so analysis, ``status`` and a later ``run_trial`` on
the same folder cannot tell a packed trial from a single one. Rows carry one extra key,
``pack_size``, because ``epoch_time_s`` is then the whole pack's epoch wall time.
"""

from __future__ import annotations

import io
import os
import socket
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from trainables.config import TrialConfig
from trainables.pack.plan import PackSizeError, can_pack
from trainables.results import TrialStore

PackReport = Callable[[int, dict[str, Any]], None]


def run_pack(
    configs: Sequence[TrialConfig],
    trial_dirs: Sequence[str],
    report: PackReport | None = None,
    *,
    keep_checkpoints: int = 2,
) -> list[dict[str, Any]]:
    """Train ``configs`` (one folder each in ``trial_dirs``) and return their summaries.

    ``report(i, row)`` is called after each epoch for trial ``i``. Finished trials return their
    summary and are not retrained. Configs that cannot share a pack run one after another with
    ``run_trial``. Trials resume from their newest checkpoints; trials whose checkpoints are at
    different epochs are packed by epoch, so each group starts from checkpoints it really has.
    """
    if len(configs) != len(trial_dirs):
        raise ValueError(f"{len(configs)} configs but {len(trial_dirs)} trial folders")
    stores = [TrialStore(d, keep_checkpoints=keep_checkpoints) for d in trial_dirs]
    summaries: list[dict[str, Any] | None] = [s.read_summary() for s in stores]
    todo = [i for i, s in enumerate(summaries) if s is None]
    if len(todo) == 1 or (todo and not can_pack([configs[i] for i in todo])):
        _run_singles(configs, trial_dirs, todo, summaries, report, keep_checkpoints)
        return [s for s in summaries if s is not None]
    while todo:
        group, start = _resumable_group([stores[i] for i in todo])
        members = [todo[j] for j in group]
        try:
            results = _run_group([configs[i] for i in members], [stores[i] for i in members],
                                 start, report, members)  # fmt: skip
        except PackSizeError:  # ratios whose training sets differ in size: one by one
            _run_singles(configs, trial_dirs, members, summaries, report, keep_checkpoints)
        else:
            for i, summary in zip(members, results, strict=True):
                summaries[i] = summary
        todo = [i for i in todo if i not in members]
    return [s for s in summaries if s is not None]


def _run_singles(
    configs: Sequence[TrialConfig],
    trial_dirs: Sequence[str],
    indices: Sequence[int],
    summaries: list[dict[str, Any] | None],
    report: PackReport | None,
    keep_checkpoints: int,
) -> None:
    from trainables.train import run_trial

    for i in indices:
        single = None if report is None else _bind_report(report, i)
        summaries[i] = run_trial(
            configs[i], single, trial_dirs[i], keep_checkpoints=keep_checkpoints
        )


def _bind_report(report: PackReport, index: int) -> Callable[[dict[str, Any]], None]:
    return lambda row: report(index, row)


def _resumable_group(stores: Sequence[TrialStore]) -> tuple[list[int], int]:
    """The trials that can start together from the lowest newest-checkpoint epoch (0 = fresh)."""
    available = [s.checkpoint_epochs() for s in stores]
    latest = [epochs[-1] if epochs else 0 for epochs in available]
    start = min(latest)
    if start == 0:
        return [i for i, epoch in enumerate(latest) if epoch == 0], 0
    return [i for i, epochs in enumerate(available) if start in epochs], start


def _load_checkpoint(store: TrialStore, epoch: int) -> dict[str, Any]:
    import torch

    data = store.checkpoints.read_bytes(f"epoch_{epoch:04d}.pt")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def _run_group(
    configs: list[TrialConfig],
    stores: list[TrialStore],
    start_epoch: int,
    report: PackReport | None,
    indices: list[int],
) -> list[dict[str, Any]]:
    attempts = [int((s.read_state() or {}).get("attempt", 0)) + 1 for s in stores]
    for cfg, store in zip(configs, stores, strict=True):
        store.write_config(cfg.to_dict())
    try:
        return _train_group(configs, stores, start_epoch, report, indices, attempts)
    except PackSizeError:
        raise  # nothing trained yet: the caller runs these trials one by one
    except (KeyboardInterrupt, SystemExit):
        for store, attempt in zip(stores, attempts, strict=True):
            store.write_state("interrupted", attempt=attempt)
        raise
    except BaseException as error:
        text = traceback.format_exc()
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        for store, attempt in zip(stores, attempts, strict=True):
            store.write_error(text)
            store.write_state(
                "errored", attempt=attempt, error=f"{type(error).__name__}: {first_line}"
            )
        raise


def _train_group(
    configs: list[TrialConfig],
    stores: list[TrialStore],
    start_epoch: int,
    report: PackReport | None,
    indices: list[int],
    attempts: list[int],
) -> list[dict[str, Any]]:
    from trainables.pack.trainer import PackTrainer  # torch import deferred until a pack runs

    trainer = PackTrainer(configs)
    histories = []
    for i, store in enumerate(stores):
        if start_epoch > 0:
            trainer.load_state_dict(i, _load_checkpoint(store, start_epoch))
        rows = [r for r in store.read_metrics() if int(r["epoch"]) <= start_epoch]
        store.write_metrics(rows)  # drop rows whose checkpoint did not survive
        histories.append(rows)
        store.write_state(
            "running", attempt=attempts[i], resumed_from_epoch=start_epoch, epoch=start_epoch,
            host=socket.gethostname(), pid=os.getpid(), epochs=configs[i].epochs,
            pack_size=len(configs),
        )  # fmt: skip
    for epoch in range(start_epoch + 1, configs[0].epochs + 1):
        rows = trainer.run_epoch(epoch)
        for i, (store, row) in enumerate(zip(stores, rows, strict=True)):
            row["attempt"] = attempts[i]
            row["pack_size"] = len(configs)
            store.save_checkpoint(epoch, trainer.state_dict(i, epoch))
        for i, (store, row) in enumerate(zip(stores, rows, strict=True)):
            store.append_metrics(row)
            histories[i].append(row)
            store.write_state("running", epoch=epoch)
        if report is not None:  # after every trial's row is on storage: a raising report
            for i, row in enumerate(rows):  # must not leave a checkpoint without its row
                report(indices[i], row)
    summaries = []
    for i, store in enumerate(stores):
        member = trainer.members[i]
        summary = member.summary(histories[i], attempts[i], trainer.train.size, trainer.input_size)
        summary["pack_size"] = len(configs)
        store.write_summary(summary)
        store.write_state("finished", epoch=configs[i].epochs)
        summaries.append(summary)
    return summaries
