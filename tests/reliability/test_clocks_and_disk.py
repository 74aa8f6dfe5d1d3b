"""Clocks and a full disk (issue 23, Build 3 and 4).

Clocks: a lock or heartbeat dated ahead of this host's clock is judged by how long it has been
seen unchanged (``time.monotonic``), so it goes stale after the usual timeout (set small here:
the timeouts are module constants read when used); the bundle check compares content, so
neither a manifest nor images dated ahead fool it.

A full disk is an injected ``ENOSPC`` (no small tmpfs here): a local filesystem whose output
streams write half of what they are given and then raise, as a disk that fills mid-write does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import time
import traceback
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from rest_sweep import ledger as ledgers
from rest_sweep import lock as locks
from rest_sweep import service
from rest_sweep.launch_settings import LaunchSettings
from rest_sweep.sweep_status import status
from tests.reliability.helpers import assert_one_line_error, run_main, write_grid
from trainables import results
from trainables.data import verify
from trainables.data.verify import MANIFEST, ensure_manifest_current
from trainables.errors import DataError, UserError
from trainables.results import ExperimentStore, Location, TrialStore

pytestmark = pytest.mark.reliability
DAY = 86400.0


def _store(tmp_path: Path, name: str = "exp") -> ExperimentStore:
    store = ExperimentStore(str(tmp_path / "s"), name)
    store.write_ledger({"name": name, "schema": 1, "trials": {}, "launches": []})
    return store


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.name.endswith(".tmp"))


class Launched(Exception):
    """Raised by a stand-in ``start_launch``: the run got past every ledger lock."""


# ---------------------------------------------------------------------- clocks: the lock


@pytest.mark.parametrize("kind", ["empty", "another host"])
def test_a_lock_dated_a_day_ahead_is_taken_over_after_the_timeout(
    kind, tmp_path, tiny_cmnist_root, monkeypatch, capsys
):
    """Before: every run waited 60 s, then failed with 'an empty lock -86339 s old'."""
    storage = tmp_path / "s"
    lock = storage / "exp" / locks.LOCK_FILE
    lock.parent.mkdir(parents=True)
    if kind == "empty":
        lock.write_text("")  # a writer killed between create and write, on a clock a day ahead
        monkeypatch.setattr(locks, "LOCK_EMPTY_S", 0.5)
    else:
        lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": time.time() + DAY}))
        monkeypatch.setattr(locks, "LOCK_STALE_S", 0.5)
    ahead = time.time() + DAY
    os.utime(lock, (ahead, ahead))

    def start_launch(*args, **kwargs):
        raise Launched

    monkeypatch.setattr(ledgers, "start_launch", start_launch)
    began = time.monotonic()
    with pytest.raises(Launched):
        service.run(write_grid(tmp_path), str(tiny_cmnist_root), str(storage), "exp", quiet=True)
    waited = time.monotonic() - began

    assert 0.5 <= waited < 30, waited  # the timeout, observed, and not the 60 s wait
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "taken over" in ln]
    assert len(notes) == 1 and "clock is skewed" in notes[0] and "ahead" in notes[0], notes
    assert not lock.exists()
    assert ExperimentStore(str(storage), "exp").read_ledger()["trials"]  # the plan was written


def test_a_live_lock_dated_ahead_is_not_taken_over_early(tmp_path, monkeypatch):
    """Observation starts at the first sighting: a future-dated lock is waited for, not broken."""
    store = _store(tmp_path)
    lock = Path(store.loc.file(locks.LOCK_FILE))
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": time.time() + DAY}))
    monkeypatch.setattr(locks, "LOCK_STALE_S", 30.0)
    monkeypatch.setattr(locks, "LOCK_WAIT_S", 0.3)
    monkeypatch.setattr(time, "monotonic", _fast_clock(step=0.05))  # 1200 steps to stale
    monkeypatch.setattr(time, "sleep", lambda s: None)
    began = time.monotonic()
    ledgers.set_data_root(store, "/d")  # waits (observed) until stale, then takes it over
    assert time.monotonic() - began >= 30.0
    assert not lock.exists() and store.read_ledger()["data_root"] == "/d"


def _fast_clock(step: float):
    now = [1000.0]

    def monotonic() -> float:
        now[0] += step
        return now[0]

    return monotonic


# ---------------------------------------------------------------------- clocks: heartbeats


def test_a_heartbeat_dated_ahead_is_judged_by_observation(tmp_path, monkeypatch):
    """A driver on a host whose clock is a day ahead: alive while its heartbeat changes,
    closed as died once it is seen unchanged for STALE_S, also across processes."""
    monkeypatch.setattr(locks, "STALE_S", 0.5)
    store = _store(tmp_path)
    record = {
        "id": "L001-skew",
        "command": "run",
        "grid": "tiny",
        "started": time.time(),
        "heartbeat": time.time() + DAY,
        "ended": None,
        "outcome": None,
        "trials": [],
        "settings": LaunchSettings().to_dict(),
        "host": "elsewhere",
        "pid": 1,
        "pid_start": None,
    }
    store.write_ledger({**store.read_ledger(), "launches": [record]})

    assert status(store.storage, "exp").live_launch == "L001-skew"  # seen for the first time
    with pytest.raises(UserError, match=r"is being run by launch L001-skew.*clock is skewed"):
        ledgers.ensure_no_live_driver(store, by="run")
    assert "seen" in store.read_ledger()["launches"][0]  # the first sighting is kept

    time.sleep(0.3)  # the driver beats (its clock still a day ahead): a new value, alive again
    ledger = store.read_ledger()
    ledger["launches"][0]["heartbeat"] = time.time() + DAY
    store.write_ledger(ledger)
    time.sleep(0.3)
    assert status(store.storage, "exp").live_launch == "L001-skew"

    locks._FIRST_SEEN.clear()  # a later process: it knows the sighting only from the record
    time.sleep(0.6)
    report = status(store.storage, "exp")
    assert report.live_launch is None
    launch = store.read_ledger()["launches"][0]
    assert launch["outcome"] == ledgers.DIED
    assert "no new heartbeat from elsewhere" in launch["closed"]["how"]
    assert "clock is skewed" in launch["closed"]["how"]
    ledgers.start_launch(store, "run", "tiny", [], LaunchSettings())  # no longer refused


# ---------------------------------------------------------------------- clocks: the bundle


@pytest.fixture
def bundle(tiny_cmnist_root, tmp_path, monkeypatch):
    """A private, verified copy of the tiny bundle with its own cache."""
    root = tmp_path / "data"
    shutil.copytree(tiny_cmnist_root, root, ignore=shutil.ignore_patterns(".*"))
    monkeypatch.setenv("REST_SWEEP_CACHE", str(tmp_path / "cache"))
    report = verify.verify_bundle(root, "cmnist", ratios=[5.0], workers=2)
    assert report.ok, report.errors
    return root


def test_a_manifest_dated_ahead_of_a_changed_image_is_refused(bundle):
    """Before: any image older than the manifest passed, so dating the manifest ahead hid a
    changed image. Now the content is compared: same size, same modification time, new bytes."""
    manifest = bundle / "cmnist" / MANIFEST
    assert ensure_manifest_current(bundle, "cmnist", [5.0]) == manifest
    victim = sorted((bundle / "cmnist" / "5pct" / "align" / "2").glob("*.png"))[3]
    before = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte: the size stays
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))  # and its time is put back
    ahead = time.time() + DAY
    os.utime(manifest, (ahead, ahead))

    with pytest.raises(DataError) as caught:
        ensure_manifest_current(bundle, "cmnist", [5.0])
    message = str(caught.value)
    assert message.startswith(f"data: {victim} changed after {manifest} was written")
    assert "rest-sweep data verify" in message and "\n" not in message
    with pytest.raises(DataError, match="changed after"):  # and so does a run's data check
        service.validate_data(str(bundle), [_cfg(bundle)])


def test_images_dated_ahead_or_copied_without_times_are_accepted(bundle, tmp_path, monkeypatch):
    """Before: an image newer than the manifest was a 'changed' refusal. Now dates and copies
    that do not keep them change nothing; only unseen stats are hashed again."""
    manifest = bundle / "cmnist" / MANIFEST
    ahead = time.time() + DAY
    for image in (bundle / "cmnist").rglob("*.png"):
        os.utime(image, (ahead, ahead))
    monkeypatch.setattr(verify, "SEEN_MIN_AGE_S", 0.0)  # vouch for files touched just now
    hashed = []
    real = verify.file_hash
    monkeypatch.setattr(verify, "file_hash", lambda p: hashed.append(p) or real(p))

    assert ensure_manifest_current(bundle, "cmnist", [5.0]) == manifest
    assert len(hashed) > 1000  # every touched image was hashed once ...
    hashed.clear()
    assert ensure_manifest_current(bundle, "cmnist", [5.0]) == manifest
    assert hashed == []  # ... and then vouched for by its stat (.manifest-stat.json)

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy, copy_function=shutil.copyfile)  # no times kept (cp -r)
    assert ensure_manifest_current(copy, "cmnist", [5.0]) == copy / "cmnist" / MANIFEST

    old = json.loads(manifest.read_text())
    del old["files"]  # a manifest written before content checks
    manifest.write_text(json.dumps(old))
    with pytest.raises(DataError) as caught:
        ensure_manifest_current(bundle, "cmnist", [5.0])
    assert "holds no image sizes and content hashes" in str(caught.value)
    assert f"run `rest-sweep data verify {bundle / 'cmnist'}` again" in str(caught.value)


def _cfg(root: Path):
    from trainables.config import TrialConfig

    return TrialConfig.from_recipe(
        "paper", dataset="cmnist", ratio=5.0, method="erm", epochs=1, data_root=str(root)
    )


# ---------------------------------------------------------------------- a full disk


class _TornStream:
    """An output stream on a full disk: writes half of the first chunk, then ENOSPC."""

    def __init__(self, real):
        self.real = real

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()
        return False

    def write(self, data):
        self.real.write(bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):  # everything else as the real stream does it
        return getattr(self.real, name)


class FullDisk(pafs.LocalFileSystem):
    """A local filesystem that fills up at the first write of a file matching ``first``;
    from then on every write is torn (a zero- or half-written temporary, then ENOSPC)."""

    def __init__(self, first: str = ""):
        super().__init__()
        self.first = first
        self.full = not first

    def open_output_stream(self, path, *args, **kwargs):
        stream = super().open_output_stream(path, *args, **kwargs)
        if self.full or self.first in os.path.basename(path):
            self.full = True
            return _TornStream(stream)
        return stream


def test_a_failed_write_removes_its_temporary(tmp_path, monkeypatch):
    loc = Location(FullDisk(), str(tmp_path / "trial"))
    store = TrialStore(loc)
    for write in (
        lambda: store.write_config({"a": 1}),
        lambda: store.write_error("Traceback ..."),
        lambda: store.write_state("errored", error="x"),
        lambda: loc.write_bytes("epoch_0001.pt", b"x" * 5_000_000),
    ):
        with pytest.raises(OSError) as caught:
            write()
        assert caught.value.errno == errno.ENOSPC
    assert _temporaries(tmp_path) == []  # no torn or zero-byte .<name>.<hex>.tmp

    ok = Location(pafs.LocalFileSystem(), str(tmp_path / "other"))

    def no_rename(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "replace", no_rename)
    with pytest.raises(OSError):
        ok.write_json("summary.json", {"a": 1})
    monkeypatch.undo()

    class Interrupting(pafs.LocalFileSystem):
        def open_output_stream(self, path, *args, **kwargs):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Location(Interrupting(), str(tmp_path / "other")).write_bytes("x.json", b"{}")
    assert _temporaries(tmp_path) == []
    assert not (tmp_path / "other" / "summary.json").exists()


def test_train_on_a_full_disk_is_one_line_and_leaves_no_temporary(
    tmp_path, tiny_cmnist_root, monkeypatch
):
    """Before: a 15-line OSError traceback and a torn 5.2 MB .epoch_0001.pt.*.tmp."""
    monkeypatch.setenv("REST_SWEEP_CACHE", str(tmp_path / "cache"))
    disk = FullDisk(first="epoch_0001.pt")
    real = results.resolve
    monkeypatch.setattr(results, "resolve", lambda uri: (disk, real(uri)[1]))
    out = tmp_path / "trial"
    code, stdout, stderr = run_main(
        "train",
        "--dataset",
        "cmnist",
        "--data-root",
        str(tiny_cmnist_root),
        "--ratio",
        "5",
        "--method",
        "erm",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
    )
    line = assert_one_line_error(code, stderr, "rest-sweep train: error: --out", str(out))
    assert "No space left on device" in line and "run the same command again" in line
    assert disk.full  # the checkpoint write did fill the disk
    assert _temporaries(out) == [], _temporaries(out)
    assert not (out / "checkpoints" / "epoch_0001.pt").exists()


def test_a_full_disk_at_the_data_cache_is_one_line_naming_the_entry(
    tmp_path, tiny_cmnist_root, monkeypatch
):
    """The decoded-split cache fills the disk: before, torch's RuntimeError traceback."""
    from trainables.data import cache

    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("REST_SWEEP_CACHE", str(cache_dir))
    real_open = open

    def full(*args, **kwargs):
        return _TornStream(real_open(*args, **kwargs))

    monkeypatch.setattr(cache, "open", full, raising=False)
    out = tmp_path / "trial"
    code, _, stderr = run_main(
        "train",
        *("--dataset", "cmnist", "--data-root", str(tiny_cmnist_root), "--ratio", "5"),
        *("--method", "erm", "--epochs", "1", "--device", "cpu", "--no-progress"),
        *("--out", str(out)),
    )
    line = assert_one_line_error(code, stderr, "No space left on device", f"(writing {cache_dir}")
    assert "run the same command again" in line
    assert _temporaries(cache_dir) == [] and _temporaries(out) == []


