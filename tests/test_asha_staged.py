"""ASHA over a prune grid: a staged trial's length is every level's epochs, so ASHA's ``max_t``
and its stop-versus-end decision count all of them (not ``epochs``, one level's)."""

from __future__ import annotations

import json

import pytest

import rest_sweep
from trainables.config import TrialConfig
from trainables.results import ExperimentStore

pytestmark = pytest.mark.ray

# Two levels after the dense one, one epoch each: 3 rows per trial. The first trial (lr 0.01)
# learns; the next ones (lr 1e-7) stay at chance and fall below it at ASHA's first rung.
GRID = """name: asha-prune
fixed: {dataset: cmnist, ratio: 1.0, epochs: 1, levels: 2, width: 8, retrain: lottery}
methods:
  prune: {axes: {lr: [0.01, 1.0e-7, 2.0e-7]}}
"""


def test_asha_over_a_prune_grid_stops_at_rungs_and_finishes_every_level(
    ray_session, tiny_cmnist_root, tmp_path
):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    result = rest_sweep.run(
        str(grid),
        str(tiny_cmnist_root),
        str(tmp_path / "s"),
        "asha",
        scheduler="asha",
        metric="valid_unbiased_acc",
        max_concurrent=1,  # grid order: the learning trial sets the rung first
        quiet=True,
    )
    store = ExperimentStore(str(tmp_path / "s"), "asha")
    ledger = store.read_ledger()
    configs = {h: TrialConfig.from_dict(c) for h, c in ledger["trials"].items()}
    assert {cfg.method_info.planned_epochs(cfg) for cfg in configs.values()} == {3}
    stopped = ledger.get("stopped", {})
    by_lr = {cfg.lr: h for h, cfg in configs.items()}
    # the learning trial ran every level to the end: 3 rows, one per level, and a summary
    first = store.trial(by_lr[0.01])
    rows = [json.loads(line) for line in first.loc.read_bytes("metrics.jsonl").splitlines()]
    assert [(r["epoch"], r["level"]) for r in rows] == [(1, 0), (2, 1), (3, 2)]
    assert [s["level"] for s in first.read_summary()["stages"]] == [0, 1, 2]
    assert by_lr[0.01] not in stopped
    # the others were stopped at the first rung (epoch 1, the end of level 0), recorded as such,
    # never at or after their last epoch (which only the end may reach)
    assert stopped and set(stopped) <= {by_lr[1e-7], by_lr[2e-7]}
    for trial_hash, record in stopped.items():
        assert record["epoch"] == 1 < 3
        assert not store.trial(trial_hash).is_finished()
    for trial_hash in set(configs) - set(stopped):
        assert store.trial(trial_hash).read_summary()["epochs"] == 3
    report = rest_sweep.status(str(tmp_path / "s"), "asha")
    assert report.stopped == len(stopped) and report.finished == 3 - len(stopped)
    assert result.outcome == "completed"
