"""The columns of ``trials.parquet`` and ``epochs.parquet``: names, Arrow types, meanings.

One list per file is the single source for the pyarrow schemas (so a column keeps its type
even when every value is missing) and for the schema table in ``docs/analysis.md`` (a test
checks the two agree). Config columns come from :class:`trainables.config.TrialConfig`'s
fields, prefixed ``cfg_``, so a new config field becomes a new column with no edit here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import pyarrow as pa

from trainables.config import TrialConfig, field_help
from trainables.results import EPOCH, METRIC_HELP, TRIAL_STATES
from trainables.results import EPOCH_METRICS as RESULT_METRICS

SCHEMA_VERSION = "3"  # 2: labels_used, networks; 3: data_title/images/comparable/record
CFG_PREFIX = "cfg_"
FINAL_PREFIX = "final_"
SEL_PREFIX = "sel_"
STATUSES: tuple[str, ...] = TRIAL_STATES  # the result format's trial-state rule

# Per-epoch metric names of the result format (trainables.results), without ``epoch``.
EPOCH_METRICS: tuple[tuple[str, str], ...] = tuple(METRIC_HELP.items())
METRIC_NAMES: tuple[str, ...] = RESULT_METRICS

_ARROW_OF_ANNOTATION = {
    "str": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
}


@dataclass(frozen=True)
class Column:
    """One documented column: its name, Arrow type and meaning."""

    name: str
    type: pa.DataType
    meaning: str


def config_columns() -> list[Column]:
    """``cfg_<field>`` for every TrialConfig field, typed from the field's annotation."""
    helps = field_help()
    out = []
    for f in fields(TrialConfig):
        arrow = _ARROW_OF_ANNOTATION.get(str(f.type), pa.string())
        out.append(Column(CFG_PREFIX + f.name, arrow, f"config: {helps[f.name]}"))
    return out


def trial_columns() -> list[Column]:
    """Every column of ``trials.parquet``, in file order."""
    f64, i64, s = pa.float64(), pa.int64(), pa.string()
    head = [
        Column("trial_hash", s, "TrialConfig content hash; the trial folder name (primary key)"),
        Column("label", s, "readable name: dataset_rRATIO_method[_dDENSITY]_sSEED"),
        Column("status", s, "finished / running / errored / stopped / pending (see docs)"),
        Column(
            "error", s, "one line: the exception of the last failed attempt (kept after a retry)"
        ),
        Column("attempts", i64, "attempt counter from state.json (null if never started)"),
        Column("grids", s, "comma-separated grid names of the launches that planned this trial"),
        Column("epochs_done", i64, "epochs with a metrics row (0 when none)"),
        Column("selected_epoch", i64, "epoch chosen by cfg_selection (finished trials only)"),
        Column(
            "labels_used",
            s,
            "labels the method reads in training besides the class label: none / bias / group "
            "(summary, else the method registry)",
        ),
        Column(
            "networks", i64, "networks the method trains (summary; null until the trial finishes)"
        ),
        Column(
            "data_title",
            s,
            "the data the numbers come from, e.g. Colored MNIST / Colored Fashion-MNIST "
            "(the bundle's source.json; null when not recorded)",
        ),
        Column(
            "data_images",
            s,
            "the images the bundle was made from (MNIST, Fashion-MNIST, the authors' bundle, ...; "
            "null when not recorded)",
        ),
        Column(
            "data_comparable",
            pa.bool_(),
            "whether the numbers may be put beside the paper's (false for a stand-in; null "
            "when not recorded)",
        ),
        Column(
            "data_record",
            s,
            "where data_* come from: summary (the trial's own record) / data root (the data "
            "root's source.json read at analysis time) / none",
        ),
    ]
    metrics = [Column(FINAL_PREFIX + n, f64, f"last recorded epoch: {m}") for n, m in EPOCH_METRICS]
    selected = [Column(SEL_PREFIX + n, f64, f"selected epoch: {m}") for n, m in EPOCH_METRICS]
    costs = [
        Column("density_reached", f64, "density at the last recorded epoch"),
        Column("nonzero_params", i64, "non-zero parameters of the final model (summary)"),
        Column("total_params", i64, "parameters of the dense model (summary)"),
        Column("params_ratio", f64, "nonzero_params / total_params"),
        Column("train_flops", f64, "training FLOPs of the whole run (summary, else last epoch)"),
        Column("dense_train_flops", f64, "training FLOPs of the dense model (summary)"),
        Column("train_flops_ratio", f64, "train_flops / dense_train_flops"),
        Column("inference_flops", f64, "FLOPs of one forward pass of one sample (summary)"),
        Column("dense_inference_flops", f64, "the same for the dense model (summary)"),
        Column("inference_flops_ratio", f64, "inference_flops / dense_inference_flops"),
        Column("wall_time_s", f64, "summary wall time, else the sum of epoch_time_s"),
        Column("device", s, "device the trial ran on (summary)"),
        Column("gpu_name", s, "GPU type (summary; null on CPU)"),
        Column("config_json", s, "the trial's config exactly as the ledger holds it (JSON)"),
    ]
    return [*head, *config_columns(), *metrics, *selected, *costs]


def epoch_columns() -> list[Column]:
    """Every column of ``epochs.parquet``: the key, then the per-epoch metrics."""
    key = [
        Column("trial_hash", pa.string(), "trial (join with trials.parquet)"),
        Column(EPOCH, pa.int64(), "epoch number, 1-based; unique per trial"),
    ]
    return [*key, *(Column(n, pa.float64(), m) for n, m in EPOCH_METRICS)]


def arrow_schema(columns: list[Column], kind: str) -> pa.Schema:
    """The pyarrow schema, tagged with the file kind and schema version (no timestamps)."""
    return pa.schema(
        [pa.field(c.name, c.type) for c in columns],
        metadata={"rest_sweep.kind": kind, "rest_sweep.schema_version": SCHEMA_VERSION},
    )


def trials_schema() -> pa.Schema:
    return arrow_schema(trial_columns(), "trials")


def epochs_schema() -> pa.Schema:
    return arrow_schema(epoch_columns(), "epochs")


def markdown_table(columns: list[Column]) -> str:
    """The docs table (column | type | meaning); ``cfg_*`` rows collapse into one line."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    cfg_done = False
    for c in columns:
        if c.name.startswith(CFG_PREFIX):
            if not cfg_done:
                lines.append(
                    "| `cfg_<field>` | per field (string / double / int64 / bool) | every "
                    "`TrialConfig` field, typed from its annotation |"
                )
                cfg_done = True
            continue
        lines.append(f"| `{c.name}` | {c.type} | {c.meaning} |")
    return "\n".join(lines)
