"""Plotly figures: density-accuracy curves (paper Figure 3), training curves, FLOPs scatter.

Every trace is named after the method and metric it shows and every point's hover text
names its trial(s), so a number in a figure can be traced back to a trial folder.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.cells import MetricChoice, aggregate, data_names, is_sparse
from analysis.tables import DATASET_NAMES, METHOD_ORDER, method_label
from trainables.methods import METHODS
from trainables.results import (
    ACC_CONFLICTING,
    DENSITY,
    EPOCH,
    LOSS,
    TEST,
    TRAIN_LOSS,
    UNBIASED_ACC,
    VALID,
    WORST_GROUP_ACC,
    split_metric,
)

# A method's colour is its registry entry's (``MethodInfo.colour``); a method without one, or one
# the registry does not know, gets a fallback picked from its name (stable across runs).
_FALLBACK = ("#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31")
# Training curves colour trials by their position in ``--curves``, not by method.
_TRIAL_PALETTE = (
    "#d62728",
    "#1f77b4",
    "#9467bd",
    "#8c564b",
    "#2ca02c",
    "#17becf",
    "#ff7f0e",
    "#e377c2",
    *_FALLBACK,
)
# Figure 3 of the paper: solid = bias-conflicting test accuracy, dashed = unbiased.
CURVE_METRICS = (("conflicting", "solid", "bias-conflicting"), ("unbiased", "dash", "unbiased"))


def _data_name(df: pd.DataFrame, dataset: str) -> str:
    """The figure title's name of the data (analysis.cells.data_names, as the tables)."""
    name = data_names(df[df["dataset"] == dataset]).get(dataset)
    return name.name if name is not None else DATASET_NAMES.get(dataset, dataset)


def color(method: str) -> str:
    if method in METHODS and METHODS.get(method).colour:
        return METHODS.get(method).colour
    return _FALLBACK[sum(map(ord, method)) % len(_FALLBACK)]


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _methods(df: pd.DataFrame) -> list[str]:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(df["method"].unique(), key=lambda m: (rank.get(m, len(rank)), m))


def density_curves(
    df: pd.DataFrame, dataset: str, recipe: str, epoch: str = "selected"
) -> go.Figure:
    """Paper Figure 3 for one dataset and recipe: a panel per ratio, x = density (log),
    lines per sparse method (mean over finished seeds), bands = ± one std, dense methods as
    horizontal lines. Only (variant == "") trials are drawn."""
    mine = df[(df["dataset"] == dataset) & (df["recipe"] == recipe) & (df["variant"] == "")]
    ratios = sorted(mine["ratio"].unique())
    fig = make_subplots(
        rows=1,
        cols=max(1, len(ratios)),
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=[f"ratio {r:g}%" for r in ratios] or ["no trials"],
    )
    stats = {name: aggregate(mine, MetricChoice(name, epoch)) for name, _, _ in CURVE_METRICS}
    x_min = float(mine["density"].min()) if not mine.empty else 1e-3
    for col, ratio in enumerate(ratios, start=1):
        for method in _methods(mine):
            sparse = is_sparse(method, mine.loc[mine["method"] == method, "density"])
            for name, dash, text in CURVE_METRICS:
                cells = stats[name]
                cells = cells[
                    (cells["ratio"] == ratio) & (cells["method"] == method) & (cells["n_done"] > 0)
                ]
                cells = cells.sort_values("density")
                if cells.empty:
                    continue
                legend = f"{method_label(method)}{'' if sparse else ' (dense)'} · {text}"
                common = {"legendgroup": legend, "showlegend": col == 1}
                if sparse:
                    _curve(fig, cells, method, dash, legend, common, col)
                else:
                    _dense_line(fig, cells.iloc[0], method, dash, legend, common, col, x_min)
    ticks = _log_ticks(sorted({*mine["density"].astype(float), 1.0}))
    fig.update_xaxes(
        type="log",
        title_text="density (log)",
        tickvals=ticks,
        ticktext=[f"{t:g}" for t in ticks],
        tickangle=-60,
        tickfont={"size": 10},
    )
    fig.update_yaxes(title_text="test accuracy (%)", col=1)
    fig.update_layout(
        title=f"{_data_name(df, dataset)}, {recipe} recipe: test accuracy vs density "
        f"({epoch} epoch)<br><sup>solid = bias-conflicting, dashed = unbiased, band = ± std over "
        "seeds, flat lines = dense methods</sup>",
        height=440,
        width=260 + 340 * max(1, len(ratios)),
        template="plotly_white",
        legend={"orientation": "v", "x": 1.02, "y": 1, "font": {"size": 11}},
        margin={"t": 90},
    )
    return fig


def _log_ticks(values: list[float], min_gap: float = 0.15) -> list[float]:
    """Tick at the densities of the grid, skipping those closer than ``min_gap`` decades to
    the previous label (0.6, 0.7, 0.8, 0.9 would overlap); 1 (dense) is always labelled."""
    out: list[float] = []
    for value in values:
        if value <= 0:
            continue
        if out and math.log10(value) - math.log10(out[-1]) < min_gap:
            if value == 1.0:
                out[-1] = value
            continue
        out.append(value)
    return out


