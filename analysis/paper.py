"""The paper's reported numbers (shipped as ``analysis/data/paper_tables.csv``) and the
table that puts our reproduced numbers beside them.

The paper gives one number per cell (no std, no selection rule). We show both our
validation-chosen and test-chosen density for sparse methods, with the recipe that produced
each number, and the difference to the paper for the validation-chosen one, except for data
that are not the paper's (a stand-in such as Colored Fashion-MNIST, trials with no record of
their data, mixed data: :func:`analysis.cells.data_names`), where it says why instead.
"""

from __future__ import annotations

import io
from importlib import resources

import pandas as pd

from analysis.cells import DataName, MetricChoice, aggregate, data_names
from analysis.parquet import registry_labels
from analysis.tables import (
    DATASET_NAMES,
    LABELS_NOTE,
    MISSING,
    Cell,
    Table,
    cell_labels,
    labelled,
    method_cells,
)

PAPER_FILE = "paper_tables.csv"
_COLUMNS = [
    "table",
    "dataset",
    "model",
    "ratio",
    "method",
    "accuracy",
    "density",
    "metric",
    "source",
    "note",
]


def paper_numbers() -> pd.DataFrame:
    """The paper's Table 2 and 3 rows (accuracy in percent, density where it gives one)."""
    text = resources.files("analysis").joinpath("data", PAPER_FILE).read_text(encoding="utf-8")
    df = pd.read_csv(io.StringIO(text), dtype={"note": "string", "source": "string"})
    missing = sorted(set(_COLUMNS) - set(df.columns))
    if missing:
        raise ValueError(f"analysis/data/{PAPER_FILE}: missing column(s) {missing}")
    return df


def _delta(ours: Cell, paper: float, data: DataName) -> str:
    """Ours − paper; none for data that may not be put beside the paper's (a stand-in)."""
    if not data.comparable:
        return f"not comparable ({data.why})"
    if not ours.shown or ours.mean is None:
        return MISSING
    return f"{ours.mean - paper:+.1f}"


def comparison(df: pd.DataFrame, epoch: str = "selected", min_seeds: int | None = None) -> Table:
    """Paper vs reproduced, on the paper's own metric per dataset, for every paper row whose
    dataset and ratio the experiment holds (one line per recipe present)."""
    choice = MetricChoice("paper", epoch)
    cells = aggregate(df, choice)
    paper = paper_numbers()
    header = [
        "Table",
        "Dataset",
        "Ratio (%)",
        "Method",
        "Recipe",
        "Paper",
        "Ours (valid-chosen)",
        "Ours (test-chosen)",
        "Δ valid-chosen − paper",
    ]
    rows: list[list[str | Cell]] = []
    names = data_names(df)
    have = cells[["dataset", "ratio"]].drop_duplicates() if not cells.empty else pd.DataFrame()
    for _, p in paper.iterrows():
        if (
            have.empty
            or not ((have["dataset"] == p["dataset"]) & (have["ratio"] == p["ratio"])).any()
        ):
            continue
        mine = cells[
            (cells["dataset"] == p["dataset"])
            & (cells["ratio"] == p["ratio"])
            & (cells["method"] == p["method"])
            & (cells["variant"] == "")
        ]
        paper_text = f"{p['accuracy']:.1f}" + (
            f" ({p['density']:g})" if pd.notna(p["density"]) else ""
        )
        labels = cell_labels(mine, p["method"]) or registry_labels({"method": p["method"]})
        recipes = sorted(mine["recipe"].unique()) if not mine.empty else ["—"]
        short = DATASET_NAMES.get(p["dataset"], p["dataset"])
        data = names.get(p["dataset"], DataName(short, True))
        for recipe in recipes:
            ours = mine[mine["recipe"] == recipe]
            valid, test = method_cells(ours, p["method"], min_seeds, with_test=True)
            rows.append(
                [
                    str(p["table"]),
                    data.name,
                    f"{p['ratio']:g}",
                    labelled(p["method"], "", labels),
                    recipe,
                    paper_text,
                    valid,
                    test,
                    _delta(valid, float(p["accuracy"]), data),
                ]
            )
    notes = [
        "Paper: Zhao et al., ECML PKDD 2023 (REST), Tables 2 and 3; one number per cell, "
        "no spread given. Metric: unbiased test accuracy (CMNIST, CIFAR-10-C), "
        "bias-conflicting test accuracy (BFFHQ), as Table 2's caption says; Table 3 is assumed "
        "to use the same metric.",
        "The paper prints 63.5 (Table 2) and 63.6 (Table 3) for the same BFFHQ REST cell.",
        f"Ours: mean ± std over seeds at the {epoch} epoch; {MISSING} (done/planned) = missing.",
        "Rows appear only for the (dataset, ratio) pairs this experiment has.",
        "Dataset names the data our numbers come from. 'not comparable (...)' replaces the "
        "difference where they are not the paper's: a stand-in such as Colored "
        "Fashion-MNIST, trials with no record of their data (older results), or a dataset "
        "whose trials used different data.",
        LABELS_NOTE,
    ]
    title = "Comparison with the paper (Tables 2 and 3)"
    return Table("paper", title, header, rows, notes)
