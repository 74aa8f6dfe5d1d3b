"""The sweep service on the session's embedded Ray with tiny real data (Colored Fashion-MNIST).

A finished experiment that gains seeds runs only the new trials; a trial that fails once is
retried from its own checkpoint and finishes; bad data, resources and a live driver are
rejected before any trial starts.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

import rest_sweep
from rest_sweep.ledger import start_launch
from trainables.errors import UserError
from trainables.ray_trainable import FAULT_ENV
from trainables.results import ExperimentStore

pytestmark = pytest.mark.ray

GRID = """name: tiny
fixed: {{dataset: cmnist, ratio: 1.0, epochs: {epochs}, update_frequency: 4}}
axes: {{seed: {seeds}}}
methods:
  erm: {{}}
  rest: {{axes: {{density: [0.1]}}}}
"""


def write_grid(folder: Path, seeds: list[int], epochs: int = 1, name: str = "grid.yaml") -> str:
    path = folder / name
    path.write_text(GRID.format(epochs=epochs, seeds=seeds))
    return str(path)


def sweep(grid: str, data_root: Path, storage: Path | str, name: str, **kwargs):
    kwargs.setdefault("reuse_actors", True)
    kwargs.setdefault("quiet", True)
    return rest_sweep.run(grid, str(data_root), str(storage), name, **kwargs)


def test_sweep_completes_and_added_seeds_run_alone(ray_session, tiny_cmnist_root, tmp_path):
    first = sweep(write_grid(tmp_path, [41]), tiny_cmnist_root, tmp_path / "s", "exp")
    assert first.outcome == "completed" and first.launched == 2
    store = ExperimentStore(str(tmp_path / "s"), "exp")
    old = {h: store.trial(h).loc.fs.get_file_info(store.trial(h).loc.file("summary.json")).mtime
           for h in store.read_ledger()["trials"]}  # fmt: skip
    grown = sweep(write_grid(tmp_path, [41, 42]), tiny_cmnist_root, tmp_path / "s", "exp")
    assert grown.outcome == "completed" and grown.launched == 2 and grown.planned == 4
    ledger = store.read_ledger()
    assert len(ledger["trials"]) == 4 and [x["outcome"] for x in ledger["launches"]] == [
        "completed", "completed",
    ]  # fmt: skip
    assert set(ledger["launches"][1]["trials"]).isdisjoint(old)
    for trial_hash, mtime in old.items():  # finished trials were never touched again
        info = store.trial(trial_hash).loc.fs.get_file_info(store.trial(trial_hash).loc.file(
            "summary.json"))  # fmt: skip
        assert info.mtime == mtime
    again = sweep(write_grid(tmp_path, [41, 42]), tiny_cmnist_root, tmp_path / "s", "exp")
    assert again.launch_id is None and again.launched == 0
    report = rest_sweep.status(str(tmp_path / "s"), "exp")
    assert (report.planned, report.finished, report.pending, report.errored) == (4, 4, 0, 0)
    tune_dirs = sorted(p.name for p in (tmp_path / "s" / "exp" / "tune").iterdir())
    assert tune_dirs == [x["id"] for x in ledger["launches"]]


def test_failed_trial_is_retried_from_its_checkpoint(
    ray_session, tiny_cmnist_root, tmp_path, monkeypatch
):
    grid = tmp_path / "one.yaml"
    grid.write_text("fixed: {dataset: cmnist, ratio: 5.0, epochs: 2}\nmethods: [erm]\n")
    monkeypatch.setenv(FAULT_ENV, f"epoch=1;dir={tmp_path / 'faults'}")
    uri = (tmp_path / "s").as_uri()  # storage as a pyarrow URI (file://), not a plain path
    result = sweep(str(grid), tiny_cmnist_root, uri, "retry", max_failures=1)
    assert result.outcome == "completed"
    store = ExperimentStore(str(tmp_path / "s"), "retry")
    (trial_hash,) = store.read_ledger()["trials"]
    trial = store.trial(trial_hash)
    state = trial.read_state()
    assert state["attempt"] == 2 and state["resumed_from_epoch"] == 1
    assert [r["epoch"] for r in trial.read_metrics()] == [1, 2]
    assert [r["attempt"] for r in trial.read_metrics()] == [1, 2]
    assert "injected failure" in trial.read_error()
    assert (tmp_path / "faults" / trial_hash).exists()


def test_rejections_happen_before_any_trial(ray_session, tiny_cmnist_root, tmp_path):
    grid = write_grid(tmp_path, [41])
    with pytest.raises(
        UserError, match=r"cmnist has no 0.5pct folder.*allowed ratios there: 1pct, 5pct"
    ):
        sweep(grid, tiny_cmnist_root, tmp_path / "s", "e", overrides=["ratio=0.5"])
    with pytest.raises(UserError, match=r"data root not found: .*nowhere"):
        sweep(grid, tmp_path / "nowhere", tmp_path / "s", "e")
    with pytest.raises(UserError, match=r"--gpus-per-trial 1: no node .* allowed: at most 2 CPUs"):
        sweep(grid, tiny_cmnist_root, tmp_path / "s", "e", gpus_per_trial=1)
    with pytest.raises(UserError, match=r"--gpus-per-trial: 1.5 is not allowed"):
        sweep(grid, tiny_cmnist_root, tmp_path / "s", "e", gpus_per_trial=1.5)
    store = ExperimentStore(str(tmp_path / "s"), "e")
    assert store.read_ledger()["launches"] == []  # planned, but nothing launched
    start_launch(store, "run", "tiny", [], {})  # a live driver: this very process
    with pytest.raises(UserError, match=r"is being run by launch L001"):
        sweep(grid, tiny_cmnist_root, tmp_path / "s", "e")
    with pytest.raises(UserError, match=r"no experiment in .*allowed: e"):
        rest_sweep.resume(str(tmp_path / "s"), "missing")


def test_asha_stop_is_recorded_as_stopped_early(tmp_path):
    """ASHA's decision (not its order-dependent choice) is what this checks: the ledger entry."""
    from ray.tune.schedulers import TrialScheduler

    from rest_sweep.schedulers import RecordingASHA

    store = ExperimentStore(str(tmp_path), "asha")
    store.write_ledger({"name": "asha", "trials": {}, "launches": []})
    asha = RecordingASHA(str(tmp_path), "asha", "L001", max_t=4, grace_period=1,
                         reduction_factor=2, metric="valid_worst_group_acc", mode="max")  # fmt: skip

    class FakeTrial:
        def __init__(self, n: int) -> None:
            self.trial_id = f"t{n}"
            self.config = {"trial": {"hash": f"h{n}", "config": {"epochs": 3}}}

    decisions = []
    for n, score in enumerate([0.9, 0.8, 0.1]):  # descending: the last one is cut at rung 1
        trial = FakeTrial(n)
        asha.on_trial_add(None, trial)
        result = {"epoch": 1, "training_iteration": 1, "valid_worst_group_acc": score}
        decisions.append(asha.on_trial_result(None, trial, result))
    assert decisions[0] == TrialScheduler.CONTINUE and decisions[-1] == TrialScheduler.STOP
    stopped = store.read_ledger()["stopped"]
    assert set(stopped) == {f"h{n}" for n, d in enumerate(decisions) if d == TrialScheduler.STOP}
    assert stopped["h2"] == {"launch": "L001", "epoch": 1}


