"""The Python API behind ``rest-sweep analyze`` and ``rest-sweep report``.

``build`` reads an experiment once and derives everything (Arrow tables, seed cells, paper
tables); ``analyze`` writes the files, ``report`` writes the HTML page. Nothing here imports
torch, Ray or the training code. A damaged trial (its stored results fail their check) never
stops the others: it is a row with status ``damaged`` and no results, listed by
:func:`damaged_trials` with the command that repairs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from analysis import figures, levels, parquet, render
from analysis.cells import MetricChoice, aggregate, plain
from analysis.export import FigureWriter
from analysis.load import Experiment, load_experiment
from analysis.report_tables import build_tables
from analysis.tables import Table
from trainables.errors import UserError
from trainables.results import Location

TABLE_FORMATS = {"md": render.markdown, "csv": render.csv_text, "tex": render.latex}


@dataclass(frozen=True)
class Options:
    """What the tables show: ``metric`` (paper / unbiased / conflicting / worst-group /
    aligned / accuracy) at the ``epoch`` (selected / final); a cell needs ``min_seeds``
    finished seeds (None = all planned). ``launch_alive(launch_record) -> bool`` tells whether
    a launch still runs (``rest-sweep analyze`` passes ``rest_sweep.ledger.launch_alive``; see
    :mod:`analysis.load` for what is assumed without it)."""

    metric: str = "paper"
    epoch: str = "selected"
    min_seeds: int | None = None
    workers: int = 8
    launch_alive: Callable[[dict[str, Any]], bool] | None = field(
        default=None, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        MetricChoice(self.metric, self.epoch)  # validates both, one-line UserError
        if self.min_seeds is not None and self.min_seeds < 1:
            raise UserError(f"min_seeds: {self.min_seeds} is not allowed; allowed: an integer >= 1")

    @property
    def choice(self) -> MetricChoice:
        return MetricChoice(self.metric, self.epoch)


@dataclass
class Analysis:
    """Everything derived from one read of the experiment folder."""

    experiment: Experiment
    options: Options
    trials: pa.Table
    epochs: pa.Table
    frame: pd.DataFrame
    cells: pd.DataFrame
    tables: dict[str, Table]
    timings: dict[str, float] = field(default_factory=dict)


def build(storage: str, name: str, options: Options | None = None) -> Analysis:
    """Read the experiment and compute the Parquet tables, seed cells and paper tables."""
    options = options or Options()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    experiment = load_experiment(
        storage, name, workers=options.workers, launch_alive=options.launch_alive
    )
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    trials, epochs = parquet.trials_table(experiment), parquet.epochs_table(experiment)
    timings["arrow_s"] = time.perf_counter() - start
    start = time.perf_counter()
    frame = plain(trials.to_pandas())
    cells = aggregate(frame, options.choice)
    tables = build_tables(frame, cells, options.choice, options.min_seeds)
    timings["tables_s"] = time.perf_counter() - start
    return Analysis(experiment, options, trials, epochs, frame, cells, tables, timings)


@dataclass(frozen=True)
class DamagedTrial:
    """A planned trial whose finished results fail their check, and why."""

    label: str
    trial_hash: str
    problem: str


def damaged_trials(analysis: Analysis) -> list[DamagedTrial]:
    """The damaged trials in plan order (``analysis.experiment.repair`` repairs them)."""
    labels = dict(zip(analysis.frame["trial_hash"], analysis.frame["label"], strict=True))
    return [
        DamagedTrial(str(labels.get(t.trial_hash, t.trial_hash)), t.trial_hash, t.problem or "")
        for t in analysis.experiment.damaged
    ]


def write_tables(analysis: Analysis, out: Location) -> list[str]:
    """tables/<name>.{md,csv,tex} and cells.csv (every seed cell, for plotting elsewhere)."""
    written = []
    for name, table in analysis.tables.items():
        for ext, fn in TABLE_FORMATS.items():
            out.child("tables").write_bytes(f"{name}.{ext}", fn(table).encode())
            written.append(f"tables/{name}.{ext}")
    out.write_bytes("cells.csv", analysis.cells.to_csv(index=False, float_format="%.6g").encode())
    return [*written, "cells.csv"]


def write_figures(
    analysis: Analysis, out: Location, *, png: bool = False, curves: list[str] | None = None
) -> FigureWriter:
    """Density curves per (dataset, recipe), FLOPs scatter per dataset, training curves of
    the trials named in ``curves`` (hash prefixes)."""
    df = analysis.frame
    hashes = resolve_hashes(df, curves) if curves else []
    with FigureWriter(out.child("figures"), png=png) as writer:
        for dataset, recipe in figures.figure_names(df):
            fig = figures.density_curves(df, dataset, recipe, analysis.options.epoch)
            writer.write(f"density_{dataset}_{recipe}", fig)
        for dataset in sorted(df["dataset"].dropna().unique()):
            writer.write(
                f"flops_{dataset}", figures.flops_scatter(df, dataset, analysis.options.choice)
            )
        if hashes:
            epochs = analysis.epochs.to_pandas()
            writer.write("training_curves", figures.training_curves(epochs, df, hashes))
    return writer


def write_levels(analysis: Analysis, out: Location, *, figures_too: bool, png: bool) -> list[str]:
    """For pruning trials: levels.parquet, tables/levels.md and the double-descent figure per
    dataset (nothing when no trial has levels)."""
    table = levels.levels_table(analysis.experiment)
    if table is None:
        return []
    parquet.write_parquet(out, levels.LEVELS_FILE, table)
    frame = table.to_pandas()
    out.child("tables").write_bytes("levels.md", levels.best_levels_markdown(frame).encode())
    written = [levels.LEVELS_FILE, "tables/levels.md"]
    if figures_too:
        with FigureWriter(out.child("figures"), png=png) as writer:
            for dataset in sorted(frame["cfg_dataset"].dropna().unique()):
                writer.write(
                    f"double_descent_{dataset}", levels.double_descent_figure(frame, dataset)
                )
        written += [f"figures/{f}" for f in writer.written]
    return written


def resolve_hashes(df: pd.DataFrame, prefixes: list[str]) -> list[str]:
    """Full trial hashes for unique prefixes; an unknown or ambiguous one is a UserError."""
    out = []
    for prefix in prefixes:
        found = [h for h in df["trial_hash"] if str(h).startswith(prefix)]
        if len(found) != 1:
            what = "matches no trial" if not found else f"matches {len(found)} trials"
            raise UserError(f"--curves: {prefix!r} {what}; give a unique trial-hash prefix")
        out.append(found[0])
    return out


@dataclass
class AnalyzeResult:
    """What ``analyze`` wrote (paths relative to ``out``) and how long each step took."""

    out: str
    files: list[str]
    timings: dict[str, float]
    analysis: Analysis
    png_note: str | None = None


def analyze(
    storage: str,
    name: str,
    out: str,
    options: Options | None = None,
    *,
    figures_too: bool = True,
    png: bool = False,
    curves: list[str] | None = None,
) -> AnalyzeResult:
    """Write trials.parquet, epochs.parquet, the tables and (unless disabled) the figures."""
    analysis = build(storage, name, options)
    target = Location.of(out)
    start = time.perf_counter()
    parquet.write_parquet(target, parquet.TRIALS_FILE, analysis.trials)
    parquet.write_parquet(target, parquet.EPOCHS_FILE, analysis.epochs)
    analysis.timings["parquet_s"] = time.perf_counter() - start
    start = time.perf_counter()
    files = [parquet.TRIALS_FILE, parquet.EPOCHS_FILE, *write_tables(analysis, target)]
    analysis.timings["tables_write_s"] = time.perf_counter() - start
    files += write_levels(analysis, target, figures_too=figures_too, png=png)
    note = None
    if figures_too:
        start = time.perf_counter()
        writer = write_figures(analysis, target, png=png, curves=curves)
        files += [f"figures/{f}" for f in writer.written]
        note = writer.png_note or (
            f"PNG exporter: {writer.png_exporter}" if writer.png_exporter else None
        )
        analysis.timings["figures_s"] = time.perf_counter() - start
    return AnalyzeResult(target.path, files, dict(analysis.timings), analysis, note)


def report(storage: str, name: str, out: str, options: Options | None = None) -> str:
    """Write ``<out>/report.html`` (self-contained, offline) and return its path."""
    from analysis.report import REPORT_FILE, report_html

    analysis = build(storage, name, options)
    target = Location.of(out)
    target.write_bytes(REPORT_FILE, report_html(analysis).encode())
    return target.file(REPORT_FILE)
