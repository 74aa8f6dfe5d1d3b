"""Crash the whole sweep at several points, run the same command again, and check the core
promise: every planned trial finishes exactly once, no (trial, epoch) row is duplicated, and
the resumed metrics equal an uninterrupted run's bit for bit (CPU).

The sweep is `benchmarks/reproduce.py run` (the no-Ray runner, `rest_sweep.local`) in its own
process group, so a SIGKILL of the group kills the driver and its trial workers together, as a
lost machine does. Ray launches are killed in tests/test_service_recovery.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.helpers import REPO
from trainables.results import ExperimentStore

pytestmark = pytest.mark.reliability

FAULTS = REPO / "tests" / "fault_injection"
GRID = """name: kill-points
fixed: {{dataset: cmnist, ratio: 1.0, epochs: 2, width: 8, update_frequency: 4}}
axes: {{seed: {seeds}}}
methods:
  erm: {{}}
  rest:
    axes: {{density: [0.1]}}
"""
VOLATILE = {"epoch_time_s", "attempt"}


def _grid(folder: Path, seeds: list[int]) -> str:
    path = folder / f"grid-{len(seeds)}.yaml"
    path.write_text(GRID.format(seeds=seeds))
    return str(path)


def _command(grid: str, root: Path, storage: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "benchmarks" / "reproduce.py"),
        "run",
        "--grid",
        grid,
        "--data-root",
        str(root),
        "--storage",
        str(storage),
        "--name",
        "k",
        "--workers",
        "1",
        "--device",
        "cpu",
    ]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(FAULTS), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    return env


def _run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    # its own session: the checkpoint-crash hook SIGKILLs its whole process group
    return subprocess.run(
        command,
        cwd=REPO,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )


def _kill_when(command: list[str], ready, timeout: float = 120) -> None:
    """Start the sweep in its own process group and SIGKILL the group once ``ready()``."""
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, "the sweep ended before the kill point"
            assert time.monotonic() < deadline, "kill point not reached"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _trials(storage: Path) -> Path:
    return storage / "k" / "trials"


def _results(storage: Path) -> dict[str, list[dict]]:
    """Per trial: its metrics rows, after checking each epoch appears exactly once."""
    out = {}
    for folder in sorted(_trials(storage).iterdir()):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        epochs = [row["epoch"] for row in rows]
        assert epochs == sorted(set(epochs)) == list(range(1, len(epochs) + 1)), folder.name
        assert (folder / "summary.json").exists(), folder.name
        out[folder.name] = [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]
    return out


def _ledger(storage: Path) -> dict:
    return ExperimentStore(str(storage), "k").read_ledger()


def _planned(storage: Path) -> set[str]:
    return set(_ledger(storage)["trials"])


@pytest.fixture(scope="module")
def reference(tiny_cmnist_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted run of the same grid: the metrics every crashed run must reproduce."""
    folder = tmp_path_factory.mktemp("reference")
    done = _run(_command(_grid(folder, [41, 42]), tiny_cmnist_root, folder / "runs"))
    assert done.returncode == 0, done.stderr[-2000:]
    return _results(folder / "runs")


def _resume_and_check(command: list[str], storage: Path, reference) -> None:
    done = _run(command)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    assert _planned(storage) == set(reference)
    assert _results(storage) == reference  # every trial once, no duplicate epoch, bit-identical
    ledger = _ledger(storage)
    assert ledger["launches"][-1]["outcome"] == "completed"
    assert all(launch.get("ended") for launch in ledger["launches"])  # the dead one is closed


def _first_state(storage: Path, predicate) -> bool:
    trials = _trials(storage)
    if not trials.exists():
        return False
    for folder in trials.iterdir():
        try:
            state = json.loads((folder / "state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        if predicate(folder, state):
            return True
    return False


@pytest.mark.parametrize("point", ["before-ledger", "mid-epoch", "after-a-trial-finished"])
def test_sigkill_at_a_point_then_rerun(point, tiny_cmnist_root, tmp_path, reference):
    storage = tmp_path / "runs"
    command = _command(_grid(tmp_path, [41, 42]), tiny_cmnist_root, storage)
    ready = {
        "before-ledger": lambda: True,  # at once: the driver is still importing
        "mid-epoch": lambda: _first_state(
            storage, lambda f, s: s.get("state") == "running" and s.get("epoch") == 1
        ),
        "after-a-trial-finished": lambda: _first_state(
            storage, lambda f, s: (f / "summary.json").exists()
        ),
    }[point]
    _kill_when(command, ready)
    if point == "before-ledger":
        assert not (storage / "k" / "trials").exists()
    _resume_and_check(command, storage, reference)


def test_sigkill_while_a_checkpoint_is_written(tiny_cmnist_root, tmp_path, reference):
    storage = tmp_path / "runs"
    command = _command(_grid(tmp_path, [41, 42]), tiny_cmnist_root, storage)
    crashed = _run(command, REST_SWEEP_TEST_CRASH_IN_CHECKPOINT=str(tmp_path / "marker"))
    assert crashed.returncode == -signal.SIGKILL and (tmp_path / "marker" / "crashed").exists()
    halves = list(_trials(storage).glob("*/checkpoints/.epoch_0001.pt.deadbeef.tmp"))
    assert len(halves) == 1  # a torn temporary, never a torn checkpoint under its real name
    _resume_and_check(command, storage, reference)


def test_deleted_trial_folder_and_a_grown_grid(tiny_cmnist_root, tmp_path, reference):
    storage = tmp_path / "runs"
    command = _command(_grid(tmp_path, [41, 42]), tiny_cmnist_root, storage)
    assert _run(command).returncode == 0
    victim = sorted(_trials(storage).iterdir())[0]
    shutil.rmtree(victim)
    again = _run(command)
    assert again.returncode == 0 and again.stdout.count(": finished (") == 1  # only the victim
    assert _results(storage) == reference
    grown = _command(_grid(tmp_path, [41, 42, 43]), tiny_cmnist_root, storage)
    more = _run(grown)
    assert more.returncode == 0 and more.stdout.count(": finished (") == 2  # seed 43 only
    results = _results(storage)
    assert len(results) == 6 and {h: results[h] for h in reference} == reference


def test_sigterm_mid_sweep_leaves_a_resumable_launch(tiny_cmnist_root, tmp_path, reference):
    storage = tmp_path / "runs"
    command = _command(_grid(tmp_path, [41, 42]), tiny_cmnist_root, storage)
    process = subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not _first_state(storage, lambda f, s: s.get("state") == "running"):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=180)
    ledger = _ledger(storage)
    assert ledger["launches"][-1]["ended"] and ledger["launches"][-1]["outcome"] != "completed"
    _resume_and_check(command, storage, reference)
