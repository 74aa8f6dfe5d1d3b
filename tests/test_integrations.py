"""Tracking integrations (``--callback mlflow`` / ``wandb``): the registry, the checks made
before Ray starts, the targets' defaults, and real tiny sweeps on the session's Ray whose runs
land in an MLflow file store and in a W&B offline run folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import rest_sweep
from rest_sweep import integrations
from rest_sweep.integrations import TrackingContext
from rest_sweep.launch_settings import LaunchSettings
from tests.reliability.helpers import assert_one_line_error, run_main, write_grid
from trainables.errors import UserError
from trainables.results import ExperimentStore

TRACKING_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "WANDB_MODE",
    "WANDB_PROJECT",
    "WANDB_RUN_GROUP",
    "WANDB_DIR",
    "WANDB_API_KEY",
    "WANDB_SETUP_API_KEY_HOOK",
)


@pytest.fixture(autouse=True)
def clean_tracking_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the variables it means; none leak in from the machine."""
    for key in TRACKING_ENV:
        monkeypatch.delenv(key, raising=False)


def test_callback_names_come_from_the_registry() -> None:
    assert integrations.INTEGRATIONS.names() == ["mlflow", "wandb"]
    with pytest.raises(
        UserError, match=r"^--callback: 'neptune' is not allowed; allowed: mlflow, wa"
    ):
        LaunchSettings(callbacks=("neptune",)).validate()
    settings = LaunchSettings(callbacks=["wandb", "mlflow", "wandb"])  # as read from JSON
    assert settings.callbacks == ("wandb", "mlflow")
    assert LaunchSettings.of({"settings": settings.to_dict()}) == settings
    assert LaunchSettings.of({"settings": {"max_failures": 1}}).callbacks == ()  # older ledgers


def test_callback_flags_on_run_and_resume() -> None:
    from rest_sweep.cli import build_parser
    from rest_sweep.commands.run import launch_options

    parser = build_parser()
    common = ["--storage", "s", "--name", "n"]
    run = parser.parse_args(["run", "--grid", "demo", "--data-root", "d", *common])
    assert launch_options(run)["callbacks"] == []
    both = ["--callback", "mlflow", "--callback", "wandb"]
    run = parser.parse_args(["run", "--grid", "demo", "--data-root", "d", *common, *both])
    assert launch_options(run)["callbacks"] == ["mlflow", "wandb"]
    assert parser.parse_args(["resume", *common]).callbacks is None  # the last launch's
    assert parser.parse_args(["resume", *common, "--no-callbacks"]).callbacks == []
    assert parser.parse_args(["resume", *common, "--callback", "wandb"]).callbacks == ["wandb"]


def test_a_missing_package_is_one_line_naming_the_extra_before_ray(
    monkeypatch: pytest.MonkeyPatch, tiny_cmnist_root: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # how Python spells "not importable"
    grid = write_grid(tmp_path)
    code, out, err = run_main(
        "run", "--grid", grid, "--data-root", str(tiny_cmnist_root), "--storage",
        str(tmp_path / "s"), "--name", "e", "--callback", "mlflow",
    )  # fmt: skip
    line = assert_one_line_error(code, err, "--callback mlflow", "mlflow package is not installed")
    assert "pip install 'rest-sweep[tracking]'" in line
    assert not (tmp_path / "s" / "e").exists()  # refused before anything was written


def test_mlflow_defaults_to_a_file_store_in_the_experiment_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    context = TrackingContext("exp", str(tmp_path / "s" / "exp"), "L001")
    (target,) = integrations.targets(["mlflow"], context)
    assert target.options["tracking_uri"] == (tmp_path / "s" / "exp" / "mlruns").as_uri()
    assert target.options["experiment_name"] == "exp"
    assert target.options["tags"] == {"rest_sweep.experiment": "exp", "rest_sweep.launch": "L001"}
    assert "file store" in target.line and "MLFLOW_TRACKING_URI not set" in target.line
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    (given,) = integrations.targets(["mlflow"], context)
    assert given.options["tracking_uri"] == "http://mlflow.example:5000"
    assert "MLFLOW_TRACKING_URI=http://mlflow.example:5000" in given.line
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    remote = TrackingContext("exp", "s3://bucket/sweeps/exp")
    with pytest.raises(UserError, match=r"^--callback mlflow: MLFLOW_TRACKING_URI is not set .*s3"):
        integrations.targets(["mlflow"], remote)


def test_wandb_needs_a_key_online_and_takes_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    context = TrackingContext("exp", str(tmp_path / "exp"))
    monkeypatch.setattr(integrations, "_wandb_logged_in", lambda: False)
    with pytest.raises(UserError, match=r"^--callback wandb: no W&B API key.*WANDB_MODE=offline"):
        integrations.targets(["wandb"], context)
    monkeypatch.setenv("WANDB_MODE", "offline")
    (target,) = integrations.targets(["wandb"], context)
    assert target.options == {"project": "rest-sweep", "group": "exp", "mode": "offline"}
    monkeypatch.setenv("WANDB_PROJECT", "paper")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "w"))
    (target,) = integrations.targets(["wandb"], context)
    assert target.options["project"] == "paper" and target.options["dir"] == str(tmp_path / "w")
    assert target.line.startswith("wandb: project 'paper', group 'exp', mode offline")


