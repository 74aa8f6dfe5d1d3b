"""Run a grid on one machine without Ray: K worker processes share the device.

The same experiment folder as ``run`` (the ledger, one launch record, ``trials/<hash>/``), so
``status``, ``analyze``, ``report`` and a later ``resume`` (on Ray or here) read it exactly like
one made by ``run``. Each trial goes through ``run_trial`` into its own folder, so running the
same command again trains only the unfinished trials, each from its newest checkpoint. Useful
where Ray is absent (a lent GPU machine) and for reproductions that must fit a time budget:
``deadline_s`` stops handing out new trials, and what was not started stays pending.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from rest_sweep import ledger as ledgers
from rest_sweep.ledger import LaunchSettings
from rest_sweep.service import (
    Overrides,
    SweepResult,
    absolute_storage,
    plan,
    trial_counts,
    unfinished,
    validate_data,
)
from trainables.errors import UserError
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
) -> SweepResult:
    """Plan every grid of ``grids`` into experiment ``name`` (in order) and train the
    unfinished trials in plan order, ``workers`` at a time, on ``device``."""
    if workers < 1:
        raise UserError(f"--workers: {workers} is not allowed; allowed: an integer >= 1")
    if not grids:
        raise UserError("--grid: at least one grid name or YAML file is needed")
    expansions = [plan(grid, overrides) for grid in grids]
    trials = [cfg for expansion in expansions for cfg in expansion.trials]
    if not trials:
        raise UserError(f"grids {', '.join(grids)}: no runnable trials")
    root = validate_data(data_root, trials)
    store = ExperimentStore(absolute_storage(storage), name)
    ledgers.ensure_no_live_driver(store)
    for expansion in expansions:
        ledger = ledgers.record_plan(store, expansion, root)
    configs = {
        h: cfg.replace(data_root=root, device=device)
        for expansion in expansions
        for h, cfg in expansion.by_hash().items()
    }
    planned = len(ledger.get("trials", {}))
    todo = unfinished(store, ledger, list(configs))
    if not todo:
        if not quiet:
            print(f"{store.name}: nothing to run; all {len(configs)} trials finished or stopped")
        return SweepResult(
            store.name, store.storage, None, planned, 0, trial_counts(store, configs)
        )
    settings = LaunchSettings(max_concurrent=workers, max_failures=0)
    resources = {"cpu": 0.0, "gpu": 1.0 / workers if device != "cpu" else 0.0}
    launch = ledgers.start_launch(store, "local", " + ".join(grids), todo, settings, resources)
    if not quiet:
        print(
            f"{store.name}: launch {launch['id']}: {len(todo)} of {len(configs)} trials, "
            f"{workers} worker process(es) on {device}"
        )
    outcome = "interrupted"
    started = time.monotonic()
    try:
        ran = _run_pool(store, todo, configs, workers, started, deadline_s, quiet)
        left = unfinished(store, store.read_ledger(), todo)
        errored = trial_counts(store, {h: configs[h] for h in left})["errored"]
        outcome = "completed" if not left else ("errors" if errored == len(left) else "interrupted")
    finally:
        counts = trial_counts(store, configs)
        ledgers.end_launch(store, launch["id"], outcome, counts)
    if not quiet:
        print(
            f"{store.name}: {outcome}; {counts['finished']}/{counts['trials']} finished, "
            f"{counts['errored']} errored, {ran} trained in {time.monotonic() - started:.0f} s"
        )
    return SweepResult(store.name, store.storage, launch["id"], planned, ran, counts, outcome)


def _run_pool(
    store: ExperimentStore,
    todo: list[str],
    configs: dict[str, Any],
    workers: int,
    started: float,
    deadline_s: float | None,
    quiet: bool,
) -> int:
    """Keep ``workers`` trials in flight until ``todo`` is empty or the deadline passes."""
    queue = list(todo)
    ran = 0
    # spawn: a CUDA context cannot cross fork, and each worker imports torch once.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        running: dict[Future, str] = {}

        def fill() -> None:
            while queue and len(running) < workers:
                if deadline_s is not None and time.monotonic() - started > deadline_s:
                    queue.clear()  # what is not started stays pending for the next run
                    return
                trial_hash = queue.pop(0)
                cfg = configs[trial_hash]
                future = pool.submit(_train_one, cfg.to_dict(), store.trial_uri(trial_hash))
                running[future] = trial_hash

        fill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                trial_hash = running.pop(future)
                ran += 1
                error = future.exception()
                if not quiet:
                    state = f"FAILED {error}" if error else "finished"
                    print(
                        f"  {trial_hash} {configs[trial_hash].short_name()}: {state} "
                        f"({time.monotonic() - started:.0f} s)",
                        flush=True,
                    )
            fill()
    return ran


def _train_one(config: dict[str, Any], uri: str) -> None:
    """One trial in a worker process (records its own errors in its folder)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from trainables.config import TrialConfig
    from trainables.train import run_trial

    run_trial(TrialConfig.from_dict(config), checkpoint_dir=uri)
