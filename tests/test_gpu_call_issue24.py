"""Issue 24's GPU script (benchmarks/gpu_call_issue24.sh) end to end on CPU at tiny scale.

The script is the one the GPU runs, on real MNIST made tiny, with Ray hidden in every
process (the GPU host has no Ray). It makes the three bundles from the raw IDX files, runs
Table 3, Table 2 (after copying the trials it shares with Table 3) and the SDD grid, then
summarizes each experiment. Its grids are cut-down copies of the committed ones: the same
methods and fixed values, with one density and two ratios.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_call_issue24.sh"
GRIDS = REPO / "results"


def _cut(source: Path, target: Path, *, ratios: list[float] | None = None) -> Path:
    """The committed grid with every density axis cut to [0.05] (and ``ratios`` if given)."""
    grid = yaml.safe_load(source.read_text())
    for method in grid["methods"].values():
        if method and "density" in method.get("axes", {}):
            method["axes"]["density"] = [0.05]
    if ratios is not None:
        grid["axes"]["ratio"] = ratios
    target.write_text(yaml.safe_dump(grid, sort_keys=False))
    return target


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar if m.isfile()}


def _parquet(files: dict[str, bytes], name: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(files[name]))


@pytest.mark.slow
def test_gpu_script_runs_every_stage_on_cpu(mnist_subset_dir, tmp_path):
    t3 = _cut(GRIDS / "table3-mnist/grids/core-s41.yaml", tmp_path / "t3.yaml")
    t2 = _cut(GRIDS / "table2-mnist/grids/seed41.yaml", tmp_path / "t2.yaml", ratios=[0.5, 1.0])
    out, work = tmp_path / "out", tmp_path / "work"
    env = {
        **os.environ,
        "OUT": str(out),
        "CARRY": str(tmp_path / "carry"),  # none: not the repository's .carry
        "WORK": str(work),
        "PY": sys.executable,
        "SRC": str(mnist_subset_dir),
        "DEVICE": "cpu",
        "EPOCHS": "1",
        "LEVELS": "1",
        "LIMIT": "1000",  # the 0.5 % ratio needs about 1000 training images
        "VALID": "200",
        "TEST": "300",
        "WORKERS": "2",
        "EXTRA_SET": "width=8",
        "T2_SET": "disent_swap_step=10",  # one epoch is 215 planned steps
        "HIDE_RAY": "1",
        "NO_PNG": "1",
        "OMP_NUM_THREADS": "1",
        "GRIDS_T3": str(t3),
        "GRIDS_T2": str(t2),
        "STAGES": "table3 table2 sdd",  # the GPU call's default leaves SDD out (trained on CPU)
    }
    done = subprocess.run(
        ["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "data.log",
        "experiments.tgz",
        "machine.txt",
        "run.log",
        "summaries.tgz",
    ]
    machine = (out / "machine.txt").read_text()
    assert "no ray" in machine and "all done" in machine
    log = (out / "run.log").read_text()
    assert "table2-mnist: 3 finished trial(s) copied from table3-mnist" in log

    files = _members(out / "summaries.tgz")
    # Table 3: ERM, ERM + RW, RigL and REST, one seed; all trained here
    trials = _parquet(files, "table3-mnist/trials.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"finished"}
    assert sorted(trials["cfg_method"]) == ["erm", "erm_rw", "rest", "rigl"]
    assert "REST − RigL unbiased" in files["table3-mnist/tables.md"].decode()
    # Table 2: 5 methods x 2 ratios; the 3 ratio-1 trials it shares with Table 3 were copied
    trials = _parquet(files, "table2-mnist/trials.parquet")
    assert len(trials) == 10 and set(trials["status"]) == {"finished"}
    assert set(trials["cfg_method"]) == {"erm", "erm_rw", "rest", "mrm", "disent"}
    assert set(trials["cfg_ratio"]) == {0.5, 1.0}
    assert b"| cmnist | 1 | 1 | paper | erm_rw | 1 |" in files["table2-mnist/tables.md"]
    assert "table2-mnist/tables/paper_comparison.md" in files
    # SDD: lottery and fine-tuning, level 0 and level 1 each
    trials = _parquet(files, "sdd-mnist/trials.parquet")
    assert len(trials) == 2 and set(trials["status"]) == {"finished"}
    assert set(trials["cfg_retrain"]) == {"lottery", "finetune"}
    levels = _parquet(files, "sdd-mnist/levels.parquet")
    assert sorted(levels["level"]) == [0, 0, 1, 1]
    assert levels["memorised"].notna().all()  # noise metrics: random labels are on
    for name in ("table3-mnist", "table2-mnist", "sdd-mnist"):
        assert f"{name}/run.json" in files and f"{name}/tables.md" in files

    ledgers = _members(out / "experiments.tgz")
    for name in ("table3-mnist", "table2-mnist", "sdd-mnist"):
        assert f"{name}/experiment.json" in ledgers
    assert not [n for n in ledgers if n.endswith(".pt") or "/checkpoints/" in n]
