"""The experiment ledger (``experiment.json``): what is planned, which launches ran, and when.

Ray Tune cannot add trials to an experiment, so the ledger is the experiment: it keeps every
planned trial (hash -> config) across launches, and each ``run``/``resume`` launch is a fresh
Tune experiment under ``tune/<launch-id>/`` holding only the trials not finished yet.

Every read-modify-write of the ledger holds ``experiment.lock`` (:func:`ledger_lock`: created
with ``O_CREAT|O_EXCL`` next to ``experiment.json``, holding the owner's host, pid, process start
time and the time; taken over when its owner is dead). Readers (status, list) never lock: the
ledger is replaced atomically. On a non-local pyarrow filesystem (``s3://``, ``gs://``) there is
no create-exclusive write, so there is no lock: one driver per experiment is then a convention
(docs/sweeps.md).

A launch is alive while its driver runs: on the same host, its pid runs and is the same process
(``/proc/<pid>/stat`` start time and the boot id, ``pid_start``); on another host, its heartbeat
is younger than ``STALE_S``. The next ``run``, ``resume`` or ``status`` closes a dead launch
(``outcome: "died"``, ``closed: {"by", "how", "at"}``); ``--force`` takes over a live one
(``outcome: "taken over"``).

Keys this module adds to the ledger of ``trainables.results.ExperimentStore``::

    order         [hash]  planned trials in plan order (grid order, then later additions)
    grids         [{"grid", "recipe", "overrides", "count"}]  every grid planned here
    pending_rows  {label: {"method", "values"}}  grid rows whose method is not registered yet
    stopped       {hash: {"launch", "epoch"}}   trials a scheduler (ASHA) stopped early
    data_root     the data root of the latest launch (resume reuses it)
    launches      [{"id", "command", "grid", "started", "heartbeat", "ended", "outcome", "host",
                    "pid", "pid_start", "trials", "settings", "resources", "tune_path", "counts",
                    "closed"}]

``settings`` is :class:`LaunchSettings` as a dict (what the user asked for; ``resume`` starts
from the last launch's and overrides only what it is given; ``gpus_per_trial`` is a number, a
``{model: share}`` object or null, as given). ``resources`` is what each trial got, resolved
once Ray is up: per model, ``{model: {"cpu", "gpu"}}``, for the models of the launch (each
trial's model is in its config); ``local`` launches and older ledgers hold one ``{"cpu",
"gpu"}`` for every trial. Ledgers written before ``settings`` existed kept its fields flat in
the launch record; :meth:`LaunchSettings.of` reads both, and ignores keys that no longer exist
(``pack_size``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.methods import METHODS
from trainables.results import EXPERIMENT_FILE, ExperimentStore, join

if TYPE_CHECKING:
    from search_spaces import Expansion

HEARTBEAT_S = 30.0  # how often a live driver refreshes its launch's heartbeat
STALE_S = 120.0  # a launch on another host with an older heartbeat is considered dead
LOCK_FILE = "experiment.lock"
LOCK_WAIT_S = 60.0  # give up waiting for a live holder of experiment.lock after this
LOCK_NOTE_S = 2.0  # say on stderr what we wait for after this
LOCK_STALE_S = 300.0  # a lock from another host older than this is taken over (held for ms)
LOCK_EMPTY_S = 5.0  # an empty or garbled lock file older than this was left by a killed writer
DIED, TAKEN_OVER = "died", "taken over"
DEFAULT_METRIC = "valid_worst_group_acc"
SCHEDULER_NAMES = ("fifo", "asha")


GpuShares = float | dict[str, float] | None  # one value for every model, per model, or defaults


def parse_gpu_shares(value: object) -> GpuShares:
    """``--gpus-per-trial`` as the user gave it: None, one number, or ``{model: share}``.

    Accepts what the CLI passes (a string: ``"0.25"`` or ``"simple_cnn=0.125,resnet18=0.5"``),
    what the Python API passes (a number or a mapping) and what a ledger stores (a number or a
    JSON object). Model names and share values are checked by :meth:`LaunchSettings.validate`,
    so an old ledger naming a model since removed still reads.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise _bad_shares(repr(value))
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(m): _share(v, f"{m}={v}") for m, v in sorted(value.items())}
    text = str(value).strip()
    if "=" not in text:
        return _share(text, text)
    shares: dict[str, float] = {}
    for pair in text.split(","):
        model, sep, number = (part.strip() for part in pair.partition("="))
        if not sep or not model:
            raise _bad_shares(repr(text), f" ({pair.strip()!r} is not MODEL=SHARE)")
        if model in shares:
            raise _bad_shares(repr(text), f" ({model} given twice)")
        shares[model] = _share(number, text)
    return dict(sorted(shares.items()))


