"""The paper's tables (1, 2, 3) and the methods table, computed from the seed cells, as
renderer-neutral data.

A :class:`Cell` keeps the numbers (mean, std, seeds done/planned, chosen density) so the
Markdown, CSV, LaTeX and HTML renderers all say the same thing. A cell with too few finished
seeds is *missing* and prints as ``— (done/planned)``, never as a zero.

Best density for sparse methods: chosen on the **validation** mean of the same metric
(``valid``); the ``test``-chosen variant picks the density with the best test mean, which is
what the paper's tables appear to report, and is labelled so wherever it is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from analysis.cells import EPOCHS, METRICS, ROW_KEY, MetricChoice, is_sparse, labels_text
from trainables.datasets import DATASETS
from trainables.methods import METHODS
from trainables.results import split_metric

# The report's method order and names come from the method registry (torch-free), so a new
# method is named in its own module only.
METHOD_ORDER: tuple[str, ...] = tuple(METHODS)
METHOD_NAMES: dict[str, str] = {name: METHODS.get(name).title for name in METHODS}
# The report's dataset names, read from the registry (``DatasetInfo.display_name``); a view
# kept for the modules that call ``DATASET_NAMES.get(name, name)``.
DATASET_NAMES: dict[str, str] = {name: DATASETS.get(name).display_name for name in DATASETS}
MISSING = "—"


@dataclass(frozen=True)
class Cell:
    """One table entry: seed statistics (percent) and, for sparse methods, the density."""

    mean: float | None
    std: float | None
    n_done: int
    n_planned: int
    shown: bool
    density: float | None = None
    chosen_by: str | None = None
    densities_done: int | None = None
    densities_planned: int | None = None

    def text(self, digits: int = 1) -> str:
        if self.n_planned == 0:
            return f"{MISSING} (not run)"
        if not self.shown or self.mean is None:
            return f"{MISSING} ({self.n_done}/{self.n_planned})"
        out = f"{self.mean:.{digits}f}"
        if self.std is not None and not math.isnan(self.std):
            out += f" ± {self.std:.{digits}f}"
        if self.density is not None:
            out += f" ({self.density:g})"
        if self.n_done < self.n_planned:
            out += f" [{self.n_done}/{self.n_planned} seeds]"
        if self.densities_planned and (self.densities_done or 0) < self.densities_planned:
            out += f" *{self.densities_done}/{self.densities_planned}"
        return out


@dataclass
class Table:
    """Rows of plain strings (keys) and Cells, with a title and notes for every format."""

    name: str
    title: str
    header: list[str]
    rows: list[list[str | Cell]]
    notes: list[str] = field(default_factory=list)


def _nan_to_none(value: float) -> float | None:
    return (
        None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    )


def _needed(n_planned: int, min_seeds: int | None) -> int:
    return n_planned if min_seeds is None else min(max(1, min_seeds), max(1, n_planned))


def _shown(row: pd.Series, min_seeds: int | None) -> bool:
    return int(row["n_done"]) > 0 and int(row["n_done"]) >= _needed(
        int(row["n_planned"]), min_seeds
    )


def plain_cell(row: pd.Series, min_seeds: int | None) -> Cell:
    """A dense method's (single-density) cell."""
    return Cell(
        mean=_nan_to_none(row["test_mean"]),
        std=_nan_to_none(row["test_std"]),
        n_done=int(row["n_done"]),
        n_planned=int(row["n_planned"]),
        shown=_shown(row, min_seeds),
    )


def best_cell(cells: pd.DataFrame, by: str, min_seeds: int | None) -> Cell:
    """The best density of one sparse method, chosen on ``by`` (valid or test) mean, among
    densities whose cell is complete; ties go to the sparser density."""
    needed = (
        cells["n_planned"].clip(lower=1)
        if min_seeds is None
        else cells["n_planned"].clip(lower=1, upper=max(1, min_seeds))
    )
    shown = cells[(cells["n_done"] > 0) & (cells["n_done"] >= needed)]
    n_done, n_planned = int(cells["n_done"].sum()), int(cells["n_planned"].sum())
    counts = {"densities_done": len(shown), "densities_planned": len(cells)}
    if shown.empty or shown[f"{by}_mean"].isna().all():
        return Cell(None, None, n_done, n_planned, shown=False, chosen_by=by, **counts)
    ordered = shown.sort_values([f"{by}_mean", "density"], ascending=[False, True], kind="stable")
    top = ordered.iloc[0]
    return Cell(
        mean=_nan_to_none(top["test_mean"]),
        std=_nan_to_none(top["test_std"]),
        n_done=int(top["n_done"]),
        n_planned=int(top["n_planned"]),
        shown=True,
        density=float(top["density"]),
        chosen_by=by,
        **counts,
    )


