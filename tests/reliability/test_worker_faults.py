"""A trial worker that dies or hits a full disk is recorded as errored with its real cause.

The drivers run the real CLI in a subprocess with the test-only fault hook
(``tests/fault_injection``) on ``PYTHONPATH``; the cause lines are also checked without Ray.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from rest_sweep.progress import FailureRecorder, attempt_error, describe_error
from trainables.results import ExperimentStore, TrialStore

pytestmark = pytest.mark.reliability
REPO = Path(__file__).resolve().parents[2]
FAULT_HOOK = REPO / "tests" / "fault_injection"
DIED = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: ImplicitFunc\n"
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
    "Worker exit detail: Worker unexpectedly exits with a connection error code 2. End of "
    "file. Some common causes include: (1) the process was killed by the OOM killer"
)


def fake_trial(uri: str, error: BaseException | None):
    return SimpleNamespace(
        config={"trial": {"uri": uri, "name": "t"}},
        get_pickled_error=lambda: error,
        error_file=None,
    )


def test_cause_lines_name_the_disk_error_and_the_dead_worker():
    from ray.exceptions import ActorDiedError, RayTaskError

    full = OSError(errno.ENOSPC, "No space left on device")
    wrapped = RayTaskError("train", "Traceback ...\nOSError: [Errno 28] No space", full)
    assert describe_error(wrapped) == "OSError: [Errno 28] No space left on device"
    died = ActorDiedError()
    assert describe_error(died, DIED).startswith("the worker process died")
    assert describe_error(None, DIED) == (
        "the worker process died (SYSTEM_ERROR: Worker unexpectedly exits with a connection "
        "error code 2. End of file)"
    )


def test_recorder_prefers_the_trials_own_error_and_records_tunes(tmp_path):
    from ray.exceptions import RayTaskError

    store = TrialStore(str(tmp_path / "a"))
    store.write_state("running", attempt=1)
    cause = OSError(errno.ENOSPC, "No space left on device")
    trial = fake_trial(store.loc.path, RayTaskError("train", "tb", cause))
    FailureRecorder().on_trial_error(0, [], trial)
    assert store.read_state()["state"] == "errored"
    assert store.read_state()["error"] == "OSError: [Errno 28] No space left on device"
    assert "Ray Tune's error" in store.read_error()

    own = TrialStore(str(tmp_path / "b"))
    own.write_state("errored", attempt=1, error="ValueError: the trial's own words")
    own.write_error("the trial's traceback")
    trial = fake_trial(own.loc.path, RayTaskError("train", "tb", cause))
    assert attempt_error(trial) == ("ValueError: the trial's own words", None)
    FailureRecorder().on_trial_error(0, [], trial)
    assert own.read_error() == "the trial's traceback"


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "cause"),
    [("kill", "the worker process died"), ("enospc", "OSError: [Errno 28] No space left")],
)
def test_worker_fault_without_retries_is_errored_with_its_cause(
    tiny_cmnist_root, tmp_path, mode, cause
):
    grid = tmp_path / "one.yaml"
    grid.write_text("fixed: {dataset: cmnist, ratio: 5.0, epochs: 2}\nmethods: [erm]\n")
    storage = tmp_path / "s"
    env = {
        **os.environ,
        "REST_SWEEP_TEST_FAULT": f"epoch=1;dir={tmp_path / 'faults'};mode={mode}",
        "PYTHONPATH": os.pathsep.join([str(FAULT_HOOK), str(REPO)]),
    }
    args = ["--grid", str(grid), "--data-root", str(tiny_cmnist_root), "--storage", str(storage)]
    proc = subprocess.run(
        [sys.executable, "-m", "rest_sweep.cli", "run", *args, "--name", "x"]
        + ["--max-failures", "0", "--num-cpus", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    console = proc.stdout + proc.stderr
    assert proc.returncode == 1, console[-3000:]
    (trial_hash,) = ExperimentStore(str(storage), "x").read_ledger()["trials"]
    state = ExperimentStore(str(storage), "x").trial(trial_hash).read_state()
    assert state["state"] == "errored" and state["error"].startswith(cause), state
    lines = console.strip().splitlines()
    assert any(f"errored cmnist_r5_erm_s41: {cause}" in line for line in lines), console
    assert lines[-1].startswith("x: errors; 0/1 finished, 1 errored"), console
    assert "Traceback" not in console and "(raylet)" not in console, console

    status = subprocess.run(
        [sys.executable, "-m", "rest_sweep.cli", "status", "--storage", str(storage)]
        + ["--name", "x", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["errored"] == 1 and cause in status.stdout
