"""``run`` and ``resume``: plan trials in the ledger, then launch the unfinished ones on Ray.

The experiment is the ledger plus the trial folders, never a Tune experiment: each launch is
a new Tune experiment holding only the trials without ``summary.json`` (and not stopped early).
So running the same command again continues where it stopped, a grid that gained seeds or
densities runs only the new trials, and a finished trial never runs twice. Everything that can
be checked without Ray (grid, data root and ratios, resources, a live driver) is checked first.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rest_sweep import ledger as ledgers
from rest_sweep.cluster import TrialResources
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.results import ExperimentStore

DEFAULT_METRIC = "valid_worst_group_acc"
SCHEDULER_NAMES = ("fifo", "asha")


@dataclass(frozen=True)
class SweepResult:
    """What a launch did; ``exit_code`` is 0 all finished, 1 errors, 130 interrupted."""

    name: str
    storage: str
    launch_id: str | None
    planned: int
    launched: int
    counts: dict[str, int] = field(default_factory=dict)
    outcome: str = "nothing to run"

    @property
    def exit_code(self) -> int:
        return {"interrupted": 130, "errors": 1}.get(self.outcome, 0)


def run(
    grid: str,
    data_root: str,
    storage: str,
    name: str,
    *,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent: int | None = None,
    scheduler: str = "fifo",
    metric: str = DEFAULT_METRIC,
    max_failures: int = 2,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    reuse_actors: bool = False,
    quiet: bool = False,
    pack_size: str | int = "auto",
) -> SweepResult:
    """Plan ``grid`` in experiment ``name`` and run its trials that are not finished.

    ``pack_size`` ("auto" or N) trains up to N compatible trials in one process; "auto" packs
    on GPUs with the measured per-model default and runs single trials on CPUs.
    """
    import search_spaces

    values = _overrides(overrides)
    expansion = search_spaces.expand(search_spaces.resolve(grid), values)
    if not expansion.trials:
        raise UserError(f"grid {grid}: no runnable trials (pending rows: {len(expansion.pending)})")
    root = validate_data(data_root, expansion.trials)
    resources = TrialResources(cpus_per_trial, gpus_per_trial)
    _check_settings(resources, scheduler, max_failures, max_concurrent, pack_size)
    store = ExperimentStore(absolute_storage(storage), name)
    ledgers.ensure_no_live_driver(store)
    ledger = ledgers.record_plan(store, expansion, root)
    configs = {h: _placed(cfg, root, resources) for h, cfg in expansion.by_hash().items()}
    settings = {
        "address": address, "resources": resources.as_dict(), "max_concurrent": max_concurrent,
        "scheduler": scheduler, "metric": metric, "max_failures": max_failures,
        "pack_size": pack_size,
    }  # fmt: skip
    return _launch(store, ledger, "run", expansion.grid, configs, settings,
                   num_cpus=num_cpus, num_gpus=num_gpus, reuse_actors=reuse_actors,
                   quiet=quiet)  # fmt: skip


def resume(
    storage: str,
    name: str,
    *,
    data_root: str | None = None,
    address: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    max_concurrent: int | None = None,
    max_failures: int | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    reuse_actors: bool = False,
    quiet: bool = False,
    pack_size: str | int | None = None,
) -> SweepResult:
    """Run every planned trial of ``name`` that is not finished (errored ones included).

    Settings left as None are those of the latest launch; interrupted trials continue from
    their newest checkpoint on storage.
    """
    store = ExperimentStore(absolute_storage(storage), name)
    if not store.exists():
        from trainables.results import list_experiments

        known = ", ".join(list_experiments(storage)) or "none"
        raise UserError(f"--name {name}: no experiment in {storage}; allowed: {known}")
    ledger = store.read_ledger()
    ledgers.ensure_no_live_driver(store, ledger)
    last = ledgers.last_settings(ledger)
    planned = ledgers.planned_configs(ledger)
    root = validate_data(data_root or ledger.get("data_root", ""), planned.values())
    res = last.get("resources") or {}
    resources = TrialResources(
        res.get("cpu", 1.0) if cpus_per_trial is None else cpus_per_trial,
        res.get("gpu", 0.0) if gpus_per_trial is None else gpus_per_trial,
    )
    scheduler = last.get("scheduler") or "fifo"
    failures = last.get("max_failures", 2) if max_failures is None else max_failures
    concurrent = last.get("max_concurrent") if max_concurrent is None else max_concurrent
    packing = last.get("pack_size", "auto") if pack_size is None else pack_size
    _check_settings(resources, scheduler, failures, concurrent, packing)
    if root != ledger.get("data_root"):
        ledger["data_root"] = root
        store.write_ledger(ledger)
    configs = {h: _placed(cfg, root, resources) for h, cfg in planned.items()}
    settings = {
        "address": address if address is not None else last.get("address"),
        "resources": resources.as_dict(), "max_concurrent": concurrent, "scheduler": scheduler,
        "metric": last.get("metric") or DEFAULT_METRIC, "max_failures": failures,
        "pack_size": packing,
    }  # fmt: skip
    return _launch(store, ledger, "resume", "(all planned)", configs, settings,
                   num_cpus=num_cpus, num_gpus=num_gpus, reuse_actors=reuse_actors,
                   quiet=quiet)  # fmt: skip


def plan(grid: str, overrides: Mapping[str, Any] | Sequence[str] | None = None) -> Any:
    """The expansion a ``run`` of ``grid`` would plan (no data, no Ray, nothing written)."""
    import search_spaces

    return search_spaces.expand(search_spaces.resolve(grid), _overrides(overrides))


# ---------------------------------------------------------------------- checks


def absolute_storage(storage: str) -> str:
    """Trials write from Ray workers whose cwd is a temp dir: a local path must be absolute."""
    return storage if "://" in storage else os.path.abspath(os.path.expanduser(storage))


def validate_data(data_root: str, trials: Any) -> str:
    """The absolute data root, after checking every (dataset, ratio) of ``trials`` is there.

    Trials read the same path on every node, so on a cluster it must be a shared mount.
    """
    from trainables.data import available_ratios
    from trainables.data.layout import ratio_folder

    if not data_root:
        raise UserError("--data-root: required (the folder holding <dataset>/<pct>/ bundles)")
    if "://" in data_root:
        raise UserError(f"--data-root {data_root}: must be a local or shared-mount path")
    root = os.path.abspath(os.path.expanduser(data_root))
    needed: dict[str, set[float]] = {}
    for cfg in trials:
        needed.setdefault(cfg.dataset, set()).add(float(cfg.ratio))
    for dataset, ratios in sorted(needed.items()):
        have = available_ratios(root, dataset)
        missing = sorted(r for r in ratios if not any(math.isclose(r, h) for h in have))
        if missing:
            names = ", ".join(ratio_folder(r) for r in missing)
            allowed = ", ".join(ratio_folder(h) for h in have) or "none"
            raise UserError(
                f"--data-root {root}: {dataset} has no {names} folder needed by the grid; "
                f"allowed ratios there: {allowed} (or narrow the grid, e.g. --set ratio=...)"
            )
    return root


def _check_settings(resources: TrialResources, scheduler: str, max_failures: int,
                    max_concurrent: int | None, pack_size: str | int = 1) -> None:  # fmt: skip
    resources.validate()
    size = parse_pack_size(pack_size)
    if scheduler == "asha" and size not in ("auto", 1):
        raise UserError(f"--pack-size: {size} is not allowed with --scheduler asha; allowed: 1 "
                        "(ASHA stops single trials, a pack would stop all its trials)")  # fmt: skip
    if scheduler not in SCHEDULER_NAMES:
        allowed = ", ".join(SCHEDULER_NAMES)
        raise UserError(f"--scheduler: {scheduler!r} is not allowed; allowed: {allowed}")
    if max_failures < -1:
        raise UserError(f"--max-failures: {max_failures} is not allowed; allowed: -1 (forever) "
                        "or a count >= 0")  # fmt: skip
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError(f"--max-concurrent: {max_concurrent} is not allowed; allowed: >= 1")


def parse_pack_size(value: str | int) -> str | int:
    """``"auto"`` or a positive trial count, from the CLI string or the Python API."""
    if value == "auto":
        return "auto"
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise UserError(f"--pack-size: {value!r} is not allowed; allowed: auto or an integer >= 1")
    return size


def launch_units(
    todo: list[str], configs: Mapping[str, TrialConfig], pack_size: str | int,
    resources: TrialResources, scheduler: str,
) -> list[list[str]]:  # fmt: skip
    """The Ray units of a launch: packs of compatible trials (by hash), or one trial each.

    ``auto`` packs only on GPUs and only under FIFO, with the measured per-model pack size
    (``trainables.pack.defaults``); trials that cannot share a pack run alone.
    """
    size = parse_pack_size(pack_size)
    if size == "auto":
        if resources.gpus <= 0 or scheduler != "fifo":
            return [[h] for h in todo]
        from trainables.pack import defaults_for

        size = min(defaults_for(configs[h].model, "cuda").pack_size for h in todo)
    if size <= 1:
        return [[h] for h in todo]
    from trainables.pack import plan_packs

    groups = plan_packs([configs[h] for h in todo], size)
    return [[todo[i] for i in group] for group in groups]


def _overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    from search_spaces import parse_overrides

    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    return parse_overrides(list(overrides))


def _placed(cfg: TrialConfig, root: str, resources: TrialResources) -> TrialConfig:
    """Where-fields of this launch (not part of the hash): data root and device."""
    return cfg.replace(data_root=root, device="auto" if resources.gpus > 0 else "cpu")


# ---------------------------------------------------------------------- the launch


def _unfinished(store: ExperimentStore, ledger: dict[str, Any], hashes: list[str]) -> list[str]:
    stopped = ledger.get("stopped", {})
    return [h for h in hashes if h not in stopped and not store.trial(h).is_finished()]


def _launch(store: ExperimentStore, ledger: dict[str, Any], command: str, grid: str,
            configs: dict[str, TrialConfig], settings: dict[str, Any], *,
            num_cpus: int | None, num_gpus: int | None, reuse_actors: bool,
            quiet: bool) -> SweepResult:  # fmt: skip
    planned = len(ledger.get("trials", {}))
    todo = _unfinished(store, ledger, list(configs))
    if not todo:
        if not quiet:
            print(f"{store.name}: nothing to run; all {len(configs)} trials finished or stopped")
        return SweepResult(store.name, store.storage, None, planned, 0, _counts(store, configs))
    from rest_sweep.cluster import check_fits, ray_context, sigterm_as_sigint

    resources = TrialResources(settings["resources"]["cpu"], settings["resources"]["gpu"])
    with ray_context(settings["address"], num_cpus, num_gpus) as where:
        check_fits(resources)
        launch = ledgers.start_launch(store, command, grid, todo, settings)
        from rest_sweep.tuner import LaunchPlan, build_tuner

        units = launch_units(todo, configs, settings.get("pack_size", 1), resources,
                             settings["scheduler"])  # fmt: skip
        launch_plan = LaunchPlan(
            store=store, launch_id=launch["id"], configs={h: configs[h] for h in todo},
            units=units,
            resources=resources, max_concurrent=settings["max_concurrent"],
            scheduler=settings["scheduler"], metric=settings["metric"],
            max_failures=settings["max_failures"], already_finished=len(configs) - len(todo),
            reuse_actors=reuse_actors, quiet=quiet,
        )  # fmt: skip
        if not quiet:
            packed = f" in {len(units)} packed processes" if len(units) < len(todo) else ""
            print(f"{store.name}: launch {launch['id']} on {where}: {len(todo)} of "
                  f"{len(configs)} trials to run{packed}, {resources.cpus:g} CPU / "
                  f"{resources.gpus:g} GPU each; Ray Tune output in {launch['tune_path']}")  # fmt: skip
        outcome = "interrupted"
        try:
            with sigterm_as_sigint():
                results = build_tuner(launch_plan).fit()
            outcome = _outcome(store, todo, results.num_errors)
        finally:
            counts = _counts(store, {h: configs[h] for h in todo})
            ledgers.end_launch(store, launch["id"], outcome, counts)
    if not quiet and outcome == "interrupted":
        print(f"{store.name}: interrupted; continue with: rest-sweep resume --storage "
              f"{store.storage} --name {store.name}")  # fmt: skip
    return SweepResult(store.name, store.storage, launch["id"], planned, len(todo),
                       _counts(store, configs), outcome)  # fmt: skip


def _outcome(store: ExperimentStore, todo: list[str], num_errors: int) -> str:
    """completed; errors (every unfinished trial exhausted its retries); else interrupted."""
    left = _unfinished(store, store.read_ledger(), todo)
    if not left:
        return "completed"
    return "errors" if num_errors >= len(left) else "interrupted"


def _counts(store: ExperimentStore, configs: Mapping[str, TrialConfig]) -> dict[str, int]:
    stopped = store.read_ledger().get("stopped", {})
    finished = sum(store.trial(h).is_finished() for h in configs)
    stopped_n = sum(h in stopped and not store.trial(h).is_finished() for h in configs)
    errored = sum(
        (store.trial(h).read_state() or {}).get("state") == "errored"
        and not store.trial(h).is_finished()
        for h in configs
    )
    return {"trials": len(configs), "finished": finished, "errored": errored,
            "stopped": stopped_n}  # fmt: skip