def _method_keys(cells: pd.DataFrame) -> list[tuple[str, str]]:
    """(method, variant) pairs in paper order, then any other method alphabetically."""
    pairs = sorted({(m, v) for m, v in zip(cells["method"], cells["variant"], strict=True)})
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(pairs, key=lambda p: (rank.get(p[0], len(rank)), p[0], p[1]))


def method_label(method: str, variant: str = "") -> str:
    name = METHOD_NAMES.get(method, method)
    return f"{name} [{variant}]" if variant else name


def cell_labels(cells: pd.DataFrame, method: str, variant: str = "") -> str | None:
    """The labels (none / bias / group) the trials of (method, variant) read in training."""
    if "labels_used" not in cells.columns:
        return None
    mine = cells[(cells["method"] == method) & (cells["variant"] == variant)]
    return labels_text(mine["labels_used"])


def labelled(method: str, variant: str, labels: str | None) -> str:
    """A method's name with the labels it reads in training: ``REST [bias]``, ``DisEnt [none]``
    (an ablation variant comes first: ``REST [sparse_init=er] [bias]``)."""
    name = method_label(method, variant)
    return f"{name} [{labels}]" if labels else name


LABELS_NOTE = (
    "[none] / [bias] / [group] after a method: the labels it reads in training besides the "
    "class label (nothing, each sample's bias label, its (label, bias) group). The default "
    "epoch selection (best validation worst-group accuracy) reads validation bias labels for "
    "every method."
)


def data_name(cells: pd.DataFrame, dataset: str) -> str:
    """What the tables call ``dataset``'s data: the cells' ``data`` column (the data title,
    analysis.cells.data_names), else the registry's display name."""
    if "data" in cells.columns:
        names = cells.loc[cells["dataset"] == dataset, "data"].dropna()
        if not names.empty:
            return str(names.iloc[0])
    return DATASET_NAMES.get(dataset, dataset)


DATA_NOTE = (
    "Dataset: the data the numbers come from, as each trial recorded its bundle "
    "(source.json; the authors' download has none and is the paper's own data), e.g. "
    "'Colored Fashion-MNIST', an offline stand-in for the paper's Colored MNIST."
)


def _row_head(key: tuple, choice: MetricChoice, group: pd.DataFrame) -> list[str]:
    dataset, model, ratio, recipe = key
    return [
        data_name(group, dataset),
        str(model),
        f"{float(ratio):g}",
        str(recipe),
        choice.describe(dataset),
    ]


_HEAD = ["Dataset", "Model", "Ratio (%)", "Recipe", "Metric"]


def _notes(choice: MetricChoice, min_seeds: int | None) -> list[str]:
    epoch_rule = "each trial’s selection rule" if choice.epoch == "selected" else "last epoch"
    seeds = "all planned seeds" if min_seeds is None else f"at least {min_seeds} finished seed(s)"
    return [
        "Mean ± sample std (ddof=1) over seeds, in percent; a cell needs " + seeds + ".",
        f"{MISSING} (done/planned): missing, with the count of finished trials; never zero.",
        "(d): best density. Plain columns choose it on the validation mean of the same metric; "
        "'test-chosen' columns choose it on the test mean (what the paper appears to do).",
        "[n/N seeds]: fewer seeds than planned; *k/K: best among the k of K densities done.",
        f"Epoch: {choice.epoch} ({epoch_rule}).",
        DATA_NOTE,
    ]


def _test_chosen_in_table2(method: str) -> bool:
    """Whether Table 2 also shows ``method`` test-chosen (``MethodInfo.table2_test_chosen``: the
    paper's own method, REST); a method the registry does not know: no."""
    return method in METHODS and METHODS.get(method).table2_test_chosen


def table2(cells: pd.DataFrame, choice: MetricChoice, min_seeds: int | None = None) -> Table:
    """Paper Table 2: every method per (dataset, ratio); the paper's own method (REST) also
    test-chosen."""
    methods = _method_keys(cells)
    header = list(_HEAD)
    for method, variant in methods:
        name = labelled(method, variant, cell_labels(cells, method, variant))
        header.append(name)
        if _test_chosen_in_table2(method):
            header.append(name + " (test-chosen)")
    rows: list[list[str | Cell]] = []
    for key, group in cells.groupby(ROW_KEY, sort=True):
        row: list[str | Cell] = list(_row_head(key, choice, group))
        for method, variant in methods:
            mine = group[(group["method"] == method) & (group["variant"] == variant)]
            with_test = _test_chosen_in_table2(method)
            row.extend(method_cells(mine, method, min_seeds, with_test=with_test))
        rows.append(row)
    title = "Table 2 (style): test accuracy per method; sparse methods at their best density"
    return Table("table2", title, header, rows, [*_notes(choice, min_seeds), LABELS_NOTE])


