"""The benchmarks keep working: a tiny --quick run of each (no time thresholds, CPU only)."""

from __future__ import annotations

import json

from benchmarks import grid_cost, trainer_throughput


def test_throughput_and_grid_cost_quick(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "simple_cnn.json"
    argv = [
        "--quick",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--source",
        str(fmnist_dir),
        "--data-root",
        str(tmp_path / "data"),
        "--json-out",
        str(out),
    ]
    assert trainer_throughput.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("speedup: ") and float(lines[-1].split()[1]) > 0
    report = json.loads(out.read_text())
    assert report["model"] == "simple_cnn" and report["width"] == 16
    assert set(report["results"]) == {"reference", "single fp32"}
    assert all(r["samples_per_s"] > 0 for r in report["results"].values())

    assert grid_cost.main([str(out), "--grids", "paper-table3-cmnist,paper-all"]) == 0
    table = capsys.readouterr().out
    assert "paper-table3-cmnist" in table and "best single (fp32)" in table
    assert "(a model was not measured)" in table  # paper-all also needs resnet18
