"""Resume goes where the sweep ran (issue 26): a launch records its cluster (``--address``,
``RAY_ADDRESS``, a Ray job, or embedded); ``resume`` outside a job joins it, refuses in one line
when it cannot be reached, and runs elsewhere only with ``--address`` or ``--embedded``; the
hint resumes the way the sweep was launched; SIGTERM records ``interrupted`` before anything
else. Ray itself is stubbed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from rest_sweep import cli, service
from rest_sweep import cluster as clusters
from rest_sweep import ledger as ledgers
from rest_sweep.launch_settings import LaunchSettings
from tests.fixtures.ledgers import ledger_with_launch
from trainables.results import ExperimentStore

JOB = {"address": "10.0.0.5:6379", "via": "job"}


@pytest.fixture(autouse=True)
def _outside_a_job(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(service.RAY_JOB_ENV, raising=False)


def _store(tmp_path: Path, cluster: dict | None, **launch) -> ExperimentStore:
    recorded = {"cluster": cluster} if cluster is not None else {}
    return ledger_with_launch(
        tmp_path, {"settings": LaunchSettings().to_dict(), **recorded, **launch}
    )


def _resumed_address(monkeypatch, store: ExperimentStore, **given) -> str | None:
    seen = {}
    monkeypatch.setattr(service, "validate_data", lambda root, trials, **_: "/data")

    def launch(store, ledger, command, grid, configs, settings, **_):
        seen["address"] = settings.address
        return service.SweepResult(store.name, store.storage, None, 0, 0)

    monkeypatch.setattr(service, "_launch", launch)
    service.resume(store.storage, store.name, **given)
    return seen["address"]


def test_a_launch_records_where_its_address_came_from(monkeypatch):
    assert service.cluster_record(None) == {"address": None, "via": "embedded"}
    assert service.cluster_record("h:1") == {"address": "h:1", "via": "flag"}
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert service.cluster_record(None) == {"address": "10.0.0.5:6379", "via": "RAY_ADDRESS"}
    monkeypatch.setenv(service.RAY_JOB_ENV, "{}")
    assert service.cluster_record(None) == JOB
    assert service.cluster_record("h:1")["via"] == "flag"


def test_a_launch_in_a_ray_job_stores_its_cluster_in_the_launch_record(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", JOB["address"])
    monkeypatch.setenv(service.RAY_JOB_ENV, "{}")

    def no_ray(*args, **kwargs):
        raise RuntimeError("Ray stubbed out")

    monkeypatch.setattr(clusters, "ray_context", no_ray)
    store = ExperimentStore(str(tmp_path), "exp")
    store.write_ledger({"name": "exp", "trials": {}, "launches": [], "data_root": ""})
    with pytest.raises(RuntimeError, match="stubbed"):
        service._launch(
            store, store.read_ledger(), "run", "g", {"abc": None}, LaunchSettings(),
            root="/data", quiet=True,
        )  # fmt: skip
    assert store.read_ledger()["launches"][-1]["cluster"] == JOB


def test_resume_outside_a_job_joins_the_recorded_cluster(tmp_path, monkeypatch):
    probed = []
    monkeypatch.setattr(clusters, "probe_cluster", lambda target: probed.append(target.address))
    store = _store(tmp_path, JOB)  # settings.address is None: the address came from the job
    assert _resumed_address(monkeypatch, store) == JOB["address"]
    assert probed == [JOB["address"]]
    # --address and --embedded run elsewhere, without probing the recorded cluster
    assert _resumed_address(monkeypatch, store, address="other:6379") == "other:6379"
    assert _resumed_address(monkeypatch, store, embedded=True) is None
    assert probed == [JOB["address"]]
    # inside a job, the job's own cluster (RAY_ADDRESS) is used
    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6379")
    assert _resumed_address(monkeypatch, store) is None
    assert probed == [JOB["address"]]


def test_resume_after_an_embedded_launch_stays_embedded(tmp_path, monkeypatch):
    monkeypatch.setattr(clusters, "probe_cluster", lambda target: pytest.fail("probed"))
    store = _store(tmp_path, {"address": None, "via": "embedded"})
    assert _resumed_address(monkeypatch, store) is None


def test_resume_refuses_an_unreachable_recorded_cluster_in_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray")
    store = _store(tmp_path, {"address": "127.0.0.1:1", "via": "job"})
    code = cli.main(["resume", "--storage", str(tmp_path), "--name", "exp"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "127.0.0.1:1" in err and "--embedded" in err and "--address" in err
    assert store.read_ledger()["launches"][-1]["id"] == "L001"  # nothing launched


def test_embedded_and_address_together_are_refused(tmp_path, monkeypatch):
    store = _store(tmp_path, JOB)
    with pytest.raises(service.UserError, match="--embedded"):
        _resumed_address(monkeypatch, store, embedded=True, address="h:1")


def test_the_hint_resumes_the_way_the_sweep_was_launched(tmp_path):
    store = ExperimentStore(str(tmp_path), "exp")
    plain = f"rest-sweep resume --storage {store.storage} --name exp"
    assert (
        service.resume_hint(store.storage, "exp", JOB)
        == f"ray job submit --address <dashboard> -- {plain}"
    )
    assert service.resume_hint(store.storage, "exp", {"address": "h:1", "via": "flag"}) == (
        f"{plain} --address h:1"
    )
    assert (
        service.resume_hint(store.storage, "exp", {"address": "h:1", "via": "RAY_ADDRESS"}) == plain
    )
    assert service.resume_hint(store.storage, "exp", {"address": None, "via": "embedded"}) == plain


def test_sigterm_records_interrupted_and_the_hint_before_anything_else(tmp_path, monkeypatch):
    from rest_sweep import tuner

    store = ExperimentStore(str(tmp_path), "exp")
    store.write_ledger({"name": "exp", "trials": {}, "launches": [], "data_root": ""})
    launch = ledgers.start_launch(store, "run", "g", ["abc"], LaunchSettings(), cluster=JOB)

    def killed(signum, frame):  # what follows the record (the message, SIGINT to Tune) fails
        raise RuntimeError("SIGKILL")

    class Tuner:
        def fit(self):
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("SIGTERM not handled")

    monkeypatch.setattr(clusters, "_forward_to_sigint", killed)
    monkeypatch.setattr(tuner, "build_tuner", lambda plan: Tuner())
    with pytest.raises(RuntimeError, match="SIGKILL"):
        service._fit(store, launch, {}, {}, {}, LaunchSettings(), "here", quiet=True)
    record = store.read_ledger()["launches"][-1]
    assert record["outcome"] == "interrupted"
    assert record["hint"] == service.resume_hint(store.storage, "exp", JOB)
    assert record["ended"] is None  # open while the driver stops; the final outcome follows


def test_a_driver_killed_after_recording_sigterm_stays_interrupted(tmp_path):
    store = _store(tmp_path, JOB, ended=None, outcome="interrupted", hint="h")
    closed = ledgers.close_dead_launches(store, "status")["launches"][-1]
    assert (closed["outcome"], closed["hint"]) == ("interrupted", "h")
    assert closed["ended"] and closed["closed"]["by"] == "status"


def test_the_cli_interrupt_hint_resumes_the_way_the_sweep_was_launched(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(service, "resume", interrupted)
    argv = ["resume", "--storage", "/s", "--name", "exp"]
    assert cli.main([*argv, "--address", "h:1"]) == 130
    assert "`rest-sweep resume --storage /s --name exp --address h:1`" in capsys.readouterr().err
    monkeypatch.setenv("RAY_ADDRESS", JOB["address"])
    monkeypatch.setenv(service.RAY_JOB_ENV, "{}")
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert (
        "`ray job submit --address <dashboard> -- rest-sweep resume --storage /s --name exp`" in err
    )
