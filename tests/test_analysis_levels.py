"""levels.parquet, the best-level table and the double-descent figure, from hand-made trial
folders whose metrics rows carry ``level`` (what a pruning trial writes)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.api import analyze
from trainables.config import TrialConfig
from trainables.results import ExperimentStore, metrics_digest


def _experiment(
    tmp_path, with_levels: bool = True, finished: bool = True, **overrides: object
) -> str:
    store = ExperimentStore(str(tmp_path / "runs"), "sdd")
    trials, order = {}, []
    # per seed: dense level 0 at 0.80, a dip at level 1, recovery at level 2, then a fall
    curve = {0: 0.80, 1: 0.70, 2: 0.84, 3: 0.60}
    for seed in (41, 42):
        cfg = TrialConfig.from_recipe("paper", method="erm", seed=seed, epochs=2, **overrides)
        trials[cfg.trial_hash], _ = cfg.to_dict(), order.append(cfg.trial_hash)
        trial = store.trial(cfg.trial_hash)
        trial.write_config(cfg.to_dict())
        rows = []
        for level, acc in curve.items():
            for epoch_in_level in (1, 2):
                epoch = 2 * level + epoch_in_level
                row = {
                    "epoch": epoch,
                    "density": 0.8**level,
                    "train_loss": 0.1,
                    "test_acc": acc + (0.01 if seed == 42 else 0.0) - 0.05 * (epoch_in_level == 1),
                    "memorised": 0.1 * level,
                }
                if with_levels:
                    row["level"] = level
                rows.append(row)
        trial.write_metrics(rows)
        if finished:
            trial.write_summary({"epochs": len(rows), "metrics_sha256": metrics_digest(rows)})
    store.write_ledger(
        {"name": "sdd", "schema": 1, "trials": trials, "order": order, "launches": []}
    )
    return str(tmp_path / "runs")


def test_levels_parquet_table_and_figure(tmp_path):
    storage = _experiment(tmp_path)
    out = tmp_path / "analysis"
    result = analyze(storage, "sdd", str(out))
    assert "levels.parquet" in result.files and "tables/levels.md" in result.files
    assert any(f.startswith("figures/double_descent_cmnist") for f in result.files)
    levels = pd.read_parquet(out / "levels.parquet")
    assert len(levels) == 2 * 4  # one row per (trial, level): the level's last epoch
    assert sorted(levels["level"].unique()) == [0, 1, 2, 3]
    assert set(levels["epoch"]) == {2.0, 4.0, 6.0, 8.0}
    seed41 = levels[levels["cfg_seed"] == 41].set_index("level")
    assert seed41.loc[2, "test_acc"] == pytest.approx(0.84)
    assert seed41.loc[3, "density"] == pytest.approx(0.512)
    table = (out / "tables" / "levels.md").read_text()
    assert (
        "| cmnist | lottery, magnitude, clean labels | 2 | 0.64 | 84.5 ± 0.7 | 80.5 | 2 |" in table
    )


def test_no_levels_no_files(tmp_path):
    storage = _experiment(tmp_path, with_levels=False)
    result = analyze(storage, "sdd", str(tmp_path / "analysis"), figures_too=False)
    assert "levels.parquet" not in result.files
    assert not (tmp_path / "analysis" / "levels.parquet").exists()


def test_rows_without_level_in_a_trial_are_ignored(tmp_path):
    storage = _experiment(tmp_path)
    store = ExperimentStore(storage, "sdd")
    trial = store.trial(store.read_ledger()["order"][0])
    rows = [*trial.read_metrics(), {"epoch": 9, "test_acc": 0.1}]
    trial.write_metrics(rows)  # a finished trial's results: summary and rows agree
    trial.write_summary({"epochs": len(rows), "metrics_sha256": metrics_digest(rows)})
    result = analyze(storage, "sdd", str(tmp_path / "analysis"), figures_too=False)
    levels = pd.read_parquet(tmp_path / "analysis" / "levels.parquet")
    assert len(levels) == 8 and "levels.parquet" in result.files


def test_the_report_draws_the_double_descent(tmp_path):
    from analysis.api import report

    storage = _experiment(tmp_path)
    page = (tmp_path / "page").as_posix()
    html = Path(report(storage, "sdd", page)).read_text()
    assert 'id="levels"' in html and "double_descent_cmnist" in html
    assert "lottery, magnitude, clean labels" in html
    plain = _experiment(tmp_path / "plain", with_levels=False)
    other = Path(report(plain, "sdd", (tmp_path / "p2").as_posix())).read_text()
    assert 'id="levels"' not in other


def test_a_level_in_progress_is_left_out_until_it_ends(tmp_path):
    """A summary made mid-run: an unfinished trial's highest level may be half trained, so
    levels.parquet holds only the levels before it (a finished trial keeps all of them)."""
    storage = _experiment(tmp_path, finished=False)
    analyze(storage, "sdd", str(tmp_path / "analysis"), figures_too=False)
    levels = pd.read_parquet(tmp_path / "analysis" / "levels.parquet")
    assert sorted(levels["level"].unique()) == [0, 1, 2] and len(levels) == 2 * 3


def test_the_seeds_random_labels_name_the_setting(tmp_path):
    """The SDD seed's noise (random_labels_fraction) is named in the table, not "clean"."""
    storage = _experiment(tmp_path, random_labels_fraction=0.2)
    analyze(storage, "sdd", str(tmp_path / "analysis"), figures_too=False)
    table = (tmp_path / "analysis" / "tables" / "levels.md").read_text()
    assert "lottery, magnitude, random labels 20%" in table and "clean labels" not in table
