"""What every machine that trains must see, checked before any trial trains.

A trial reads ``--data-root`` and writes its folder under ``--storage`` on whichever node Ray
places it. A node whose view of either differs from the driver's (NFS not mounted there, a data
copy missing) trains into a folder nobody reads, or fails every retry with the cause buried in a
traceback. So a launch checks first:

- on the driver, when it trains itself (embedded Ray): :func:`check_data`;
- on a cluster, on every alive node that can take a trial (:func:`check_nodes`), with one small
  Ray task pinned to each node: it reads a marker the driver has just written under the
  experiment folder, writes a file the driver must then see, and runs :func:`check_data` on the
  node's own data root. The driver itself then needs no data (a laptop driving a cluster).

A failing node refuses the launch with one line naming the node(s), the path and the fix. The
check's files live in ``<experiment>/preflight/`` and are removed afterwards.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rest_sweep.cluster import TrialResources
from trainables.config import TrialConfig
from trainables.errors import DataError, UserError
from trainables.results import ExperimentStore, Location

PREFLIGHT_DIR = "preflight"  # under the experiment folder; holds the marker and node replies
NODE_CHECK_TIMEOUT_S = 180.0  # a node that has not answered by then is reported, not waited on
TIMEOUT_ENV = "REST_SWEEP_NODE_CHECK_TIMEOUT_S"  # overrides it (huge bundles on a slow NFS)

Needs = Mapping[str, Sequence[float]]  # dataset -> the ratios the grid trains on


def needed_ratios(trials: Iterable[TrialConfig]) -> dict[str, list[float]]:
    """Dataset -> sorted ratios the trials read."""
    needed: dict[str, set[float]] = {}
    for cfg in trials:
        needed.setdefault(cfg.dataset, set()).add(float(cfg.ratio))
    return {dataset: sorted(ratios) for dataset, ratios in sorted(needed.items())}


def check_data(root: str, needs: Needs) -> None:
    """Refuse a data root missing a (dataset, ratio) of ``needs`` or changed since its manifest.

    Raises ``UserError`` (a missing folder or ratio, naming the allowed ratios found there) or
    ``DataError`` (an image changed, added or removed since ``manifest.json`` was written: the
    names, sizes and content hashes of its format 2 are compared, never dates; or a manifest
    without them: verify the bundle again).
    """
    from trainables.data import available_ratios
    from trainables.data.layout import ratio_folder
    from trainables.data.verify import ensure_manifest_current

    for dataset, ratios in needs.items():
        have = available_ratios(root, dataset)
        missing = sorted(r for r in ratios if not any(math.isclose(r, h) for h in have))
        if missing:
            names = ", ".join(ratio_folder(r) for r in missing)
            allowed = ", ".join(ratio_folder(h) for h in have) or "none"
            raise UserError(
                f"--data-root {root}: {dataset} has no {names} folder needed by the grid; "
                f"allowed ratios there: {allowed} (or narrow the grid, e.g. --set ratio=...)"
            )
        ensure_manifest_current(root, dataset, list(ratios))  # verified, and unchanged since


# ---------------------------------------------------------------------- on every node


@dataclass(frozen=True)
class NodeReport:
    """One node's answer: who it is and what it could not do (empty: all good)."""

    node_id: str
    ip: str
    host: str = ""
    storage: list[str] = field(default_factory=list)  # problems with the experiment folder
    data: list[str] = field(default_factory=list)  # problems with the data root

    def name(self) -> str:
        host = f"{self.host}, " if self.host else ""
        return f"{self.ip} ({host}node {self.node_id[:8]})"


@dataclass(frozen=True)
class PreflightResult:
    """What :func:`check_nodes` checked: the nodes and the time it took."""

    nodes: list[NodeReport]
    seconds: float


def probe_node(
    experiment_uri: str, marker: str, token: str, reply: str, data_root: str, needs: Needs
) -> dict[str, Any]:
    """Run on one node (a Ray task): the storage and data checks, as a plain dict."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    storage: list[str] = []
    data: list[str] = []
    folder = Location.of(experiment_uri).child(PREFLIGHT_DIR)
    try:
        seen = folder.read_json(marker)
    except Exception as error:  # garbled, or a permission problem: both mean "not the same"
        seen, problem = None, f"cannot read {folder.file(marker)}: {error}"
    else:
        problem = None
    if problem is None and (not isinstance(seen, dict) or seen.get("token") != token):
        problem = (
            f"cannot see the experiment folder {experiment_uri} (the marker the driver just "
            "wrote there is missing: this node sees another folder at that path)"
        )
    if problem is not None:
        storage.append(problem)
    else:
        try:
            folder.write_json(reply, {"token": token, "node_id": node_id})
        except Exception as error:
            storage.append(f"cannot write to the experiment folder {experiment_uri}: {error}")
    try:
        check_data(data_root, needs)
    except (UserError, DataError, OSError) as error:
        data.append(str(error).removeprefix(f"--data-root {data_root}: "))
    return {
        "node_id": node_id,
        "host": socket.gethostname(),
        "storage": storage,
        "data": data,
    }


def trainable_nodes(requests: Iterable[TrialResources]) -> list[dict[str, Any]]:
    """Alive nodes with room for at least one of ``requests`` (a 0-CPU head takes no trial)."""
    import ray

    wanted = list(requests)
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        if any(have.get("CPU", 0) >= r.cpus and have.get("GPU", 0) >= r.gpus for r in wanted):
            nodes.append(node)
    return nodes


def node_check_timeout() -> float:
    """Seconds a node may take to answer: :data:`TIMEOUT_ENV`, else the default."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return NODE_CHECK_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{TIMEOUT_ENV}={text}: not allowed; allowed: a number of seconds > 0")
    return value