def _share(value: object, given: str) -> float:
    try:
        share = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad_shares(repr(given)) from None
    if not math.isfinite(share):  # inf/nan parse as floats
        raise _bad_shares(repr(given))
    return share


def _bad_shares(given: str, why: str = "") -> UserError:
    from trainables.models import MODELS

    return UserError(
        f"--gpus-per-trial: {given} is not allowed{why}; allowed: a number (every model) or "
        f"MODEL=SHARE pairs joined by ',' with MODEL one of {', '.join(MODELS.names())}"
    )


def format_gpu_shares(value: GpuShares) -> str:
    """The ``--gpus-per-trial`` argument that gives ``value`` (``""`` for the defaults)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ",".join(f"{m}={share:g}" for m, share in value.items())
    return f"{value:g}"


@dataclass(frozen=True)
class LaunchSettings:
    """Every setting of a launch, as stored in its ledger record (``settings``).

    ``gpus_per_trial`` is what the user gave, so ``resume`` repeats the request rather than
    its resolution on another cluster: None means "each model its default share" (its
    ``gpu_share`` in ``trainables.models.MODELS`` on a Ray with GPUs, 0 on a CPU-only one); a
    number is every trial's share; ``{model: share}`` sets the named models' shares and leaves
    the others at their default. ``callbacks`` names tracking integrations
    (``rest_sweep.integrations``). ``num_cpus``/``num_gpus`` size an embedded Ray;
    ``reuse_actors`` reuses worker processes between trials. Console output (``quiet``) is not
    a setting.
    """

    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: GpuShares = None
    max_concurrent: int | None = None
    max_failures: int = 2
    scheduler: str = "fifo"
    metric: str = DEFAULT_METRIC
    num_cpus: int | None = None
    num_gpus: int | None = None
    reuse_actors: bool = False
    callbacks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Normal forms, so a setting read back from JSON equals the one written.
        object.__setattr__(self, "gpus_per_trial", parse_gpu_shares(self.gpus_per_trial))
        names = [self.callbacks] if isinstance(self.callbacks, str) else self.callbacks or ()
        object.__setattr__(self, "callbacks", tuple(dict.fromkeys(str(n) for n in names)))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "callbacks": list(self.callbacks)}

    @classmethod
    def of(cls, launch: dict[str, Any]) -> LaunchSettings:
        """The settings of a launch record (current or flat older format; unknown keys dropped)."""
        stored = dict(launch.get("settings") or {})
        if not stored:  # older ledgers: flat keys, resources as {"cpu", "gpu"}
            keys = ("address", "max_concurrent", "max_failures", "scheduler", "metric")
            stored = {k: launch[k] for k in keys if k in launch}
            resources = launch.get("resources") or {}
            if "cpu" in resources:
                stored["cpus_per_trial"] = resources["cpu"]
            if "gpu" in resources:
                stored["gpus_per_trial"] = resources["gpu"]
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in stored.items() if k in fields}
        return cls(**{k: v for k, v in kept.items() if v is not None or fields[k] is None})

    def override(self, **given: object) -> LaunchSettings:
        """A copy with the values that are not None (what the user passed) replaced; a
        ``gpus_per_trial`` or ``callbacks`` given replaces the last launch's as a whole."""
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})

    def given_gpu_share(self, model: str) -> float | None:
        """The share the user gave for ``model``'s trials; None: its default share."""
        if isinstance(self.gpus_per_trial, dict):
            return self.gpus_per_trial.get(model)
        return self.gpus_per_trial

    def validate(self) -> None:
        """One-line errors for values that cannot launch (checked before Ray starts)."""
        from rest_sweep import integrations
        from rest_sweep.cluster import TrialResources
        from trainables.models import MODELS

        shares = self.gpus_per_trial
        if isinstance(shares, dict):
            for model, share in shares.items():
                if model not in MODELS:
                    raise UserError(
                        f"--gpus-per-trial: unknown model {model!r} in "
                        f"{format_gpu_shares(shares)!r}; allowed: {', '.join(MODELS.names())}"
                    )
                TrialResources(self.cpus_per_trial, share).validate(model)
        TrialResources(self.cpus_per_trial, shares if isinstance(shares, float) else 0.0).validate()
        if self.scheduler not in SCHEDULER_NAMES:
            allowed = ", ".join(SCHEDULER_NAMES)
            raise UserError(f"--scheduler: {self.scheduler!r} is not allowed; allowed: {allowed}")
        if self.max_failures < -1:
            raise UserError(
                f"--max-failures: {self.max_failures} is not allowed; allowed: -1 (forever) or a "
                "count >= 0"
            )
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise UserError(
                f"--max-concurrent: {self.max_concurrent} is not allowed; allowed: >= 1"
            )
        if self.address and (self.num_cpus is not None or self.num_gpus is not None):
            raise UserError("--num-cpus/--num-gpus apply to embedded Ray only; drop --address")
        integrations.check_installed(self.callbacks)


