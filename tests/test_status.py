"""Status and list read only the ledger and trial folders: every state, with no Ray."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from rest_sweep.cli import main
from rest_sweep.sweep_status import status
from trainables.config import TrialConfig
from trainables.results import ExperimentStore, metrics_digest


def _config(method: str, seed: int, density: float = 1.0) -> TrialConfig:
    return TrialConfig.from_recipe("paper", method=method, seed=seed, density=density, epochs=4)


@pytest.fixture()
def experiment(tmp_path) -> tuple[str, dict[str, str]]:
    """A ledger with one trial in each state, owned by a live launch (this process)."""
    store = ExperimentStore(str(tmp_path), "exp")
    configs = {
        "finished": _config("erm", 41),
        "errored": _config("erm", 42),
        "running": _config("rest", 41, 0.1),
        "interrupted": _config("rest", 42, 0.1),
        "stopped": _config("rest", 43, 0.1),
        "pending": _config("erm", 43),
    }
    hashes = {k: c.trial_hash for k, c in configs.items()}
    launch = {
        "id": "L001-x",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "ended": None,
        "heartbeat": time.time(),
        "started": time.time(),
        "trials": [hashes[k] for k in ("running", "pending", "errored")],
    }
    store.write_ledger(
        {
            "name": "exp",
            "schema": 1,
            "launches": [launch],
            "trials": {c.trial_hash: c.to_dict() for c in configs.values()},
            "grids": [{"grid": "unit", "recipe": "paper", "overrides": {}, "count": 6}],
            "stopped": {hashes["stopped"]: {"launch": "L001-x", "epoch": 1}},
            "pending_rows": {"cmnist_r1_mrm_s41": {"method": "mrm", "values": {}}},
        }
    )
    finished_rows = [{"epoch": e, "epoch_time_s": 2.0} for e in range(1, 5)]
    store.trial(hashes["finished"]).write_metrics(finished_rows)
    store.trial(hashes["finished"]).write_summary(
        {"wall_time_s": 8.0, "epochs": 4, "metrics_sha256": metrics_digest(finished_rows)}
    )
    store.trial(hashes["errored"]).write_state("errored", epoch=2, error="RuntimeError: boom")
    store.trial(hashes["running"]).write_state("running", epoch=1)
    store.trial(hashes["running"]).write_metrics([{"epoch": 1, "epoch_time_s": 2.0}])
    store.trial(hashes["interrupted"]).write_state("running", epoch=3)
    store.trial(hashes["stopped"]).write_state("running", epoch=1)
    return str(tmp_path), hashes


def test_status_counts_every_state(experiment) -> None:
    storage, hashes = experiment
    report = status(storage, "exp")
    assert (report.planned, report.finished, report.running, report.errored) == (6, 1, 1, 1)
    assert (report.pending, report.interrupted, report.stopped) == (2, 1, 1)
    assert report.not_runnable == 1 and report.live_launch == "L001-x"
    assert report.errors == [
        {"hash": hashes["errored"], "name": "cmnist_r1_erm_s42", "error": "RuntimeError: boom"}
    ]
    assert report.per_method["rest"] == {
        "finished": 0,
        "running": 1,
        "errored": 0,
        "stopped": 1,
        "pending": 1,
        "damaged": 0,
    }
    assert report.epochs_done == 4 + 2 + 1 + 3 + 1 and report.epochs_total == 24
    # 3 + 1 + 4 epochs left (running, interrupted, pending) x 2 s / 1 running trial
    assert report.eta_s == pytest.approx(16.0)


def test_a_dead_driver_makes_running_trials_interrupted(experiment) -> None:
    storage, hashes = experiment
    store = ExperimentStore(storage, "exp")
    ledger = store.read_ledger()
    ledger["launches"][0]["pid"] = 2**22 + 12345  # no such process on this host
    store.write_ledger(ledger)
    report = status(storage, "exp")
    assert report.running == 0 and report.pending == 3 and report.interrupted == 2
    assert report.eta_s is None and report.state == "errors"


def test_status_and_list_cli(experiment, capsys: pytest.CaptureFixture[str]) -> None:
    storage, _ = experiment
    assert main(["status", "--storage", storage, "--name", "exp", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("planned", "finished", "running", "errored", "pending"):
        assert isinstance(doc[key], int)
    assert doc["state"] == "running"
    assert main(["status", "--storage", storage, "--name", "exp"]) == 0
    text = capsys.readouterr().out
    assert "errored cmnist_r1_erm_s42" in text and "RuntimeError: boom" in text
    assert main(["list", "--storage", storage]) == 0
    assert "exp" in capsys.readouterr().out
    assert main(["status", "--storage", storage, "--name", "nope"]) == 2
    assert "allowed: exp" in capsys.readouterr().err


def test_status_and_analyze_agree_after_a_killed_driver(tmp_path) -> None:
    """One trial-state rule: a killed driver's trials read the same in status and analyze."""
    import pandas as pd

    store = ExperimentStore(str(tmp_path), "exp")
    configs = {
        "interrupted": _config("erm", 41),
        "running": _config("erm", 42),
        "no_summary": _config("erm", 43),
        "finished": _config("rest", 41, 0.1),
        "errored": _config("rest", 42, 0.1),
        "never": _config("rest", 43, 0.1),
    }
    hashes = {k: c.trial_hash for k, c in configs.items()}
    launch = {
        "id": "L001-x",
        "host": socket.gethostname(),
        "pid": 2**22 + 12345,  # killed: no such process on this host
        "ended": None,
        "heartbeat": time.time(),
        "started": time.time(),
        "trials": list(hashes.values()),
    }
    store.write_ledger(
        {
            "name": "exp",
            "schema": 1,
            "launches": [launch],
            "trials": {c.trial_hash: c.to_dict() for c in configs.values()},
            "grids": [{"grid": "unit", "recipe": "paper", "overrides": {}, "count": 6}],
        }
    )
    row = {"epoch": 1, "epoch_time_s": 1.0, "test_acc": 0.5}
    for key, written in (("interrupted", "interrupted"), ("running", "running")):
        store.trial(hashes[key]).write_state(written, epoch=1)
        store.trial(hashes[key]).write_metrics([row])
    store.trial(hashes["no_summary"]).write_state("finished", epoch=4)
    store.trial(hashes["no_summary"]).write_metrics([{**row, "epoch": e} for e in range(1, 5)])
    store.trial(hashes["finished"]).write_summary({"wall_time_s": 8.0})
    store.trial(hashes["errored"]).write_state("errored", epoch=2, error="RuntimeError: boom")

    report = status(str(tmp_path), "exp")
    by_status = {t.hash: t.state for t in report.trials}
    assert [by_status[hashes[k]] for k in ("interrupted", "running", "no_summary")] == [
        "pending"
    ] * 3
    assert report.interrupted == 3 and report.running == 0

    out = tmp_path / "analysis"
    argv = ["analyze", "--storage", str(tmp_path), "--name", "exp", "--out", str(out)]
    assert main([*argv, "--no-figures"]) == 0
    trials = pd.read_parquet(out / "trials.parquet").set_index("trial_hash")
    assert trials["status"].to_dict() == by_status
    assert main(["status", "--storage", str(tmp_path), "--name", "exp", "--json", "--trials"]) == 0


