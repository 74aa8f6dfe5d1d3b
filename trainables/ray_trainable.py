"""The Ray Tune function trainable: a thin adapter around ``run_trial``.

Keep this module and :func:`train_trial` at this import path: Tune pickles the trainable by
reference. The trial folder on storage is the checkpoint, not Tune's: every (re)start of a trial
(a Tune retry after a failure, or a new launch after a driver crash) calls ``run_trial`` with
``checkpoint_dir=<experiment>/trials/<hash>``, which continues from the newest checkpoint there
and trains nothing if ``summary.json`` exists. Ray's experiment snapshot is never consulted, so
its snapshot gap (a restore starting from an older checkpoint) cannot happen.

Param space of one Tune trial (built by ``rest_sweep.tuner``)::

    {"trial": {"hash": str, "name": str, "uri": str, "config": TrialConfig.to_dict()}}

A fused group (``--fuse``; ``trainables.train.fused``) is one Tune trial: its entry is its first
member's plus ``"members"``, a list of such entries (the first included). Each member trains in
its own folder, so a retried or resumed group continues each member from its own checkpoint,
in whatever grouping the next launch makes.

The final epoch's metrics are reported only after ``run_trial`` has written ``summary.json``:
a scheduler that stops a trial on that report (ASHA at ``max_t``) then stops a finished trial.
"""

from __future__ import annotations

import posixpath
from typing import Any

from trainables.errors import DivergenceError

TRIAL_EPOCHS = "trial_epochs"  # in every Tune report: the trial's last epoch


def train_trial(params: dict[str, Any]) -> None:
    """Run one trial of a sweep under Ray Tune (see the module docstring for ``params``)."""
    from ray import tune

    from trainables.config import TrialConfig
    from trainables.train import run_trial

    trial = params["trial"]
    if trial.get("members"):
        _train_group(trial)
        return
    config = TrialConfig.from_dict(trial["config"], validated=True)  # validated by the driver
    extra = {"trial_hash": trial["hash"], "node_id": _node_id()}
    held: list[dict[str, Any]] = []
    total: list[int] = []  # the trial's last epoch (a staged trial's: every stage's), read once

    def report(metrics: dict[str, Any]) -> None:
        # timesteps_total = the epoch: Tune's training_iteration restarts at 1 on every retry,
        # so TensorBoard (which plots against timesteps_total when present) keeps its x axis.
        epoch = int(metrics.get("epoch", 0))
        if not total:  # run_trial wrote it to state.json before the first epoch
            total.append(_total_epochs(trial["uri"], config.epochs))
        # The trial's length rides on every report: ASHA tells a stop from the end by it.
        row = {**_numeric(metrics), **extra, "timesteps_total": epoch, TRIAL_EPOCHS: total[0]}
        if epoch >= total[0]:
            held.append(row)  # reported after summary.json exists
        else:
            tune.report(row)

    _refuse_unseen_storage(trial["uri"])
    _refuse_diverged_retry(trial["uri"])
    try:
        run_trial(config, report=report, checkpoint_dir=trial["uri"])
    except DivergenceError:
        _mark_diverged_here(trial["uri"])
        raise
    _record_node(trial["uri"])
    for row in held:
        tune.report(row)


def _train_group(trial: dict[str, Any]) -> None:
    """Run a fused group under Ray Tune: every member's rows are reported as they come (each
    with its ``trial_hash``), the last epochs' once every member's ``summary.json`` exists.

    A member that diverged earlier in this Tune trial is left out of its retry (a later launch
    may retry it), and the retry still fails, as a solo trial's would. The attempt fails if a
    member did: with the first member error that is not a divergence, else with the
    divergence."""
    import queue
    import threading

    from ray import tune

    from trainables.config import TrialConfig
    from trainables.train.fused import run_group

    _refuse_unseen_storage(trial["uri"])  # one experiment folder for all the members
    members = []
    failures: list[BaseException] = []
    for member in trial["members"]:
        try:
            _refuse_diverged_retry(member["uri"])
        except DivergenceError as error:  # diverged in this Tune trial: not again in its retry
            failures.append(error)  # and the attempt fails as a solo trial's retry would
            continue
        members.append(member)
    if not members:
        raise failures[0]
    configs = [TrialConfig.from_dict(m["config"], validated=True) for m in members]
    rows: queue.Queue[dict[str, Any] | None] = queue.Queue()
    node = _node_id()

    def reporter(member: dict[str, Any], config: TrialConfig):
        known: list[int] = []  # the member's last epoch, read once (run_trial wrote it)

        def report(metrics: dict[str, Any]) -> None:  # in the member's thread: queued
            epoch = int(metrics.get("epoch", 0))
            if not known:
                known.append(_total_epochs(member["uri"], config.epochs))
            total = known[0]
            rows.put(
                {
                    **_numeric(metrics),
                    "trial_hash": member["hash"],
                    "node_id": node,
                    "timesteps_total": epoch,
                    TRIAL_EPOCHS: total,
                }
            )

        return report

    results: list[Any] = []

    def run() -> None:
        try:
            uris = [m["uri"] for m in members]
            results.extend(
                run_group(
                    configs, uris, [reporter(m, c) for m, c in zip(members, configs, strict=True)]
                )
            )
        finally:
            rows.put(None)

    worker = threading.Thread(target=run, name="fused-group")
    worker.start()
    held: list[dict[str, Any]] = []
    while (row := rows.get()) is not None:  # Tune reports from this (the trainable's) thread
        if row["epoch"] >= row[TRIAL_EPOCHS]:
            held.append(row)  # reported after summary.json exists
        else:
            tune.report(row)
    worker.join()
    for member, result in zip(members, results, strict=True):
        if isinstance(result, DivergenceError):
            _mark_diverged_here(member["uri"])
        if isinstance(result, BaseException):
            failures.append(result)
        else:
            _record_node(member["uri"])
    for row in held:
        tune.report(row)
    if failures:
        others = [f for f in failures if not isinstance(f, DivergenceError)]
        raise (others or failures)[0]


