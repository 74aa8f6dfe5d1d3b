"""Synthetic experiment folders in the real result format, for tests, benchmarks and demos.

The numbers are made up (a smooth accuracy-vs-density bump plus seeded noise) but every file
is written through :mod:`trainables.results`, exactly where ``run_trial`` would put it, so
analysis code runs against the same layout as a real sweep. Configs are built without
``TrialConfig`` validation (which imports the model registry, hence torch); the hash uses the
same rule as ``TrialConfig.trial_hash`` (a test pins the two together).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from analysis.parquet import registry_labels
from trainables import results as R
from trainables.config import TrialConfig, recipe_defaults
from trainables.data.provenance import data_source
from trainables.results import ExperimentStore

# The trials' data by default: the authors' bundle (no source.json), as a trial records it.
AUTHORS = "authors"
Source = Mapping[str, Any] | str | None  # AUTHORS, a source.json record, or None: no record


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(TrialConfig) if f.default is not MISSING}


def networks(config: Mapping[str, Any]) -> int:
    """The networks the trial's method trains (``MethodInfo.networks``; 1 if not registered)."""
    from trainables.methods import METHODS

    method = str(config["method"])
    return METHODS.get(method).networks if method in METHODS else 1


def model_size(config: Mapping[str, Any]) -> tuple[int, float]:
    """(maskable weights, dense forward FLOPs per image) of the trial's network, from the model
    catalogue's layer table at its classes, width, stem and trained input size: what a real
    trial's summary counts."""
    values = {**_defaults(), **config}  # a hand-made config may leave fields out
    keys = ("model", "dataset", "width", "stem", "augment")
    model, dataset, width, stem, augment = (values[k] for k in keys)
    return _model_size(str(model), str(dataset), int(width), str(stem), str(augment))


@functools.cache
def _model_size(model: str, dataset: str, width: int, stem: str, augment: str) -> tuple[int, float]:
    from trainables.datasets import DATASETS
    from trainables.models import MODELS

    info = DATASETS.get(dataset)
    layers = MODELS.get(model).layers(info.num_classes, width, stem, info.trained_size(augment))
    return sum(layer.numel for layer in layers.values()), math.fsum(
        layer.flops for layer in layers.values()
    )


def make_config(recipe: str = "paper", **overrides: Any) -> dict[str, Any]:
    """A full config dict (TrialConfig.to_dict() shape) with the recipe's defaults."""
    values = _defaults()
    values.update(
        recipe_defaults(
            recipe,
            overrides.get("dataset", values["dataset"]),
            float(overrides.get("ratio", values["ratio"])),
            overrides.get("method", values["method"]),
            model=overrides.get("model"),
        )
    )
    values.update(overrides)
    values["recipe"] = recipe
    return values


def config_hash(config: dict[str, Any]) -> str:
    """TrialConfig.trial_hash's rule: sha256 of the identity fields that differ from default."""
    identity = {}
    for f in fields(TrialConfig):
        if f.metadata["identity"] and f.name in config and config[f.name] != f.default:
            identity[f.name] = config[f.name]
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def final_accuracy(config: dict[str, Any]) -> float:
    """Made-up unbiased accuracy: rises with the ratio, peaks near density 0.05 for sparse
    methods, collapses at very low density; up-weighting helps."""
    base = {"cmnist": 0.55, "cifar10c": 0.22, "bffhq": 0.45}.get(config["dataset"], 0.4)
    acc = base + 0.08 * math.log2(1 + float(config["ratio"]))
    if config["reweight"] != "none":
        acc += 0.04
    density = float(config["density"])
    if density < 1:
        x = math.log10(density)
        acc += 0.05 * math.exp(-((x - math.log10(0.05)) ** 2) / 0.6) - 0.35 * math.exp(
            -3 * (x + 3.3)
        )
    return min(0.99, max(0.05, acc))


def epoch_rows(
    config: dict[str, Any], epochs: int, seed_noise: float = 0.01
) -> list[dict[str, Any]]:
    """Per-epoch rows with every metric name of the result format."""
    rng = random.Random(config_hash(config))
    target = final_accuracy(config) + rng.gauss(0, seed_noise)
    dense = model_size(config)[1]
    rows, flops = [], 0.0
    for epoch in range(1, epochs + 1):
        progress = 1 - math.exp(-4 * epoch / max(1, epochs))
        unbiased = target * progress + rng.gauss(0, 0.003)
        row: dict[str, Any] = {
            R.EPOCH: epoch,
            R.TRAIN_LOSS: 2.3 * (1 - progress) + 0.05,
            R.TRAIN_ACC: min(1.0, 0.5 + 0.5 * progress),
        }
        for split, shift in ((R.VALID, 0.01), (R.TEST, 0.0)):
            u = max(0.0, min(1.0, unbiased + shift))
            conflicting, aligned = max(0.0, u - 0.08), min(1.0, u + 0.2)
            values = {
                R.LOSS: 2.3 * (1 - progress) + 0.3,
                R.ACC: (u + aligned) / 2,
                R.ACC_ALIGNED: aligned,
                R.ACC_CONFLICTING: conflicting,
                R.WORST_GROUP_ACC: min(aligned, conflicting),
                R.UNBIASED_ACC: u,
            }
            row.update({R.split_metric(split, k): v for k, v in values.items()})
        flops += 3 * dense * float(config["density"]) * 10_000 * networks(config)
        row[R.DENSITY] = float(config["density"])
        row[R.TRAIN_FLOPS] = flops
        row[R.LR] = float(config["lr"])
        row[R.EPOCH_TIME_S] = 0.5 + rng.random() * 0.1
        rows.append(row)
    return rows


