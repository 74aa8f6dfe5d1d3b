"""Tables: values against a hand computation from epochs, density choice, missing cells."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import pandas as pd
import pytest

from analysis import render, synthetic
from analysis.api import Options, analyze, build
from analysis.cells import MetricChoice
from analysis.tables import Cell
from trainables.errors import UserError
from trainables.results import ExperimentStore


def _grid(tmp_path: Path, statuses: dict[str, str] | None = None, **kw) -> tuple[str, list[dict]]:
    configs = synthetic.grid_configs(
        **{"ratios": (1.0,), "methods": ("erm", "rest"), "densities": (0.005, 0.05, 0.5), **kw}
    )
    synthetic.write_experiment(str(tmp_path), "exp", configs, statuses=statuses)
    return str(tmp_path), configs


def _cell(analysis, table: str, column: str, row: int = 0) -> Cell:
    t = analysis.tables[table]
    return t.rows[row][t.header.index(column)]


def test_table2_matches_hand_computation_from_epochs(tmp_path: Path) -> None:
    storage, _ = _grid(tmp_path)
    analysis = build(storage, "exp")
    epochs = analysis.epochs.to_pandas()
    trials = analysis.trials.to_pandas()[["trial_hash", "cfg_method", "cfg_density"]]
    rows = epochs.merge(trials, on="trial_hash")
    # the selection rule by hand: per trial, the epoch of best valid worst-group accuracy
    best = rows.loc[rows.groupby("trial_hash")["valid_worst_group_acc"].idxmax()]
    rest = best[best["cfg_method"] == "rest"]
    valid_means = {d: 100 * g["valid_unbiased_acc"].mean() for d, g in rest.groupby("cfg_density")}
    chosen = max(valid_means, key=valid_means.get)
    tests = list(100 * rest[rest["cfg_density"] == chosen]["test_unbiased_acc"])
    cell = _cell(analysis, "table2", "REST [bias]")
    assert cell.density == chosen
    assert cell.mean == pytest.approx(statistics.mean(tests))
    assert cell.std == pytest.approx(statistics.stdev(tests))
    erm = list(100 * best[best["cfg_method"] == "erm"]["test_unbiased_acc"])
    erm_cell = _cell(analysis, "table2", "ERM [none]")
    assert erm_cell.mean == pytest.approx(statistics.mean(erm)) and erm_cell.density is None
    assert erm_cell.text() == f"{statistics.mean(erm):.1f} ± {statistics.stdev(erm):.1f}"


def _write_manual(store: ExperimentStore, config: dict, valid: float, test: float) -> str:
    """A finished one-epoch trial with the given valid / test unbiased accuracies."""
    row = synthetic.epoch_rows(config, 1)[0]
    row.update(valid_unbiased_acc=valid, test_unbiased_acc=test)
    trial_hash = synthetic.config_hash(config)
    trial = store.trial(trial_hash)
    trial.write_config(config)
    trial.write_metrics([row])
    trial.write_summary(synthetic.summary_of(config, [row]))
    return trial_hash


def test_valid_chosen_and_test_chosen_differ_and_are_labelled(tmp_path: Path) -> None:
    store = ExperimentStore(str(tmp_path), "exp")
    trials = {}
    # density 0.05 wins on validation, 0.2 on test
    for density, valid, test in ((0.05, 0.80, 0.60), (0.2, 0.70, 0.65)):
        for seed in (41, 42):
            config = synthetic.make_config(method="rest", density=density, seed=seed, epochs=1)
            trials[_write_manual(store, config, valid, test)] = config
    store.write_ledger({"name": "exp", "trials": trials, "launches": []})
    analysis = build(str(tmp_path), "exp")
    table = analysis.tables["table2"]
    assert "REST [bias]" in table.header and "REST [bias] (test-chosen)" in table.header
    valid_cell, test_cell = (
        _cell(analysis, "table2", "REST [bias]"),
        _cell(analysis, "table2", "REST [bias] (test-chosen)"),
    )
    assert (valid_cell.density, valid_cell.chosen_by, valid_cell.mean) == (
        0.05,
        "valid",
        pytest.approx(60.0),
    )
    assert (test_cell.density, test_cell.chosen_by, test_cell.mean) == (
        0.2,
        "test",
        pytest.approx(65.0),
    )
    assert valid_cell.text() == "60.0 ± 0.0 (0.05)"


def test_missing_cells_show_counts_never_zero(tmp_path: Path) -> None:
    configs = synthetic.grid_configs(ratios=(1.0,), methods=("erm", "rest"), densities=(0.05,))
    erm = [synthetic.config_hash(c) for c in configs if c["method"] == "erm"]
    rest = [synthetic.config_hash(c) for c in configs if c["method"] == "rest"]
    statuses = {erm[1]: "running", erm[2]: "pending", **{h: "pending" for h in rest}}
    synthetic.write_experiment(str(tmp_path), "exp", configs, statuses=statuses)
    analysis = build(str(tmp_path), "exp")
    assert _cell(analysis, "table2", "ERM [none]").text() == "— (1/3)"
    assert _cell(analysis, "table2", "REST [bias]").text() == "— (0/3)"
    markdown = render.markdown(analysis.tables["table2"])
    assert "— (1/3)" in markdown and "0.0 ±" not in markdown
    relaxed = build(str(tmp_path), "exp", Options(min_seeds=1))
    assert _cell(relaxed, "table2", "ERM [none]").text().endswith("[1/3 seeds]")
    table = list(csv.DictReader(io.StringIO(render.csv_text(analysis.tables["table2"]))))
    assert (
        table[0]["ERM [none]:mean"] == ""
        and table[0]["ERM [none]:done"] == "1"
        and table[0]["ERM [none]:planned"] == "3"
    )


def test_partial_densities_are_flagged(tmp_path: Path) -> None:
    configs = synthetic.grid_configs(ratios=(1.0,), methods=("rest",), densities=(0.05, 0.2))
    unfinished = {synthetic.config_hash(c): "running" for c in configs if c["density"] == 0.2}
    synthetic.write_experiment(str(tmp_path), "exp", configs, statuses=unfinished)
    cell = _cell(build(str(tmp_path), "exp"), "table2", "REST [bias]")
    assert cell.density == 0.05 and cell.text().endswith("*1/2")


def test_metric_choice_paper_uses_conflicting_for_bffhq() -> None:
    choice = MetricChoice()
    assert choice.column("cmnist", "test") == "sel_test_unbiased_acc"
    assert choice.column("bffhq", "valid") == "sel_valid_acc_conflicting"
    assert (
        MetricChoice("worst-group", "final").column("cmnist", "test")
        == "final_test_worst_group_acc"
    )
    with pytest.raises(UserError, match="metric: 'x' is not allowed; allowed: paper"):
        MetricChoice("x")
    with pytest.raises(UserError, match="epoch"):
        Options(epoch="best")


def test_table1_and_table3_and_paper_comparison(tmp_path: Path) -> None:
    configs = synthetic.grid_configs(
        ratios=(1.0,), methods=("erm", "rigl", "rest"), densities=(0.05,)
    )
    synthetic.write_experiment(str(tmp_path), "exp", configs)
    analysis = build(str(tmp_path), "exp")
    t3 = analysis.tables["table3"]
    assert t3.header[-4:] == [
        "RigL [none]",
        "RigL [none] (test-chosen)",
        "REST [bias]",
        "REST [bias] (test-chosen)",
    ]
    t1 = analysis.tables["table1"]
    rest = next(r for r in t1.rows if r[4] == "REST [bias]")
    assert rest[5] == "0.05" and rest[6] == "0.05×" and rest[8].endswith("(0.05×)")
    erm = next(r for r in t1.rows if r[4] == "ERM [none]")
    assert erm[6].startswith("1× (")
    paper = analysis.tables["paper_comparison"]
    rows = {(r[0], r[3]): r for r in paper.rows}
    assert rows[("2", "REST [bias]")][5] == "72.1 (0.05)"
    assert rows[("3", "RigL [none]")][5] == "60.1 (0.05)"
    assert rows[("2", "MRM [none]")][6].text() == "— (not run)"
    ours = rows[("2", "REST [bias]")][6]
    assert rows[("2", "REST [bias]")][8] == f"{ours.mean - 72.1:+.1f}"


def test_paper_numbers_are_complete() -> None:
    from analysis.paper import paper_numbers

    paper = paper_numbers()
    assert len(paper[paper["table"] == 2]) == 36 and len(paper[paper["table"] == 3]) == 18
    assert set(paper["source"]) == {
        "Zhao et al., ECML PKDD 2023, Table 2",
        "Zhao et al., ECML PKDD 2023, Table 3",
    }
    erm = paper[
        (paper["table"] == 2) & (paper["dataset"] == "cifar10c") & (paper["method"] == "erm")
    ]
    assert list(erm["ratio"]) == [0.5, 1.0, 2.0, 5.0] and list(erm["accuracy"]) == [
        25.9,
        27.4,
        31.0,
        37.0,
    ]


def test_table_files_in_three_formats(tmp_path: Path) -> None:
    storage, _ = _grid(tmp_path)
    result = analyze(storage, "exp", str(tmp_path / "out"), figures_too=False)
    for name in ("table1", "table2", "table3", "paper_comparison"):
        for ext in ("md", "csv", "tex"):
            assert f"tables/{name}.{ext}" in result.files
    tex = (tmp_path / "out" / "tables" / "table2.tex").read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and "Ratio (\\%)" in tex
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    assert set(cells["method"]) == {"erm", "rest"} and (cells["n_planned"] == 3).all()


def test_variants_are_not_averaged_together(tmp_path: Path) -> None:
    configs = [
        synthetic.make_config(method="rest", density=0.05, seed=s, epochs=2, sparse_init=init)
        for s in (41, 42)
        for init in ("erk", "uniform")
    ]
    synthetic.write_experiment(str(tmp_path), "exp", configs)
    header = build(str(tmp_path), "exp").tables["table2"].header
    assert "REST [sparse_init=erk] [bias]" in header
    assert "REST [sparse_init=uniform] [bias]" in header
