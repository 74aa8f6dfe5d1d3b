"""Who runs an experiment: process liveness and ``experiment.lock``.

A process is identified by its host, pid and start time (:func:`owner_record`; the start time is
``/proc/<pid>/stat`` field 22 with the boot id, so a reused pid is another process). A launch
record or a lock holder is alive (:func:`liveness`) while, on the same host, its pid runs and is
the same process; on another host, while its heartbeat (the lock: its time) is younger than a
staleness limit.

Ages never trust another clock alone (:func:`stamp_age`): a stamp dated ahead of this host's
clock (beyond :data:`CLOCK_SLACK_S`) says a clock is skewed, and its age is then how long it has
been seen *unchanged*, measured with ``time.monotonic()``: by this process, and for a launch
record also by earlier processes on this host since its boot (the record keeps when each first
saw that heartbeat, under ``seen``). So a heartbeat, a lock or an empty lock dated a day ahead
is stale after the same timeout as any other, and the messages say the clock is skewed.

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
from dataclasses import dataclass
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
CLOCK_SLACK_S = 5.0  # a stamp up to this far ahead of this host's clock is ordinary drift
SEEN = "seen"  # launch record key: {"stamp", "by": {"<host> <boot id>": monotonic first seen}}
# The timeouts above are read when used, so tests (and embedders) may set them.


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


# ---------------------------------------------------------------------- ages from evidence

_FIRST_SEEN: dict[tuple, float] = {}  # (what, stamp) -> time.monotonic() this process first saw it


@dataclass(frozen=True)
class Age:
    """How old a stamp is: ``seconds``, and ``ahead`` > 0 when it is dated ahead of this host's
    clock (then ``seconds`` is how long it has been seen unchanged, not its wall age)."""

    seconds: float
    ahead: float = 0.0

    @property
    def skewed(self) -> bool:
        return self.ahead > 0


def stamp_age(
    stamp: float, what: tuple, now: float | None = None, record: dict[str, Any] | None = None
) -> Age:
    """The age of ``stamp`` (a time another clock wrote) of the thing ``what`` identifies.

    Its wall age when it is not dated ahead of this clock by more than :data:`CLOCK_SLACK_S`.
    Dated further ahead, a clock is skewed and the wall age means nothing: the age is then how
    long ``stamp`` has been seen unchanged, by ``time.monotonic()`` (:func:`observed_for`).
    """
    wall = (time.time() if now is None else now) - stamp
    if wall >= -CLOCK_SLACK_S:
        return Age(max(wall, 0.0))
    return Age(observed_for((*what, stamp), record), -wall)


def observed_for(key: tuple, record: dict[str, Any] | None = None) -> float:
    """Seconds ``key`` (its last element: the stamp) has been seen unchanged, monotonic clock.

    This process remembers when it first saw it. With ``record`` (a launch record, which is
    written back to the ledger), earlier processes on this host since its boot count too: the
    first sighting is kept in ``record["seen"]`` (``time.monotonic()`` is one clock for every
    process of a boot, and no one can set it).
    """
    now = time.monotonic()
    first = _FIRST_SEEN.setdefault(key, now)
    boot = _boot_id()
    if record is None or not boot:
        return now - first
    mark = f"{socket.gethostname()} {boot}"
    seen = record.get(SEEN)
    if not (isinstance(seen, dict) and seen.get("stamp") == key[-1]):
        seen = {"stamp": key[-1], "by": {}}
    by = seen.get("by") if isinstance(seen.get("by"), dict) else {}
    earlier = by.get(mark)
    if isinstance(earlier, int | float) and 0 <= earlier <= now:
        first = min(first, float(earlier))
    if by.get(mark) != first:
        record[SEEN] = {"stamp": key[-1], "by": {**by, mark: first}}
    return now - first


@dataclass(frozen=True)
class Verdict:
    alive: bool
    how: str
    skewed: bool = False  # judged by observation: the record is dated ahead of this clock


def judge(
    record: dict[str, Any],
    now: float | None = None,
    *,
    stamp: str = "heartbeat",
    stale_s: float | None = None,
    keep_seen: bool = True,
) -> Verdict:
    """:func:`liveness`, saying also whether a skewed clock made it judge by observation.

    ``keep_seen``: note the first sighting of a future-dated stamp in ``record`` (a launch
    record written back to the ledger); a lock holder's record is not written anywhere."""
    stale_s = STALE_S if stale_s is None else stale_s
    if record.get("ended"):
        return Verdict(False, "ended")
    host = record.get("host")
    if host == socket.gethostname():
        try:
            pid = int(record["pid"])
        except (KeyError, TypeError, ValueError):
            return Verdict(False, "no pid recorded")
        if pid <= 0:
            return Verdict(False, f"pid {pid} is not a process")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return Verdict(False, f"pid {pid} is gone")
        except PermissionError:
            pass  # another user's process: it exists
        recorded, current = record.get("pid_start"), process_start(pid)
        if recorded and current and recorded != current:
            return Verdict(
                False, f"pid {pid} now belongs to another process (its start time differs)"
            )
        return Verdict(True, f"pid {pid} runs on {host}")
    try:
        value = float(record.get(stamp) or 0)
    except (TypeError, ValueError):
        value = 0.0
    what = (stamp, str(host), str(record.get("pid")), str(record.get("id")))
    age = stamp_age(value, what, now, record if keep_seen else None)
    if not age.skewed:
        if age.seconds < stale_s:
            return Verdict(True, f"{stamp} from {host} {age.seconds:.0f} s ago")
        return Verdict(False, f"no {stamp} from {host} for {age.seconds:.0f} s")
    skew = f"dated {age.ahead:.0f} s ahead of this host's clock: a clock is skewed"
    if age.seconds < stale_s:
        return Verdict(
            True,
            f"{stamp} from {host} {skew}; seen unchanged for {age.seconds:.0f} s of the "
            f"{stale_s:g} s after which it counts as stale",
            skewed=True,
        )
    return Verdict(
        False, f"no new {stamp} from {host} for {age.seconds:.0f} s (its last is {skew})", True
    )