def method_cells(mine: pd.DataFrame, method: str, min_seeds: int | None, *, with_test: bool):
    if mine.empty:
        return [Cell(None, None, 0, 0, shown=False)] * (2 if with_test else 1)
    if not is_sparse(method, mine["density"]):
        return [plain_cell(mine.iloc[0], min_seeds)] * (2 if with_test else 1)
    out = [best_cell(mine, "valid", min_seeds)]
    if with_test:
        out.append(best_cell(mine, "test", min_seeds))
    return out


def table3(cells: pd.DataFrame, choice: MetricChoice, min_seeds: int | None = None) -> Table:
    """Paper Table 3: each sparse method (RigL, REST...) at its own best density."""
    sparse = [
        (m, v)
        for m, v in _method_keys(cells)
        if is_sparse(m, cells.loc[cells["method"] == m, "density"])
    ]
    header = list(_HEAD)
    for method, variant in sparse:
        name = labelled(method, variant, cell_labels(cells, method, variant))
        header += [name, name + " (test-chosen)"]
    rows: list[list[str | Cell]] = []
    for key, group in cells.groupby(ROW_KEY, sort=True):
        row: list[str | Cell] = list(_row_head(key, choice, group))
        for method, variant in sparse:
            mine = group[(group["method"] == method) & (group["variant"] == variant)]
            row.extend(method_cells(mine, method, min_seeds, with_test=True))
        rows.append(row)
    title = "Table 3 (style): sparse training methods, each at its best density"
    return Table("table3", title, header, rows, [*_notes(choice, min_seeds), LABELS_NOTE])


