"""Launch bookkeeping under faults: liveness, the ledger lock, --force, order before Ray.

Drivers that must die run in subprocesses; a CLI run that must stop before Ray gets a ``ray``
that cannot be imported (``tests/reliability/no_ray``), so "refused before Ray starts" is
checked, not assumed. Training without Ray goes through ``rest_sweep.local.run_local``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rest_sweep import ledger as ledgers
from rest_sweep import lock as locks
from rest_sweep.launch_settings import LaunchSettings
from rest_sweep.ledger import start_launch
from rest_sweep.sweep_status import status
from tests.reliability.helpers import (
    REPO,
    assert_one_line_error,
    cli,
    popen_cli,
    run_main,
    write_grid,
)
from trainables.errors import UserError
from trainables.results import ExperimentStore

pytestmark = pytest.mark.reliability


def _store(tmp_path: Path, name: str = "exp") -> ExperimentStore:
    store = ExperimentStore(str(tmp_path / "s"), name)
    store.write_ledger({"name": name, "schema": 1, "trials": {}, "launches": []})
    return store


def _launch_record(**fields: object) -> dict:
    now = time.time()
    record = {
        "id": "L001-test",
        "command": "run",
        "grid": "tiny",
        "started": now,
        "heartbeat": now,
        "ended": None,
        "outcome": None,
        "trials": [],
        "settings": LaunchSettings().to_dict(),
        **locks.owner_record(),
    }
    record.update(fields)
    return record


# ---------------------------------------------------------------------- 1. liveness


def test_a_reused_pid_is_judged_dead_and_status_closes_the_launch(tmp_path):
    """PID reuse: the pid runs (this test process) but its start time is not the recorded one."""
    me = locks.owner_record()
    assert me["pid_start"], "Linux /proc/<pid>/stat must give a start time"
    reused = _launch_record(pid_start="another-boot:12345")
    alive, how = locks.liveness(reused)
    assert not alive and "start time differs" in how
    assert locks.liveness(_launch_record())[0]  # the same process: alive
    assert locks.liveness(_launch_record(pid_start=None))[0]  # older record: the pid alone
    store = _store(tmp_path)
    store.write_ledger({**store.read_ledger(), "launches": [reused]})

    report = status(store.storage, "exp")

    assert report.live_launch is None and report.state == "interrupted"
    closed = store.read_ledger()["launches"][0]
    assert closed["outcome"] == ledgers.DIED and closed["ended"] > 0
    assert closed["closed"]["by"] == "status" and "start time differs" in closed["closed"]["how"]
    start_launch(store, "run", "tiny", [], LaunchSettings())  # no longer refused
    assert [x["id"][:4] for x in store.read_ledger()["launches"]] == ["L001", "L002"]


def test_a_sigkilled_driver_is_closed_by_the_next_status(tmp_path):
    store = _store(tmp_path)
    script = (
        "import sys, time\n"
        "from rest_sweep.launch_settings import LaunchSettings\n"
        "from rest_sweep.ledger import start_launch\n"
        "from trainables.results import ExperimentStore\n"
        "start_launch(ExperimentStore(sys.argv[1], 'exp'), 'run', 'tiny', [], LaunchSettings())\n"
        "print('launched', flush=True)\n"
        "time.sleep(300)\n"
    )
    driver = subprocess.Popen(
        [sys.executable, "-c", script, store.storage], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert driver.stdout.readline().strip() == "launched"
        assert status(store.storage, "exp").live_launch is not None  # alive: left open
        assert store.read_ledger()["launches"][0]["ended"] is None
    finally:
        driver.kill()
        driver.wait()
    result = cli("status", "--storage", store.storage, "--name", "exp", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["live_launch"] is None and report["state"] == "interrupted"
    launch = store.read_ledger()["launches"][0]
    assert launch["outcome"] == "died" and launch["ended"]
    assert launch["closed"]["how"] == f"pid {driver.pid} is gone"


def test_a_heartbeat_reopens_a_launch_closed_for_a_stale_heartbeat(tmp_path):
    """Another host's launch closed as died by a stale heartbeat is live again once it beats."""
    store = _store(tmp_path)
    far = _launch_record(host="elsewhere", pid=1, heartbeat=time.time() - 10 * locks.STALE_S)
    store.write_ledger({**store.read_ledger(), "launches": [far]})
    status(store.storage, "exp")
    assert store.read_ledger()["launches"][0]["outcome"] == "died"
    ledgers.heartbeat(store, far["id"])
    launch = store.read_ledger()["launches"][0]
    assert launch["ended"] is None and launch["outcome"] is None and "reopened" in launch
    assert status(store.storage, "exp").live_launch == far["id"]


