"""Pruning levels: ``levels.parquet``, the sparse double-descent figure and the best-level table.

A pruning-and-retraining trial (method ``prune``) writes one metrics row per epoch with the
``level`` it belongs to. A level's result is its last epoch's row (the end of its retraining),
so ``levels.parquet`` has one row per (trial, level). The figure draws test accuracy against
the remaining weights on a log axis, one line per setting (retraining policy, criterion and
label noise; the mean over seeds with a ± one std band), and beside it the training accuracy on
the noisy labels (memorisation), which is what the double descent follows. Experiments without
levels get none of these files.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pyarrow as pa

from analysis.load import Experiment
from trainables.results import FINISHED

LEVELS_FILE = "levels.parquet"
LEVEL = "level"
# Per-level values kept from the level's last metrics row (absent ones stay null).
LEVEL_METRICS = (
    "density",
    "epoch",
    "train_flops",
    "train_loss",
    "train_acc",
    "train_acc_clean",
    "train_acc_noisy",
    "memorised",
    "valid_acc",
    "test_acc",
    "test_unbiased_acc",
    "test_acc_conflicting",
)
# Config fields that name a setting of the pruning family (a line of the figure): the
# project's label noise (noise_type, noise_fraction) and the SDD seed's random labels.
SETTING_FIELDS = (
    "retrain",
    "criterion",
    "prune_scope",
    "noise_type",
    "noise_fraction",
    "random_labels_fraction",
)


def level_rows(experiment: Experiment) -> list[dict[str, Any]]:
    """One dict per (trial, level): the level's last metrics row plus the trial's config.

    A trial that has not finished may be inside its highest level, whose last row is then not
    the end of its retraining: that level is left out until the trial finishes (or its next
    level starts), so a summary made mid-run shows only finished levels."""
    out = []
    for record in sorted(experiment.trials, key=lambda r: r.trial_hash):
        last: dict[int, dict[str, Any]] = {}
        for row in record.metrics:
            if row.get(LEVEL) is None:
                continue
            level = int(row[LEVEL])
            if level not in last or int(row["epoch"]) >= int(last[level]["epoch"]):
                last[level] = row
        if record.status != FINISHED and last:
            del last[max(last)]
        for level in sorted(last):
            row = last[level]
            entry: dict[str, Any] = {"trial_hash": record.trial_hash, LEVEL: level}
            entry.update({name: row.get(name) for name in LEVEL_METRICS})
            config = record.config or {}
            entry.update({f"cfg_{k}": config.get(k) for k in ("method", "seed", "dataset")})
            entry.update({f"cfg_{k}": config.get(k) for k in SETTING_FIELDS})
            out.append(entry)
    return out


def levels_table(experiment: Experiment) -> pa.Table | None:
    """``levels.parquet`` as an Arrow table, or None when no trial has levels."""
    rows = level_rows(experiment)
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    for name in LEVEL_METRICS:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    frame[LEVEL] = frame[LEVEL].astype("int64")
    return pa.Table.from_pandas(frame, preserve_index=False)


def setting_label(row: pd.Series) -> str:
    """A readable name of a setting: ``lottery, magnitude, symmetric 20%``."""
    parts = [str(row.get(f"cfg_{k}")) for k in ("retrain", "criterion") if row.get(f"cfg_{k}")]
    noise, fraction = row.get("cfg_noise_type"), row.get("cfg_noise_fraction")
    noisy = False
    if noise and noise != "none" and _given(fraction):
        parts.append(f"{noise} {100 * float(fraction):g}%")
        noisy = True
    random_labels = row.get("cfg_random_labels_fraction")
    if _given(random_labels) and float(random_labels) > 0:
        parts.append(f"random labels {100 * float(random_labels):g}%")
        noisy = True
    if not noisy:
        parts.append("clean labels")
    return ", ".join(parts)


def _given(value: Any) -> bool:
    return value is not None and not _nan(value)


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def per_setting(levels: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, setting, level)."""
    frame = levels.copy()
    frame["setting"] = frame.apply(setting_label, axis=1)
    stats = frame.groupby(["cfg_dataset", "setting", LEVEL], sort=True).agg(
        density=("density", "mean"),
        test_acc=("test_acc", "mean"),
        test_acc_std=("test_acc", "std"),
        train_acc_noisy=("train_acc_noisy", "mean"),
        memorised=("memorised", "mean"),
        seeds=("cfg_seed", "nunique"),
    )
    return stats.reset_index()