def summary_of(
    config: dict[str, Any], rows: list[dict[str, Any]], source: Source = AUTHORS
) -> dict[str, Any]:
    """summary.json as run_trial writes it (selection: best valid worst-group accuracy).

    ``source``: the trial's data (:data:`AUTHORS`, or a bundle's source.json record); None
    leaves ``data_source`` out, as in results made before trials recorded it."""
    selected = (
        rows[-1]
        if config["selection"] == "last"
        else max(rows, key=lambda r: r[R.split_metric(R.VALID, R.WORST_GROUP_ACC)])
    )
    total, dense = model_size(config)
    density = float(config["density"])
    extra = {}
    if source is not None:
        record = None if source == AUTHORS else source
        extra["data_source"] = data_source(config["dataset"], record)
    return {
        "trial_hash": config_hash(config),
        "status": "finished",
        "epochs": len(rows),
        "final": rows[-1],
        "selected": selected,
        "selected_epoch": selected[R.EPOCH],
        "selection": config["selection"],
        "recipe": config["recipe"],
        "labels_used": registry_labels(config) or "none",
        "networks": networks(config),
        "density": density,
        "nonzero_params": int(round(total * density)),
        "total_params": total,
        "inference_flops": dense * density,
        "dense_inference_flops": dense,
        "train_flops": rows[-1][R.TRAIN_FLOPS],
        "dense_train_flops": 3 * dense * 10_000 * len(rows),
        "wall_time_s": sum(r[R.EPOCH_TIME_S] for r in rows),
        "device": "cpu",
        "gpu_name": "",
        "attempts": 1,
        **extra,
    }


def write_trial(
    store: ExperimentStore,
    config: dict[str, Any],
    *,
    status: str = "finished",
    epochs_done: int | None = None,
    source: Source = AUTHORS,
) -> str:
    """Write one trial folder in the state ``status`` (finished / running / errored /
    stopped / pending); returns its hash. ``stopped`` writes what an interrupted attempt leaves
    (state.json "interrupted"), which the trial-state rule reports as pending, interrupted.
    ``source``: the data the summary records (see :func:`summary_of`)."""
    trial_hash = config_hash(config)
    if status == "pending":
        return trial_hash
    trial = store.trial(trial_hash)
    epochs = int(config["epochs"])
    done = (
        epochs
        if status == "finished"
        else (epochs_done if epochs_done is not None else epochs // 2)
    )
    rows = epoch_rows(config, epochs)[:done]
    trial.write_config(config)
    trial.write_metrics(rows)
    if status == "finished":
        trial.write_summary(summary_of(config, rows, source))
        trial.write_state("finished", attempt=1, epoch=done)
    elif status == "errored":
        trial.write_error(
            'Traceback (most recent call last):\n  File "loop.py"\nRuntimeError: CUDA out of memory\n'
        )
        trial.write_state("errored", attempt=1, error="RuntimeError: CUDA out of memory")
    else:
        trial.write_state(
            "running" if status == "running" else "interrupted", attempt=1, epoch=done
        )
    return trial_hash


def grid_configs(
    *,
    datasets: tuple[str, ...] = ("cmnist",),
    ratios: tuple[float, ...] = (1.0, 5.0),
    methods: tuple[str, ...] = ("erm", "rigl", "rest"),
    densities: tuple[float, ...] = (0.01, 0.05, 0.2),
    seeds: tuple[int, ...] = (41, 42, 43),
    epochs: int = 4,
    recipe: str = "paper",
) -> list[dict[str, Any]]:
    """A small paper-shaped grid: dense methods once, sparse methods at each density.

    Under the ``paper`` recipe a (dataset, ratio) the paper never ran (no paper up-weight,
    e.g. BFFHQ at 1 %) is left out, as the recipe refuses it."""
    from trainables.datasets import DATASETS
    from trainables.methods import METHODS

    out = []
    for dataset in datasets:
        for ratio in ratios:
            if recipe == "paper" and float(ratio) not in DATASETS.get(dataset).paper_ratios:
                continue
            for method in methods:
                sparse = method in METHODS and METHODS.get(method).sparse
                for density in densities if sparse else (1.0,):
                    for seed in seeds:
                        out.append(
                            make_config(
                                recipe,
                                dataset=dataset,
                                ratio=ratio,
                                method=method,
                                density=density,
                                seed=seed,
                                epochs=epochs,
                            )
                        )
    return out


def write_experiment(
    storage: str,
    name: str,
    configs: list[dict[str, Any]],
    *,
    statuses: dict[str, str] | None = None,
    grid: str = "synthetic",
    source: Source = AUTHORS,
) -> ExperimentStore:
    """Ledger + trial folders; ``statuses`` maps a trial hash to its state (default finished);
    ``source``: the data every finished trial records (see :func:`summary_of`)."""
    store = ExperimentStore(storage, name)
    statuses = statuses or {}
    trials = {}
    for config in configs:
        trial_hash = write_trial(
            store, config, status=statuses.get(config_hash(config), "finished"), source=source
        )
        trials[trial_hash] = config
    store.write_ledger(
        {
            "name": name,
            "schema": 1,
            "trials": trials,
            "grids": [
                {
                    "grid": grid,
                    "recipe": configs[0]["recipe"] if configs else None,
                    "count": len(trials),
                }
            ],
            "launches": [{"id": "L001", "command": "run", "grid": grid, "trials": sorted(trials)}],
        }
    )
    return store
