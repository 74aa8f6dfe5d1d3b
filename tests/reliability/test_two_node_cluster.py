"""A real two-node Ray cluster on localhost: ``ray start --head`` plus worker nodes, each in its
own temp dir, joined by a driver that has only ``RAY_ADDRESS`` (as under ``ray job submit``).

A node that cannot see the storage or the data is made real, not mocked: the worker node runs
in its own mount namespace (``unshare --mount``) with an empty tmpfs over the storage folder
(or the data root), exactly what a node without the NFS mount sees. That needs root; the suite
skips with the reason otherwise (CI runs as root).

Token auth is on, as ``ray start --head`` makes it by default in Ray 2.60: every process gets
``RAY_AUTH_MODE=token`` and a fresh ``RAY_AUTH_TOKEN`` (never the user's ``~/.ray`` token).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.helpers import REPO, cli_env, cmdline, free_port, pids_mentioning, running

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

RAY = str(Path(sys.executable).with_name("ray"))
GRID = """name: two-node
fixed: {dataset: cmnist, ratio: 1.0, epochs: 1, width: 8, update_frequency: 4}
axes: {seed: [1, 2, 3, 4]}
methods:
  erm: {}
"""


def _can_unshare() -> str:
    """Why the mount-namespace tests cannot run here ("" when they can)."""
    if os.geteuid() != 0:
        return "needs root (a worker node gets its own mount namespace); CI runs as root"
    if not shutil.which("unshare"):
        return "needs unshare (util-linux)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    if probe.returncode != 0:
        return f"unshare --mount is not permitted here: {probe.stderr.decode().strip()}"
    return ""


class LocalCluster:
    """A head and worker nodes as separate ``ray start --block`` process trees."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in cli_env().items() if not k.startswith("RAY_")}
        self.env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(16),
            RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="1",
        )
        self.nodes: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(self, name: str, *, hide: Path | None = None) -> None:
        """Start node ``name``; ``hide``: an empty tmpfs over that folder, for this node only."""
        # Ray's socket paths must stay under 107 bytes: a short folder, not pytest's tmp_path.
        temp = Path(tempfile.mkdtemp(prefix=f"rs-{name}-"))
        cmd = [RAY, "start", "--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
        cmd += ["--temp-dir", str(temp), "--block"]
        if name == "head":
            cmd += ["--head", "--port", str(self.port), "--include-dashboard=false"]
        else:
            cmd += ["--address", self.address]
        if hide is not None:
            script = f'mount -t tmpfs tmpfs "{hide}" && exec "$@"'
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd]
        log = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.nodes[name] = (proc, temp)

    def stop(self, name: str) -> None:
        """Stop every process of node ``name`` (found by its temp dir): TERM, then KILL."""
        proc, temp = self.nodes.pop(name)
        mine = pids_mentioning(str(temp)) | {proc.pid}
        raylets = {pid for pid in mine if "raylet" in cmdline(pid)}
        for pid in [*raylets, *(mine - raylets)]:  # a raylet on SIGTERM leaves the GCS at once
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(running(pid) for pid in mine):
            time.sleep(0.2)
        for pid in mine:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        shutil.rmtree(temp, ignore_errors=True)

    def alive_nodes(self) -> int:
        """How many nodes the GCS reports alive (a subprocess: this process keeps one Ray)."""
        code = (
            f"import ray; ray.init(address={self.address!r}, logging_level='ERROR', "
            "log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
        )
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):  # the head is not up (yet)
            return -1
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else -1

    def wait_for(self, count: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_nodes() == count:
                return
            time.sleep(1)
        logs = "\n".join(p.read_text()[-2000:] for p in self.tmp.glob("*.log"))
        raise AssertionError(f"the cluster never had {count} alive nodes:\n{logs}")

    def driver(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """``rest-sweep ARGS`` as a driver with only ``RAY_ADDRESS`` naming the cluster."""
        full_env = {**self.env, "RAY_ADDRESS": self.address, **env}
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "rest_sweep.cli", *args],
            cwd=REPO,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # `pytest -s` shows how long joining, checking and launching (or refusing) took.
        print(
            f"rest-sweep {' '.join(args[:1])} -> exit {done.returncode} in {time.monotonic() - start:.1f} s"
        )
        return done


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    why = _can_unshare()
    if why:
        pytest.skip(why)
    local = LocalCluster(tmp_path_factory.mktemp("two-node"))
    local.start("head")
    try:
        yield local
    finally:
        for name in list(local.nodes)[::-1]:
            local.stop(name)


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_cluster_from_ray_address_uses_both_nodes_then_refuses_nodes_missing_storage_or_data(
    cluster: LocalCluster, tmp_path: Path, tiny_cmnist_root: Path
) -> None:
    import json

    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    storage = tmp_path / "storage"
    storage.mkdir()
    common = ["--grid", str(grid), "--data-root", str(tiny_cmnist_root), "--storage", str(storage)]

    # 1. Only RAY_ADDRESS: the driver joins the cluster, checks both nodes, trains on both.
    cluster.start("worker")
    cluster.wait_for(2)
    ran = cluster.driver("run", *common, "--name", "both")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"cluster at {cluster.address} (from RAY_ADDRESS)" in ran.stdout
    assert "storage and data checked on the 2 node(s)" in ran.stdout
    trials = sorted((storage / "both" / "trials").iterdir())
    states = [json.loads((t / "state.json").read_text()) for t in trials]
    assert [s["state"] for s in states] == ["finished"] * 4
    assert len({s["node_id"] for s in states}) == 2, states
    cluster.stop("worker")
    cluster.wait_for(1)

    # 2. A node whose storage path is its own empty folder: refused before any trial trains.
    line = _refused_with_a_blind_node(cluster, "no-storage", storage, common, storage / "blind")
    assert f"--storage {storage}: node " in line
    assert "cannot see the experiment folder" in line
    assert "mount the same storage at the same path on every node" in line

    # 3. A node without the data root: refused the same way, naming the data root.
    line = _refused_with_a_blind_node(
        cluster, "no-data", tiny_cmnist_root, common, storage / "nodata"
    )
    assert f"--data-root {tiny_cmnist_root}: node " in line
    assert "dataset folder not found" in line


def _refused_with_a_blind_node(
    cluster: LocalCluster, node: str, hide: Path, common: list[str], experiment: Path
) -> str:
    """Add a node that sees an empty folder at ``hide``, run, expect exit 2 with one line and
    nothing left on storage; remove the node again. The refusal line."""
    cluster.start(node, hide=hide)
    cluster.wait_for(2)
    refused = cluster.driver("run", *common, "--name", experiment.name)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = _one_line(refused.stderr)
    assert not experiment.exists()  # a refused new experiment leaves nothing behind
    cluster.stop(node)
    cluster.wait_for(1)
    return line


def test_a_driver_without_the_clusters_token_gets_one_line_within_seconds(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    start = time.monotonic()
    refused = cluster.driver(
        "run",
        "--grid",
        "demo",
        "--data-root",
        str(tmp_path),
        "--storage",
        str(tmp_path / "s"),
        "--name",
        "x",
        RAY_AUTH_MODE="disabled",
    )
    took = time.monotonic() - start
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = _one_line(refused.stderr)
    assert "refused this driver's authentication token" in line
    assert "RAY_AUTH_MODE=token" in line and "RAY_AUTH_TOKEN_PATH" in line
    print(f"auth refusal took {took:.1f} s")
