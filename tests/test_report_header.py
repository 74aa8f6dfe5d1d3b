"""The report's header names the experiment's grids, never a resume's "(all planned)"."""

from __future__ import annotations

import re
from pathlib import Path

from analysis import synthetic
from analysis.api import report


def test_report_header_lists_grids_not_a_resume(tmp_path: Path) -> None:
    configs = synthetic.grid_configs(
        datasets=("cmnist",), ratios=(0.5,), methods=("erm",), densities=(0.5,)
    )
    store = synthetic.write_experiment(str(tmp_path), "exp", configs, grid="paper-all")
    ledger = store.read_ledger()
    # what `rest-sweep resume` records as its launch's grid
    ledger["launches"].append(
        {"id": "L002", "command": "resume", "grid": "(all planned)", "trials": []}
    )
    store.write_ledger(ledger)
    text = Path(report(str(tmp_path), "exp", str(tmp_path / "out"))).read_text()
    (meta,) = [m for m in re.findall(r"<p class='meta'>.*?</p>", text, flags=re.S) if "grids:" in m]
    assert "grids: paper-all;" in meta
    assert "(all planned)" not in meta