# ---------------------------------------------------------------------- names and storage


def check_name(name: str) -> str:
    """``--name`` must be one folder name under the storage: no '/', not '', '.' or '..'."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise UserError(
            f"--name {name!r}: not a single folder name; allowed: a non-empty name without "
            "'/' or '\\', other than '.' and '..'"
        )
    return name


def storage_error(where: str, action: str, error: OSError) -> UserError:
    """A one-line error for a failed read or write on storage (read-only, full, missing)."""
    reason = error.strerror or str(error) or type(error).__name__
    return UserError(f"{where}: cannot {action} ({reason})")


def check_writable(label: str, uri: str) -> None:
    """Create the local folder ``uri`` and write a probe file there (no-op for URIs)."""
    from trainables.results import resolve

    fs, path = resolve(uri)  # an unknown URI scheme is a one-line error here
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-probe-{os.getpid()}")
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644))
        os.unlink(probe)
    except OSError as error:
        raise storage_error(f"{label} {uri}", "write there", error) from None


def open_store(storage: str, name: str, *, write: bool = False) -> ExperimentStore:
    """The experiment ``name`` in ``storage`` after checking the name (and that it is writable)."""
    check_name(name)
    if write:
        check_writable("--storage", storage)
    return ExperimentStore(storage, name)


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


def write_ledger(store: ExperimentStore, ledger: dict[str, Any], action: str) -> None:
    try:
        store.write_ledger(ledger)
    except OSError as error:
        where = f"--storage {store.storage}"
        raise storage_error(where, f"{action} ({store.uri}/{EXPERIMENT_FILE})", error) from None


@contextlib.contextmanager
def modify(store: ExperimentStore, action: str = "update the ledger") -> Iterator[dict[str, Any]]:
    """Read the ledger under the lock, let the caller change it, write it if it changed."""
    with ledger_lock(store):
        ledger = store.read_ledger()
        before = copy.deepcopy(ledger)
        yield ledger
        if ledger != before:
            write_ledger(store, ledger, action)


def _close_dead(ledger: dict[str, Any], by: str) -> list[dict[str, Any]]:
    now = time.time()
    closed = []
    for launch in ledger.get("launches", []):
        if launch.get("ended"):
            continue
        alive, how = liveness(launch, now)
        if not alive:
            launch.update(ended=now, outcome=DIED, closed={"by": by, "how": how, "at": now})
            closed.append(launch)
    return closed


def close_dead_launches(store: ExperimentStore, by: str) -> dict[str, Any]:
    """Close every launch whose driver is dead (``outcome: "died"``); the updated ledger."""
    with modify(store, "close dead launches") as ledger:
        _close_dead(ledger, by)
    return ledger


def _claim(ledger: dict[str, Any], name: str, by: str, force: bool) -> None:
    """Close dead launches; refuse a live one, or take it over with ``force``."""
    _close_dead(ledger, by)
    live = [launch for launch in ledger.get("launches", []) if not launch.get("ended")]
    if not live:
        return
    other = live[-1]
    how = liveness(other)[1]
    if not force:
        raise UserError(
            f"experiment {name!r} is being run by launch {other['id']} (pid {other['pid']} "
            f"on {other['host']}: {how}); wait for it, or stop it and run `rest-sweep resume` "
            "(--force takes over if that driver is really gone)"
        )
    now = time.time()
    for launch in live:
        launch.update(
            ended=now,
            outcome=TAKEN_OVER,
            closed={"by": by, "how": f"--force ({liveness(launch)[1]})", "at": now},
        )
        print(
            f"warning: --force: taking over {name!r} from launch {launch['id']} (pid "
            f"{launch['pid']} on {launch['host']}, believed live: {liveness(launch)[1]}); if it "
            "still runs, both drivers write the same trials",
            file=sys.stderr,
            flush=True,
        )


# ---------------------------------------------------------------------- ledger updates


def record_plan(store: ExperimentStore, expansion: Expansion, data_root: str) -> dict[str, Any]:
    """Merge a grid expansion into the ledger (idempotent) and return the updated ledger."""
    with modify(store, "record the plan") as ledger:
        _merge_plan(ledger, expansion, data_root)
    return ledger


def _merge_plan(ledger: dict[str, Any], expansion: Expansion, data_root: str) -> None:
    trials = ledger.setdefault("trials", {})
    order = ledger.setdefault("order", [])
    for cfg in expansion.trials:
        if cfg.trial_hash not in trials:
            order.append(cfg.trial_hash)
        # Always the latest plan's config: the hash fixes the trial's identity, so only the
        # fields outside it can differ: how it runs or is stored (checkpoint_every, ...) and
        # prune's `levels`, which extends or shortens a staged trial. The latest `run` is
        # what the next `resume` uses (docs/sweeps.md).
        trials[cfg.trial_hash] = cfg.to_dict()
    entry = {
        "grid": expansion.grid,
        "recipe": expansion.recipe,
        "overrides": {k: v for k, v in expansion.overrides},
        "count": expansion.count,
    }
    grids = ledger.setdefault("grids", [])
    if _key(entry) not in [_key(g) for g in grids]:
        grids.append(entry)
    pending = ledger.setdefault("pending_rows", {})
    for row in expansion.pending:
        pending.setdefault(row.label(), {"method": row.method, "values": row.values})
    for label in [k for k, v in pending.items() if v["method"] in METHODS]:
        pending.pop(label)  # registered since: the grid now expands it into real trials
    ledger["data_root"] = data_root


def set_data_root(store: ExperimentStore, data_root: str) -> None:
    with modify(store, "record the data root") as ledger:
        ledger["data_root"] = data_root


def _key(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry.get(k) for k in ("grid", "recipe", "overrides")}


def planned_hashes(ledger: dict[str, Any]) -> list[str]:
    """Planned trials in plan order (the JSON file sorts ``trials`` by hash)."""
    trials = ledger.get("trials", {})
    order = [h for h in ledger.get("order", []) if h in trials]
    return order + sorted(set(trials) - set(order))


def planned_configs(ledger: dict[str, Any]) -> dict[str, TrialConfig]:
    trials = ledger.get("trials", {})
    return {h: TrialConfig.from_dict(trials[h]) for h in planned_hashes(ledger)}


def ensure_no_live_driver(
    store: ExperimentStore,
    ledger: dict[str, Any] | None = None,
    *,
    force: bool = False,
    by: str = "run",
) -> None:
    """One writer per ledger: close dead launches, then refuse while another launch of this
    experiment is alive (``force``: take it over, with a warning). ``ledger`` is ignored: the
    check reads it under the lock."""
    if not store.exists():
        return
    with modify(store, "close dead launches") as current:
        _claim(current, store.name, by, force)


def start_launch(
    store: ExperimentStore,
    command: str,
    grid: str,
    hashes: list[str],
    settings: LaunchSettings,
    resources: dict[str, float] | None = None,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Append a launch record (refusing if another driver is live on this experiment).

    Check and append happen under the ledger lock, so of two drivers starting together exactly
    one is accepted. ``resources`` is what each trial gets (``{"cpu", "gpu"}``, GPUs resolved
    per model; a Ray launch records them once Ray is up).
    """
    with modify(store, "record the launch") as ledger:
        _claim(ledger, store.name, command, force)
        number = len(ledger.get("launches", [])) + 1
        launch_id = f"L{number:03d}-{time.strftime('%Y%m%d-%H%M%S')}"
        now = time.time()
        launch = {
            "id": launch_id,
            "command": command,
            "grid": grid,
            "started": now,
            "heartbeat": now,
            "ended": None,
            "outcome": None,
            **owner_record(),
            "trials": hashes,
            "settings": settings.to_dict(),
            "resources": dict(resources or {}),
            "tune_path": join(store.uri, "tune", launch_id),
        }
        ledger.setdefault("launches", []).append(launch)
    return launch


