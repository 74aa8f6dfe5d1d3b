"""CLI polish: ``--version``, a quiet exit when stdout is closed early, ``--json`` results of
``run``/``resume``, and queued retries counted as pending in the progress line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from rest_sweep.cli import BROKEN_PIPE_EXIT, main
from rest_sweep.progress import ProgressCallback
from tests.reliability.helpers import REPO, cli_env, run_main, write_grid
from trainables.results import ExperimentStore, TrialStore


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"rest-sweep {metadata.version('rest-sweep')}"


def test_a_closed_stdout_exits_141_without_a_traceback() -> None:
    """No reader at all: every write to stdout fails with EPIPE, deterministically."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rest_sweep.cli", "grids", "show", "paper-all", "--no-cost"],
            cwd=REPO,
            env=cli_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == BROKEN_PIPE_EXIT == 141, proc.stderr
    assert proc.stderr == "", proc.stderr  # no traceback, no "Exception ignored" at exit


def test_piping_into_head_prints_the_first_line_only() -> None:
    shell = f"{sys.executable} -m rest_sweep.cli grids show paper-all --no-cost | head -1"
    proc = subprocess.run(
        ["bash", "-c", shell], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("paper-all") and proc.stdout.count("\n") == 1, proc.stdout
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_a_broken_pipe_that_is_not_stdout_is_a_one_line_error(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """stdout is a file here (capfd), so the BrokenPipeError is someone else's: exit 1."""
    from rest_sweep.commands import grids

    def broken(args: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(grids, "run", broken)
    assert main(["grids", "show", "demo"]) == 1
    err = capfd.readouterr().err
    assert err.strip().splitlines() == [
        "rest-sweep grids: error: BrokenPipeError(32, 'Broken pipe')"
    ]


@pytest.mark.ray
def test_json_is_all_of_stdout_and_progress_goes_to_stderr(
    ray_session, tiny_cmnist_root: Path, tmp_path: Path
) -> None:
    grid = write_grid(tmp_path)
    common = ["--storage", str(tmp_path / "s"), "--name", "js", "--json"]
    code, out, err = run_main(
        "run", "--grid", grid, "--data-root", str(tiny_cmnist_root), "--reuse-actors", *common
    )
    assert code == 0, err
    result = json.loads(out)  # one JSON object and nothing else
    launch = ExperimentStore(str(tmp_path / "s"), "js").read_ledger()["launches"][0]
    assert result == {
        "name": "js",
        "storage": str(tmp_path / "s"),
        "launch_id": launch["id"],
        "outcome": "completed",
        "planned": 1,
        "launched": 1,
        "counts": {"trials": 1, "finished": 1, "errored": 0, "stopped": 0},
        "exit_code": 0,
    }
    assert f"launch {launch['id']}" in err and "finished cmnist_r1_erm_s41" in err

    code, out, err = run_main("resume", *common)
    assert code == 0, err
    again = json.loads(out)
    assert (again["launch_id"], again["outcome"], again["launched"]) == (None, "nothing to run", 0)
    assert "nothing to run" in err


# ---------------------------------------------------------------------- progress counts


def _trial(tmp_path: Path, trial_id: str) -> SimpleNamespace:
    uri = str(tmp_path / trial_id)
    TrialStore(uri).write_state("errored", attempt=1, error="RuntimeError: worker lost")
    return SimpleNamespace(
        trial_id=trial_id,
        config={"trial": {"uri": uri, "name": trial_id, "config": {"epochs": 2}}},
        last_result={},
        get_pickled_error=lambda: None,
        error_file=None,
    )


def test_a_trial_queued_for_its_retry_is_pending_not_running(tmp_path: Path, capsys) -> None:
    progress = ProgressCallback(total=3, stream=sys.stdout)
    a, b = _trial(tmp_path, "a"), _trial(tmp_path, "b")
    progress.on_trial_start(0, [], a)
    progress.on_trial_start(0, [], b)
    progress.on_trial_result(0, [], a, {"epoch": 1})
    assert (len(progress.running), progress.pending()) == (2, 1)

    progress.on_trial_recover(0, [], a)  # attempt failed; Tune queues it (PENDING) for a retry
    assert "retrying a from its newest checkpoint" in capsys.readouterr().out
    assert (len(progress.running), progress.pending()) == (1, 2)
    assert "1 running | 2 pending | 0 errored" in progress.summary_line()
    progress._mean_trial_s = lambda: 10.0  # type: ignore[method-assign]
    # left: 1 never started + half of a (kept from its first attempt) + all of b; 1 running
    assert progress.eta() == pytest.approx((1 + 0.5 + 1.0) * 10.0 / 1)

    progress.on_trial_start(0, [], a)  # the retry runs
    assert (len(progress.running), progress.pending()) == (2, 1)
    progress.on_trial_error(0, [], a)  # out of retries
    assert "1 running | 1 pending | 1 errored" in progress.summary_line()