def test_force_takes_over_a_live_launch_with_one_warning(tmp_path, tiny_cmnist_root, capsys):
    from rest_sweep.local import run_local

    grid = write_grid(tmp_path)
    store = _store(tmp_path)
    start_launch(store, "run", "tiny", [], LaunchSettings())  # live: this process
    with pytest.raises(UserError, match=r"is being run by launch L001.*--force takes over"):
        run_local([grid], str(tiny_cmnist_root), store.storage, "exp", device="cpu", quiet=True)
    assert not store.loc.child("trials").exists()  # refused before any trial
    capsys.readouterr()

    result = run_local(
        [grid], str(tiny_cmnist_root), store.storage, "exp", device="cpu", quiet=True, force=True
    )

    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning")]
    assert len(warnings) == 1 and "--force: taking over 'exp' from launch L001" in warnings[0]
    assert result.outcome == "completed" and result.counts["finished"] == 1
    first, second = store.read_ledger()["launches"]
    assert first["outcome"] == ledgers.TAKEN_OVER and "--force" in first["closed"]["how"]
    assert (
        second["outcome"] == "completed"
        and second["pid_start"] == locks.owner_record()["pid_start"]
    )
    for command in ("run", "resume"):
        from rest_sweep.cli import build_parser

        args = ["--storage", "s", "--name", "n", "--force"]
        if command == "run":
            args += ["--grid", "g", "--data-root", "d"]
        assert build_parser().parse_args([command, *args]).force is True


# ---------------------------------------------------------------------- 2. the ledger lock


def _race(store_root: str, name: str, start, done, results) -> None:
    from rest_sweep.launch_settings import LaunchSettings
    from rest_sweep.ledger import start_launch
    from trainables.errors import UserError
    from trainables.results import ExperimentStore

    store = ExperimentStore(store_root, name)
    start.wait()
    try:
        launch = start_launch(store, "run", "tiny", [], LaunchSettings())
        results.put(("accepted", launch["id"]))
    except UserError as error:
        results.put(("refused", str(error)))
    done.wait()  # both drivers stay alive until both have tried


def test_two_drivers_starting_together_exactly_one_is_accepted(tmp_path):
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["rest_sweep.ledger", "rest_sweep.launch_settings"])
    for attempt in range(20):
        store = _store(tmp_path, f"race{attempt}")
        start, done, results = context.Barrier(2), context.Barrier(2), context.Queue()
        procs = [
            context.Process(target=_race, args=(store.storage, store.name, start, done, results))
            for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        outcomes = sorted(results.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
        assert [o[0] for o in outcomes] == ["accepted", "refused"], (attempt, outcomes)
        assert "is being run by launch" in outcomes[1][1]
        launches = store.read_ledger()["launches"]
        assert [x["id"] for x in launches] == [outcomes[0][1]]
        assert not store.loc.exists(locks.LOCK_FILE)


def test_every_ledger_update_holds_the_lock(tmp_path, monkeypatch):
    store = _store(tmp_path)
    writes = []
    real = ExperimentStore.write_ledger

    def write(self, ledger):
        writes.append(os.path.exists(os.path.join(self.loc.path, locks.LOCK_FILE)))
        real(self, ledger)

    monkeypatch.setattr(ExperimentStore, "write_ledger", write)
    from search_spaces import expand, resolve

    expansion = expand(resolve(write_grid(tmp_path)), {})
    ledgers.record_plan(store, expansion, "/data")
    launch = start_launch(store, "run", "tiny", [], LaunchSettings())
    ledgers.update_launch(store, launch["id"], resources={"cpu": 1.0, "gpu": 0.0})
    ledgers.heartbeat(store, launch["id"])
    ledgers.mark_stopped(store, "h1", launch["id"], 1)
    ledgers.set_data_root(store, "/other")
    ledgers.end_launch(store, launch["id"], "completed", {})
    ledgers.drop_launch(store, launch["id"])
    assert len(writes) == 8 and all(writes), writes
    assert not store.loc.exists(locks.LOCK_FILE)


def test_a_stale_lock_is_taken_over_and_a_live_one_is_waited_for(tmp_path, monkeypatch):
    store = _store(tmp_path)
    lock = Path(store.loc.file(locks.LOCK_FILE))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], stdout=-1)
    for holder in (
        {**locks.owner_record(), "pid": int(dead.stdout), "time": time.time()},  # gone
        {**locks.owner_record(), "pid_start": "x:1", "time": time.time()},  # pid reused
        {"host": "elsewhere", "pid": 1, "time": time.time() - 2 * locks.LOCK_STALE_S},
    ):
        lock.write_text(json.dumps(holder))
        ledgers.set_data_root(store, "/d")
        assert not lock.exists()
    lock.write_text("")  # a writer killed between create and write
    old = time.time() - 2 * locks.LOCK_EMPTY_S
    os.utime(lock, (old, old))
    ledgers.set_data_root(store, "/e")
    assert store.read_ledger()["data_root"] == "/e"

    lock.write_text(json.dumps({**locks.owner_record(), "time": time.time()}))  # live holder
    monkeypatch.setattr(locks, "LOCK_WAIT_S", 0.3)
    with pytest.raises(UserError, match=r"experiment.lock: held for .* by another process"):
        ledgers.set_data_root(store, "/f")
    assert lock.exists()  # a live holder's lock is never removed
    lock.unlink()


