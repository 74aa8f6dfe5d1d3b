"""benchmarks/plan_scale.py keeps working: a tiny run (no time thresholds)."""

from __future__ import annotations

from benchmarks import plan_scale


def test_plan_scale_runs_at_a_tiny_size(capsys):
    assert plan_scale.main(["--sizes", "20,40"]) == 0
    out = capsys.readouterr().out
    assert "run planning" in out and "whole ledger" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("20 ", "40 "))]
    updates = {(r[0], " ".join(r[1:-5])): r for r in rows if not r[1][0].isdigit()}
    for size in ("20", "40"):
        heartbeat = updates[(size, "heartbeat")]
        assert int(heartbeat[-3]) == 1  # one file written
        assert 0 < int(heartbeat[-4]) < 1000  # a few hundred bytes
        assert float(heartbeat[-1]) < 1  # fewer bytes than the whole ledger
    assert plan_scale.grid_yaml(100).count("\n") > 5
