"""Who runs an experiment: process liveness and ``experiment.lock``.

A process is identified by its host, pid and start time (:func:`owner_record`; the start time is
``/proc/<pid>/stat`` field 22 with the boot id, so a reused pid is another process). A launch
record or a lock holder is alive (:func:`liveness`) while, on the same host, its pid runs and is
the same process; on another host, while its heartbeat (the lock: its time) is younger than a
staleness limit.

Every read-modify-write of the ledger holds ``experiment.lock`` (:func:`ledger_lock`: created
with ``O_CREAT|O_EXCL`` next to ``experiment.json``, holding the owner's host, pid, process start
time and the time; taken over when its owner is dead). Readers (status, list) never lock: the
ledger is replaced atomically. On a non-local pyarrow filesystem (``s3://``, ``gs://``) there is
no create-exclusive write, so there is no lock: one driver per experiment is then a convention
(docs/sweeps.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs

from rest_sweep.storage import storage_error
from trainables.errors import UserError
from trainables.results import ExperimentStore

STALE_S = 120.0  # a launch on another host with an older heartbeat is considered dead
LOCK_FILE = "experiment.lock"
LOCK_WAIT_S = 60.0  # give up waiting for a live holder of experiment.lock after this
LOCK_NOTE_S = 2.0  # say on stderr what we wait for after this
LOCK_STALE_S = 300.0  # a lock from another host older than this is taken over (held for ms)
LOCK_EMPTY_S = 5.0  # an empty or garbled lock file older than this was left by a killed writer


# ---------------------------------------------------------------------- liveness


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """An identity of process ``pid`` that a reused pid does not share: the boot id and the
    start time in clock ticks (``/proc/<pid>/stat`` field 22); None where /proc is absent."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            text = f.read()
    except (OSError, ValueError):
        return None
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and ')'
    if len(fields) < 20:
        return None
    return f"{_boot_id()}:{fields[19]}"  # fields[0] is field 3 (state)


def owner_record() -> dict[str, Any]:
    """Who this process is, as a launch or a lock records it."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": process_start(os.getpid()),
    }


def liveness(
    record: dict[str, Any],
    now: float | None = None,
    *,
    stamp: str = "heartbeat",
    stale_s: float = STALE_S,
) -> tuple[bool, str]:
    """(alive, how it was judged) for a launch or lock record (host, pid, pid_start, stamp).

    Same host: the pid runs and, where both are known, has the recorded start time (records
    written before ``pid_start`` existed are judged by the pid alone). Another host: ``stamp``
    (the heartbeat) is younger than ``stale_s``.
    """
    if record.get("ended"):
        return False, "ended"
    host = record.get("host")
    if host == socket.gethostname():
        try:
            pid = int(record["pid"])
        except (KeyError, TypeError, ValueError):
            return False, "no pid recorded"
        if pid <= 0:
            return False, f"pid {pid} is not a process"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False, f"pid {pid} is gone"
        except PermissionError:
            pass  # another user's process: it exists
        recorded, current = record.get("pid_start"), process_start(pid)
        if recorded and current and recorded != current:
            return False, f"pid {pid} now belongs to another process (its start time differs)"
        return True, f"pid {pid} runs on {host}"
    age = (now or time.time()) - float(record.get(stamp) or 0)
    if age < stale_s:
        return True, f"{stamp} from {host} {age:.0f} s ago"
    return False, f"no {stamp} from {host} for {age:.0f} s"


# ---------------------------------------------------------------------- the ledger lock

_HELD: dict[str, list[int]] = {}  # lock path -> [thread id, depth]: re-entrant per thread


def _lock_snapshot(path: str) -> tuple[bytes, int, int] | None:
    """(content, inode, mtime_ns) of the lock file; None when there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
            info = os.fstat(f.fileno())
    except FileNotFoundError:
        return None
    return data, info.st_ino, info.st_mtime_ns


def _lock_holder_alive(snapshot: tuple[bytes, int, int]) -> tuple[bool, str]:
    data, _, mtime_ns = snapshot
    try:
        holder = json.loads(data)
        if not isinstance(holder, dict):
            raise ValueError
    except ValueError:  # a writer killed between create and write
        age = time.time() - mtime_ns / 1e9
        return age < LOCK_EMPTY_S, f"an empty lock {age:.0f} s old"
    return liveness(holder, stamp="time", stale_s=LOCK_STALE_S)


def _break_stale_lock(path: str, snapshot: tuple[bytes, int, int]) -> None:
    """Remove the lock only if it is still the stale one judged (one breaker at a time)."""
    breaker = path + ".break"
    try:
        os.close(os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:  # someone else is breaking it; clear a breaker left by a crash
        with contextlib.suppress(OSError):
            if time.time() - os.stat(breaker).st_mtime > LOCK_EMPTY_S:
                os.unlink(breaker)
        return
    try:
        if _lock_snapshot(path) == snapshot:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(breaker)


def _acquire(store: ExperimentStore, path: str) -> bytes:
    where = f"--storage {store.storage}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as error:
        raise storage_error(where, f"create the experiment folder {store.uri}", error) from None
    body = json.dumps({**owner_record(), "time": time.time()}).encode()
    start = time.monotonic()
    noted = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            snapshot = _lock_snapshot(path)
            if snapshot is None:
                continue
            alive, how = _lock_holder_alive(snapshot)
            if not alive:
                _break_stale_lock(path, snapshot)
                continue
            waited = time.monotonic() - start
            if waited > LOCK_WAIT_S:
                raise UserError(
                    f"{path}: held for {waited:.0f} s by another process ({how}); remove the "
                    "file if that process is stuck"
                ) from None
            if waited > LOCK_NOTE_S and not noted:
                print(f"waiting for {path} ({how})", file=sys.stderr, flush=True)
                noted = True
            time.sleep(0.05)
            continue
        except OSError as error:
            raise storage_error(where, f"write the ledger lock in {store.uri}", error) from None
        try:
            os.write(fd, body)
        except OSError as error:
            os.close(fd)
            os.unlink(path)
            raise storage_error(where, f"write the ledger lock in {store.uri}", error) from None
        os.close(fd)
        return body


@contextlib.contextmanager
def ledger_lock(store: ExperimentStore) -> Iterator[None]:
    """Hold ``experiment.lock`` (re-entrant in a thread); a no-op on non-local filesystems."""
    if not isinstance(store.loc.fs, pafs.LocalFileSystem):
        yield  # no create-exclusive write on object stores: see docs/sweeps.md
        return
    path = store.loc.file(LOCK_FILE)
    held = _HELD.get(path)
    if held and held[0] == threading.get_ident():
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    body = _acquire(store, path)
    _HELD[path] = [threading.get_ident(), 1]
    try:
        yield
    finally:
        _HELD.pop(path, None)
        snapshot = _lock_snapshot(path)
        if snapshot is not None and snapshot[0] == body:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
