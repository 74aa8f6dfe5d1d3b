"""The Ray Jobs way of docs/cluster.md as a user runs it: a real head with the dashboard
(token auth on, as ``ray start --head`` makes it), ``docs/cluster/ray-job.sh`` with its
variables set, the job stopped mid-sweep (the Jobs SDK's ``stop_job``: the request ``ray job
stop`` sends) with Ray's default grace before SIGKILL (``RAY_JOB_STOP_WAIT_TIME_S`` unset), then
the resume command the driver printed, run as printed with only ``<dashboard>`` filled in, then
``ray-job.sh status`` and ``rest-sweep report`` as jobs. A failed job makes the recipe exit 1.

Needs ``ray[default]`` (the dashboard and the Jobs API: ``pip install -e '.[cluster]'``, part of
the ``dev`` extra): skipped without it here, failed without it under CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.helpers import REPO, cli_env, cmdline, free_port, pids_mentioning, running
from trainables.results import ExperimentStore

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

BIN = Path(sys.executable).parent  # the venv's `ray` and `rest-sweep`, as an activated venv has
SCRIPT = REPO / "docs" / "cluster" / "ray-job.sh"
EPOCHS = 4  # the stop lands while the first trials train
SEEDS = (1, 2, 3)
GRID = f"""name: jobs
fixed: {{dataset: cmnist, ratio: 1.0, epochs: {EPOCHS}, width: 8, update_frequency: 4}}
axes: {{seed: {list(SEEDS)}}}
methods:
  erm: {{}}