def test_a_second_cli_driver_is_refused_before_ray(tmp_path, tiny_cmnist_root):
    grid = write_grid(tmp_path)
    store = _store(tmp_path)
    start_launch(store, "run", "tiny", [], LaunchSettings())  # live: this process
    common = ["--storage", store.storage, "--name", "exp"]
    run = cli("run", "--grid", grid, "--data-root", str(tiny_cmnist_root), *common, no_ray=True)
    assert_one_line_error(run.returncode, run.stderr, "is being run by launch L001", "--force")
    resume = cli("resume", *common, no_ray=True)
    assert_one_line_error(resume.returncode, resume.stderr, "is being run by launch L001")
    assert len(store.read_ledger()["launches"]) == 1


@pytest.mark.ray
def test_a_rejected_gpus_per_trial_leaves_nothing_behind(ray_session, tmp_path, tiny_cmnist_root):
    import rest_sweep

    grid = write_grid(tmp_path)
    storage = tmp_path / "s"
    with pytest.raises(UserError, match=r"--gpus-per-trial 1: no node"):
        rest_sweep.run(grid, str(tiny_cmnist_root), str(storage), "new", gpus_per_trial=1)
    assert not (storage / "new").exists()  # no "planned" experiment left behind
    store = _store(tmp_path, "old")
    with pytest.raises(UserError, match=r"--gpus-per-trial 1: no node"):
        rest_sweep.run(grid, str(tiny_cmnist_root), str(storage), "old", gpus_per_trial=1)
    assert store.read_ledger()["launches"] == [] and store.exists()


# ---------------------------------------------------------------------- 8. signals


def test_sigterm_before_ray_exits_130_with_a_hint(tmp_path, tiny_cmnist_root):
    """The driver waits for a ledger lock held by this process (before Ray), then SIGTERM."""
    grid = write_grid(tmp_path)
    store = _store(tmp_path)
    lock = Path(store.loc.file(locks.LOCK_FILE))
    lock.write_text(json.dumps({**locks.owner_record(), "time": time.time()}))
    args = ["--data-root", str(tiny_cmnist_root), "--storage", store.storage, "--name", "exp"]
    driver = popen_cli("run", "--grid", grid, *args, no_ray=True)
    try:
        first = driver.stderr.readline()
        assert first.startswith("waiting for") and "experiment.lock" in first, first
        driver.send_signal(signal.SIGTERM)
        rest = driver.communicate(timeout=30)[1]
    finally:
        driver.kill()
        lock.unlink()
    assert driver.returncode == 130, rest
    assert "Traceback" not in rest
    assert "rest-sweep run: SIGTERM" in rest and "rest-sweep resume --storage" in rest
    assert store.read_ledger()["launches"] == []


# ---------------------------------------------------------------------- 9. --retry-errored


def test_resume_skips_diverged_trials_unless_retry_errored(tmp_path, tiny_cmnist_root, monkeypatch):
    from rest_sweep import service
    from search_spaces import expand, resolve

    store = _store(tmp_path)
    expansion = expand(resolve(write_grid(tmp_path, (41, 42, 43))), {})
    ledgers.record_plan(store, expansion, str(tiny_cmnist_root))
    nan, boom, fresh = [cfg.trial_hash for cfg in expansion.trials]
    store.trial(nan).write_state("errored", error="non-finite loss at epoch 1 step 3")
    store.trial(boom).write_state("errored", error="RuntimeError: boom")

    class Launched(Exception):
        pass

    def capture(store, command, grid, hashes, settings, resources=None, **kw):
        raise Launched(hashes)

    monkeypatch.setattr(ledgers, "start_launch", capture)
    with pytest.raises(Launched) as default:
        service.resume(store.storage, "exp")
    assert default.value.args[0] == [boom, fresh]
    with pytest.raises(Launched) as retried:
        service.resume(store.storage, "exp", retry_errored=True)
    assert retried.value.args[0] == [nan, boom, fresh]
    code, _, err = run_main(
        "resume", "--storage", store.storage, "--name", "nope", "--retry-errored"
    )
    assert_one_line_error(code, err, "no experiment")
