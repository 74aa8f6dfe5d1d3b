"""Seed aggregation: one *cell* per (dataset, model, ratio, recipe, method, variant, density).

A cell is what a table entry or a curve point summarises: the trials that differ only by
seed. ``variant`` names any other config field that differs inside such a group (an ablation
of ``sparse_init``, say), so different settings are never averaged together. Accuracies are
fractions in the files and percentages here (x100), the unit of the paper's tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.schema import CFG_PREFIX, FINAL_PREFIX, SEL_PREFIX, config_columns
from trainables.config import NON_IDENTITY_FIELDS
from trainables.datasets import DATASETS
from trainables.errors import UserError
from trainables.results import (
    ACC,
    ACC_ALIGNED,
    ACC_CONFLICTING,
    UNBIASED_ACC,
    WORST_GROUP_ACC,
    split_metric,
)

METRICS: dict[str, str] = {
    "unbiased": UNBIASED_ACC,
    "conflicting": ACC_CONFLICTING,
    "worst-group": WORST_GROUP_ACC,
    "aligned": ACC_ALIGNED,
    "accuracy": ACC,
}
EPOCHS: dict[str, str] = {"selected": SEL_PREFIX, "final": FINAL_PREFIX}
KEY = ["dataset", "model", "ratio", "recipe", "method", "variant", "density"]
ROW_KEY = ["dataset", "model", "ratio", "recipe"]
# Config fields that never define a cell: the seed is what we average over, the rest are outside
# a trial's identity (where it ran, how it was stored, prune's levels: not in its hash).
_NOT_VARIANT = frozenset({"seed", *NON_IDENTITY_FIELDS})
# Per-trial costs averaged into each cell (Table 1).
_COSTS = (
    "train_flops_ratio",
    "inference_flops_ratio",
    "params_ratio",
    "nonzero_params",
    "train_flops",
    "inference_flops",
    "density_reached",
)
# What each cell's method is: the labels it reads in training, the networks it trains.
_FACTS = ("labels_used", "networks")


@dataclass(frozen=True)
class MetricChoice:
    """Which accuracy a table shows: ``paper`` (per dataset, as the paper) or a fixed one,
    taken at the ``selected`` epoch (the trial's selection rule) or the ``final`` one."""

    metric: str = "paper"
    epoch: str = "selected"

    def __post_init__(self) -> None:
        allowed = ("paper", *METRICS)
        if self.metric not in allowed:
            raise UserError(
                f"metric: {self.metric!r} is not allowed; allowed: {', '.join(allowed)}"
            )
        if self.epoch not in EPOCHS:
            raise UserError(f"epoch: {self.epoch!r} is not allowed; allowed: {', '.join(EPOCHS)}")

    def metric_for(self, dataset: str) -> str:
        """``paper``: what the paper's Table 2 reports for ``dataset`` (the registry's
        ``paper_metric``: unbiased for CMNIST and CIFAR-10-C, conflicting for BFFHQ);
        an unregistered dataset falls back to unbiased."""
        if self.metric != "paper":
            return self.metric
        return DATASETS.get(dataset).paper_metric if dataset in DATASETS else "unbiased"

    def column(self, dataset: str, split: str) -> str:
        """The trials.parquet column, e.g. ``sel_test_unbiased_acc``."""
        return EPOCHS[self.epoch] + split_metric(split, METRICS[self.metric_for(dataset)])

    def describe(self, dataset: str) -> str:
        return f"{self.metric_for(dataset)} test accuracy ({self.epoch} epoch)"


def plain(trials: pd.DataFrame) -> pd.DataFrame:
    """trials.parquet as a frame with config columns un-prefixed and a ``variant`` column."""
    df = trials.rename(columns=lambda c: c[len(CFG_PREFIX) :] if c.startswith(CFG_PREFIX) else c)
    df = df.copy()
    df["variant"] = _variants(df)
    return df


def _variants(df: pd.DataFrame) -> pd.Series:
    """For each trial, the fields that differ from others of its (KEY minus variant) group."""
    config = [c.name[len(CFG_PREFIX) :] for c in config_columns()]
    others = [c for c in config if c in df.columns and c not in _NOT_VARIANT and c not in KEY]
    out = pd.Series([""] * len(df), index=df.index, dtype=object)
    if df.empty or not others:
        return out
    base = [k for k in KEY if k != "variant"]
    text = df[others].astype(str)
    grouped = text.groupby([df[k].astype(str) for k in base], sort=False)
    differs = grouped.transform("nunique") > 1
    for index in differs.index[differs.any(axis=1)]:
        fields = [c for c in others if differs.at[index, c]]
        out[index] = ", ".join(f"{c}={df.at[index, c]}" for c in fields)
    return out


@dataclass(frozen=True)
class DataName:
    """What the tables call one dataset's data, and whether the paper's numbers may be put
    beside it: ``why`` says why not ("Colored Fashion-MNIST stand-in"), "" when they may."""

    name: str
    comparable: bool
    why: str = ""


NOT_RECORDED = "data source not recorded"


def data_names(df: pd.DataFrame) -> dict[str, DataName]:
    """Per dataset, the data its numbers come from (the ``data_*`` columns of its finished
    trials, else of all its trials): the one ``data_title`` they share ("Colored Fashion-MNIST"),
    comparable when every one is; several titles, or some trials with no record, are listed in
    the registry name ("CMNIST (mixed data: Colored Fashion-MNIST, Colored MNIST)") and not
    comparable; no record at all gives "CMNIST (data source not recorded)", not comparable
    (docs/analysis.md). A frame without the columns (built by hand) keeps the registry name."""
    out: dict[str, DataName] = {}
    if df.empty or "dataset" not in df.columns:
        return out
    for dataset, rows in df.groupby("dataset", sort=True):
        short = DATASETS.get(dataset).display_name if dataset in DATASETS else str(dataset)
        if "data_record" not in rows.columns:
            out[dataset] = DataName(short, True)
            continue
        done = rows[rows["status"] == "finished"] if "status" in rows.columns else rows
        considered = done if not done.empty else rows
        known = considered[considered["data_record"].fillna("none") != "none"]
        titles = sorted({str(t) for t in known["data_title"].dropna()})
        unknown = len(known) < len(considered)
        if not titles:
            out[dataset] = DataName(f"{short} ({NOT_RECORDED})", False, NOT_RECORDED)
        elif len(titles) == 1 and not unknown:
            comparable = all(not pd.isna(v) and bool(v) for v in known["data_comparable"])
            why = "" if comparable else f"{titles[0]} stand-in"
            out[dataset] = DataName(titles[0], comparable, why)
        else:
            listed = ", ".join([*titles, *([NOT_RECORDED] if unknown else [])])
            out[dataset] = DataName(f"{short} (mixed data: {listed})", False, "mixed data")
    return out


def labels_text(values: pd.Series) -> str | None:
    """The labels a cell's trials read (``none`` / ``bias`` / ``group``), one value normally;
    several joined by ``/`` (a cell mixing them); None when no trial says."""
    found = sorted({str(v) for v in values.dropna() if str(v)})
    return "/".join(found) or None


def aggregate(df: pd.DataFrame, choice: MetricChoice) -> pd.DataFrame:
    """One row per cell: planned/finished seed counts, test and valid mean/std (percent),
    mean costs, the labels used and networks trained. Only finished trials with the metric
    present count as done."""
    columns = [
        *KEY,
        "data",
        *_FACTS,
        "n_planned",
        "n_done",
        "test_mean",
        "test_std",
        "valid_mean",
        "valid_std",
        *_COSTS,
    ]
    if df.empty:
        return pd.DataFrame(columns=columns)
    work = df[[*KEY, "status", *_COSTS]].copy()
    work["_test"], work["_valid"] = float("nan"), float("nan")
    for dataset in work["dataset"].dropna().unique():
        rows = work["dataset"] == dataset
        work.loc[rows, "_test"] = 100 * df.loc[rows, choice.column(dataset, "test")]
        work.loc[rows, "_valid"] = 100 * df.loc[rows, choice.column(dataset, "valid")]
    planned = work.groupby(KEY, dropna=False, sort=True).size().rename("n_planned")
    facts = df[KEY].copy()
    for name in _FACTS:  # a frame from an older trials.parquet may lack them
        facts[name] = df[name] if name in df.columns else None
    facts = facts.groupby(KEY, dropna=False, sort=True).agg(
        labels_used=("labels_used", labels_text), networks=("networks", "max")
    )
    done = work[(work["status"] == "finished") & work["_test"].notna()]
    stats = done.groupby(KEY, dropna=False, sort=True).agg(
        n_done=("_test", "size"),
        test_mean=("_test", "mean"),
        test_std=("_test", "std"),
        valid_mean=("_valid", "mean"),
        valid_std=("_valid", "std"),
        **{cost: (cost, "mean") for cost in _COSTS},
    )
    out = planned.to_frame().join(facts, how="left").join(stats, how="left").reset_index()
    out["n_done"] = out["n_done"].fillna(0).astype(int)
    names = data_names(df)
    out["data"] = [names[d].name if d in names else str(d) for d in out["dataset"]]
    return out[columns]


def is_sparse(method: str, densities: pd.Series) -> bool:
    """A registered method's own flag; for others (MRM, DisEnt...), any density below 1."""
    from trainables.methods import METHODS

    if method in METHODS:
        return METHODS.get(method).sparse
    return bool((densities.astype(float) < 1).any())