"""
WAIT_S = 240  # the longest wait for one job (a timeout, not a measurement)


def _missing_ray_default() -> str:
    """Why the Jobs API cannot run here ("" when it can)."""
    try:
        import aiohttp  # noqa: F401
        import ray.dashboard.modules.job.sdk  # noqa: F401
    except ImportError as error:
        return f"needs ray[default] for the dashboard and `ray job` ({error}); pip install -e '.[cluster]'"
    return ""


class JobsHead:
    """One ``ray start --head --block`` with the dashboard, in its own temp dir and ports."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.port = free_port()
        self.dashboard_port = free_port()
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        # Ray's socket paths must stay under 107 bytes: a short folder, not pytest's tmp_path.
        self.temp = Path(tempfile.mkdtemp(prefix="rs-jobs-"))
        self.env = {k: v for k, v in cli_env().items() if not k.startswith("RAY_")}
        self.env.update(
            PATH=f"{BIN}{os.pathsep}{self.env.get('PATH', '')}",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(16),
            RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="1",
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        ports = {
            "--port": self.port,
            "--dashboard-port": self.dashboard_port,
            "--ray-client-server-port": free_port(),
            "--dashboard-agent-listen-port": free_port(),
            "--dashboard-agent-grpc-port": free_port(),
            "--runtime-env-agent-port": free_port(),
            "--metrics-export-port": free_port(),
        }
        cmd = [str(BIN / "ray"), "start", "--head", "--include-dashboard=true"]
        cmd += ["--dashboard-host", "127.0.0.1", "--num-cpus", "2", "--num-gpus", "0"]
        cmd += ["--disable-usage-stats", "--temp-dir", str(self.temp), "--block"]
        for flag, port in ports.items():
            cmd += [flag, str(port)]
        log = open(self.logs / "head.log", "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._dashboard_answers() and self._jobs_api_answers():
                return
            time.sleep(1)
        raise AssertionError(f"the head's Jobs API never answered:\n{self.log_tail()}")

    def _dashboard_answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2).close()
        except urllib.error.HTTPError:
            return True  # it answers (auth may refuse the request)
        except OSError:
            return False
        return True

    def _jobs_api_answers(self) -> bool:
        listed = self.ray("job", "list", "--address", self.dashboard, timeout=30)
        return listed.returncode == 0

    def ray(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "ray"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )

    def client(self):
        """The Jobs SDK's client of this head, sending its token as ``ray job`` does."""
        from ray.job_submission import JobSubmissionClient

        token = {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}
        return JobSubmissionClient(self.dashboard, headers=token)

    def python(self, code: str) -> str:
        """``python -c code`` as a driver of this cluster; its stdout."""
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**self.env, "RAY_ADDRESS": f"127.0.0.1:{self.port}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def log_tail(self) -> str:
        return (self.logs / "head.log").read_text()[-3000:]

    def stop(self) -> None:
        """Stop every process of this head (found by its temp dir): TERM, then KILL."""
        mine = pids_mentioning(str(self.temp))
        if self.proc is not None:
            mine.add(self.proc.pid)
        raylets = {pid for pid in mine if "raylet" in cmdline(pid)}
        for pid in [*raylets, *(mine - raylets)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(running(pid) for pid in mine):
            time.sleep(0.2)
        for pid in mine:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsHead]:
    why = _missing_ray_default()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install ray[default] (the dev extra has it): {why}")
        pytest.skip(why)
    local = JobsHead(tmp_path_factory.mktemp("jobs-head"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


class Recipe:
    """``bash docs/cluster/ray-job.sh VERB`` running in the background, its output collected."""

    def __init__(self, head: JobsHead, verb: str, **variables: str) -> None:
        self.proc = subprocess.Popen(
            ["bash", str(SCRIPT), verb],
            cwd=REPO,  # "Run it from the repository root"
            env={**head.env, "RAY_DASHBOARD": head.dashboard, **variables},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def line_starting(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.out):
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
            if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                break
            time.sleep(0.1)
        raise AssertionError(f"no line `{prefix}...` from the recipe:\n{self.text()}")

    def wait(self, timeout: float = WAIT_S) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)


def _variables(tmp_path: Path, data_root: Path, name: str, **more: str) -> dict[str, str]:
    grid = tmp_path / "jobs.yaml"
    grid.write_text(GRID)
    return {
        "DATA_ROOT": str(data_root),
        "STORAGE": str(tmp_path / "sweeps"),
        "GRID": str(grid),
        "NAME": name,
        "JOB_ID": f"rest-sweep-{name}-{secrets.token_hex(3)}",
        "GPUS_PER_TRIAL": "0",  # a CPU-only cluster
        "CPUS_PER_TRIAL": "1",
        "CHECKPOINT_EVERY": "2",  # a resumed trial replays the epochs after its checkpoint
        **more,
    }


def _epoch_rows(storage: Path, name: str) -> int:
    return sum(
        len(p.read_text().splitlines())
        for p in (storage / name / "trials").glob("*/metrics.jsonl")
        if p.is_file()
    )


def _launches(storage: Path, name: str) -> list[dict]:
    return ExperimentStore(str(storage), name).read_ledger()["launches"]


def test_a_stopped_job_records_interrupted_and_its_printed_hint_resumes_on_the_cluster(
    head: JobsHead, tmp_path: Path, tiny_cmnist_root: Path
) -> None:
    variables = _variables(tmp_path, tiny_cmnist_root, "jobs")
    storage, name, job = Path(variables["STORAGE"]), variables["NAME"], variables["JOB_ID"]

    # 1. The recipe submits the sweep and follows it; once a trial has finished an epoch, the
    #    job is stopped as the line the recipe printed says (through the SDK: the same request
    #    as `ray job stop`, without the seconds the CLI takes to start).
    started = time.monotonic()
    recipe = Recipe(head, "run", **variables)
    stop = recipe.line_starting("stop the sweep: ", timeout=60)
    assert shlex.split(stop) == ["ray", "job", "stop", "--address", head.dashboard, job]
    jobs = head.client()
    deadline = time.monotonic() + WAIT_S
    while _epoch_rows(storage, name) == 0:
        assert recipe.proc.poll() is None, recipe.text()
        assert time.monotonic() < deadline, f"no epoch finished:\n{recipe.text()}"
        time.sleep(0.05)
    first_epoch = time.monotonic() - started
    stopped_at = time.time()
    assert jobs.stop_job(job)
    seen_at = None
    while seen_at is None and time.time() < stopped_at + 60:
        with contextlib.suppress(Exception):  # the ledger may be mid-write
            if _launches(storage, name)[-1].get("outcome") == "interrupted":
                seen_at = time.time()
        time.sleep(0.002)
    code = recipe.wait()
    print(
        f"run: first epoch after {first_epoch:.1f} s, recipe ended after {time.monotonic() - started:.1f} s"
    )
    output = recipe.text()
    (tmp_path / "recipe-run.log").write_text(output)  # kept for a look after a failure
    assert code == 1, output  # a stopped job is not a success
    assert f"job {variables['JOB_ID']} did not succeed" in output

    # 2. The ledger says interrupted, with the hint the driver printed.
    (launch,) = _launches(storage, name)
    assert launch["outcome"] == "interrupted", launch
    assert launch["cluster"]["via"] == "job"
    # printed right after the record, so a driver SIGKILLed during its stop has printed it
    hints = re.findall(r"SIGTERM recorded; continue with: (ray job submit .*)", output)
    assert hints, output
    hint = hints[-1].strip()
    assert launch["hint"] == hint
    resume = f"rest-sweep resume --storage {storage} --name {name}"
    assert hint == f"ray job submit --address <dashboard> --working-dir . -- {resume}"
    assert seen_at is not None
    print(
        f"stop_job -> SIGTERM handled: {launch['interrupted_at'] - stopped_at:.3f} s, "
        f"interrupted in the ledger: {seen_at - stopped_at:.3f} s"
    )
    store = ExperimentStore(str(storage), name)
    planned = list(store.read_ledger()["trials"])
    assert len(planned) == len(SEEDS)
    done = {h: len(store.trial(h).read_metrics()) for h in planned}
    assert min(done.values()) < EPOCHS, "every trial finished before the stop: nothing to resume"
    print(f"epochs done per trial at the stop: {sorted(done.values())} of {EPOCHS}")

    # 3. The printed hint, with the dashboard filled in, resumes the sweep on that cluster.
    started = time.monotonic()
    again = subprocess.run(
        shlex.split(hint.replace("<dashboard>", head.dashboard)),
        env=head.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    (job_id,) = re.findall(r"Job '(\S+)' submitted successfully", again.stdout + again.stderr)
    status = head.ray("job", "status", "--address", head.dashboard, job_id)
    assert f"Job '{job_id}' succeeded" in status.stdout, status.stdout + status.stderr
    print(f"resume: {time.monotonic() - started:.1f} s")

    node_ip, node_id = json.loads(
        head.python(
            "import json, ray; ray.init(logging_level='ERROR', log_to_driver=False); "
            "(n,) = ray.nodes(); print(json.dumps([n['NodeManagerAddress'], n['NodeID']]))"
        )
    )
    first, resumed = _launches(storage, name)
    assert first["outcome"] == "interrupted" and first["ended"]
    assert resumed["command"] == "resume" and resumed["outcome"] == "completed", resumed
    assert resumed["cluster"] == {"address": f"{node_ip}:{head.port}", "via": "job"}
    for trial_hash in planned:
        trial = store.trial(trial_hash)
        assert trial.is_finished(), trial_hash
        assert trial.read_state()["node_id"] == node_id
        epochs = [int(row["epoch"]) for row in trial.read_metrics()]
        assert epochs == list(range(1, EPOCHS + 1)), (trial_hash, epochs)

    # 4. Where the sweep stands, and its report, as the guide runs them: as jobs.
    started = time.monotonic()
    status = Recipe(head, "status", **{**variables, "JOB_ID": f"{variables['JOB_ID']}-status"})
    assert status.wait() == 0, status.text()
    assert f"planned {len(SEEDS)} | finished {len(SEEDS)} |" in status.text(), status.text()
    report = head.ray(
        *("job", "submit", "--address", head.dashboard, "--"),
        *("rest-sweep", "report", "--storage", str(storage), "--name", name),
        timeout=WAIT_S,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert (storage / name / "analysis" / "report.html").is_file(), report.stdout
    print(f"status and report: {time.monotonic() - started:.1f} s")


def test_the_recipe_exits_non_zero_for_a_failed_job(
    head: JobsHead, tmp_path: Path, tiny_cmnist_root: Path
) -> None:
    variables = _variables(tmp_path, tiny_cmnist_root, "bad", GRID="no-such-grid")
    recipe = Recipe(head, "run", **variables)
    code = recipe.wait()
    output = recipe.text()
    assert code == 1, output
    assert "rest-sweep run: error: unknown grid 'no-such-grid'" in output, output
    assert f"Job '{variables['JOB_ID']}' failed" in output
    assert f"job {variables['JOB_ID']} did not succeed" in output


def test_the_hint_of_a_job_that_shipped_a_working_dir_ships_one_again(monkeypatch, tmp_path):
    from rest_sweep import service

    job = {"address": "10.0.0.5:6379", "via": "job"}
    resume = f"rest-sweep resume --storage {tmp_path} --name exp"
    config = {"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"}, "metadata": {}}
    monkeypatch.setenv(service.RAY_JOB_ENV, json.dumps(config))
    assert service.resume_hint(str(tmp_path), "exp", job) == (
        f"ray job submit --address <dashboard> --working-dir . -- {resume}"
    )
    for without in ("{}", json.dumps({"runtime_env": {}}), "not json"):
        monkeypatch.setenv(service.RAY_JOB_ENV, without)
        assert service.resume_hint(str(tmp_path), "exp", job) == (
            f"ray job submit --address <dashboard> -- {resume}"
        )
