"""Shared by the reliability suite: the tiny grid, CLI runs in subprocesses, one-line checks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from rest_sweep.cli import main

REPO = Path(__file__).resolve().parents[2]
NO_RAY = Path(__file__).resolve().parent / "no_ray"
GRID = """name: tiny
fixed: {{dataset: cmnist, ratio: 1.0, epochs: 1, width: 8, update_frequency: 4}}
axes: {{seed: {seeds}}}
methods:
  erm: {{}}
"""


def write_grid(folder: Path, seeds: tuple[int, ...] = (41,)) -> str:
    path = folder / "tiny.yaml"
    path.write_text(GRID.format(seeds=list(seeds)))
    return str(path)


def cli_env(*, no_ray: bool = False) -> dict[str, str]:
    """This environment with the repository (and, for ``no_ray``, an unimportable ``ray``)
    first on ``PYTHONPATH``: what a ``rest-sweep`` subprocess of the tests runs with."""
    env = dict(os.environ)
    paths = ([str(NO_RAY)] if no_ray else []) + [str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def cli(*args: str, no_ray: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    """``rest-sweep ARGS`` in a subprocess; ``no_ray``: with a ``ray`` that cannot be imported."""
    env = cli_env(no_ray=no_ray)
    return subprocess.run(
        [sys.executable, "-m", "rest_sweep.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def popen_cli(*args: str, no_ray: bool = False) -> subprocess.Popen:
    env = cli_env(no_ray=no_ray)
    return subprocess.Popen(
        [sys.executable, "-m", "rest_sweep.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_main(*args: str) -> tuple[int, str, str]:
    """The CLI in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, stderr: str, *needles: str) -> str:
    """Exit 2, exactly one line on stderr, no traceback, every needle in it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------------- local Ray heads' processes


def free_port() -> int:
    """A TCP port free on this machine now (a local Ray head's ports)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cmdline(pid: int) -> str:
    """The command line of process ``pid`` ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pids_mentioning(text: str) -> set[int]:
    """The processes whose command line holds ``text`` (a head's own temp dir): the processes
    a test started, never anybody else's Ray."""
    return {
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and text in cmdline(int(p.name))
    }


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
