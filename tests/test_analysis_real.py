"""A small REAL experiment: trials trained by ``run_trial`` (no Ray), then analysed.

Three trials on the tiny Colored Fashion-MNIST bundle (Simple CNN at width 8), 2 epochs each, plus one trial that
fails after its first epoch and is retried (resume from its checkpoint) and one planned trial
that never starts. Checks that analysis reads what the trial engine really writes.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("torch")

from analysis.api import analyze  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.results import ExperimentStore  # noqa: E402

pytestmark = pytest.mark.slow


class Interrupt(Exception):
    """Raised by the report callback to make one attempt fail after its first epoch."""


def _config(root: Path, method: str, density: float, seed: int) -> TrialConfig:
    return TrialConfig.from_recipe(
        "paper",
        dataset="cmnist",
        ratio=1.0,
        method=method,
        density=density,
        seed=seed,
        epochs=2,
        batch_size=256,
        update_frequency=4,
        width=8,
        data_root=str(root),
        device="cpu",
    )


@pytest.fixture(scope="module")
def real_experiment(tiny_cmnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from trainables.train import run_trial

    storage = tmp_path_factory.mktemp("real")
    store = ExperimentStore(str(storage), "tiny")
    cells = [("erm", 1.0, 41), ("erm", 1.0, 42), ("rest", 0.05, 41)]
    configs = [_config(tiny_cmnist_root, m, d, s) for m, d, s in cells]
    retried = _config(tiny_cmnist_root, "rest", 0.2, 42)
    pending = _config(tiny_cmnist_root, "rest", 0.2, 43)
    planned = [*configs, retried, pending]
    store.write_ledger(
        {
            "name": "tiny",
            "schema": 1,
            "trials": {c.trial_hash: c.to_dict() for c in planned},
            "launches": [
                {"id": "L001", "grid": "analysis-test", "trials": [c.trial_hash for c in planned]}
            ],
        }
    )
    summaries = {
        c.trial_hash: run_trial(c, checkpoint_dir=store.trial_uri(c.trial_hash)) for c in configs
    }

    def fail_after_first(row: dict) -> None:
        raise Interrupt("driver lost")

    with pytest.raises(Interrupt):
        run_trial(
            retried, report=fail_after_first, checkpoint_dir=store.trial_uri(retried.trial_hash)
        )
    summaries[retried.trial_hash] = run_trial(
        retried, checkpoint_dir=store.trial_uri(retried.trial_hash)
    )
    return {
        "storage": str(storage),
        "summaries": summaries,
        "retried": retried.trial_hash,
        "pending": pending.trial_hash,
    }


def test_real_trials_to_parquet(real_experiment: dict, tmp_path: Path) -> None:
    result = analyze(real_experiment["storage"], "tiny", str(tmp_path), figures_too=False)
    trials = pd.read_parquet(tmp_path / "trials.parquet").set_index("trial_hash")
    epochs = pd.read_parquet(tmp_path / "epochs.parquet")
    summaries = real_experiment["summaries"]
    assert len(trials) == 5 and trials.index.is_unique
    pending = trials.loc[real_experiment["pending"]]
    assert pending["status"] == "pending"
    # no summary yet: labels from the method registry, networks unknown
    assert pending["labels_used"] == "bias" and pd.isna(pending["networks"])
    retried = trials.loc[real_experiment["retried"]]
    assert retried["status"] == "finished" and retried["attempts"] == 2
    assert retried["error"].startswith("Interrupt: driver lost")
    assert len(epochs) == 2 * 4 and not epochs.duplicated(["trial_hash", "epoch"]).any()
    for trial_hash, summary in summaries.items():
        row = trials.loc[trial_hash]
        assert row["status"] == "finished" and row["epochs_done"] == 2
        assert row["selected_epoch"] == summary["selected_epoch"]
        assert row["sel_test_unbiased_acc"] == pytest.approx(
            summary["selected"]["test_unbiased_acc"]
        )
        worst = summary["final"]["valid_worst_group_acc"]  # null: a group absent from valid
        if worst is None:
            assert pd.isna(row["final_valid_worst_group_acc"])
        else:
            assert row["final_valid_worst_group_acc"] == pytest.approx(worst)
        assert row["nonzero_params"] == summary["nonzero_params"]
        assert row["labels_used"] == summary["labels_used"]
        assert row["data_record"] == "summary"  # the bundle's source.json, as the trial read it
        assert row["data_title"] == summary["data_source"]["title"]
        assert row["data_comparable"] == summary["data_source"]["comparable"]
        assert row["networks"] == summary["networks"] == 1
        assert row["inference_flops_ratio"] == pytest.approx(
            summary["inference_flops"] / summary["dense_inference_flops"]
        )
    sparse = trials[trials["cfg_method"] == "rest"].dropna(subset=["params_ratio"])
    assert ((sparse["params_ratio"] - sparse["cfg_density"]).abs() < 0.02).all()
    assert (sparse["train_flops_ratio"] < 0.5).all()
    dense = trials[trials["cfg_method"] == "erm"]
    assert dense["train_flops_ratio"].tolist() == pytest.approx([1.0, 1.0])
    # Table 2, by hand from the summaries: ERM mean over its two seeds, unbiased test accuracy
    erm = [
        100 * s["selected"]["test_unbiased_acc"]
        for h, s in summaries.items()
        if trials.loc[h, "cfg_method"] == "erm"
    ]
    table = result.analysis.tables["table2"]
    cell = table.rows[0][table.header.index("ERM [none]")]
    assert cell.mean == pytest.approx(statistics.mean(erm)) and cell.std == pytest.approx(
        statistics.stdev(erm)
    )
    rest = table.rows[0][table.header.index("REST [bias]")]
    assert rest.density == 0.05 and rest.text().endswith("*1/2")  # density 0.2: 1 of 2 seeds


def test_real_report(real_experiment: dict, tmp_path: Path) -> None:
    from analysis.api import report

    text = Path(report(real_experiment["storage"], "tiny", str(tmp_path))).read_text()
    assert "5 planned trials: finished 4, running 0, errored 0, stopped 0, pending 1" in text
