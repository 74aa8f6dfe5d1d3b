"""Labels used and networks in trials.parquet, labelled table headers, the methods table."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import pandas as pd
import pytest

from analysis import render, synthetic
from analysis.api import Options, analyze, build
from trainables.results import ExperimentStore


def _experiment(tmp_path: Path, statuses: dict[str, str] | None = None) -> list[dict]:
    configs = synthetic.grid_configs(
        ratios=(1.0,), methods=("erm", "groupdro", "lff", "rest"), densities=(0.05, 0.5)
    )
    synthetic.write_experiment(str(tmp_path), "exp", configs, statuses=statuses)
    return configs


def test_trials_parquet_has_labels_used_and_networks(tmp_path: Path) -> None:
    configs = synthetic.grid_configs(
        ratios=(1.0,), methods=("erm", "groupdro", "lff", "rest"), densities=(0.05, 0.5)
    )
    pending = next(c for c in configs if c["method"] == "lff")
    statuses = {synthetic.config_hash(pending): "pending"}  # planned, never started
    synthetic.write_experiment(str(tmp_path), "exp", configs, statuses=statuses)
    result = analyze(str(tmp_path), "exp", str(tmp_path / "out"), figures_too=False)
    trials = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    assert {"labels_used", "networks"} <= set(trials.columns)
    finished = trials[trials["status"] == "finished"]
    labels = finished.groupby("cfg_method")["labels_used"].unique().map(list).to_dict()
    assert labels == {"erm": ["none"], "groupdro": ["group"], "lff": ["none"], "rest": ["bias"]}
    networks = finished.groupby("cfg_method")["networks"].unique().map(list).to_dict()
    assert networks == {"erm": [1], "groupdro": [1], "lff": [2], "rest": [1]}
    row = trials.set_index("trial_hash").loc[synthetic.config_hash(pending)]
    assert row["status"] == "pending"
    assert row["labels_used"] == "none" and pd.isna(row["networks"])  # registry fallback
    assert result.analysis.trials.schema.field("networks").type.bit_width == 64


def test_table_headers_carry_the_labels_used(tmp_path: Path) -> None:
    _experiment(tmp_path)
    analysis = build(str(tmp_path), "exp")
    header = analysis.tables["table2"].header
    assert header[5:] == [
        "ERM [none]",
        "GroupDRO [group]",
        "LfF [none]",
        "REST [bias]",
        "REST [bias] (test-chosen)",
    ]
    assert any("[bias]" in note for note in analysis.tables["table2"].notes)
    assert "RigL" not in " ".join(analysis.tables["table3"].header)


def test_methods_table_flops_ratio_and_metrics(tmp_path: Path) -> None:
    configs = _experiment(tmp_path)
    analysis = build(str(tmp_path), "exp")
    table = analysis.tables["methods"]
    col = {name: i for i, name in enumerate(table.header)}
    rows = {row[col["Method"]]: row for row in table.rows}
    assert list(rows) == ["ERM", "GroupDRO", "LfF", "REST"]
    # train_flops / dense_train_flops per trial, mean over seeds: the synthetic LfF trains two
    # networks (twice ERM's FLOPs), REST is sparse (its density)
    frame = analysis.frame[analysis.frame["status"] == "finished"]
    for method, expected in (("ERM", 1.0), ("LfF", 2.0)):
        trials = frame[frame["method"] == method.lower()]
        ratio = (trials["train_flops"] / trials["dense_train_flops"]).mean()
        assert ratio == pytest.approx(expected)
        assert rows[method][col["Train FLOPs / ERM"]] == f"{expected:.3g}×"
    assert rows["LfF"][col["Networks"]] == "2" and rows["ERM"][col["Networks"]] == "1"
    assert rows["GroupDRO"][col["Labels used"]] == "group"
    assert rows["REST"][col["Labels used"]] == "bias"
    # REST at Table 2's (validation-chosen) density, with that density's FLOPs ratio
    chosen = analysis.tables["table2"].rows[0][
        analysis.tables["table2"].header.index("REST [bias]")
    ]
    assert rows["REST"][col["Density"]] == f"{chosen.density:g}"
    assert rows["REST"][col["Train FLOPs / ERM"]] == f"{chosen.density:.3g}×"
    # selected-epoch metrics: mean ± std over seeds, by hand from the summaries
    lff = [c for c in configs if c["method"] == "lff"]
    summaries = [
        ExperimentStore(str(tmp_path), "exp").trial(synthetic.config_hash(c)).read_summary()
        for c in lff
    ]
    for header, key in (
        ("Test unbiased", "test_unbiased_acc"),
        ("Test conflicting", "test_acc_conflicting"),
        ("Valid worst-group", "valid_worst_group_acc"),
    ):
        values = [100 * s["selected"][key] for s in summaries]
        cell = rows["LfF"][col[header]]
        assert cell.mean == pytest.approx(statistics.mean(values))
        assert cell.std == pytest.approx(statistics.stdev(values))
    text = render.markdown(table)
    assert "| LfF | none | 2 | 1 | 2× |" in text
    parsed = list(csv.DictReader(io.StringIO(render.csv_text(table))))
    assert parsed[2]["Test unbiased:planned"] == "3"


def test_methods_table_missing_seeds(tmp_path: Path) -> None:
    configs = synthetic.grid_configs(ratios=(1.0,), methods=("erm", "lff"), densities=(0.05,))
    lff = [synthetic.config_hash(c) for c in configs if c["method"] == "lff"]
    synthetic.write_experiment(
        str(tmp_path), "exp", configs, statuses={lff[0]: "running", lff[1]: "pending"}
    )
    rows = {r[4]: r for r in build(str(tmp_path), "exp").tables["methods"].rows}
    assert rows["LfF"][8] == "—" and rows["LfF"][9].text() == "— (1/3)"
    assert rows["LfF"][-1] == "1/3" and rows["LfF"][6] == "2"
    relaxed = {
        r[4]: r for r in build(str(tmp_path), "exp", Options(min_seeds=1)).tables["methods"].rows
    }
    assert relaxed["LfF"][8] == "2×" and relaxed["LfF"][9].text().endswith("[1/3 seeds]")


def test_report_shows_the_methods_table(tmp_path: Path) -> None:
    from analysis.api import report

    _experiment(tmp_path)
    text = Path(report(str(tmp_path), "exp", str(tmp_path / "out"))).read_text()
    assert '<h3 id="methods">' in text and 'href="#methods"' in text
    assert "Train FLOPs / ERM" in text and "LfF [none]" in text and "GroupDRO [group]" in text


def test_table2_fills_mrm_and_disent_beside_the_paper(tmp_path: Path) -> None:
    configs = synthetic.grid_configs(
        ratios=(1.0,), methods=("erm", "mrm", "disent", "rest"), densities=(0.05, 0.5)
    )
    synthetic.write_experiment(str(tmp_path), "exp", configs)
    analysis = build(str(tmp_path), "exp")
    table = analysis.tables["table2"]
    mrm = table.rows[0][table.header.index("MRM [none]")]
    disent = table.rows[0][table.header.index("DisEnt [none]")]
    assert mrm.shown and mrm.density in (0.05, 0.5) and mrm.chosen_by == "valid"
    assert disent.shown and disent.density is None
    paper = {(r[0], r[3]): r for r in analysis.tables["paper_comparison"].rows}
    assert paper[("2", "MRM [none]")][5] == "70.3" and paper[("2", "MRM [none]")][6] == mrm
    assert paper[("2", "DisEnt [none]")][5] == "65.9"
    assert paper[("2", "DisEnt [none]")][6] == disent
