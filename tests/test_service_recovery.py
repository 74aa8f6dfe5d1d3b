"""Crash recovery and placement with real Ray processes outside the test process.

The driver killed mid-sweep runs in a subprocess (its own session, killed with its embedded Ray
as a node loss would); the two-node cluster runs in a subprocess script, so the session's
embedded Ray stays the only Ray in the test process. Trial failures are injected from outside the
product: a driver subprocess gets ``tests/fault_injection`` (a test-only ``sitecustomize``) on
``PYTHONPATH``, and the Ray workers it spawns inherit it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rest_sweep
from trainables.results import ExperimentStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
FAULT_HOOK = REPO / "tests" / "fault_injection"
GRID = """name: recovery
fixed: {dataset: cmnist, ratio: 1.0, epochs: 3, update_frequency: 4}
methods:
  erm: {}
  rest: {axes: {density: [0.1]}}
"""


def _session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True).stdout
    rows = (line.split() for line in out.splitlines())
    return [int(p) for p, s, stat in rows if int(s) == sid and not stat.startswith("Z")]


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the driver's session (driver, GCS, raylet, workers), by id."""
    for _ in range(50):
        pids = _session_pids(sid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    raise AssertionError(f"processes of session {sid} survived SIGKILL: {_session_pids(sid)}")


def _wait_for_checkpoint(store: ExperimentStore, proc: subprocess.Popen, limit_s: float) -> None:
    deadline = time.time() + limit_s
    while time.time() < deadline:
        assert proc.poll() is None, "the driver ended before any checkpoint was written"
        for trial_hash in store.read_ledger().get("trials", {}):
            trial = store.trial(trial_hash)
            if trial.checkpoint_epochs() and not trial.is_finished():
                return
        time.sleep(0.5)
    raise AssertionError("no checkpoint written in time")


def test_sigkill_driver_then_resume_finishes_the_plan(ray_session, tiny_cmnist_root, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    storage = tmp_path / "store"
    cmd = [
        sys.executable,
        "-m",
        "rest_sweep.cli",
        "run",
        "--grid",
        str(grid),
        "--data-root",
        str(tiny_cmnist_root),
        "--storage",
        str(storage),
        "--name",
        "kill",
        "--num-cpus",
        "2",
        "--max-failures",
        "0",
    ]
    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    store = ExperimentStore(str(storage), "kill")
    try:
        _wait_for_checkpoint(store, proc, limit_s=300)
    finally:
        _kill_session(proc.pid)
        proc.wait()
        log.close()
    planned = set(store.read_ledger()["trials"])
    assert len(planned) == 2
    interrupted = {
        h: store.trial(h).checkpoint_epochs()[-1]
        for h in planned
        if store.trial(h).checkpoint_epochs() and not store.trial(h).is_finished()
    }
    assert interrupted
    before = rest_sweep.status(str(storage), "kill")
    assert before.running == 0 and before.live_launch is None and before.interrupted >= 1

    result = rest_sweep.resume(str(storage), "kill", reuse_actors=True, quiet=True)

    assert result.outcome == "completed" and result.launched == 2 - before.finished
    assert set(store.read_ledger()["trials"]) == planned
    for trial_hash in planned:
        rows = store.trial(trial_hash).read_metrics()
        assert [r["epoch"] for r in rows] == [1, 2, 3]  # no epoch lost or duplicated
    for trial_hash, epoch in interrupted.items():
        state = store.trial(trial_hash).read_state()
        assert state["attempt"] == 2 and state["resumed_from_epoch"] >= epoch >= 1
        rows = store.trial(trial_hash).read_metrics()
        assert [r["attempt"] for r in rows if r["epoch"] <= epoch] == [1] * epoch
        assert {r["attempt"] for r in rows if r["epoch"] > state["resumed_from_epoch"]} == {2}
    # the killed launch was closed as died (by the status above), with how it was detected
    first, second = store.read_ledger()["launches"]
    assert (first["outcome"], second["outcome"]) == ("died", "completed")
    assert first["closed"]["by"] == "status" and "is gone" in first["closed"]["how"]


def _driver(args: list[str], fault: str, log: Path) -> int:
    """Run ``rest-sweep`` in a subprocess whose Ray workers fail as ``fault`` says."""
    env = {
        **os.environ,
        "REST_SWEEP_TEST_FAULT": fault,
        "PYTHONPATH": os.pathsep.join([str(FAULT_HOOK), str(REPO)]),
    }
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "rest_sweep.cli", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=480,
        )
    return proc.returncode


@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_failed_trial_is_retried_from_its_checkpoint(tiny_cmnist_root, tmp_path, mode):
    """A one-time exception (or a dead worker) after epoch 1; the retry continues from it."""
    grid = tmp_path / "one.yaml"
    grid.write_text("fixed: {dataset: cmnist, ratio: 5.0, epochs: 2}\nmethods: [erm]\n")
    uri = (tmp_path / "s").as_uri()  # storage as a pyarrow URI (file://), not a plain path
    code = _driver(
        [
            "run",
            "--grid",
            str(grid),
            "--data-root",
            str(tiny_cmnist_root),
            "--storage",
            uri,
            "--name",
            "retry",
            "--max-failures",
            "1",
            "--num-cpus",
            "2",
            "--quiet",
        ],
        f"epoch=1;dir={tmp_path / 'faults'};mode={mode}",
        tmp_path / "driver.log",
    )
    assert code == 0, (tmp_path / "driver.log").read_text()[-3000:]
    store = ExperimentStore(str(tmp_path / "s"), "retry")
    (trial_hash,) = store.read_ledger()["trials"]
    trial = store.trial(trial_hash)
    state = trial.read_state()
    assert state["attempt"] == 2 and state["resumed_from_epoch"] == 1
    assert [r["epoch"] for r in trial.read_metrics()] == [1, 2]
    assert [r["attempt"] for r in trial.read_metrics()] == [1, 2]
    if mode == "raise":
        assert "injected failure" in trial.read_error()
    assert (tmp_path / "faults" / trial_hash).exists()
    assert store.read_ledger()["launches"][-1]["outcome"] == "completed"


def test_fault_hook_parses_and_fires_once(tmp_path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fault_hook", FAULT_HOOK / "sitecustomize.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    with pytest.raises(ValueError, match="expected 'epoch=N;dir=PATH"):
        hook.parse("epoch=1")
    fault = hook.parse(f"epoch=2;dir={tmp_path}")
    hook.maybe_fail(fault, {"epoch": 1, "trial_hash": "h"})
    with pytest.raises(RuntimeError, match="injected failure after epoch 2"):
        hook.maybe_fail(fault, {"epoch": 2, "trial_hash": "h"})
    hook.maybe_fail(fault, {"epoch": 2, "trial_hash": "h"})  # the marker exists: retry runs clean
    assert (tmp_path / "h").exists()


CLUSTER_SCRIPT = """
import json, sys
from rest_sweep.cluster import quiet_ray_env
quiet_ray_env()
from ray.cluster_utils import Cluster
import rest_sweep
from trainables.errors import UserError

grid, data, storage = sys.argv[1:4]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
cluster.wait_for_nodes()
out = {"head": cluster.head_node.node_id, "gpu_node": gpu_node.node_id}
try:
    common = dict(address=cluster.address, quiet=True)
    out["cpu"] = rest_sweep.run(grid, data, storage, "cpu", cpus_per_trial=1, gpus_per_trial=0,
                                **common).outcome
    out["gpu"] = rest_sweep.run(grid, data, storage, "gpu", cpus_per_trial=0.5,
                                gpus_per_trial=0.5, **common).outcome
    try:
        rest_sweep.run(grid, data, storage, "big", gpus_per_trial=2, **common)
    except UserError as error:
        out["infeasible"] = str(error)
finally:
    cluster.shutdown()
print("RESULT " + json.dumps(out))
"""


def _node_ids(storage: Path, name: str) -> list[str]:
    """The Ray node that finished each trial, from the trial folders' own state.json."""
    return [
        json.loads(state.read_text())["node_id"]
        for state in sorted((storage / name / "trials").glob("*/state.json"))
    ]


def test_two_node_cluster_places_trials_by_resources(tiny_cmnist_root, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.replace("epochs: 3", "epochs: 1"))
    storage = tmp_path / "store"
    proc = subprocess.run(
        [sys.executable, "-c", CLUSTER_SCRIPT, str(grid), str(tiny_cmnist_root), str(storage)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=480,
        start_new_session=True,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    assert out["cpu"] == "completed" and out["gpu"] == "completed"
    assert sorted(_node_ids(storage, "cpu")) == sorted([out["head"], out["gpu_node"]])
    assert _node_ids(storage, "gpu") == [out["gpu_node"]] * 2
    assert "--gpus-per-trial 2: no node" in out["infeasible"]
    assert "1 GPUs" in out["infeasible"]
