"""The sweep service on the session's embedded Ray with tiny real data (Colored Fashion-MNIST).

A finished experiment that gains seeds runs only the new trials; bad data, resources, settings
and a live driver are rejected before any trial starts; a resume reuses the last launch's
settings. (Retries after an injected failure: tests/test_service_recovery.py.)
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

import pytest

import rest_sweep
from rest_sweep.launch_settings import LaunchSettings, last_settings
from rest_sweep.ledger import start_launch
from tests.fixtures.ledgers import ledger_with_launch
from trainables.errors import UserError
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
    old = {
        h: store.trial(h).loc.fs.get_file_info(store.trial(h).loc.file("summary.json")).mtime
        for h in store.read_ledger()["trials"]
    }
    grown = sweep(write_grid(tmp_path, [41, 42]), tiny_cmnist_root, tmp_path / "s", "exp")
    assert grown.outcome == "completed" and grown.launched == 2 and grown.planned == 4
    ledger = store.read_ledger()
    assert len(ledger["trials"]) == 4 and [x["outcome"] for x in ledger["launches"]] == [
        "completed",
        "completed",
    ]
    assert set(ledger["launches"][1]["trials"]).isdisjoint(old)
    for trial_hash, mtime in old.items():  # finished trials were never touched again
        info = store.trial(trial_hash).loc.fs.get_file_info(
            store.trial(trial_hash).loc.file("summary.json")
        )
        assert info.mtime == mtime
    again = sweep(write_grid(tmp_path, [41, 42]), tiny_cmnist_root, tmp_path / "s", "exp")
    assert again.launch_id is None and again.launched == 0
    report = rest_sweep.status(str(tmp_path / "s"), "exp")
    assert (report.planned, report.finished, report.pending, report.errored) == (4, 4, 0, 0)
    tune_dirs = sorted(p.name for p in (tmp_path / "s" / "exp" / "tune").iterdir())
    assert tune_dirs == [x["id"] for x in ledger["launches"]]


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
    start_launch(store, "run", "tiny", [], LaunchSettings())  # a live driver: this process
    with pytest.raises(UserError, match=r"is being run by launch L001"):
        sweep(grid, tiny_cmnist_root, tmp_path / "s", "e")
    with pytest.raises(UserError, match=r"no experiment in .*allowed: e"):
        rest_sweep.resume(str(tmp_path / "s"), "missing")


def test_asha_stop_is_recorded_as_stopped_early(tmp_path):
    """ASHA's decision (not its order-dependent choice) is what this checks: the ledger entry."""
    from ray.tune.schedulers import TrialScheduler

    from rest_sweep.asha import RecordingASHA

    store = ExperimentStore(str(tmp_path), "asha")
    store.write_ledger({"name": "asha", "trials": {}, "launches": []})
    asha = RecordingASHA(
        str(tmp_path),
        "asha",
        "L001",
        max_t=4,
        grace_period=1,
        reduction_factor=2,
        metric="valid_worst_group_acc",
        mode="max",
    )

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


def _captured_resume(monkeypatch, store: ExperimentStore, **given) -> LaunchSettings:
    """The settings ``resume`` would launch with (data check and the launch itself stubbed)."""
    from rest_sweep import service

    seen = {}
    monkeypatch.setattr(service, "validate_data", lambda root, trials, **_: "/data")

    def launch(store, ledger, command, grid, configs, settings, *, quiet, **_):
        seen["settings"] = settings
        return service.SweepResult(store.name, store.storage, None, 0, 0)

    monkeypatch.setattr(service, "_launch", launch)
    service.resume(store.storage, store.name, **given)
    return seen["settings"]


def test_resume_without_flags_reuses_every_setting_of_the_last_launch(tmp_path, monkeypatch):
    settings = LaunchSettings(
        address="auto",
        cpus_per_trial=2.0,
        gpus_per_trial=0.5,
        max_concurrent=3,
        max_failures=5,
        scheduler="asha",
        metric="valid_unbiased_acc",
        num_cpus=None,
        num_gpus=None,
        reuse_actors=True,
    )
    assert LaunchSettings.of({"settings": settings.to_dict()}) == settings
    store = ledger_with_launch(tmp_path, {"settings": settings.to_dict()})
    assert _captured_resume(monkeypatch, store) == settings
    changed = _captured_resume(monkeypatch, store, max_failures=0, reuse_actors=False)
    assert changed == dataclasses.replace(settings, max_failures=0, reuse_actors=False)