# ---------------------------------------------------------------------- a full disk: launches


@contextlib.contextmanager
def _no_ray(*args, **kwargs):
    yield "a stand-in for Ray (test)"


@pytest.fixture
def launch_without_ray(monkeypatch):
    """``service.run`` up to its end-of-launch record with Ray and the Tune fit stood in for."""
    from rest_sweep import cluster

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(cluster, "ray_context", _no_ray)
    monkeypatch.setattr(cluster, "check_fits", lambda resources: None)
    monkeypatch.setattr(service, "_fit", lambda *args, **kwargs: "completed")
    monkeypatch.setattr(service, "END_RETRY_S", (0.05, 0.05))


def _full_at_the_end(monkeypatch, failures: int) -> dict:
    """The ledger write that ends a launch fails ``failures`` times (ENOSPC); once it has, the
    ledger lock cannot be written either (a full disk) while it stays full."""
    state = {"left": failures, "full": False}
    real_write, real_acquire = ExperimentStore.write_ledger, locks._acquire

    def write_ledger(self, ledger):
        if state["left"] and any(x.get("ended") for x in ledger.get("launches", [])):
            state["left"] -= 1
            state["full"] = bool(state["left"])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, ledger)

    def acquire(store, path):
        if state["full"]:
            error = OSError(errno.ENOSPC, "No space left on device")
            raise locks.storage_error("--storage x", "write the ledger lock", error)
        return real_acquire(store, path)

    monkeypatch.setattr(ExperimentStore, "write_ledger", write_ledger)
    monkeypatch.setattr(locks, "_acquire", acquire)
    return state


