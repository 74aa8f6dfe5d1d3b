"""trials.parquet / epochs.parquet: schemas, one row per planned trial, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import synthetic
from analysis.api import analyze, build
from analysis.parquet import EPOCHS_FILE, TRIALS_FILE
from analysis.schema import epochs_schema, markdown_table, trial_columns, trials_schema
from trainables.errors import UserError
from trainables.results import METRICS_FILE, ExperimentStore

ROOT = Path(__file__).resolve().parents[1]


def _configs(epochs: int = 3) -> list[dict]:
    return synthetic.grid_configs(
        ratios=(1.0,), methods=("erm", "rest"), densities=(0.05,), seeds=(41, 42), epochs=epochs
    )


@pytest.fixture()
def messy(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """An experiment with a retried trial, a resumed one, a pending one, an errored one,
    a stale row past the summary and an orphan folder."""
    configs = _configs()
    hashes = [synthetic.config_hash(c) for c in configs]
    retried, resumed, pending, errored = hashes
    store = synthetic.write_experiment(
        str(tmp_path), "exp", configs, statuses={pending: "pending", errored: "errored"}
    )
    # retried: the first attempt failed (error.txt, state error), the second finished
    trial = store.trial(retried)
    trial.write_error("Traceback (most recent call last):\nRuntimeError: worker died\n")
    trial.write_state("finished", attempt=2, error="RuntimeError: worker died")
    trial.write_summary(dict(trial.read_summary(), attempts=2))
    # resumed: metrics.jsonl holds epochs 1-3, then 2-3 again from the resumed run, plus a
    # stale epoch 4 past the summary's final epoch
    trial = store.trial(resumed)
    rows = trial.read_metrics()
    replay = [dict(r, test_unbiased_acc=0.5 + r["epoch"] / 100) for r in rows[1:]]
    stale = dict(rows[-1], epoch=4)
    lines = [json.dumps(r) for r in [*rows, *replay, stale]]
    trial.loc.write_bytes(METRICS_FILE, ("\n".join(lines) + "\n").encode())
    summary = trial.read_summary()
    summary["final"] = replay[-1]
    trial.write_summary(summary)
    # orphan: a folder Ray's restart_errored could leave behind; not in the ledger
    synthetic.write_trial(
        ExperimentStore(str(tmp_path), "exp"), synthetic.make_config(seed=99, epochs=2)
    )
    names = {"retried": retried, "resumed": resumed, "pending": pending, "errored": errored}
    return str(tmp_path), names


def test_one_row_per_planned_trial_whatever_happened(messy, tmp_path: Path) -> None:
    storage, names = messy
    result = analyze(storage, "exp", str(tmp_path / "out"), figures_too=False)
    trials = pd.read_parquet(tmp_path / "out" / TRIALS_FILE)
    assert sorted(trials["trial_hash"]) == sorted(names.values())  # orphan excluded
    status = dict(zip(trials["trial_hash"], trials["status"], strict=True))
    assert status[names["retried"]] == "finished"
    assert status[names["resumed"]] == "finished"
    assert status[names["pending"]] == "pending"
    assert status[names["errored"]] == "errored"
    row = trials.set_index("trial_hash")
    assert row.loc[names["retried"], "error"] == "RuntimeError: worker died"
    assert row.loc[names["retried"], "attempts"] == 2
    assert row.loc[names["errored"], "error"] == "RuntimeError: CUDA out of memory"
    assert row.loc[names["pending"], "epochs_done"] == 0
    assert pd.isna(row.loc[names["pending"], "final_test_acc"])  # missing, never zero
    assert row.loc[names["resumed"], "epochs_done"] == 3
    assert result.analysis.experiment.orphans != []


def test_epochs_deduplicated_last_row_wins(messy, tmp_path: Path) -> None:
    storage, names = messy
    analyze(storage, "exp", str(tmp_path / "out"), figures_too=False)
    epochs = pd.read_parquet(tmp_path / "out" / EPOCHS_FILE)
    assert not epochs.duplicated(["trial_hash", "epoch"]).any()
    resumed = epochs[epochs["trial_hash"] == names["resumed"]].set_index("epoch")
    assert list(resumed.index) == [1, 2, 3]  # stale epoch 4 dropped
    assert resumed.loc[3, "test_unbiased_acc"] == pytest.approx(0.53)  # the replayed row
    assert set(epochs["trial_hash"]) == {names["retried"], names["resumed"], names["errored"]}


def test_schemas_are_explicit_and_stable(tmp_path: Path) -> None:
    synthetic.write_experiment(str(tmp_path), "empty", [])
    analyze(str(tmp_path), "empty", str(tmp_path / "out"), figures_too=False)
    trials = pq.read_table(tmp_path / "out" / TRIALS_FILE)
    epochs = pq.read_table(tmp_path / "out" / EPOCHS_FILE)
    assert trials.num_rows == 0 and epochs.num_rows == 0
    assert trials.schema.equals(trials_schema(), check_metadata=True)
    assert epochs.schema.equals(epochs_schema(), check_metadata=True)
    types = {f.name: f.type for f in trials.schema}
    assert types["cfg_density"] == pa.float64() and types["cfg_seed"] == pa.int64()
    assert (
        types["cfg_reset_momentum"] == pa.bool_() and types["sel_test_unbiased_acc"] == pa.float64()
    )
    assert types["nonzero_params"] == pa.int64() and types["status"] == pa.string()


def test_all_missing_column_keeps_its_type(tmp_path: Path) -> None:
    configs = _configs()[:2]
    synthetic.write_experiment(
        str(tmp_path),
        "exp",
        configs,
        statuses={synthetic.config_hash(c): "pending" for c in configs},
    )
    analysis = build(str(tmp_path), "exp")
    assert analysis.trials.schema.field("sel_test_acc").type == pa.float64()
    assert analysis.trials.column("sel_test_acc").null_count == 2


def test_rerun_is_byte_identical(messy, tmp_path: Path) -> None:
    storage, _ = messy
    first = analyze(storage, "exp", str(tmp_path / "a"), figures_too=True)
    analyze(storage, "exp", str(tmp_path / "b"), figures_too=True)
    for name in first.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    leftovers = [p.name for p in (tmp_path / "a").rglob("*.tmp")]
    assert leftovers == []  # atomic writes leave no temporary files


def test_config_columns_and_flat_values(tmp_path: Path) -> None:
    configs = _configs()
    synthetic.write_experiment(str(tmp_path), "exp", configs)
    trials = build(str(tmp_path), "exp").trials.to_pandas()
    rest = trials[trials["cfg_method"] == "rest"].iloc[0]
    assert rest["cfg_density"] == 0.05 and rest["cfg_reweight"] == "loss"
    assert rest["cfg_recipe"] == "paper" and rest["label"].startswith("cmnist_r1_rest_d0.05_s")
    assert rest["params_ratio"] == pytest.approx(0.05, rel=1e-3)
    assert rest["train_flops_ratio"] == pytest.approx(0.05, rel=1e-6)
    assert rest["grids"] == "synthetic"
    assert json.loads(rest["config_json"])["method"] == "rest"


def test_synthetic_hash_matches_trial_config() -> None:
    from trainables.config import TrialConfig

    config = synthetic.make_config(
        "rest-code", dataset="cmnist", ratio=2.0, method="rest", density=0.005, seed=43, epochs=7
    )
    assert synthetic.config_hash(config) == TrialConfig.from_dict(config).trial_hash
    assert TrialConfig.from_dict(config).to_dict() == config


def test_missing_experiment_is_a_one_line_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no experiment.json") as info:
        build(str(tmp_path), "nope")
    assert "\n" not in str(info.value)


def test_docs_list_every_column() -> None:
    docs = (ROOT / "docs" / "analysis.md").read_text()
    for line in markdown_table(trial_columns()).splitlines()[2:]:
        assert line in docs, line


def test_analysis_imports_neither_torch_nor_ray(messy, tmp_path: Path) -> None:
    storage, _ = messy
    code = (
        "import sys; from analysis.api import analyze, report; "
        f"analyze({storage!r}, 'exp', {str(tmp_path / 'o')!r}); report({storage!r}, 'exp', {str(tmp_path / 'o')!r}); "
        "bad = [m for m in ('torch', 'ray', 'trainables.train') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_stopped_states(tmp_path: Path) -> None:
    """ASHA-stopped (ledger) trials are 'stopped'; an interrupted one (state.json) is pending
    (it resumes), as ``rest-sweep status`` says; neither is an error."""
    configs = _configs()[:2]
    hashes = [synthetic.config_hash(c) for c in configs]
    statuses = {hashes[0]: "running", hashes[1]: "stopped"}
    store = synthetic.write_experiment(str(tmp_path), "exp", configs, statuses=statuses)
    ledger = store.read_ledger()
    ledger["stopped"] = {hashes[0]: {"launch": "L001", "epoch": 1}}
    store.write_ledger(ledger)
    trials = build(str(tmp_path), "exp").trials.to_pandas().set_index("trial_hash")
    assert trials.loc[hashes[0], "status"] == "stopped"
    assert trials.loc[hashes[1], "status"] == "pending"  # state.json says interrupted
    assert trials.loc[hashes[1], "epochs_done"] == 1 and pd.isna(
        trials.loc[hashes[1], "sel_test_acc"]
    )
    assert trials.loc[hashes[1], "final_test_acc"] > 0  # progress so far, from the last row
