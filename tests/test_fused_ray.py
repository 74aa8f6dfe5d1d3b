"""Fused groups on Ray (``--fuse``): one Tune trial per group, each member its own folder.

The session's embedded Ray, tiny real Colored MNIST: a group trains and reports its members,
the progress lines count trials (not Tune trials), a scheduler that stops single trials is
refused in one line, and a later launch without fusion trains nothing more.
"""

from __future__ import annotations

import json

import pytest

import rest_sweep
from rest_sweep.launch_settings import LaunchSettings
from trainables.errors import UserError
from trainables.results import ExperimentStore

pytestmark = pytest.mark.ray

GRID = """name: tiny-fused
fixed: {dataset: cmnist, ratio: 1.0, epochs: 2, width: 8, update_frequency: 4}
axes: {seed: [41]}
methods:
  erm_rw: {}
  rigl: {axes: {density: [0.05, 0.2]}}
  rest: {axes: {density: [0.05]}}
  lff: {}
"""


def run_grid(text: str, data_root, tmp_path, capsys, **settings: object):
    """Launch the grid ``text`` as experiment ``exp`` on embedded Ray: (result, stdout,
    storage)."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    storage = str(tmp_path / "s")
    result = rest_sweep.run(str(grid), str(data_root), storage, "exp", **settings)
    return result, capsys.readouterr().out, storage


def test_a_fused_group_is_one_ray_trial_and_each_member_its_own_trial(
    ray_session, tiny_cmnist_root, tmp_path, capsys
):
    result, out, storage = run_grid(
        GRID, tiny_cmnist_root, tmp_path, capsys, fuse=4, reuse_actors=True
    )
    assert result.outcome == "completed" and result.launched == 5
    assert "5 of 5 trials to run in 2 Ray trial(s) (fused groups of up to 4)" in out
    assert "5/5 done" in out  # trials, not Tune trials
    store = ExperimentStore(storage, "exp")
    fused = []
    for trial_hash in store.read_ledger()["trials"]:
        summary = store.trial(trial_hash).read_summary()
        assert summary["status"] == "finished" and summary["epochs"] == 2
        fused.append(summary["fused"])
        rows = store.trial(trial_hash).read_metrics()
        assert [r["epoch"] for r in rows] == [1, 2]
    assert sorted(fused) == [1, 4, 4, 4, 4]  # lff cannot fuse: it trains alone
    launch = store.read_ledger()["launches"][-1]
    assert launch["settings"]["fuse"] == 4
    results = list((tmp_path / "s" / "exp" / "tune" / launch["id"]).glob("*/result.json"))
    assert len(results) == 2  # two Tune trials
    reported = {
        json.loads(line)["trial_hash"]
        for path in results
        for line in path.read_text().splitlines()
        if line.strip()
    }
    assert len(reported) == 5  # every member's rows reach Tune, each under its own hash
    again = rest_sweep.resume(storage, "exp", fuse=1, quiet=True)
    assert again.launched == 0


def test_fuse_with_a_scheduler_that_stops_single_trials_is_refused():
    with pytest.raises(UserError, match=r"^--fuse: 2 is not allowed with --scheduler asha"):
        LaunchSettings(fuse=2, scheduler="asha", metric="valid_worst_group_acc").validate()
    with pytest.raises(UserError, match=r"^--fuse: 0 is not allowed; allowed: an integer >= 1"):
        LaunchSettings(fuse=0).validate()
    LaunchSettings(fuse=8).validate()


DIVERGING = """name: tiny-fused-diverging
fixed: {dataset: cmnist, ratio: 1.0, epochs: 1, width: 8, seed: 41}
methods:
  rest: {axes: {density: [0.05]}}
  rigl: {axes: {density: [0.05], lr: [1.0e+30]}}
"""


def test_a_diverging_member_fails_alone_and_its_retry_leaves_it_out(
    ray_session, tiny_cmnist_root, tmp_path, capsys
):
    result, out, storage = run_grid(
        DIVERGING, tiny_cmnist_root, tmp_path, capsys, fuse=2, max_failures=1
    )
    assert "in 1 Ray trial(s)" in out
    assert "1/2 done" in out and "1 errored" in out  # counted as trials
    assert result.counts["finished"] == 1 and result.counts["errored"] == 1
    store = ExperimentStore(storage, "exp")
    states = {}
    for trial_hash in store.read_ledger()["trials"]:
        state = store.trial(trial_hash).read_state()
        states[state["state"]] = state
    assert set(states) == {"finished", "errored"}
    assert states["errored"]["diverged"] and "non-finite loss" in states["errored"]["error"]
    assert states["errored"]["attempt"] == 1  # the retry left the diverged member out
    assert states["finished"]["attempt"] == 1
