"""Bad inputs and broken storage give one-line errors (exit 2, no traceback), before Ray.

Read-only storage is a read-only tmpfs mount when this runs as root (a chmod does not stop
root), else a folder without write permission. The full disk at the end of a launch is an
injected ``ENOSPC`` (``ExperimentStore.write_ledger`` patched in a driver subprocess).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rest_sweep import ledger as ledgers
from rest_sweep import lock as locks
from tests.reliability.helpers import REPO, assert_one_line_error, cli, run_main, write_grid
from trainables.errors import UserError
from trainables.results import ExperimentStore

pytestmark = pytest.mark.reliability
BAD_NAMES = ("", ".", "..", "../escape", "a/b", "/abs")


def _planned(storage: Path, name: str, grid: str, data_root: str) -> ExperimentStore:
    from search_spaces import expand, resolve

    store = ExperimentStore(str(storage), name)
    ledgers.record_plan(store, expand(resolve(grid), {}), data_root)
    return store


# ---------------------------------------------------------------------- 7. --name


def test_name_must_be_a_single_path_component(tmp_path):
    grid = write_grid(tmp_path)
    storage = tmp_path / "deep" / "s"
    for name in BAD_NAMES:
        common = ["--storage", str(storage), "--name", name]
        for args in (
            ["run", "--grid", grid, "--data-root", str(tmp_path), *common],
            ["resume", *common],
            ["status", *common],
        ):
            code, _, err = run_main(*args)
            assert_one_line_error(code, err, "--name", "not a single folder name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # nothing written
    args = ["--grid", grid, "--data-root", ".", "--storage", str(storage), "--name", "../x"]
    result = cli("run", *args, no_ray=True)  # the real command line too
    assert_one_line_error(result.returncode, result.stderr, "--name '../x'")


def test_negative_seeds_are_refused():
    from trainables.config import TrialConfig

    with pytest.raises(UserError, match=r"seed: -1 is not allowed; allowed: an integer >= 0"):
        TrialConfig.from_recipe("paper", dataset="cmnist", ratio=1.0, method="erm", seed=-1)
    code, _, err = run_main("grids", "show", "demo", "--set", "seed=-3")
    assert_one_line_error(code, err, "seed: -3 is not allowed")


# ---------------------------------------------------------------------- a garbled ledger


def test_a_garbled_ledger_is_one_line_everywhere_and_list_goes_on(tmp_path, tiny_cmnist_root):
    grid = write_grid(tmp_path)
    storage = tmp_path / "s"
    _planned(storage, "good", grid, str(tiny_cmnist_root))
    bad = storage / "bad"
    bad.mkdir()
    (bad / "experiment.json").write_text('{"trials": {"abc": ')  # a truncated write
    common = ["--storage", str(storage), "--name", "bad"]
    for args in (
        ["status", *common],
        ["resume", *common],
        ["run", "--grid", grid, "--data-root", str(tiny_cmnist_root), *common],
    ):
        code, _, err = run_main(*args)
        assert_one_line_error(code, err, "bad/experiment.json: unreadable ledger")
    code, out, err = run_main("list", "--storage", str(storage))
    assert code == 0 and "Traceback" not in err, err
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert rows["good"].split()[1] == "planned" and rows["bad"].split()[1] == "unreadable"
    assert "unreadable ledger" in out
    code, out, _ = run_main("list", "--storage", str(storage), "--json")
    states = {r["name"]: r["state"] for r in json.loads(out)}
    assert states == {"good": "planned", "bad": "unreadable"}


# ---------------------------------------------------------------------- read-only storage


@contextlib.contextmanager
def _read_only(folder: Path):
    """Make ``folder`` read-only: a remounted tmpfs as root, a chmod otherwise."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    staged = folder.with_name(folder.name + ".staged")
    shutil.copytree(folder, staged)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        pytest.skip("root without mount permission: cannot make a read-only folder")
    try:
        shutil.copytree(staged, folder, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_storage_is_refused_before_ray(tmp_path, tiny_cmnist_root):
    grid = write_grid(tmp_path)
    storage = tmp_path / "ro"
    store = _planned(storage, "exp", grid, str(tiny_cmnist_root))
    dead = {
        "id": "L001-x",
        "host": locks.owner_record()["host"],
        "pid": 2**22 + 7,
        "ended": None,
        "heartbeat": 0.0,
        "trials": [],
        "settings": {},
    }
    store.write_ledger({**store.read_ledger(), "launches": [dead]})
    common = ["--storage", str(storage), "--name", "exp"]
    with _read_only(storage):
        resume = cli("resume", *common, no_ray=True)
        assert_one_line_error(resume.returncode, resume.stderr, f"--storage {storage}: cannot")
        data = ["--data-root", str(tiny_cmnist_root)]
        run = cli(
            "run", "--grid", grid, *data, "--storage", str(storage), "--name", "new", no_ray=True
        )
        assert_one_line_error(run.returncode, run.stderr, f"--storage {storage}: cannot")
        code, out, err = run_main("status", *common)  # reading still works
        assert code == 0 and "exp: interrupted" in out, err
    assert store.read_ledger()["launches"] == [dead]


# ---------------------------------------------------------------------- paths and devices


def test_unwritable_out_and_storage_and_unknown_schemes(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    code, _, err = run_main(
        "train", "--data-root", str(tmp_path), "--method", "erm", "--out", str(afile / "t")
    )
    assert_one_line_error(code, err, f"--out {afile / 't'}: cannot write there")
    code, _, err = run_main("status", "--storage", "foo://bucket/x", "--name", "e")
    assert_one_line_error(
        code,
        err,
        "foo://bucket/x: unknown or unusable URI scheme 'foo'",
        "allowed: a local path, file://, s3://",
    )
    for args in (
        ["list", "--storage", "foo://b"],
        ["resume", "--storage", "foo://b", "--name", "e"],
        ["train", "--data-root", str(tmp_path), "--out", "foo://b/t"],
    ):
        code, _, err = run_main(*args)
        assert_one_line_error(code, err, "unknown or unusable URI scheme 'foo'")


def test_unwritable_storage_is_refused_on_run(tmp_path, tiny_cmnist_root):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    code, _, err = run_main(
        "run",
        "--grid",
        write_grid(tmp_path),
        "--data-root",
        str(tiny_cmnist_root),
        "--storage",
        str(afile / "s"),
        "--name",
        "e",
    )
    # a file where a folder is expected is named before any write is tried
    assert_one_line_error(code, err, f"--storage {afile / 's'}: is under the file {afile}")


def test_device_cuda_without_that_gpu_is_one_line(tmp_path):
    import torch

    device = "cuda:99" if torch.cuda.is_available() else "cuda"
    code, _, err = run_main(
        "train",
        "--data-root",
        str(tmp_path),
        "--method",
        "erm",
        "--device",
        device,
        "--out",
        str(tmp_path / "t"),
    )
    assert_one_line_error(code, err, f"--device {device}: this machine has", "allowed: auto, cpu")


# ---------------------------------------------------------------------- a full disk


ENOSPC_DRIVER = """
import errno, sys
from rest_sweep.local import run_local
from trainables.errors import UserError
from trainables.results import ExperimentStore

real = ExperimentStore.write_ledger
def write_ledger(self, ledger):
    if any(x.get("ended") for x in ledger.get("launches", [])):
        raise OSError(errno.ENOSPC, "No space left on device")
    real(self, ledger)
ExperimentStore.write_ledger = write_ledger
try:
    run_local([sys.argv[1]], sys.argv[2], sys.argv[3], "exp", device="cpu", quiet=True)
except UserError as error:
    print(f"rest-sweep local: error: {error}", file=sys.stderr)
    sys.exit(2)
"""


def test_the_end_of_launch_ledger_write_on_a_full_disk(tmp_path, tiny_cmnist_root):
    storage = tmp_path / "s"
    driver = subprocess.run(
        [
            sys.executable,
            "-c",
            ENOSPC_DRIVER,
            write_grid(tmp_path),
            str(tiny_cmnist_root),
            str(storage),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},  # the tiny data's NaN-metric notes
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = assert_one_line_error(driver.returncode, driver.stderr, "No space left on device")
    assert "ended (completed)" in line and "trial folders are intact" in line
    store = ExperimentStore(str(storage), "exp")
    (trial_hash,) = store.read_ledger()["trials"]
    assert store.trial(trial_hash).is_finished()  # the trial itself is safe
    report = json.loads(cli("status", "--storage", str(storage), "--name", "exp", "--json").stdout)
    assert (report["finished"], report["live_launch"]) == (1, None)
    launch = store.read_ledger()["launches"][0]
    assert launch["outcome"] == "died" and "is gone" in launch["closed"]["how"]
    assert time.time() - launch["ended"] < 600
