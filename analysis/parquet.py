"""``trials.parquet`` and ``epochs.parquet``: explicit schemas, stable order, atomic writes.

Re-running analyze on unchanged inputs gives byte-identical files: rows are sorted by a key
that depends only on the data, the schema carries no timestamps and no pandas metadata, and
the writer options are fixed here (the only varying bytes would come from a different
pyarrow version, which the Parquet footer names in ``created_by``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.load import Experiment, TrialRecord
from analysis.schema import (
    CFG_PREFIX,
    FINAL_PREFIX,
    METRIC_NAMES,
    SEL_PREFIX,
    epochs_schema,
    trials_schema,
)
from trainables.config import trial_label
from trainables.data.provenance import trial_data_source
from trainables.results import DENSITY, EPOCH, EPOCH_TIME_S, TRAIN_FLOPS, Location

TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "store_schema": True,
}


def _number(value: Any) -> float | None:
    """A float, or None for missing / non-numeric / NaN values (never a silent zero)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _ratio(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole


def registry_labels(config: dict[str, Any]) -> str | None:
    """The labels a trial's method reads in training, from the method registry (torch-free):
    the fallback for trials without a summary. None for a method that is not registered."""
    from trainables import methods
    from trainables.errors import UserError

    method = str(config.get("method", ""))
    if method not in methods.METHODS:
        return None
    objective = config.get("objective")
    try:  # without an objective: the method's own (effective_method's default)
        info = methods.effective_method(method, *([str(objective)] if objective else []))
    except UserError:  # an objective this registry does not know
        info = methods.METHODS.get(method)
    return str(info.labels)


def _metric_values(prefix: str, row: dict[str, Any] | None) -> dict[str, float | None]:
    row = row or {}
    return {prefix + name: _number(row.get(name)) for name in METRIC_NAMES}


def data_columns(
    record: TrialRecord, data_root: str | None = None, cache: dict | None = None
) -> dict[str, Any]:
    """``data_title``, ``data_images``, ``data_comparable``, ``data_record``: the trial's own
    record (summary), else ``<data_root>/<dataset>/source.json`` read now (the trial's
    ``data_root``, else ``data_root``: the ledger's), else nulls with ``data_record`` "none"."""
    dataset = str(record.config.get("dataset", ""))
    root = str(record.config.get("data_root") or data_root or "")
    source, found = trial_data_source(dataset, record.summary, root, cache)
    source = source or {}
    return {
        "data_title": source.get("title"),
        "data_images": source.get("images"),
        "data_comparable": source.get("comparable"),
        "data_record": found,
    }


def trial_row(
    record: TrialRecord,
    config_names: list[str],
    data_root: str | None = None,
    cache: dict | None = None,
) -> dict[str, Any]:
    """One trials.parquet row: config, status, final/selected metrics, costs, which data
    (``data_root``: the ledger's, for trials whose config names none)."""
    summary = record.summary or {}
    last = record.metrics[-1] if record.metrics else None
    final = summary.get("final") or last
    row: dict[str, Any] = {
        "trial_hash": record.trial_hash,
        "label": trial_label(record.config),
        "status": record.status,
        "error": record.error,
        "attempts": record.attempts,
        "grids": ",".join(record.grids) or None,
        "epochs_done": len(record.metrics),
        "selected_epoch": _integer(summary.get("selected_epoch")),
        "labels_used": str(summary.get("labels_used") or "") or registry_labels(record.config),
        "networks": _integer(summary.get("networks")),
        **data_columns(record, data_root, cache),
        "config_json": json.dumps(record.config, sort_keys=True),
    }
    row.update({CFG_PREFIX + n: record.config.get(n) for n in config_names})
    row.update(_metric_values(FINAL_PREFIX, final))
    row.update(_metric_values(SEL_PREFIX, summary.get("selected") if summary else None))
    train_flops = _number(summary.get("train_flops"))
    if train_flops is None and final is not None:
        train_flops = _number(final.get(TRAIN_FLOPS))
    epoch_times = [_number(r.get(EPOCH_TIME_S)) for r in record.metrics]
    wall = _number(summary.get("wall_time_s"))
    if wall is None and epoch_times and None not in epoch_times:
        wall = float(sum(t for t in epoch_times if t is not None))
    nonzero, total = _integer(summary.get("nonzero_params")), _integer(summary.get("total_params"))
    inference, dense_inference = (
        _number(summary.get("inference_flops")),
        _number(summary.get("dense_inference_flops")),
    )
    dense_train = _number(summary.get("dense_train_flops"))
    row.update(
        density_reached=_number(final.get(DENSITY)) if final else None,
        nonzero_params=nonzero,
        total_params=total,
        params_ratio=_ratio(nonzero, total),
        train_flops=train_flops,
        dense_train_flops=dense_train,
        train_flops_ratio=_ratio(train_flops, dense_train),
        inference_flops=inference,
        dense_inference_flops=dense_inference,
        inference_flops_ratio=_ratio(inference, dense_inference),
        wall_time_s=wall,
        device=summary.get("device") or None,
        gpu_name=summary.get("gpu_name") or None,
    )
    return row


def _coerce_config(row: dict[str, Any], schema: pa.Schema) -> None:
    """Make config values fit their column type; a value that cannot is kept as missing."""
    for f in schema:
        if not f.name.startswith(CFG_PREFIX) or row.get(f.name) is None:
            continue
        value = row[f.name]
        if pa.types.is_floating(f.type):
            row[f.name] = _number(value)
        elif pa.types.is_integer(f.type):
            row[f.name] = _integer(value)
        elif pa.types.is_boolean(f.type):
            row[f.name] = value if isinstance(value, bool) else None
        elif not isinstance(value, str):
            row[f.name] = json.dumps(value, sort_keys=True)


def _sort_key(row: dict[str, Any]) -> tuple:
    def k(name: str) -> tuple:
        value = row.get(CFG_PREFIX + name)
        return (value is None, value if value is not None else 0)

    return (
        *(k(n) for n in ("dataset", "ratio", "method", "recipe", "density", "seed")),
        row["trial_hash"],
    )


def trials_table(experiment: Experiment) -> pa.Table:
    """Exactly one row per planned trial, whatever restores and retries happened."""
    schema = trials_schema()
    config_names = [f.name[len(CFG_PREFIX) :] for f in schema if f.name.startswith(CFG_PREFIX)]
    data_root = str(experiment.ledger.get("data_root") or "")
    cache: dict = {}  # one read of a data root's source.json, not one per trial
    rows = [trial_row(record, config_names, data_root, cache) for record in experiment.trials]
    for row in rows:
        _coerce_config(row, schema)
    rows.sort(key=_sort_key)
    return pa.Table.from_pylist(rows, schema=schema)


def epochs_table(experiment: Experiment) -> pa.Table:
    """One row per (trial, epoch), de-duplicated (the last written row of an epoch wins).

    Built column by column (about 100k rows for a paper-sized sweep); NaN becomes null."""
    schema = epochs_schema()
    columns: dict[str, list[Any]] = {f.name: [] for f in schema}
    for record in sorted(experiment.trials, key=lambda r: r.trial_hash):
        by_epoch = {int(r[EPOCH]): r for r in record.metrics}
        for epoch in sorted(by_epoch):
            row = by_epoch[epoch]
            columns["trial_hash"].append(record.trial_hash)
            columns[EPOCH].append(epoch)
            for name in METRIC_NAMES:
                columns[name].append(row.get(name))
    return pa.Table.from_arrays([_column(columns[f.name], f.type) for f in schema], schema=schema)


def _column(values: list[Any], type_: pa.DataType) -> pa.Array:
    """A typed Arrow column; values that do not fit the type (a string in a metric) become
    null rather than failing the whole export."""
    try:
        return pa.array(values, type=type_, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array([_number(v) for v in values], type=type_, from_pandas=True)


def parquet_bytes(table: pa.Table) -> bytes:
    """The file's bytes with the fixed writer options (deterministic for a pyarrow version)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **_WRITE_OPTIONS)
    return sink.getvalue().to_pybytes()


def write_parquet(out: Location, name: str, table: pa.Table) -> None:
    """Atomic write (temporary sibling, then replace) on any pyarrow filesystem."""
    out.write_bytes(name, parquet_bytes(table))