def _ratio_text(value: float | None, absolute: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return MISSING
    text = f"{value:.3g}×"
    if absolute is not None and not math.isnan(absolute):
        text += f" ({absolute:.3g}{unit})"
    return text


def _chosen_cells(cells: pd.DataFrame, min_seeds: int | None):
    """Per table row key and method: its seed cells and the one reported (a sparse method at
    its validation-chosen density, a dense one as is)."""
    for key, group in cells.groupby(ROW_KEY, sort=True):
        for method, variant in _method_keys(group):
            mine = group[(group["method"] == method) & (group["variant"] == variant)]
            sparse = is_sparse(method, mine["density"])
            pick = (
                best_cell(mine, "valid", min_seeds)
                if sparse
                else plain_cell(mine.iloc[0], min_seeds)
            )
            yield key, group, method, variant, mine, sparse, pick


def table1(cells: pd.DataFrame, choice: MetricChoice, min_seeds: int | None = None) -> Table:
    """Paper Table 1: training / inference FLOPs and parameters relative to dense, for each
    method at its (validation-chosen) best density; dense rows also give absolute values."""
    header = [
        "Dataset",
        "Model",
        "Ratio (%)",
        "Recipe",
        "Method",
        "Density",
        "Train FLOPs",
        "Inference FLOPs",
        "Params",
        "Seeds",
    ]
    rows: list[list[str | Cell]] = []
    for key, group, method, variant, mine, sparse, pick in _chosen_cells(cells, min_seeds):
        labels = cell_labels(group, method, variant)
        head = [*_row_head(key, choice, group)[:4], labelled(method, variant, labels)]
        if not pick.shown:
            rows.append(
                [*head, MISSING, MISSING, MISSING, MISSING, f"{pick.n_done}/{pick.n_planned}"]
            )
            continue
        src = mine[mine["density"] == pick.density].iloc[0] if sparse else mine.iloc[0]
        dense = not sparse
        params = src["nonzero_params"]
        params_text = MISSING if pd.isna(params) else f"{params / 1e6:.4g}M"
        if not dense and not pd.isna(src["params_ratio"]):
            params_text += f" ({src['params_ratio']:.3g}×)"
        rows.append(
            [
                *head,
                f"{float(src['density']):g}",
                _ratio_text(src["train_flops_ratio"], src["train_flops"] if dense else None),
                _ratio_text(
                    src["inference_flops_ratio"], src["inference_flops"] if dense else None
                ),
                params_text,
                f"{pick.n_done}/{pick.n_planned}",
            ]
        )
    notes = [
        "Ratios are to the dense model of the same architecture (from each trial's summary), "
        "mean over finished seeds; dense rows give absolute FLOPs in parentheses.",
        "Train FLOPs: the whole run; inference FLOPs: one forward pass of one sample.",
        "Sparse methods at the density chosen on the validation metric (as Table 2).",
        LABELS_NOTE,
    ]
    title = "Table 1 (style): training / inference FLOPs and parameters relative to dense"
    return Table("table1", title, header, rows, notes)


# The methods table's accuracy columns: (header, split, metric name in analysis.cells.METRICS).
METHODS_METRICS = (
    ("Test unbiased", "test", "unbiased"),
    ("Test conflicting", "test", "conflicting"),
    ("Valid worst-group", "valid", "worst-group"),
)


def _seed_cell(values: pd.Series, n_planned: int, min_seeds: int | None) -> Cell:
    """Mean ± sample std (percent) of one metric over a cell's finished seeds."""
    done = 100 * values.dropna().astype(float)
    n_done = len(done)
    shown = n_done > 0 and n_done >= _needed(n_planned, min_seeds)
    return Cell(
        mean=float(done.mean()) if n_done else None,
        std=_nan_to_none(float(done.std())) if n_done > 1 else None,
        n_done=n_done,
        n_planned=n_planned,
        shown=shown,
    )


def methods_table(
    frame: pd.DataFrame, cells: pd.DataFrame, choice: MetricChoice, min_seeds: int | None = None
) -> Table:
    """One row per (dataset, model, ratio, recipe, method[, variant]): the labels the method
    reads, the networks it trains, its training FLOPs relative to ERM's and three accuracies,
    mean ± std over seeds. Sparse methods at the density Table 2 picks (validation-chosen on
    the table metric).

    FLOPs: each trial's ``train_flops / dense_train_flops`` (the single-network dense ERM run
    of the same architecture and schedule; a two-network method counts both), averaged over
    the finished seeds."""
    prefix = EPOCHS[choice.epoch]
    header = [
        "Dataset",
        "Model",
        "Ratio (%)",
        "Recipe",
        "Method",
        "Labels used",
        "Networks",
        "Density",
        "Train FLOPs / ERM",
        *(name for name, _, _ in METHODS_METRICS),
        "Seeds",
    ]
    rows: list[list[str | Cell]] = []
    for key, group, method, variant, mine, sparse, pick in _chosen_cells(cells, min_seeds):
        density = pick.density if sparse else float(mine.iloc[0]["density"])
        trials = frame[
            (frame["dataset"] == key[0])
            & (frame["model"] == key[1])
            & (frame["ratio"] == key[2])
            & (frame["recipe"] == key[3])
            & (frame["method"] == method)
            & (frame["variant"] == variant)
        ]
        if density is not None:
            trials = trials[trials["density"] == density]
        finished = trials[trials["status"] == "finished"]
        n_planned = len(trials) if density is not None else int(mine["n_planned"].sum())
        networks = finished["networks"].dropna() if "networks" in finished else pd.Series()
        flops = finished["train_flops_ratio"].dropna()
        labels = labels_text(trials["labels_used"]) if "labels_used" in trials else None
        row: list[str | Cell] = [
            *_row_head(key, choice, group)[:4],
            method_label(method, variant),
            labels or MISSING,
            f"{int(networks.max())}" if not networks.empty else MISSING,
            MISSING if density is None else f"{density:g}",
            f"{flops.mean():.3g}×" if pick.shown and not flops.empty else MISSING,
        ]
        for _, split, metric in METHODS_METRICS:
            column = prefix + split_metric(split, METRICS[metric])
            if density is None:
                row.append(Cell(None, None, pick.n_done, pick.n_planned, shown=False))
                continue
            values = finished[column] if column in finished else pd.Series(dtype=float)
            row.append(_seed_cell(values, n_planned, min_seeds))
        row.append(f"{pick.n_done}/{pick.n_planned}")
        rows.append(row)
    epoch_rule = "each trial's selection rule" if choice.epoch == "selected" else "last epoch"
    notes = [
        f"Accuracies at the {choice.epoch} epoch ({epoch_rule}): mean ± sample std (ddof=1) "
        f"over finished seeds, in percent; {MISSING} (done/planned) = missing.",
        "Train FLOPs / ERM: each trial's training FLOPs over those of the dense single-network "
        "ERM run with the same architecture and schedule (methods with two networks count "
        "both), mean over finished seeds.",
        "Density: sparse methods at the density chosen on the validation mean of the table "
        f"metric ({choice.metric}), as Table 2; dense methods at 1.",
        LABELS_NOTE,
    ]
    title = "Methods: labels used, networks, training cost and accuracies"
    return Table("methods", title, header, rows, notes)
