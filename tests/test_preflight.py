"""Joining a cluster and checking its nodes, on the session's embedded Ray (one node).

The real multi-node cases (a node without the storage or the data, ``RAY_ADDRESS`` only, a
driver without the token) run against a real two-node cluster in
tests/reliability/test_two_node_cluster.py.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rest_sweep import service
from rest_sweep.cluster import ADDRESS_ENV, ClusterAddress, TrialResources, probe_cluster
from rest_sweep.preflight import (
    PREFLIGHT_DIR,
    NodeReport,
    check_nodes,
    needed_ratios,
    probe_node,
    refuse_failed_nodes,
)
from tests.fixtures.data import cpu_config
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.results import EXPERIMENT_FILE, ExperimentStore


def test_address_comes_from_the_flag_then_ray_address_then_embedded(monkeypatch):
    monkeypatch.setenv(ADDRESS_ENV, "10.0.0.1:6379")
    assert ClusterAddress.resolve("head:6379") == ClusterAddress("head:6379", "--address")
    from_env = ClusterAddress.resolve(None)
    assert from_env == ClusterAddress("10.0.0.1:6379", ADDRESS_ENV)
    assert from_env.describe() == "cluster at 10.0.0.1:6379 (from RAY_ADDRESS)"
    assert from_env.flag == "RAY_ADDRESS=10.0.0.1:6379"
    assert not service.trains_here(None)
    monkeypatch.setenv(ADDRESS_ENV, " ")
    assert ClusterAddress.resolve(None).describe() == "embedded Ray"
    assert service.trains_here(None)


def test_ray_client_addresses_and_dead_heads_fail_in_one_line_quickly():
    with pytest.raises(UserError, match=r"Ray Client addresses are not supported.*ray job"):
        probe_cluster(ClusterAddress("ray://head:10001", "--address"))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(UserError, match=rf"RAY_ADDRESS=127.0.0.1:{port}: .*nothing answers"):
        probe_cluster(ClusterAddress(f"127.0.0.1:{port}", ADDRESS_ENV))
    assert time.monotonic() - start < 30  # not ray.init's minute of retries (a sanity bound)


def test_a_cluster_driver_needs_no_data_but_an_embedded_one_does(tmp_path):
    cfg = TrialConfig.from_recipe("paper", dataset="cmnist", ratio=1.0, method="erm")
    missing = tmp_path / "nowhere"
    assert service.validate_data(str(missing), [cfg], on_driver=False) == str(missing)
    with pytest.raises(Exception, match="data root not found"):
        service.validate_data(str(missing), [cfg], on_driver=True)
    with pytest.raises(UserError, match="must be a local or shared-mount path"):
        service.validate_data("s3://bucket/data", [cfg], on_driver=False)


def _store(tmp_path: Path) -> ExperimentStore:
    store = ExperimentStore(str(tmp_path / "storage"), "exp")
    store.loc.makedirs()
    store.loc.write_json(EXPERIMENT_FILE, {"trials": {}})
    return store


@pytest.mark.ray
def test_every_node_checks_storage_and_data_then_the_check_leaves_no_files(
    ray_session, tmp_path, tiny_cmnist_root
):
    store = _store(tmp_path)
    cfg = TrialConfig.from_recipe("paper", dataset="cmnist", ratio=1.0, method="erm")
    result = check_nodes(
        store, str(tiny_cmnist_root), needed_ratios([cfg]), [TrialResources(1.0, 0.0)]
    )
    assert [r.storage + r.data for r in result.nodes] == [[]]
    assert not store.loc.child(PREFLIGHT_DIR).exists()  # marker and replies removed
    with pytest.raises(UserError, match=r"cmnist has no 0.5pct folder"):
        check_nodes(store, str(tiny_cmnist_root), {"cmnist": [0.5]}, [TrialResources(1.0, 0.0)])
    # A request no node can take checks no node (and refuses nothing: check_fits does that).
    assert check_nodes(store, "/nowhere", {}, [TrialResources(64.0, 0.0)]).nodes == []


@pytest.mark.ray
def test_a_node_that_sees_another_folder_or_no_data_says_so(ray_session, tmp_path):
    store = _store(tmp_path)
    folder = store.loc.child(PREFLIGHT_DIR)
    folder.write_json("m.json", {"token": "driver-token"})
    answer = probe_node(store.uri, "m.json", "other-token", "r.json", str(tmp_path / "d"), {})
    assert answer["storage"] == [
        f"cannot see the experiment folder {store.uri} (the marker the driver just wrote "
        "there is missing: this node sees another folder at that path)"
    ]
    answer = probe_node(
        store.uri, "m.json", "driver-token", "r.json", str(tmp_path / "d"), {"cmnist": [1.0]}
    )
    assert answer["storage"] == []
    assert json.loads((Path(folder.path) / "r.json").read_text())["token"] == "driver-token"
    assert answer["data"][0].startswith("data root not found")


def test_failed_nodes_are_one_line_grouped_by_problem_storage_first():
    reports = [
        NodeReport("a" * 16, "10.0.0.2", "w1", storage=["cannot see X"]),
        NodeReport("b" * 16, "10.0.0.3", "w2", storage=["cannot see X"], data=["no 1pct"]),
        NodeReport("c" * 16, "10.0.0.4", "w3"),
    ]
    with pytest.raises(UserError) as refused:
        refuse_failed_nodes(reports, "/nfs/sweeps", "/nfs/data")
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith(
        "--storage /nfs/sweeps: nodes 10.0.0.2 (w1, node aaaaaaaa), 10.0.0.3 (w2, node "
        "bbbbbbbb): cannot see X; mount the same storage"
    )
    assert " | --data-root /nfs/data: node 10.0.0.3 (w2, node bbbbbbbb): no 1pct; copy" in line
    assert "10.0.0.4" not in line
    refuse_failed_nodes(reports[2:], "/nfs/sweeps", "/nfs/data")  # all good: no error


@pytest.mark.ray
def test_trials_tune_saw_finish_without_a_visible_summary_are_named_with_their_node(
    ray_session, tmp_path
):
    store = _store(tmp_path)
    node = ray_session.get_runtime_context().get_node_id()
    finished = SimpleNamespace(
        error=None,
        metrics={"trial_hash": "abc", "epoch": 3, "node_id": node},
        config={"trial": {"config": {"epochs": 3}}},
    )
    failed = SimpleNamespace(error=RuntimeError("x"), metrics={"trial_hash": "def"}, config={})
    stopped_early = SimpleNamespace(
        error=None,
        metrics={"trial_hash": "ghi", "epoch": 1, "node_id": node},
        config={"trial": {"config": {"epochs": 3}}},
    )
    line = service._finished_unseen(store, [finished, failed, stopped_early], grace_s=0)
    assert line.startswith("Ray Tune reports 1 trial(s) finished, but their summary.json is not")
    assert f"(node {node[:8]}): 1" in line and "rest-sweep resume" in line
    assert service.SweepResult("e", "s", "l", 1, 1, outcome=service.NOT_VISIBLE).exit_code == 1
    (tmp_path / "storage" / "exp" / "trials" / "abc").mkdir(parents=True)
    (tmp_path / "storage" / "exp" / "trials" / "abc" / "summary.json").write_text("{}")
    assert service._finished_unseen(store, [finished], grace_s=0) == ""


def test_a_trainable_on_a_node_without_the_experiment_folder_refuses_to_train(tmp_path):
    from trainables.ray_trainable import StorageNotVisibleError, _refuse_unseen_storage

    uri = str(tmp_path / "storage" / "exp" / "trials" / "abc")
    with pytest.raises(StorageNotVisibleError, match=r"cannot see the experiment folder .*exp"):
        _refuse_unseen_storage(uri)
    _store(tmp_path)
    _refuse_unseen_storage(uri)  # the driver's experiment.json is visible: trains


def test_tune_sees_the_epoch_as_timesteps_total(tmp_path, tiny_cmnist_root, monkeypatch):
    from ray import tune

    from trainables import ray_trainable

    reported: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda row: reported.append(dict(row)))
    store = _store(tmp_path)
    cfg = cpu_config(tiny_cmnist_root, epochs=2)
    uri = store.trial_uri(cfg.trial_hash)
    params = {"trial": {"hash": cfg.trial_hash, "name": "t", "uri": uri, "config": cfg.to_dict()}}
    ray_trainable.train_trial(params)
    assert [(r["epoch"], r["timesteps_total"]) for r in reported] == [(1, 1), (2, 2)]


def test_a_late_node_is_blamed_on_the_phase_it_did_not_finish(tmp_path, monkeypatch):
    from rest_sweep import preflight

    store = _store(tmp_path)
    folder = store.loc.child(PREFLIGHT_DIR)
    node = {"NodeID": "n" * 16, "NodeManagerAddress": "10.0.0.9"}
    silent = preflight._late_report({"node": node, "reply": "r.json"}, folder, 180)
    assert silent.storage == ["did not answer the storage check within 180 s (a hung mount?)"]
    folder.write_json("r.json", {"token": "t"})  # it got as far as its reply: storage is fine
    slow = preflight._late_report({"node": node, "reply": "r.json"}, folder, 180)
    assert slow.storage == [] and slow.data[0].startswith("did not finish the data check")
    assert preflight.TIMEOUT_ENV in slow.data[0]
    monkeypatch.setenv(preflight.TIMEOUT_ENV, "600")
    assert preflight.node_check_timeout() == 600
    monkeypatch.setenv(preflight.TIMEOUT_ENV, "soon")
    with pytest.raises(UserError, match="REST_SWEEP_NODE_CHECK_TIMEOUT_S=soon: not allowed"):
        preflight.node_check_timeout()


def test_a_summary_that_appears_during_the_grace_is_not_reported(tmp_path, monkeypatch):
    import threading

    store = _store(tmp_path)
    monkeypatch.setattr(service, "UNSEEN_POLL_S", 0.2)
    finished = SimpleNamespace(
        error=None,
        metrics={"trial_hash": "abc", "epoch": 1, "node_id": "x"},
        config={"trial": {"config": {"epochs": 1}}},
    )
    folder = tmp_path / "storage" / "exp" / "trials" / "abc"

    def write_late() -> None:  # what an NFS client sees once its attribute cache expires
        time.sleep(0.5)
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text("{}")

    writer = threading.Thread(target=write_late)
    writer.start()
    assert service._finished_unseen(store, [finished], grace_s=30) == ""
    writer.join()


def test_relative_paths_are_refused_inside_a_ray_job(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert service.absolute_storage("results") == str(tmp_path / "results")
    monkeypatch.setenv(service.RAY_JOB_ENV, "{}")
    with pytest.raises(UserError, match=r"--storage results: a relative path in a Ray job"):
        service.absolute_storage("results")
    with pytest.raises(UserError, match=r"--data-root data: a relative path in a Ray job"):
        service.validate_data("data", [], on_driver=False)
    assert service.absolute_storage("s3://bucket/sweeps") == "s3://bucket/sweeps"
    assert service.absolute_storage(str(tmp_path)) == str(tmp_path)


def test_a_staged_trial_reports_every_epoch_live_and_only_its_last_after_the_summary(
    tmp_path, tiny_cmnist_root, monkeypatch
):
    """prune: levels x epochs rows; only the very last waits for summary.json (not every row
    past `epochs`, which would reach Tune and ASHA in one burst at the end)."""
    from ray import tune

    from trainables import ray_trainable

    store = _store(tmp_path)
    cfg = cpu_config(tiny_cmnist_root, method="prune", levels=2)
    uri = store.trial_uri(cfg.trial_hash)
    summary = Path(uri) / "summary.json"
    seen: list[tuple[int, bool]] = []
    monkeypatch.setattr(tune, "report", lambda row: seen.append((row["epoch"], summary.exists())))
    params = {"trial": {"hash": cfg.trial_hash, "name": "t", "uri": uri, "config": cfg.to_dict()}}
    ray_trainable.train_trial(params)
    assert seen == [(1, False), (2, False), (3, True)]