def update_launch(store: ExperimentStore, launch_id: str, **fields: Any) -> None:
    with modify(store, f"update launch {launch_id}") as ledger:
        for launch in ledger.get("launches", []):
            if launch["id"] == launch_id:
                launch.update(fields)


def drop_launch(store: ExperimentStore, launch_id: str) -> None:
    """Remove a launch rejected before any trial ran (resources no node can hold)."""
    with modify(store, f"drop launch {launch_id}") as ledger:
        ledger["launches"] = [x for x in ledger.get("launches", []) if x["id"] != launch_id]


def discard_if_unlaunched(store: ExperimentStore) -> None:
    """Remove an experiment this command created when nothing was ever launched in it."""
    if not isinstance(store.loc.fs, pafs.LocalFileSystem):
        return
    with ledger_lock(store):
        ledger = store.read_ledger()
        if ledger.get("launches") or store.loc.child("trials").exists():
            return
        store.loc.delete(EXPERIMENT_FILE)
    with contextlib.suppress(OSError):
        os.rmdir(store.loc.path)  # only when empty


def heartbeat(store: ExperimentStore, launch_id: str) -> None:
    """Refresh the launch's heartbeat; a launch closed as dead while it ran is reopened.

    A failed write (full disk) is reported on stderr and does not stop the sweep.
    """
    try:
        with modify(store, "refresh the heartbeat") as ledger:
            for launch in ledger.get("launches", []):
                if launch["id"] == launch_id:
                    launch["heartbeat"] = time.time()
                    if launch.get("outcome") == DIED:  # judged dead by a stale heartbeat
                        launch.update(ended=None, outcome=None, reopened=launch.pop("closed"))
    except UserError as error:
        print(f"warning: heartbeat not recorded: {error}", file=sys.stderr, flush=True)