def _total_epochs(uri: str, default: int) -> int:
    """The epoch of the trial's last row, as ``run_trial`` recorded it (``state.json``
    ``epochs``: a staged trial's runner writes every stage's total there)."""
    from trainables.results import TrialStore

    try:
        return int((TrialStore(uri).read_state() or {}).get("epochs") or default)
    except (ValueError, TypeError):
        return default


class StorageNotVisibleError(RuntimeError):
    """This node cannot see the experiment folder: whatever it trained would be lost."""


def _refuse_unseen_storage(uri: str) -> None:
    """Fail at once, training nothing, on a node that cannot see the experiment folder.

    The driver wrote ``experiment.json`` before the launch; a node that does not see it has
    another folder at that path (storage not mounted there), and a trial trained into it
    would be invisible to the driver. The launch's node checks refuse such a node up front;
    this catches one that joined (or lost its mount) after them.
    """
    from trainables.results import EXPERIMENT_FILE, Location

    experiment = posixpath.dirname(posixpath.dirname(uri.rstrip("/")))  # <exp>/trials/<hash>
    try:
        visible = Location.of(experiment).exists(EXPERIMENT_FILE)
    except Exception as error:  # a permission error is the same problem, worded by the fs
        raise StorageNotVisibleError(f"{_where()} cannot read {experiment}: {error}") from None
    if not visible:
        raise StorageNotVisibleError(
            f"{_where()} cannot see the experiment folder {experiment} (no {EXPERIMENT_FILE} "
            "there): mount the same storage at the same path on every node"
        )


def _where() -> str:
    import socket

    node = _node_id()
    return f"node {socket.gethostname()}" + (f" ({node[:8]})" if node else "")


def _refuse_diverged_retry(uri: str) -> None:
    """A Tune retry of a trial that diverged in this launch fails at once, training nothing.

    Its checkpoint would diverge again; the failed attempt recorded ``diverged`` and the Tune
    trial that ran it in ``state.json``. A later launch (a new Tune trial) may retry it.
    """
    from trainables.results import TrialStore

    state = TrialStore(uri).read_state() or {}
    tune_trial = _tune_trial_id()
    diverged = state.get("state") == "errored" and state.get("diverged")
    if diverged and tune_trial and state.get("tune_trial") == tune_trial:
        raise DivergenceError(str(state.get("error", "")).removeprefix("DivergenceError: "))


def _mark_diverged_here(uri: str) -> None:
    from trainables.results import TrialStore

    tune_trial = _tune_trial_id()
    if tune_trial:
        store = TrialStore(uri)
        store.write_state((store.read_state() or {}).get("state", "errored"), tune_trial=tune_trial)


def _tune_trial_id() -> str:
    try:
        from ray import tune

        return str(tune.get_context().get_trial_id() or "")
    except Exception:  # outside a Tune session (unit tests call train_trial directly)
        return ""


def _record_node(uri: str) -> None:
    """Keep the Ray node that finished the trial in its own ``state.json`` (placement audits)."""
    from trainables.results import TrialStore

    store = TrialStore(uri)
    state = store.read_state() or {}
    store.write_state(state.get("state", "finished"), node_id=_node_id())


def _numeric(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool)}


def _node_id() -> str:
    """The Ray node this attempt runs on (kept in Tune's result.json; placement tests read it)."""
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker (unit tests call train_trial directly)
        return ""
