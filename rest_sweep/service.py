"""``run`` and ``resume``: plan trials in the ledger, then launch the unfinished ones on Ray.

The experiment is the ledger plus the trial folders, never a Tune experiment: each launch is
a new Tune experiment holding only the trials without ``summary.json`` (and not stopped early).
So running the same command again continues where it stopped, a grid that gained seeds or
densities runs only the new trials, and a finished trial never runs twice. Everything that can
be checked without Ray (grid, data root and ratios, resources, a live driver) is checked first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rest_sweep import integrations
from rest_sweep import ledger as ledgers
from rest_sweep.cluster import ClusterAddress, TrialResources
from rest_sweep.integrations import TrackingContext
from rest_sweep.launch_settings import LaunchSettings, last_settings
from rest_sweep.storage import check_name, check_storage, check_writable, open_store
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.results import ExperimentStore, join

if TYPE_CHECKING:
    from search_spaces import Expansion

__all__ = [
    "SweepResult",
    "plan",
    "resume",
    "run",
]


@dataclass(frozen=True)
class SweepResult:
    """What a launch did; ``exit_code`` is 0 all finished, 1 errors (or trials Tune saw finish
    whose results the driver cannot see), 130 interrupted."""

    name: str
    storage: str
    launch_id: str | None
    planned: int
    launched: int
    counts: dict[str, int] = field(default_factory=dict)
    outcome: str = "nothing to run"

    @property
    def exit_code(self) -> int:
        return {"interrupted": 130, "errors": 1, NOT_VISIBLE: 1}.get(self.outcome, 0)


Overrides = Mapping[str, Any] | Sequence[str] | None


def run(
    grid: str,
    data_root: str,
    storage: str,
    name: str,
    settings: LaunchSettings | None = None,
    *,
    overrides: Overrides = None,
    quiet: bool = False,
    force: bool = False,
    **given: Any,
) -> SweepResult:
    """Plan ``grid`` in experiment ``name`` and run its trials that are not finished.

    The launch runs with ``settings`` (default ``LaunchSettings()``), with the settings given
    by name replacing its values (``given``: :class:`LaunchSettings` fields, e.g.
    ``gpus_per_trial=0.25``; None keeps the value). ``gpus_per_trial`` is one share for every
    trial, per-model shares (``{"resnet18": 0.5}`` or ``"simple_cnn=0.125,resnet18=0.5"``;
    models not named keep their default), or None: each trial its model's ``gpu_share`` on a
    cluster with GPUs (0 on a CPU-only one). ``callbacks`` names tracking integrations
    (``mlflow``, ``wandb``: ``rest_sweep.integrations``). The settings are stored in the launch
    record (``resume`` reuses them). ``overrides`` (``--set``) apply to every trial whose method
    takes the key. ``force`` takes over a launch believed live (with a warning). Diverged trials
    (non-finite loss) are not run again: ``resume(retry_errored=True)`` does that.
    """
    check_name(name)
    storage = absolute_storage(storage)  # empty, or a file: one line before any work
    settings = (settings or LaunchSettings()).override(**given)
    settings.validate()  # flags first: one line, whatever planning the grid costs
    expansion = plan(grid, overrides)
    if not quiet:
        for note in expansion.set_notes():
            print(note)
    if not expansion.trials:
        raise UserError(f"grid {grid}: no runnable trials (pending rows: {len(expansion.pending)})")
    root = validate_data(data_root, expansion.trials, on_driver=trains_here(settings.address))
    integrations.targets(
        settings.callbacks, TrackingContext(name, join(absolute_storage(storage), name))
    )
    store = open_store(absolute_storage(storage), name, write=True)
    ledgers.ensure_no_live_driver(store, force=force, by="run")
    new = not store.exists()
    ledger = ledgers.record_plan(store, expansion, root)
    configs = expansion.by_hash()
    try:
        return _launch(
            store, ledger, "run", expansion.grid, configs, settings, root=root, quiet=quiet
        )
    except UserError as error:
        if new:  # rejected before any trial ran: leave no planned experiment behind
            discard_new(store, error)
        raise


def resume(
    storage: str,
    name: str,
    *,
    data_root: str | None = None,
    quiet: bool = False,
    force: bool = False,
    retry_errored: bool = False,
    embedded: bool = False,
    **given: Any,
) -> SweepResult:
    """Run every planned trial of ``name`` that is not finished (errored ones included).

    Starts from the settings of the latest launch and overrides only those given (by name:
    :class:`LaunchSettings` fields that are not None; ``gpus_per_trial`` and ``callbacks``
    replace the last launch's as a whole); interrupted trials continue from their newest
    checkpoint on storage. Trials that errored from a divergence (``state.json`` error
    ``non-finite loss ...``) run again only with ``retry_errored``. ``force`` takes over a
    launch believed live (with a warning).

    Where it runs: ``--address`` if given; else inside a Ray job (``RAY_ADDRESS`` set) that
    job's cluster; else ``embedded`` (this machine); else the cluster the last launch recorded
    (``cluster`` of its record), refused in one line when it cannot be reached.
    """
    if embedded and given.get("address"):
        raise UserError("--embedded: runs on this machine; drop --address (or --embedded)")
    store = open_store(absolute_storage(storage), name)
    if not store.exists():
        from trainables.results import list_experiments

        known = ", ".join(list_experiments(storage)) or "none"
        raise UserError(f"--name {name}: no experiment in {storage}; allowed: {known}")
    ledger = store.read_ledger()
    check_writable("--storage", store.storage)
    ledgers.ensure_no_live_driver(store, force=force, by="resume")
    settings = last_settings(ledger).override(**given)
    if given.get("address") is None and ClusterAddress.resolve(None).address is not None:
        # This driver's RAY_ADDRESS (a Ray job on a new cluster) wins over the stored address.
        settings = dataclasses.replace(settings, address=None)
    elif embedded:
        settings = dataclasses.replace(settings, address=None)
    elif given.get("address") is None:
        settings = dataclasses.replace(settings, address=_recorded_cluster(ledger, settings))
    if not trains_here(settings.address):  # a cluster: the last embedded Ray's size is moot
        settings = dataclasses.replace(
            settings, num_cpus=given.get("num_cpus"), num_gpus=given.get("num_gpus")
        )
    settings.validate()  # flags first: one line before the data is walked
    planned = ledgers.planned_configs(ledger)  # validated once, when read
    root = validate_data(
        data_root or ledger.get("data_root", ""),
        planned.values(),
        on_driver=trains_here(settings.address),
    )
    integrations.targets(settings.callbacks, TrackingContext(store.name, store.uri))
    if root != ledger.get("data_root"):
        ledgers.set_data_root(store, root)
        ledger["data_root"] = root
    return _launch(
        store,
        ledger,
        "resume",
        "(all planned)",
        planned,
        settings,
        root=root,
        quiet=quiet,
        retry_errored=retry_errored,
    )


def cluster_record(address: str | None) -> dict[str, Any]:
    """Where a launch with ``address`` runs, for its launch record: ``{"address", "via"}``,
    ``via`` one of ``flag`` (``--address``), ``job`` (``RAY_ADDRESS`` set by Ray Jobs),
    ``RAY_ADDRESS`` (set by the user) or ``embedded`` (address None)."""
    target = ClusterAddress.resolve(address)
    if target.address is None:
        return {"address": None, "via": "embedded"}
    if target.source == "--address":
        return {"address": target.address, "via": "flag"}
    return {"address": target.address, "via": "job" if RAY_JOB_ENV in os.environ else "RAY_ADDRESS"}


def _recorded_cluster(ledger: Mapping[str, Any], settings: LaunchSettings) -> str | None:
    """The cluster the last launch ran on (its ``cluster`` record; a record without one: its
    stored ``--address``), after checking that it answers: one line if not."""
    launches = ledger.get("launches") or []
    cluster = launches[-1].get("cluster") if launches else None
    if not isinstance(cluster, Mapping):
        return settings.address
    address = cluster.get("address")
    if not address:
        return None
    from rest_sweep.cluster import probe_cluster

    try:
        probe_cluster(ClusterAddress(str(address), "--address"))
    except UserError as error:
        raise UserError(
            f"the last launch ran on the Ray cluster at {address} (via {cluster.get('via')}), "
            f"which cannot be reached ({str(error).removeprefix(f'--address {address}: ')}); "
            "allowed: --address HOST:PORT of another "
            "cluster, or --embedded to run on this machine"
        ) from None
    return str(address)


def resume_hint(storage: str, name: str, cluster: Mapping[str, Any]) -> str:
    """The command that resumes experiment ``name`` the way its launch ran (``cluster``, see
    :func:`cluster_record`): through Ray Jobs for a job (the dashboard address is not known to
    the driver; ``--working-dir .`` when this driver's job shipped one, as ``ray-job.sh`` does:
    the resume then runs the checkout's code, given from the checkout), with ``--address``
    when it was given by flag."""
    command = f"rest-sweep resume --storage {storage} --name {name}"
    via = cluster.get("via")
    if via == "job":
        shipped = " --working-dir ." if _job_working_dir() else ""
        return f"ray job submit --address <dashboard>{shipped} -- {command}"
    if via == "flag":
        return f"{command} --address {cluster.get('address')}"
    return command


def _job_working_dir() -> bool:
    """Whether this driver runs in a Ray job submitted with a working directory (the job's
    config, which Ray gives its driver in :data:`RAY_JOB_ENV`, names one)."""
    try:
        config = json.loads(os.environ.get(RAY_JOB_ENV) or "{}")
    except ValueError:
        return False
    runtime_env = config.get("runtime_env") if isinstance(config, dict) else None
    return isinstance(runtime_env, dict) and bool(runtime_env.get("working_dir"))


def plan(grid: str, overrides: Overrides = None) -> Expansion:
    """The expansion a ``run`` of ``grid`` would plan (no data, no Ray, nothing written)."""
    import search_spaces

    return search_spaces.expand_grid(grid, _overrides(overrides))


# ---------------------------------------------------------------------- checks


RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # Ray Jobs sets it for the driver it runs


def absolute_path(flag: str, path: str) -> str:
    """``path`` made absolute (trials run in workers whose cwd is a temp dir).

    Inside a Ray job (``ray job submit``) a relative path would resolve in the job's
    temporary working directory, which Ray deletes after the job: refused in one line."""
    expanded = os.path.expanduser(path)
    if not os.path.isabs(expanded) and RAY_JOB_ENV in os.environ:
        raise UserError(
            f"{flag} {path}: a relative path in a Ray job resolves in the job's temporary "
            "working directory, which Ray deletes; allowed: an absolute path on storage every "
            "node mounts" + (" or a bucket URI (s3://...)" if flag == "--storage" else "")
        )
    return os.path.abspath(expanded)


def absolute_storage(storage: str) -> str:
    """A storage URI as given; a local path made absolute (:func:`absolute_path`). An empty
    storage (the current folder) or a file is refused first
    (:func:`rest_sweep.storage.check_storage`)."""
    check_storage(storage)
    return storage if "://" in storage else absolute_path("--storage", storage)


def trains_here(address: str | None) -> bool:
    """Whether this machine trains the trials: embedded Ray (no ``--address``, no
    ``RAY_ADDRESS``). A driver that joins a cluster only plans and watches."""
    return ClusterAddress.resolve(address).address is None


def validate_data(data_root: str, trials: Iterable[TrialConfig], *, on_driver: bool = True) -> str:
    """The absolute data root; with ``on_driver``, after checking here that every (dataset,
    ratio) of ``trials`` is there and that no file changed since ``data verify`` wrote the
    bundle's manifest (:func:`rest_sweep.preflight.check_data`).

    Trials read the same path on every node. A driver that joins a cluster does not need the
    data itself: the nodes that train check it before any trial starts
    (:func:`rest_sweep.preflight.check_nodes`).
    """
    from rest_sweep.preflight import check_data, needed_ratios

    if not data_root:
        raise UserError("--data-root: required (the folder holding <dataset>/<pct>/ bundles)")
    if "://" in data_root:
        raise UserError(f"--data-root {data_root}: must be a local or shared-mount path")
    root = absolute_path("--data-root", data_root)
    if on_driver:
        check_data(root, needed_ratios(trials))
    return root


def _overrides(overrides: Overrides) -> dict[str, Any]:
    from search_spaces import parse_overrides

    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    return parse_overrides(list(overrides))


def gpu_share(models: Iterable[str]) -> float:
    """The default GPU fraction of a trial of these models: the largest of their catalogue
    shares (one model: its own, ``trainables.models.MODELS``, measured in
    ``benchmarks/gpu_shares.csv``); 0 for none."""
    from trainables.models import MODELS

    return max((float(MODELS.get(m).gpu_share) for m in set(models)), default=0.0)


def trial_resources(
    settings: LaunchSettings, configs: Iterable[TrialConfig]
) -> dict[str, TrialResources]:
    """What one trial of each model of the launch asks for, in plan order of the models.

    The GPU share is the one the user gave for the model (one value, or per model), else the
    model's default share when Ray has GPUs, else 0: per model, because one share cannot fit
    both a 28-px Simple CNN and a 224-px ResNet-18. Ray is asked about GPUs only when some
    model takes its default.
    """
    models = list(dict.fromkeys(cfg.model for cfg in configs))
    given = {model: settings.given_gpu_share(model) for model in models}
    has_gpus = False
    if any(share is None for share in given.values()):
        import ray

        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    return {
        model: TrialResources(
            settings.cpus_per_trial,
            share if share is not None else (gpu_share([model]) if has_gpus else 0.0),
        )
        for model, share in given.items()
    }


def describe_resources(resources: Mapping[str, TrialResources], settings: LaunchSettings) -> str:
    """``1 CPU each; GPU per trial: simple_cnn 0.125, resnet18 0.25 (default)``: the launch
    line's resources, with the shares that came from the catalogue marked as defaults."""
    shares = ", ".join(
        f"{model} {r.gpus:g}" + (" (default)" if settings.given_gpu_share(model) is None else "")
        for model, r in resources.items()
    )
    return f"{settings.cpus_per_trial:g} CPU each; GPU per trial: {shares}"


# ---------------------------------------------------------------------- the launch


DIVERGED = "non-finite loss"  # how state.json's error starts for a trial stopped by a NaN/inf


def unfinished(
    store: ExperimentStore,
    ledger: dict[str, Any],
    hashes: list[str],
    *,
    retry_diverged: bool = True,
) -> list[str]:
    """Planned trials not finished and not stopped early (without ``retry_diverged``: nor
    errored from a divergence, see :func:`diverged`). A damaged trial (a summary whose results
    fail their check) is not finished: its own run repairs it (``run_lifecycle``)."""
    stopped = ledger.get("stopped", {})
    left = [h for h in hashes if h not in stopped and not store.trial(h).holds_results()]
    if retry_diverged:
        return left
    skip = set(diverged(store, left))
    return [h for h in left if h not in skip]


def diverged(store: ExperimentStore, hashes: Iterable[str]) -> list[str]:
    """Trials whose ``state.json`` says errored with an error starting ``non-finite loss``."""
    out = []
    for trial_hash in hashes:
        try:
            state = store.trial(trial_hash).read_state() or {}
        except ValueError:  # a garbled state.json is not a divergence
            continue
        if state.get("state") == "errored" and str(state.get("error") or "").startswith(DIVERGED):
            out.append(trial_hash)
    return out


def _launch(
    store: ExperimentStore,
    ledger: dict[str, Any],
    command: str,
    grid: str,
    configs: dict[str, TrialConfig],
    settings: LaunchSettings,
    *,
    root: str,
    quiet: bool,
    retry_errored: bool = False,
) -> SweepResult:
    """Launch the unfinished trials of ``configs`` (validated once: when planned or read from
    the ledger) on data root ``root``."""
    planned = len(ledger.get("trials", {}))
    todo = unfinished(store, ledger, list(configs), retry_diverged=retry_errored)
    skipped = len(unfinished(store, ledger, list(configs))) - len(todo)
    if skipped and not quiet:
        print(
            f"{store.name}: {skipped} diverged trial(s) (non-finite loss) not run again; "
            f"`rest-sweep resume --storage {store.storage} --name {store.name} --retry-errored` "
            "runs them"
        )
    if not todo:
        if not quiet:
            ended = "finished, stopped or diverged" if skipped else "finished or stopped"
            print(f"{store.name}: nothing to run; all {len(configs)} trials {ended}")
        return SweepResult(
            store.name, store.storage, None, planned, 0, trial_counts(store, configs)
        )
    from rest_sweep.cluster import check_fits, ray_context

    # The launch is recorded before Ray starts, so a second driver is refused before its Ray.
    cluster = cluster_record(settings.address)
    launch = ledgers.start_launch(store, command, grid, todo, settings, cluster=cluster)
    placed = {h: configs[h] for h in todo}
    outcome = "interrupted"
    fitting = False
    try:
        with ray_context(settings.address, settings.num_cpus, settings.num_gpus) as where:
            resources = trial_resources(settings, (configs[h] for h in todo))
            for model, request in resources.items():
                request.validate(model)
            check_fits(resources)
            requests = list(resources.values())
            _check_nodes(store, root, [configs[h] for h in todo], requests, settings.address, quiet)
            fitting = True
            got = {model: request.as_dict() for model, request in resources.items()}
            ledgers.update_launch(store, launch["id"], resources=got)
            # device is a where-field (not in the hash): GPU trials "auto", the others "cpu"
            device = {m: "auto" if r.gpus > 0 else "cpu" for m, r in resources.items()}
            placed = {h: placed_config(configs[h], root, device[configs[h].model]) for h in todo}
            outcome = _fit(store, launch, placed, configs, resources, settings, where, quiet)
    except BaseException as error:
        # The launch's own error is the message: a record that cannot be dropped or closed
        # (a full disk) stays open, and the next status or resume closes it.
        dropped = False
        if isinstance(error, UserError) and not fitting:  # rejected before any trial ran
            with contextlib.suppress(UserError):
                ledgers.drop_launch(store, launch["id"])
                dropped = True
        if not dropped:
            with contextlib.suppress(UserError):
                close_launch(store, launch["id"], outcome, placed)
        raise
    else:
        close_launch(store, launch["id"], outcome, placed)
    if not quiet and outcome == "interrupted" and "hint" not in launch:  # SIGTERM printed it
        again = resume_hint(store.storage, store.name, cluster)
        print(f"{store.name}: interrupted; continue with: {again}")
    return SweepResult(
        store.name,
        store.storage,
        launch["id"],
        planned,
        len(todo),
        trial_counts(store, configs),
        outcome,
    )


# Pauses before the end-of-launch record is written again after a full disk refused it: the
# failed writes removed their temporaries, and a trial or a person may free space meanwhile.
END_RETRY_S: tuple[float, ...] = (1.0, 3.0)


def close_launch(
    store: ExperimentStore, launch_id: str, outcome: str, placed: Mapping[str, TrialConfig]
) -> None:
    """Record how the launch ended (:func:`rest_sweep.ledger.end_launch`), trying again after
    each pause of :data:`END_RETRY_S` while the disk is full; then its one-line error stands
    (the next ``status`` or ``resume`` closes the launch)."""
    for pause in (*END_RETRY_S, None):
        try:
            ledgers.end_launch(store, launch_id, outcome, trial_counts(store, placed))
            return
        except UserError as error:
            if pause is None or not full_disk(error):
                raise
        time.sleep(pause)


def full_disk(error: BaseException) -> bool:
    """Whether ``error`` came from a full disk (ENOSPC, EDQUOT), here or in the errors it was
    raised from (a one-line ``UserError`` keeps the ``OSError`` as its context)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        current = current.__cause__ or current.__context__
    return False


def discard_new(store: ExperimentStore, error: UserError) -> None:
    """After ``error``, remove the experiment this ``run`` created when nothing was launched in
    it (:func:`rest_sweep.ledger.discard_if_unlaunched`).

    ``error`` is the message the user gets: a launch already recorded makes the experiment a
    real one, so nothing is removed and no lock is taken; a cleanup that fails (a full disk
    cannot even hold the lock) is added to ``error``, never put in its place."""
    try:
        if store.read_ledger().get("launches"):
            return
        ledgers.discard_if_unlaunched(store)
    except (UserError, OSError) as cleanup:
        reason = str(cleanup).splitlines()[0] if str(cleanup) else type(cleanup).__name__
        raise UserError(
            f"{error}; the new experiment {store.uri} was kept (removing it failed: {reason})"
        ) from None


def placed_config(cfg: TrialConfig, root: str, device: str) -> TrialConfig:
    """``cfg`` on this launch's data root and device, not validated again: ``cfg`` was (when
    planned or read), and the launch sets only these where-fields, to values it checked (the
    absolute root :func:`validate_data` returned, device ``auto`` or ``cpu``)."""
    where = {"data_root": root, "device": device}
    return TrialConfig.from_dict({**cfg.to_dict(), **where}, validated=True)


def _check_nodes(
    store: ExperimentStore,
    root: str,
    configs: Iterable[TrialConfig],
    requests: list[TrialResources],
    address: str | None,
    quiet: bool,
) -> None:
    """On a joined cluster, check every node that can take a trial (storage and data) before
    any trial trains. Nothing on embedded Ray: the driver is the node, and
    :func:`validate_data` checked it."""
    from rest_sweep.preflight import check_nodes, needed_ratios

    if trains_here(address):
        return
    result = check_nodes(store, root, needed_ratios(configs), requests)
    if not quiet:
        print(
            f"{store.name}: storage and data checked on the {len(result.nodes)} node(s) that "
            f"can take a trial ({result.seconds:.1f} s)"
        )


def _fit(
    store: ExperimentStore,
    launch: dict[str, Any],
    placed: dict[str, TrialConfig],
    configs: dict[str, TrialConfig],
    resources: dict[str, TrialResources],
    settings: LaunchSettings,
    where: str,
    quiet: bool,
) -> str:
    """Build the launch's Tuner, fit it, and return the outcome."""
    from rest_sweep.cluster import sigterm_as_sigint
    from rest_sweep.tuner import LaunchPlan, build_tuner, launch_units

    todo = list(placed)
    tracking = integrations.targets(
        settings.callbacks, TrackingContext(store.name, store.uri, launch["id"])
    )
    launch_plan = LaunchPlan(
        store=store,
        launch_id=launch["id"],
        configs=placed,
        resources=resources,
        max_concurrent=settings.max_concurrent,
        scheduler=settings.scheduler,
        metric=settings.metric,
        max_failures=settings.max_failures,
        already_finished=len(configs) - len(todo),
        reuse_actors=settings.reuse_actors,
        fuse=settings.fuse,
        quiet=quiet,
        tracking=tuple(tracking),
    )
    if not quiet:
        grouped = ""
        if settings.fuse > 1:
            groups = len(launch_units(launch_plan))
            grouped = f" in {groups} Ray trial(s) (fused groups of up to {settings.fuse})"
        print(
            f"{store.name}: launch {launch['id']} on {where}: {len(todo)} of {len(configs)} "
            f"trials to run{grouped}, {describe_resources(resources, settings)}; Ray Tune "
            f"output in {launch['tune_path']}"
        )
        for target in tracking:
            print(f"{store.name}: tracking with {target.line}")
    hint = resume_hint(store.storage, store.name, launch.get("cluster") or {})

    def interrupted() -> None:
        """First thing on SIGTERM: the record, then the hint. Ray Jobs SIGKILLs the driver
        RAY_JOB_STOP_WAIT_TIME_S after SIGTERM, maybe before the end-of-launch line."""
        ledgers.record_interruption(store, launch["id"], hint)
        launch["hint"] = hint  # printed here: not again when the launch ends
        if not quiet:
            with contextlib.suppress(RuntimeError, OSError):  # a print the signal cut short
                print(f"{store.name}: SIGTERM recorded; continue with: {hint}", flush=True)

    with sigterm_as_sigint(interrupted):
        results = build_tuner(launch_plan).fit()
    unseen = _finished_unseen(store, results)
    if unseen:
        print(f"{store.name}: {unseen}")
        return NOT_VISIBLE
    return _outcome(store, todo, results.num_errors)


NOT_VISIBLE = "results not visible"  # Tune saw trials finish; the driver sees no summary.json


UNSEEN_GRACE_S = 60.0  # NFS clients may cache "no such file" for up to acdirmax (30-60 s)
UNSEEN_POLL_S = 5.0


def _finished_unseen(
    store: ExperimentStore, results: Any, *, grace_s: float = UNSEEN_GRACE_S
) -> str:
    """Say which trials Ray Tune reports finished (their last report is the final epoch, no
    error) but whose ``summary.json`` the driver cannot see, and on which nodes; "" if none.

    That happens when a node writes to its own folder at the storage path (a mount missing
    there): the trial trained, and its results are where nobody reads them. A summary another
    node wrote seconds ago can also look absent through the driver's NFS attribute cache, so
    the missing ones are looked for again for ``grace_s`` before they are reported.
    """
    import time

    import ray

    unseen: dict[str, list[str]] = {}
    stopped = store.read_ledger().get("stopped", {})  # ASHA stops are not finishes
    for result in results:
        metrics = result.metrics or {}
        trial_hash = metrics.get("trial_hash")
        if result.error is not None or not trial_hash or trial_hash in stopped:
            continue
        cfg_epochs = int((result.config or {}).get("trial", {}).get("config", {}).get("epochs", 0))
        if int(metrics.get("epoch", 0)) < cfg_epochs or store.trial(trial_hash).is_finished():
            continue
        unseen.setdefault(str(metrics.get("node_id", "")), []).append(trial_hash)
    deadline = time.monotonic() + grace_s
    while unseen and time.monotonic() < deadline:
        time.sleep(min(UNSEEN_POLL_S, max(0.0, deadline - time.monotonic())))
        unseen = {
            node: left
            for node, hashes in unseen.items()
            if (left := [h for h in hashes if not store.trial(h).is_finished()])
        }
    if not unseen:
        return ""
    ips = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes()}
    where = ", ".join(
        f"{ips.get(node, '?')} (node {node[:8]}): {len(hashes)}" for node, hashes in unseen.items()
    )
    count = sum(len(h) for h in unseen.values())
    return (
        f"Ray Tune reports {count} trial(s) finished, but their summary.json is not visible to "
        f"this driver under {store.uri}/trials/ (trials per node: {where}); those nodes write "
        "to a folder the driver cannot see: mount the same storage at the same path on every "
        f"node, then `rest-sweep resume --storage {store.storage} --name {store.name}` trains "
        "them again"
    )


def _outcome(store: ExperimentStore, todo: list[str], num_errors: int) -> str:
    """completed; errors (every unfinished trial exhausted its retries); else interrupted."""
    left = unfinished(store, store.read_ledger(), todo)
    if not left:
        return "completed"
    return "errors" if num_errors >= len(left) else "interrupted"


def trial_counts(store: ExperimentStore, configs: Mapping[str, TrialConfig]) -> dict[str, int]:
    stopped = store.read_ledger().get("stopped", {})
    finished = sum(store.trial(h).is_finished() for h in configs)
    stopped_n = sum(h in stopped and not store.trial(h).is_finished() for h in configs)
    errored = sum(
        (store.trial(h).read_state() or {}).get("state") == "errored"
        and not store.trial(h).is_finished()
        for h in configs
    )
    return {"trials": len(configs), "finished": finished, "errored": errored, "stopped": stopped_n}