def end_launch(store: ExperimentStore, launch_id: str, outcome: str, counts: dict) -> None:
    """Record how the launch ended; a failed write is a one-line error (the trial folders are
    intact, and the next ``status`` closes the launch as died)."""
    try:
        update_launch(store, launch_id, ended=time.time(), outcome=outcome, counts=counts)
    except UserError as error:
        raise UserError(
            f"launch {launch_id} ended ({outcome}) but {error}; the trial folders are intact and "
            "the next `rest-sweep status` or `resume` closes the launch"
        ) from None


def mark_stopped(store: ExperimentStore, trial_hash: str, launch_id: str, epoch: int) -> None:
    """Record that a scheduler stopped this trial early (terminal, not an error)."""
    with modify(store, "record an early stop") as ledger:
        ledger.setdefault("stopped", {})[trial_hash] = {"launch": launch_id, "epoch": epoch}


def launch_alive(launch: dict[str, Any], now: float | None = None) -> bool:
    """Whether the launch's driver still runs (see :func:`liveness`)."""
    return liveness(launch, now)[0]


def last_settings(ledger: dict[str, Any]) -> LaunchSettings:
    """The settings of the latest Ray launch (what ``resume`` starts from); defaults if none.

    Launches of ``rest_sweep.local`` (no Ray) are skipped: their worker count and no-retry
    policy are not Ray settings."""
    launches = [launch for launch in ledger.get("launches", []) if launch.get("command") != "local"]
    return LaunchSettings.of(launches[-1]) if launches else LaunchSettings()