def liveness(
    record: dict[str, Any],
    now: float | None = None,
    *,
    stamp: str = "heartbeat",
    stale_s: float | None = None,
) -> tuple[bool, str]:
    """(alive, how it was judged) for a launch or lock record (host, pid, pid_start, stamp).

    Same host: the pid runs and, where both are known, has the recorded start time (records
    written before ``pid_start`` existed are judged by the pid alone). Another host: ``stamp``
    (the heartbeat) is younger than ``stale_s`` (default :data:`STALE_S`), its age by
    :func:`stamp_age`: a heartbeat dated ahead of this clock is stale once seen unchanged for
    ``stale_s`` (the first sighting is noted in the record, ``seen``).
    """
    verdict = judge(record, now, stamp=stamp, stale_s=stale_s)
    return verdict.alive, verdict.how


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


def _lock_holder_alive(path: str, snapshot: tuple[bytes, int, int]) -> Verdict:
    """Whether the holder of this lock file (as read) is alive; an empty or garbled one (a
    writer killed between create and write) is judged by its modification time, or, dated
    ahead of this clock, by how long this process has seen it unchanged."""
    data, inode, mtime_ns = snapshot
    try:
        holder = json.loads(data)
        if not isinstance(holder, dict):
            raise ValueError
    except ValueError:
        age = stamp_age(mtime_ns / 1e9, ("empty lock", path, inode, data))
        if not age.skewed:
            return Verdict(age.seconds < LOCK_EMPTY_S, f"an empty lock {age.seconds:.0f} s old")
        how = (
            f"an empty lock dated {age.ahead:.0f} s ahead of this host's clock (a clock is "
            f"skewed), seen unchanged for {age.seconds:.0f} s"
        )
        return Verdict(age.seconds < LOCK_EMPTY_S, how, skewed=True)
    return judge(holder, stamp="time", stale_s=LOCK_STALE_S, keep_seen=False)


def _break_stale_lock(path: str, snapshot: tuple[bytes, int, int]) -> bool:
    """Remove the lock only if it is still the stale one judged (one breaker at a time);
    False when another process is breaking it."""
    breaker = path + ".break"
    try:
        os.close(os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:  # someone else is breaking it; clear a breaker left by a crash
        with contextlib.suppress(OSError):
            info = os.stat(breaker)
            age = stamp_age(info.st_mtime_ns / 1e9, ("breaker", breaker, info.st_ino))
            if age.seconds > LOCK_EMPTY_S:
                os.unlink(breaker)
        return False
    try:
        if _lock_snapshot(path) == snapshot:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(breaker)
    return True


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
            verdict = _lock_holder_alive(path, snapshot)
            if not verdict.alive:
                if not _break_stale_lock(path, snapshot):
                    time.sleep(0.05)  # another process is breaking it
                elif verdict.skewed:
                    print(
                        f"note: {path}: taken over: {verdict.how} (check the clocks of the hosts "
                        "sharing this storage)",
                        file=sys.stderr,
                        flush=True,
                    )
                continue
            waited = time.monotonic() - start
            # A holder judged by observation (its lock dated ahead) is waited for until stale.
            limit = max(LOCK_WAIT_S, LOCK_STALE_S + 1) if verdict.skewed else LOCK_WAIT_S
            if waited > limit:
                raise UserError(
                    f"{path}: held for {waited:.0f} s by another process ({verdict.how}); "
                    "remove the file if that process is stuck"
                ) from None
            if waited > LOCK_NOTE_S and not noted:
                print(f"waiting for {path} ({verdict.how})", file=sys.stderr, flush=True)
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