def _curve(
    fig: go.Figure, cells: pd.DataFrame, method: str, dash: str, legend: str, common: dict, col: int
) -> None:
    x, mean, std = (
        cells["density"].tolist(),
        cells["test_mean"].tolist(),
        cells["test_std"].fillna(0).tolist(),
    )
    hover = [
        f"{legend}<br>density {d:g}: {m:.2f} ± {s:.2f} ({n}/{p} seeds)"
        for d, m, s, n, p in zip(x, mean, std, cells["n_done"], cells["n_planned"], strict=True)
    ]
    band_y = [m + s for m, s in zip(mean, std, strict=True)] + [
        m - s for m, s in zip(mean, std, strict=True)
    ][::-1]
    fig.add_trace(
        go.Scatter(
            x=x + x[::-1],
            y=band_y,
            mode="lines",
            fill="toself",
            fillcolor=_rgba(color(method), 0.12),
            line={"width": 0},
            hoverinfo="skip",
            name=f"{legend} ± std",
            legendgroup=legend,
            showlegend=False,
        ),
        row=1,
        col=col,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=mean,
            mode="lines+markers",
            name=legend,
            line={"color": color(method), "dash": dash},
            hovertext=hover,
            hoverinfo="text",
            **common,
        ),
        row=1,
        col=col,
    )


def _dense_line(
    fig: go.Figure,
    cell: pd.Series,
    method: str,
    dash: str,
    legend: str,
    common: dict,
    col: int,
    x_min: float,
) -> None:
    mean = float(cell["test_mean"])
    hover = f"{legend}: {mean:.2f} ({int(cell['n_done'])}/{int(cell['n_planned'])} seeds)"
    fig.add_trace(
        go.Scatter(
            x=[x_min, 1.0],
            y=[mean, mean],
            mode="lines",
            name=legend,
            hovertext=[hover, hover],
            hoverinfo="text",
            line={"color": color(method), "dash": dash, "width": 1.5},
            **common,
        ),
        row=1,
        col=col,
    )


def flops_scatter(df: pd.DataFrame, dataset: str, choice: MetricChoice) -> go.Figure:
    """Test accuracy vs training FLOPs relative to dense, one point per finished trial."""
    column = choice.column(dataset, "test")
    done = df[(df["dataset"] == dataset) & (df["status"] == "finished") & df[column].notna()]
    fig = go.Figure()
    for method in _methods(done):
        mine = done[done["method"] == method]
        x = mine["train_flops_ratio"].where(mine["train_flops_ratio"].notna(), None)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=100 * mine[column],
                mode="markers",
                name=method_label(method),
                marker={"color": color(method), "size": 7, "opacity": 0.8},
                hovertext=[
                    f"{lab} ({h})<br>ratio {r:g}%, recipe {rc}"
                    for lab, h, r, rc in zip(
                        mine["label"],
                        mine["trial_hash"],
                        mine["ratio"],
                        mine["recipe"],
                        strict=True,
                    )
                ],
                hoverinfo="text+x+y",
            )
        )
    fig.update_xaxes(type="log", title_text="training FLOPs / dense (log)")
    fig.update_yaxes(title_text=f"{choice.describe(dataset)} (%)")
    fig.update_layout(
        title=f"{_data_name(df, dataset)}: accuracy vs training FLOPs (one point per trial)",
        height=420,
        width=760,
        template="plotly_white",
    )
    return fig


TRAINING_PANELS = (
    (
        "accuracy (%)",
        (
            split_metric(TEST, UNBIASED_ACC),
            split_metric(TEST, ACC_CONFLICTING),
            split_metric(VALID, WORST_GROUP_ACC),
        ),
        100.0,
    ),
    ("loss", (TRAIN_LOSS, split_metric(VALID, LOSS)), 1.0),
    ("density", (DENSITY,), 1.0),
)
_DASHES = ("solid", "dash", "dot")


def training_curves(epochs: pd.DataFrame, trials: pd.DataFrame, hashes: list[str]) -> go.Figure:
    """Per-epoch curves of the given trials: accuracies, losses and density."""
    fig = make_subplots(
        rows=1, cols=len(TRAINING_PANELS), subplot_titles=[p[0] for p in TRAINING_PANELS]
    )
    labels = dict(zip(trials["trial_hash"], trials["label"], strict=True))
    palette = _TRIAL_PALETTE
    for i, trial_hash in enumerate(hashes):
        rows = epochs[epochs["trial_hash"] == trial_hash].sort_values(EPOCH)
        for col, (_, metrics, scale) in enumerate(TRAINING_PANELS, start=1):
            for metric, dash in zip(metrics, _DASHES, strict=False):
                y = rows[metric] * scale
                if y.isna().all():
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=rows[EPOCH],
                        y=y,
                        mode="lines",
                        name=f"{labels.get(trial_hash, trial_hash)} · {metric}",
                        line={"color": palette[i % len(palette)], "dash": dash},
                        legendgroup=trial_hash,
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title="Training curves", height=420, width=1200, template="plotly_white")
    return fig


def figure_names(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, recipe) pairs that get a density-curve figure, in a stable order."""
    pairs = df[["dataset", "recipe"]].drop_duplicates().itertuples(index=False)
    return sorted((str(d), str(r)) for d, r in pairs)