def double_descent_figure(levels: pd.DataFrame, dataset: str):
    """Test accuracy (left) and memorisation of the noisy labels (right) against the
    remaining weights, log axis, one line per setting with a ± one std band over seeds."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    stats = per_setting(levels[levels["cfg_dataset"] == dataset])
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.09,
        subplot_titles=["test accuracy", "training accuracy on the noisy labels (memorised)"],
    )
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
    for index, (setting, cell) in enumerate(stats.groupby("setting", sort=True)):
        cell = cell.sort_values("density")
        colour = palette[index % len(palette)]
        x = list(cell["density"])
        mean = list(100 * cell["test_acc"])
        std = list(100 * cell["test_acc_std"].fillna(0.0))
        fig.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=[m + s for m, s in zip(mean, std, strict=True)]
                + [m - s for m, s in zip(mean[::-1], std[::-1], strict=True)],
                fill="toself",
                line={"width": 0},
                fillcolor=_rgba(colour, 0.15),
                hoverinfo="skip",
                showlegend=False,
                legendgroup=setting,
            ),
            row=1,
            col=1,
        )
        hover = [
            f"level {lv}, {n} seed(s)" for lv, n in zip(cell[LEVEL], cell["seeds"], strict=True)
        ]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean,
                mode="lines+markers",
                name=setting,
                legendgroup=setting,
                line={"color": colour},
                text=hover,
            ),
            row=1,
            col=1,
        )
        memorised = cell["memorised"]
        if memorised.notna().any():
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=list(100 * memorised),
                    mode="lines+markers",
                    name=setting,
                    legendgroup=setting,
                    showlegend=False,
                    line={"color": colour, "dash": "dot"},
                    text=hover,
                ),
                row=1,
                col=2,
            )
    for col in (1, 2):
        fig.update_xaxes(
            type="log",
            autorange="reversed",
            title_text="remaining weights (density)",
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text="%", row=1, col=1)
    fig.update_layout(
        title=f"{dataset}: accuracy against remaining weights (sparse double descent)",
        template="plotly_white",
        height=460,
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def best_levels(levels: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, setting): its best level by mean test accuracy over seeds."""
    stats = per_setting(levels)
    best = stats.loc[stats.groupby(["cfg_dataset", "setting"])["test_acc"].idxmax()]
    return best.sort_values(["cfg_dataset", "setting"]).reset_index(drop=True)


def best_levels_markdown(levels: pd.DataFrame) -> str:
    """The best level per (dataset, setting) by mean test accuracy over seeds."""
    stats = per_setting(levels)
    lines = [
        "### Pruning: the best level per setting (mean test accuracy over seeds)",
        "",
        "| Dataset | Setting | Best level | Density | Test accuracy | Dense (level 0) | Seeds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (dataset, setting), cell in stats.groupby(["cfg_dataset", "setting"], sort=True):
        best = cell.loc[cell["test_acc"].idxmax()]
        dense = cell[cell[LEVEL] == 0]["test_acc"]
        dense_text = f"{100 * float(dense.iloc[0]):.1f}" if len(dense) else "—"
        std = best["test_acc_std"]
        spread = "" if _nan(float(std)) else f" ± {100 * float(std):.1f}"
        lines.append(
            f"| {dataset} | {setting} | {int(best[LEVEL])} | {float(best['density']):.4g} "
            f"| {100 * float(best['test_acc']):.1f}{spread} | {dense_text} | {int(best['seeds'])} |"
        )
    return "\n".join(lines) + "\n"