def check_nodes(
    store: ExperimentStore,
    data_root: str,
    needs: Needs,
    requests: Iterable[TrialResources],
    *,
    timeout_s: float | None = None,
) -> PreflightResult:
    """Check every node that can take a trial; raise ``UserError`` (one line) if any fails.

    A node that has not answered within ``timeout_s`` (default :func:`node_check_timeout`) is
    reported by the phase it did not finish: the storage check (its reply file is not there)
    or the data check (a stat of every image of the needed ratio folders, and a content hash of
    each image whose stat was not last seen matching the manifest)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    timeout_s = node_check_timeout() if timeout_s is None else timeout_s
    start = time.monotonic()
    nodes = trainable_nodes(requests)
    token = uuid.uuid4().hex
    marker = f"{token}.json"
    folder = Location.of(store.uri).child(PREFLIGHT_DIR)
    folder.write_json(marker, {"token": token, "written": time.time()})
    probe = ray.remote(num_cpus=0, max_retries=0)(probe_node)
    pending: dict[Any, dict[str, Any]] = {}
    for node in nodes:
        reply = f"{token}-{node['NodeID']}.json"
        ref = probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(store.uri, marker, token, reply, data_root, dict(needs))
        pending[ref] = {"node": node, "reply": reply}
    reports: list[NodeReport] = []
    try:
        done, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
        for ref in done:
            reports.append(_report(ref, pending[ref], folder, store.uri))
        for ref in late:
            ray.cancel(ref, force=True)
            reports.append(_late_report(pending[ref], folder, timeout_s))
    finally:
        _remove(folder, [marker, *(entry["reply"] for entry in pending.values())])
    refuse_failed_nodes(reports, store.storage, data_root)
    return PreflightResult(reports, time.monotonic() - start)


def _report(ref: Any, entry: dict[str, Any], folder: Location, uri: str) -> NodeReport:
    import ray

    node = entry["node"]
    ip = node.get("NodeManagerAddress", "?")
    try:
        answer = ray.get(ref)
    except Exception as error:  # the task itself failed (worker could not start, ...)
        first = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        return NodeReport(node["NodeID"], ip, storage=[f"the check could not run: {first}"])
    storage = list(answer["storage"])
    if not storage and not _visible(folder, entry["reply"]):
        storage.append(
            f"writes to {uri} where the driver cannot see them (the file it wrote is missing "
            "here: the node's folder at that path is not the driver's)"
        )
    return NodeReport(answer["node_id"], ip, answer["host"], storage, list(answer["data"]))


def _late_report(entry: dict[str, Any], folder: Location, timeout_s: float) -> NodeReport:
    """A node that did not answer in time, blamed on the phase it did not finish."""
    node = entry["node"]
    ip = node.get("NodeManagerAddress", "?")
    if _visible(folder, entry["reply"]):  # it wrote its reply: storage is fine, data is slow
        late = (
            f"did not finish the data check within {timeout_s:g} s (a slow or hung data mount; "
            f"{TIMEOUT_ENV} gives it longer)"
        )
        return NodeReport(node["NodeID"], ip, data=[late])
    late = f"did not answer the storage check within {timeout_s:g} s (a hung mount?)"
    return NodeReport(node["NodeID"], ip, storage=[late])


def _visible(folder: Location, name: str) -> bool:
    try:
        return folder.read_json(name) is not None
    except Exception:
        return False


def _remove(folder: Location, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):  # best effort: a left-over reply is a few bytes
            folder.delete(name)
    with contextlib.suppress(Exception):  # an empty experiment refused here leaves no trace
        if not folder.list_names():
            folder.fs.delete_dir(folder.path)


def refuse_failed_nodes(reports: Sequence[NodeReport], storage_uri: str, data_root: str) -> None:
    """One line for every failed node, grouped by problem, storage first; no line if none."""
    parts: list[str] = []
    for kind, flag, fix in (
        (
            "storage",
            f"--storage {storage_uri}",
            "mount the same storage at the same path on every node (or give a bucket URI), "
            "or take the node out of the cluster",
        ),
        (
            "data",
            f"--data-root {data_root}",
            "copy the data root to the same path on every node (or mount it there) and run "
            "`rest-sweep data verify` on it there",
        ),
    ):
        by_problem: dict[str, list[str]] = {}
        for report in reports:
            for problem in getattr(report, kind):
                by_problem.setdefault(problem, []).append(report.name())
        for problem, names in by_problem.items():
            label = "node" if len(names) == 1 else "nodes"
            parts.append(f"{flag}: {label} {', '.join(names)}: {problem}; {fix}")
    if parts:
        raise UserError(" | ".join(parts))
