"""The no-Ray reproduction harness (benchmarks/reproduce.py over rest_sweep.local) on CPU at
tiny scale: it writes the experiment folder `run` writes, resumes, honours its deadline, and
its result folder is what status, analyze and the summary read."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmarks import reproduce
from rest_sweep.cli import main as cli_main
from trainables.results import ExperimentStore

GRID = """\
name: tiny-table3
description: RigL vs REST at 3 densities, 1 seed (harness test)
recipe: paper
fixed:
  dataset: cmnist
  ratio: 1.0
  epochs: 1
  width: 8
axes:
  seed: [41]
methods:
  erm: {}
  rigl:
    axes:
      density: [0.01, 0.05, 0.2]
  rest:
    axes:
      density: [0.01, 0.05, 0.2]
"""


@pytest.mark.slow
def test_harness_runs_resumes_and_summarises(tiny_cmnist_root, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    common = [
        "--grid",
        str(grid),
        "--data-root",
        str(tiny_cmnist_root),
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "tiny",
        "--device",
        "cpu",
    ]

    # a deadline already passed: the plan is recorded, nothing starts, everything is pending
    assert reproduce.main(["run", *common, "--deadline", "0"]) == 0
    assert '"outcome": "deadline"' in capsys.readouterr().out
    capsys.readouterr()
    assert (
        cli_main(["status", "--storage", str(tmp_path / "runs"), "--name", "tiny", "--json"]) == 0
    )
    status = json.loads(capsys.readouterr().out)
    assert status["planned"] == 7 and status["pending"] == 7

    assert (
        reproduce.main(["run", *common, "--workers", "2", "--json-out", str(tmp_path / "t.json")])
        == 0
    )
    timing = json.loads((tmp_path / "t.json").read_text())
    assert timing["trained"] == 7 and timing["counts"]["finished"] == 7
    capsys.readouterr()
    assert reproduce.main(["run", *common, "--workers", "2"]) == 0  # resumed: nothing to run
    assert "nothing to run" in capsys.readouterr().out

    out = tmp_path / "result"
    argv = ["summarize", "--storage", str(tmp_path / "runs"), "--name", "tiny", "--out", str(out)]
    assert reproduce.main([*argv, "--no-png"]) == 0
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 7 and set(trials["status"]) == {"finished"}
    text = (out / "tables.md").read_text()
    assert "REST − RigL unbiased" in text and "| cmnist | 1 | 1 | paper | 0.05 | 1 |" in text
    assert "| cmnist | 1 | 1 | paper | erm | 1 |" in text
    ledger = ExperimentStore(str(tmp_path / "runs"), "tiny").read_ledger()
    assert [launch["command"] for launch in ledger["launches"]] == ["local", "local"]
    assert ledger["launches"][-1]["outcome"] == "completed"


def test_harness_rejects_bad_input_before_work(tmp_path, capsys):
    code = reproduce.main(
        [
            "run",
            "--grid",
            "demo",
            "--data-root",
            str(tmp_path),
            "--storage",
            str(tmp_path),
            "--name",
            "x",
            "--workers",
            "0",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--workers" in err and "\n" not in err