def test_a_resume_under_ray_address_joins_that_cluster_not_the_stored_one(tmp_path, monkeypatch):
    # The last launch ran embedded with --num-cpus 4; the resume runs as a Ray job elsewhere.
    embedded = LaunchSettings(address=None, num_cpus=4, num_gpus=0)
    store = ledger_with_launch(tmp_path, {"settings": embedded.to_dict()})
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    joined = _captured_resume(monkeypatch, store)
    assert (joined.address, joined.num_cpus, joined.num_gpus) == (None, None, None)
    # A stored --address of a cluster since recreated: this job's RAY_ADDRESS wins.
    stored = LaunchSettings(address="10.0.0.10:6379")
    store = ledger_with_launch(tmp_path / "b", {"settings": stored.to_dict()})
    assert _captured_resume(monkeypatch, store).address is None
    monkeypatch.delenv("RAY_ADDRESS")
    assert _captured_resume(monkeypatch, store).address == "10.0.0.10:6379"


def test_settings_of_an_older_flat_launch_record_drop_pack_size(tmp_path, monkeypatch):
    old = {
        "address": None,
        "resources": {"cpu": 2.0, "gpu": 0.25},
        "max_concurrent": None,
        "scheduler": "fifo",
        "metric": "valid_worst_group_acc",
        "max_failures": 1,
        "pack_size": "auto",
    }
    store = ledger_with_launch(tmp_path, old)
    expected = LaunchSettings(cpus_per_trial=2.0, gpus_per_trial=0.25, max_failures=1)
    assert _captured_resume(monkeypatch, store) == expected
    assert last_settings({"launches": []}) == LaunchSettings()


def test_launch_settings_are_validated_before_ray(tiny_cmnist_root, tmp_path):
    grid = write_grid(tmp_path, [41])
    for bad, match in [
        ({"scheduler": "hyperband"}, "--scheduler: 'hyperband' is not allowed"),
        ({"max_failures": -2}, "--max-failures: -2 is not allowed"),
        ({"max_concurrent": 0}, "--max-concurrent: 0 is not allowed"),
        ({"cpus_per_trial": 0}, "--cpus-per-trial: 0 is not allowed"),
    ]:
        with pytest.raises(UserError, match=match):
            sweep(grid, tiny_cmnist_root, tmp_path / "s", "bad", **bad)


def test_default_gpu_share_comes_from_the_model_catalogue():
    from rest_sweep.service import gpu_share
    from trainables.models import MODELS

    assert gpu_share(["simple_cnn"]) == MODELS.get("simple_cnn").gpu_share
    assert gpu_share(["simple_cnn", "resnet18"]) == max(
        MODELS.get(m).gpu_share for m in ("simple_cnn", "resnet18")
    )
    assert gpu_share([]) == 0.0


def test_each_trial_is_validated_once_per_launch(
    ray_session, tiny_cmnist_root, tmp_path, monkeypatch
):
    """A launch validates each trial's config once: ``run`` when it plans the trial (a grid file
    is checked by that same expansion), ``resume`` when it reads it from the ledger. Placing it
    on the data root and device, and rebuilding it from the param space in the worker
    (``train_trial``, run here in-process with the training stubbed), validate nothing again."""
    from collections import Counter

    import trainables.config as config
    import trainables.train as train
    from rest_sweep import tuner
    from trainables.ray_trainable import train_trial

    validations: Counter[str] = Counter()
    real = config.validate

    def counting(cfg) -> None:
        validations[cfg.trial_hash] += 1
        real(cfg)

    trained: dict[str, object] = {}

    class Tuner:  # Ray Tune's fit, in this process: each trial's param space to train_trial
        def __init__(self, plan) -> None:
            self.plan = plan

        def fit(self):
            for entry in tuner.param_space(self.plan)["trial"]["grid_search"]:
                train_trial({"trial": entry})
            return type("Results", (), {"num_errors": 0, "__iter__": lambda self: iter(())})()

    monkeypatch.setattr(config, "validate", counting)
    monkeypatch.setattr(train, "run_trial", lambda cfg, **_: trained.update({cfg.trial_hash: cfg}))
    monkeypatch.setattr(tuner, "build_tuner", Tuner)
    storage = tmp_path / "s"
    result = sweep("demo", tiny_cmnist_root, storage, "once")  # a registered grid: 6 trials
    assert result.launched == 6 and len(trained) == 6
    assert validations == Counter(dict.fromkeys(trained, 1))
    assert {(c.data_root, c.device) for c in trained.values()} == {(str(tiny_cmnist_root), "cpu")}
    validations.clear()
    trained.clear()
    resumed = rest_sweep.resume(str(storage), "once", quiet=True)
    assert resumed.launched == 6 and validations == Counter(dict.fromkeys(trained, 1))
    # A grid file: checked and planned in one expansion, each trial validated once too.
    validations.clear()
    trained.clear()
    from_file = sweep(write_grid(tmp_path, [41, 42]), tiny_cmnist_root, storage, "file")
    assert from_file.launched == 4 and validations == Counter(dict.fromkeys(trained, 1))