def test_status_reads_a_ledger_planned_before_the_planning_checks(tmp_path, capsys) -> None:
    """A stored BFFHQ DisEnt trial at batch 256 (its swap never starts) and a prune trial with
    a retired redense_lr load and report: those rules refuse planning only (check_plan)."""
    from trainables.config import ConfigError, check_plan

    disent = TrialConfig.from_recipe(
        "paper",
        method="disent",
        dataset="bffhq",
        ratio=0.5,
        batch_size=256,
        disent_allow_no_swap=True,
    ).to_dict()
    disent["disent_allow_no_swap"] = False  # as stored before the flag existed
    prune = {**TrialConfig.from_recipe("paper", method="prune").to_dict(), "redense_lr": 0.01}
    stored = [TrialConfig.from_dict(values) for values in (disent, prune)]
    for cfg, field in zip(stored, ("disent_swap_step", "redense_lr"), strict=True):
        with pytest.raises(ConfigError, match=f"^{field}: ") as info:
            check_plan(cfg)  # what planning it anew (from_recipe, a grid) runs
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="^disent_swap_step: "):
        TrialConfig.from_recipe(
            "paper", method="disent", dataset="bffhq", ratio=0.5, batch_size=256
        )
    store = ExperimentStore(str(tmp_path), "old")
    store.write_ledger(
        {
            "name": "old",
            "schema": 1,
            "launches": [],
            "trials": {c.trial_hash: v for c, v in zip(stored, (disent, prune), strict=True)},
            "grids": [{"grid": "unit", "recipe": "paper", "overrides": {}, "count": 2}],
        }
    )
    assert status(str(tmp_path), "old").planned == 2
    assert main(["status", "--storage", str(tmp_path), "--name", "old", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["planned"] == 2


def test_status_counts_the_epochs_a_restart_keeps(
    experiment, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sparse checkpoints: rows after the newest checkpoint are trained again on resume."""
    storage, hashes = experiment
    store = ExperimentStore(storage, "exp")
    # interrupted after epoch 3, newest checkpoint at epoch 2 (checkpoint_every=2)
    store.trial(hashes["interrupted"]).write_state("running", epoch=3, checkpoint_epoch=2)
    # running at epoch 1, no checkpoint yet
    store.trial(hashes["running"]).write_state("running", epoch=1, checkpoint_epoch=0)
    report = status(storage, "exp")
    by_hash = {t.hash: t for t in report.trials}
    assert (by_hash[hashes["interrupted"]].epoch, by_hash[hashes["interrupted"]].redo) == (2, 1)
    assert (by_hash[hashes["running"]].epoch, by_hash[hashes["running"]].redo) == (0, 1)
    assert (by_hash[hashes["finished"]].epoch, by_hash[hashes["finished"]].redo) == (4, 0)
    # finished 4 + errored 2 + running 0 + interrupted 2 + stopped 1
    assert report.epochs_done == 4 + 2 + 0 + 2 + 1 and report.epochs_total == 24
    assert main(["status", "--storage", storage, "--name", "exp", "--trials"]) == 0
    text = capsys.readouterr().out
    assert "epochs 9/24 (+2 to redo" in text
    assert f"{hashes['interrupted']}" in text and "epoch 2/4 (+1 to redo)" in text
    assert "epoch 4/4 (+" not in text
