"""Run a grid on one machine without Ray: K worker processes share the device.

The same experiment folder as ``run`` (the ledger, one launch record, ``trials/<hash>/``), so
``status``, ``analyze``, ``report`` and a later ``resume`` (on Ray or here) read it exactly like
one made by ``run``. Each trial goes through ``run_trial`` into its own folder, so running the
same command again trains only the unfinished trials, each from its newest checkpoint. Useful
where Ray is absent (a lent GPU machine) and for reproductions that must fit a time budget:
``deadline_s`` stops handing out new trials, and what was not started stays pending.

``fuse=K`` (off: 1) trains up to K trials of one shape as one fused group in one worker
(:mod:`trainables.train.fused`): each keeps its own folder, so a later run resumes them with any
grouping.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rest_sweep import ledger as ledgers
from rest_sweep.cluster import sigterm_as_sigint
from rest_sweep.launch_settings import LaunchSettings
from rest_sweep.service import (
    Overrides,
    SweepResult,
    absolute_storage,
    placed_config,
    plan,
    trial_counts,
    unfinished,
    validate_data,
)
from rest_sweep.storage import check_name, open_store
from trainables.errors import UserError
from trainables.fusion import fuse_groups
from trainables.results import ExperimentStore


def run_local(
    grids: Sequence[str],
    data_root: str,
    storage: str,
    name: str,
    *,
    overrides: Overrides = None,
    workers: int = 1,
    device: str = "auto",
    deadline_s: float | None = None,
    quiet: bool = False,
    force: bool = False,
    retry_errored: bool = False,
    fuse: int = 1,
) -> SweepResult:
    """Plan every grid of ``grids`` into experiment ``name`` (in order) and train the
    unfinished trials in plan order, ``workers`` at a time, on ``device``.

    ``force`` takes over a launch believed live; diverged trials (non-finite loss) run again
    only with ``retry_errored``. ``fuse``: up to this many same-shape trials of the methods
    that can fuse train as one group in one worker (1: every trial alone)."""
    check_name(name)
    if workers < 1:
        raise UserError(f"--workers: {workers} is not allowed; allowed: an integer >= 1")
    if fuse < 1:
        raise UserError(f"--fuse: {fuse} is not allowed; allowed: an integer >= 1 (1: off)")
    if not grids:
        raise UserError("--grid: at least one grid name or YAML file is needed")
    expansions = [plan(grid, overrides) for grid in grids]
    trials = [cfg for expansion in expansions for cfg in expansion.trials]
    if not trials:
        raise UserError(f"grids {', '.join(grids)}: no runnable trials")
    root = validate_data(data_root, trials)
    store = open_store(absolute_storage(storage), name, write=True)
    ledgers.ensure_no_live_driver(store, force=force, by="local")
    for expansion in expansions:
        ledger = ledgers.record_plan(store, expansion, root)
    trials[0].replace(device=device)  # the one check of the user's --device (one line if bad)
    configs = {  # validated when planned: placed on this root and device without validating again
        h: placed_config(cfg, root, device)
        for expansion in expansions
        for h, cfg in expansion.by_hash().items()
    }
    planned = len(ledger.get("trials", {}))
    todo = unfinished(store, ledger, list(configs), retry_diverged=retry_errored)
    skipped = len(unfinished(store, ledger, list(configs))) - len(todo)
    if skipped and not quiet:
        print(f"{store.name}: {skipped} diverged trial(s) (non-finite loss) not run again")
    if not todo:
        if not quiet:
            print(f"{store.name}: nothing to run; all {len(configs)} trials finished or stopped")
        return SweepResult(
            store.name, store.storage, None, planned, 0, trial_counts(store, configs)
        )
    settings = LaunchSettings(max_concurrent=workers, max_failures=0)
    resources = {"cpu": 0.0, "gpu": 1.0 / workers if device != "cpu" else 0.0}
    launch = ledgers.start_launch(store, "local", " + ".join(grids), todo, settings, resources)
    units = [
        [cfg.trial_hash for cfg in group] for group in fuse_groups([configs[h] for h in todo], fuse)
    ]
    if not quiet:
        grouping = f" in {len(units)} fused group(s) of up to {fuse}" if fuse > 1 else ""
        print(
            f"{store.name}: launch {launch['id']}: {len(todo)} of {len(configs)} trials"
            f"{grouping}, {workers} worker process(es) on {device}"
        )
    outcome = "interrupted"
    started = time.monotonic()
    try:
        with sigterm_as_sigint():
            ran, stop = _run_pool(
                store, launch["id"], units, configs, workers, started, deadline_s, quiet
            )
        left = unfinished(store, store.read_ledger(), todo)
        errored = trial_counts(store, {h: configs[h] for h in left})["errored"]
        if not left:
            outcome = "completed"
        elif errored == len(left):
            outcome = "errors"
        else:  # "deadline": the budget ran out, the rest stays pending (not a failure)
            outcome = stop or "interrupted"
    finally:
        ledgers.end_launch(
            store, launch["id"], outcome, trial_counts(store, {h: configs[h] for h in todo})
        )
    counts = trial_counts(store, configs)
    if not quiet:
        print(
            f"{store.name}: {outcome}; {counts['finished']}/{counts['trials']} finished, "
            f"{counts['errored']} errored, {ran} trained in {time.monotonic() - started:.0f} s"
        )
    return SweepResult(store.name, store.storage, launch["id"], planned, ran, counts, outcome)


def _run_pool(
    store: ExperimentStore,
    launch_id: str,
    units: list[list[str]],
    configs: dict[str, Any],
    workers: int,
    started: float,
    deadline_s: float | None,
    quiet: bool,
) -> tuple[int, str | None]:
    """Keep ``workers`` units (a trial, or a fused group of trials) in flight until ``units``
    is empty or the deadline passes.

    Returns the trials that ran and why it stopped early (``deadline``, ``errors`` when the
    pool broke, e.g. a worker killed by the OOM killer; None when it did not)."""
    queue = list(units)
    ran = 0
    stop: str | None = None
    # spawn: a CUDA context cannot cross fork, and each worker imports torch once.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        running: dict[Future, list[str]] = {}

        def fill() -> None:
            nonlocal stop
            while queue and len(running) < workers:
                if deadline_s is not None and time.monotonic() - started > deadline_s:
                    queue.clear()  # what is not started stays pending for the next run
                    stop = "deadline"
                    return
                unit = queue[0]
                try:
                    future = pool.submit(
                        _train_unit,
                        [configs[h].to_dict() for h in unit],
                        [store.trial_uri(h) for h in unit],
                    )
                except BrokenProcessPool:
                    queue.clear()
                    stop = "errors"
                    return
                queue.pop(0)
                running[future] = unit

        fill()
        beat = time.monotonic()
        while running:
            done, _ = wait(running, timeout=ledgers.HEARTBEAT_S, return_when=FIRST_COMPLETED)
            if time.monotonic() - beat >= ledgers.HEARTBEAT_S:
                ledgers.heartbeat(store, launch_id)
                beat = time.monotonic()
            for future in done:
                unit = running.pop(future)
                ran += len(unit)
                error = future.exception()
                errors = [str(error) if error else None] * len(unit)
                if error is None:
                    errors = future.result()
                if not quiet:
                    for trial_hash, failed in zip(unit, errors, strict=True):
                        state = f"FAILED {failed}" if failed else "finished"
                        print(
                            f"  {trial_hash} {configs[trial_hash].short_name()}: {state} "
                            f"({time.monotonic() - started:.0f} s)",
                            flush=True,
                        )
            fill()
    return ran, stop


def _train_unit(configs: list[dict[str, Any]], uris: list[str]) -> list[str | None]:
    """A trial, or a fused group, in a worker process; each trial's error line (None:
    finished). Each trial records its own errors in its folder; a trial alone raises its."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from trainables.config import TrialConfig
    from trainables.errors import error_line
    from trainables.train import run_trial
    from trainables.train.fused import run_group

    trials = [TrialConfig.from_dict(c, validated=True) for c in configs]  # cfg.to_dict()s
    if len(trials) == 1:
        run_trial(trials[0], checkpoint_dir=uris[0])
        return [None]
    results = run_group(trials, uris)
    return [error_line(r) if isinstance(r, BaseException) else None for r in results]