def test_the_end_of_launch_record_is_closed_once_the_disk_has_room(
    tmp_path, tiny_cmnist_root, launch_without_ray, monkeypatch
):
    _full_at_the_end(monkeypatch, failures=1)
    storage = tmp_path / "s"
    result = service.run(
        write_grid(tmp_path), str(tiny_cmnist_root), str(storage), "new", gpus_per_trial=0
    )
    assert result.outcome == "completed"
    (launch,) = ExperimentStore(str(storage), "new").read_ledger()["launches"]
    assert launch["outcome"] == "completed" and launch["ended"]  # closed, by the retry


def test_a_failed_cleanup_never_masks_the_end_of_launch_message(
    tmp_path, tiny_cmnist_root, launch_without_ray, monkeypatch
):
    """Before: the new experiment's cleanup raised a lock error in place of the launch's."""
    state = _full_at_the_end(monkeypatch, failures=10)
    storage = tmp_path / "s"
    args = ["--grid", write_grid(tmp_path), "--data-root", str(tiny_cmnist_root)]
    code, _, stderr = run_main(
        "run", *args, "--storage", str(storage), "--name", "new", "--gpus-per-trial", "0"
    )
    line = assert_one_line_error(code, stderr, "ended (completed) but", "No space left on device")
    assert "trial folders are intact" in line and "the next `rest-sweep status`" in line
    assert line.startswith("rest-sweep run: error: launch L001-")

    assert state["full"]  # the disk stayed full: the record stays open, and once this driver
    # is gone the next status closes it (test_bad_inputs.py::test_the_end_of_launch_ledger_...)
    (launch,) = ExperimentStore(str(storage), "new").read_ledger()["launches"]
    assert launch["ended"] is None and launch["outcome"] is None


