"""One trial label (``trainables.config.trial_label``): the rule, and the same label wherever a
trial is named: ``TrialConfig.short_name``, ``grids show``, pending grid rows, ``status`` and
the Parquet ``label`` column."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import synthetic
from analysis.api import build
from rest_sweep.commands.grids import _trial_row
from rest_sweep.sweep_status import status
from search_spaces.grid import PendingRow
from trainables.config import TrialConfig, trial_label


def _cfg(method: str, **values: object) -> TrialConfig:
    return TrialConfig.from_recipe("paper", method=method, seed=41, epochs=2, **values)


CASES = {
    "dense method": (_cfg("erm"), "cmnist_r1_erm_s41"),
    "sparse method below density 1": (_cfg("rest", density=0.05), "cmnist_r1_rest_d0.05_s41"),
    "sparse method at density 1": (_cfg("rigl", density=1.0), "cmnist_r1_rigl_s41"),
    "pruning (its levels set its sparsity)": (_cfg("prune", levels=2), "cmnist_r1_prune_s41"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_rule_names_the_density_below_one(case: str) -> None:
    cfg, expected = CASES[case]
    assert trial_label(cfg.to_dict()) == expected
    assert cfg.short_name() == expected


def test_a_label_reads_any_mapping() -> None:
    assert trial_label({}) == "?_r?_?_s?"
    values = {"dataset": "bffhq", "ratio": "0.5", "method": "unknown", "density": 0.1, "seed": 3}
    assert trial_label(values) == "bffhq_r0.5_unknown_d0.1_s3"  # no registry needed
    assert trial_label({**values, "density": float("nan")}) == "bffhq_r0.5_unknown_s3"


def test_grids_pending_rows_status_and_parquet_agree(tmp_path: Path) -> None:
    configs = [cfg for cfg, _ in CASES.values()]
    synthetic.write_experiment(str(tmp_path), "exp", [c.to_dict() for c in configs])
    frame = build(str(tmp_path), "exp").frame
    parquet = dict(zip(frame["trial_hash"], frame["label"], strict=True))
    statuses = {t.hash: t.name for t in status(str(tmp_path), "exp", close_dead=False).trials}
    for cfg, expected in CASES.values():
        values = {k: getattr(cfg, k) for k in ("dataset", "ratio", "density", "seed")}
        assert _trial_row(cfg)["name"] == expected  # grids show
        assert PendingRow(cfg.method, values).label() == expected
        assert statuses[cfg.trial_hash] == expected
        assert parquet[cfg.trial_hash] == expected