def _tiny_sweep(grid: str, data: Path, storage: Path, name: str, callbacks: list[str]):
    return rest_sweep.run(
        grid,
        str(data),
        str(storage),
        name,
        callbacks=callbacks,
        reuse_actors=True,
    )


@pytest.mark.ray
def test_mlflow_records_each_trial_of_a_real_sweep(
    ray_session, tiny_cmnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()  # file:///tmp/...: MLflow's file store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # rest-sweep opts in itself
    result = _tiny_sweep(write_grid(tmp_path), tiny_cmnist_root, tmp_path / "s", "ml", ["mlflow"])
    assert result.outcome == "completed"
    assert f"ml: tracking with mlflow: experiment 'ml' in MLFLOW_TRACKING_URI={uri}" in (
        capsys.readouterr().out
    )
    store = ExperimentStore(str(tmp_path / "s"), "ml")
    (trial_hash,) = store.read_ledger()["trials"]
    assert store.read_ledger()["launches"][-1]["settings"]["callbacks"] == ["mlflow"]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ml")  # the rest-sweep experiment name
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["trial/hash"] == trial_hash
    assert run.data.tags["rest_sweep.launch"] == result.launch_id
    summary = store.trial(trial_hash).loc.read_json("summary.json")
    recorded = summary["final"]["valid_acc"]
    assert run.data.metrics["valid_acc"] == pytest.approx(recorded)


@pytest.mark.ray
def test_wandb_offline_run_holds_the_trials_metrics(
    ray_session, tiny_cmnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = _tiny_sweep(write_grid(tmp_path), tiny_cmnist_root, tmp_path / "s", "wb", ["wandb"])
    assert result.outcome == "completed"
    store = ExperimentStore(str(tmp_path / "s"), "wb")
    (trial_hash,) = store.read_ledger()["trials"]

    (run_dir,) = (tmp_path / "w" / "wandb").glob("offline-run-*")
    (run_file,) = run_dir.glob("run-*.wandb")
    records = _wandb_records(run_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.run_group) == ("rest-sweep", "wb")  # grouped by the experiment
    config = [
        i for r in records if r.WhichOneof("record_type") == "config" for i in r.config.update
    ]
    assert any(i.key == "trial" and trial_hash in i.value_json for i in config)
    logged = {
        "/".join(i.nested_key) or i.key: json.loads(i.value_json)
        for r in records
        if r.WhichOneof("record_type") == "history"
        for i in r.history.item
    }
    recorded = store.trial(trial_hash).loc.read_json("summary.json")["final"]
    assert logged["valid_acc"] == pytest.approx(recorded["valid_acc"])
    assert logged["epoch"] == 1


def _wandb_records(path: Path) -> list:
    """The protobuf records of an offline ``.wandb`` file: a 7-byte header, then LevelDB-log
    blocks of 32 KiB whose chunks (crc, length, type; 1 full, 2 first, 3 middle, 4 last) carry
    the records. wandb 0.31 ships no reader for it; ``wandb sync`` reads it this way."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block, pos = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B", data[:7]
    raw, pending = [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            raw.append(pending)
            pending = b""
    records = []
    for item in raw:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(item)
        records.append(record)
    return records