def test_a_cleanup_that_cannot_run_is_added_to_the_message(
    tmp_path, tiny_cmnist_root, launch_without_ray, monkeypatch
):
    full = {"on": False}
    real_acquire = locks._acquire

    def start_launch(*args, **kwargs):
        full["on"] = True
        raise UserError("--gpus-per-trial 9: rejected (test)")

    def acquire(store, path):
        if full["on"]:
            error = OSError(errno.ENOSPC, "No space left on device")
            raise locks.storage_error("--storage x", "write the ledger lock", error)
        return real_acquire(store, path)

    monkeypatch.setattr(ledgers, "start_launch", start_launch)
    monkeypatch.setattr(locks, "_acquire", acquire)
    storage = tmp_path / "s"
    with pytest.raises(UserError) as caught:
        service.run(write_grid(tmp_path), str(tiny_cmnist_root), str(storage), "new")
    message = str(caught.value)
    assert message.startswith("--gpus-per-trial 9: rejected (test); the new experiment")
    assert "was kept (removing it failed: --storage x: cannot write the ledger lock" in message


# ---------------------------------------------------------------------- a full disk: Ray's output


def test_rays_own_tracebacks_go_to_the_launch_log_with_one_console_line(
    tmp_path, monkeypatch, capfd
):
    """Before: Ray's syncer.py and experiment_state.py tracebacks reached the console."""
    from rest_sweep import tuner

    monkeypatch.setenv(tuner.TUNE_TRACEBACKS_ENV, "0")
    log = tmp_path / "tune" / "L001" / tuner.RAY_MESSAGES
    tuner.route_ray_output(str(log))
    try:
        for _ in range(3):  # a snapshot fails every few seconds on a full disk
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                logging.getLogger("ray.tune.execution.experiment_state").error(
                    "Saving experiment state to storage at '/s/exp/tune/L001' failed with "
                    "exception: ",
                    exc_info=True,
                )
                logging.getLogger("ray.train._internal.syncer").warning(
                    f"Last sync command failed with the following error:\n{traceback.format_exc()}"
                )
        logging.getLogger("ray.tune").warning("a one-line Ray warning stays as it is")
        tuner.route_ray_output(str(tmp_path / "a-file" / "x.log"))  # the log cannot be written
        (tmp_path / "a-file").write_text("")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            logging.getLogger("ray.tune.tune").error(
                "Experiment state snapshotting failed:", exc_info=True
            )
    finally:
        tuner.route_ray_output(None)
        for name in tuner.ROUTED_LOGGERS:
            logging.getLogger(name).removeFilter(tuner._TO_LOG)
        for handler in logging.getLogger("ray").handlers:
            handler.removeFilter(tuner._TO_LOG)

    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "Ray:" in ln]
    assert len(lines) == 3, err  # one per distinct cause, never one per repeat
    assert (
        "Saving experiment state to storage at '/s/exp/tune/L001' failed with exception: "
        "OSError: [Errno 28] No space left on device" in lines[0]
    )
    assert f"full text in {log}" in lines[0]
    assert "Last sync command failed" in lines[1] and "OSError: [Errno 28]" in lines[1]
    assert "full text not kept" in lines[2]
    # A one-line Ray warning is not routed: the filter lets it through to Ray's own handler
    # (whether that prints it depends on how earlier tests left Ray's logging).
    plain = logging.LogRecord("ray.tune", logging.WARNING, __file__, 0, "a warning", None, None)
    assert tuner._TO_LOG.filter(plain) is True
    assert "a one-line Ray warning stays as it is" not in log.read_text()
    kept = log.read_text()
    assert kept.count("Traceback (most recent call last)") == 6
    assert "No space left on device" in kept