def test_launch_liveness_follows_the_driver_pid(tmp_path):
    from rest_sweep.ledger import launch_alive

    me = {"host": socket.gethostname(), "pid": os.getpid(), "ended": None}
    assert launch_alive(me)
    assert not launch_alive({**me, "ended": time.time()})
    assert not launch_alive({**me, "pid": 2**22 + 12345})
    far = {"host": "elsewhere", "pid": 1, "ended": None}
    assert launch_alive({**far, "heartbeat": time.time()})
    assert not launch_alive({**far, "heartbeat": time.time() - 600})


def test_fault_hook_parses_and_fires_once(tmp_path) -> None:
    from trainables.ray_trainable import Fault

    assert Fault.parse("", "h").epoch is None
    with pytest.raises(ValueError, match="expected 'epoch=N;dir=PATH"):
        Fault.parse("epoch=1", "h")
    fault = Fault.parse(f"epoch=2;dir={tmp_path}", "h")
    fault.maybe_fail(1)
    with pytest.raises(RuntimeError, match="injected failure after epoch 2"):
        fault.maybe_fail(2)
    fault.maybe_fail(2)  # the marker exists: a retry runs clean
    assert (tmp_path / "h").exists()


def test_packed_sweep_writes_single_trial_results(ray_session, tiny_cmnist_root, tmp_path):
    grid = write_grid(tmp_path, [41, 42], epochs=2)  # 4 trials: erm and rest, two seeds
    result = sweep(grid, tiny_cmnist_root, tmp_path / "s", "packed", pack_size=2)
    assert result.outcome == "completed" and result.launched == 4
    store = ExperimentStore(str(tmp_path / "s"), "packed")
    hashes = list(store.read_ledger()["trials"])
    for trial_hash in hashes:  # the trial stays the unit of results
        rows = store.trial(trial_hash).read_metrics()
        assert [r["epoch"] for r in rows] == [1, 2]
        assert all(r["pack_size"] == 2 for r in rows)
        assert store.trial(trial_hash).read_summary()["status"] == "finished"
    tune_trials = [p for p in (tmp_path / "s" / "packed" / "tune").glob("*/*") if p.is_dir()]
    assert len(tune_trials) == 2 and all(p.name.startswith("pack2-") for p in tune_trials)
    assert rest_sweep.status(str(tmp_path / "s"), "packed").finished == 4


def test_pack_size_is_validated_before_ray(tiny_cmnist_root, tmp_path):
    grid = write_grid(tmp_path, [41])
    with pytest.raises(UserError, match="--pack-size"):
        sweep(grid, tiny_cmnist_root, tmp_path / "s", "bad", pack_size="zero")
    with pytest.raises(UserError, match="asha"):
        sweep(grid, tiny_cmnist_root, tmp_path / "s", "bad", pack_size=4, scheduler="asha")
