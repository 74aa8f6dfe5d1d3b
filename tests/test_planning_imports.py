"""Planning never imports torch: grids, grid show (with the cost estimate), status, analyze."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _no_torch_after(calls: str) -> None:
    code = (
        "import contextlib, io, sys\n"
        "from rest_sweep.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"{calls}"
        "bad = [m for m in ('torch', 'ray') if m in sys.modules]\n"
        "assert not bad, f'planning imported {bad}'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)


def test_grids_and_grid_show_import_no_torch() -> None:
    _no_torch_after(
        "    assert main(['grids']) == 0\n"
        "    assert main(['grids', 'show', 'paper-all', '--json']) == 0\n"
    )


def test_yaml_grid_validation_imports_no_torch() -> None:
    examples = sorted((ROOT / "search_spaces" / "examples").glob("*.y*ml"))
    if not examples:
        pytest.skip("no example grid files")
    _no_torch_after(f"    assert main(['grids', 'show', {str(examples[0])!r}, '--json']) == 0\n")


def test_status_and_analyze_import_no_torch(tmp_path: Path) -> None:
    from analysis import synthetic

    configs = synthetic.grid_configs(ratios=(1.0,), methods=("erm",), seeds=(41, 42))
    synthetic.write_experiment(str(tmp_path), "exp", configs)
    storage, out = str(tmp_path), str(tmp_path / "out")
    _no_torch_after(
        f"    assert main(['status', '--storage', {storage!r}, '--name', 'exp', '--json']) == 0\n"
        f"    assert main(['analyze', '--storage', {storage!r}, '--name', 'exp', '--out', "
        f"{out!r}, '--no-figures']) == 0\n"
    )
