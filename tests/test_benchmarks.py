"""The benchmarks keep working: a tiny --quick run of each (no time thresholds, CPU only)."""

from __future__ import annotations

import json

import pytest

from benchmarks import grid_cost, trainer_throughput
from search_spaces.makespan import ThroughputTable
from tests.reliability.helpers import REPO


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


def test_grid_cost_from_the_shipped_table_and_a_gpu_json(tmp_path, capsys):
    """No JSON files: GPU-hours per grid from search_spaces/throughput.csv (BFFHQ measured at
    224 px); a gpu.json replaces a model's figures and --write-table saves them."""
    assert grid_cost.main(["--grids", "paper-table3-cmnist,paper-table3-bffhq"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {tuple(line.split()[:3]): line.split()[-2:] for line in lines[2:]}
    reference = rows[("paper-table3-cmnist", "336", "REST")]
    four = rows[("paper-table3-cmnist", "336", "4")]
    assert float(reference[0]) > float(four[0]) > 0 and float(four[1]) == 0
    bffhq = rows[("paper-table3-bffhq", "84", "4")]
    assert float(bffhq[0]) > 0 and float(bffhq[1]) == 0  # 224 px: measured (2026-11-30)
    # no REST-pipeline figure at 224 px: the reference row says so rather than scale one
    assert any(x.startswith("paper-table3-bffhq") and "no reference figure" in x for x in lines)

    table = tmp_path / "throughput.csv"
    table.write_text((REPO / "search_spaces" / "throughput.csv").read_text())
    gpu = tmp_path / "gpu.json"
    per_k = {"1": 1e7, "4": 4e7}  # twenty times the measured H200 figures, or more
    gpu.write_text(json.dumps({"models": {"simple_cnn": {"aggregate": {"per_k": per_k}}}}))
    argv = ["--grids", "paper-table3-cmnist", "--table", str(table), "--from-gpu-json", str(gpu)]
    assert grid_cost.main([*argv, "--write-table"]) == 0
    out = capsys.readouterr().out
    faster = float(next(x for x in out.splitlines() if " 4 trials/GPU" in x).split()[-2])
    assert 0 < faster < float(four[0]) / 5
    assert "1e+07" in table.read_text()  # written back
    doc = json.loads(gpu.read_text())  # and the paper-all figure recorded in the gpu.json
    # simple_cnn's shipped MPS row is dropped (another run's); resnet18 keeps its own
    assert doc["paper_all_h100_hours"] > 0 and doc["paper_all_h100_hours_mps"] > 0
    assert ("simple_cnn", 28, 64) not in ThroughputTable.load(table).mps
    assert "4 trials per GPU" in doc["paper_all_basis"]


def test_paper_all_is_recorded_at_the_largest_measured_k_below_the_share(tmp_path, capsys):
    """A gpu.json measured at K = 1, 2 only: paper-all is recorded at K = 2, and says so."""
    table = tmp_path / "throughput.csv"
    table.write_text((REPO / "search_spaces" / "throughput.csv").read_text())
    per_k = {"1": 1e6, "2": 1.5e6}
    models = {
        name: {"model": model, "input_size": px, "aggregate": {"per_k": per_k}}
        for name, model, px in (
            ("simple_cnn", "simple_cnn", 28),
            ("resnet18", "resnet18", 32),
            ("resnet18_224", "resnet18", 224),
        )
    }
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps({"gpu": "H200", "models": models}))
    argv = ["--grids", "paper-all", "--table", str(table), "--from-gpu-json", str(gpu)]
    assert grid_cost.main([*argv, "--write-table"]) == 0
    assert "recorded at 2 trials per GPU" in capsys.readouterr().out
    doc = json.loads(gpu.read_text())
    assert doc["paper_all_h100_hours"] > 0 and "at 2 trials per GPU" in doc["paper_all_basis"]


def test_grid_cost_prices_the_measured_fused_modes_and_records_the_cheapest(tmp_path, capsys):
    """A gpu.json with fused figures: each measured way of running fused groups is a mode
    (faster fused figures, fewer GPU-hours than the plain K = 4), written back to the table,
    and the cheapest recorded as ``paper_all_h100_hours_fused``."""
    table = tmp_path / "throughput.csv"
    table.write_text((REPO / "search_spaces" / "throughput.csv").read_text())
    run = {"samples": 1e8, "epochs": 10, "build_s": 5.0, "warm_s": 9.0}
    fused = {"per_k": {str(k): {**run, "samples_per_s": 2e6 * k} for k in (1, 8)}}
    per_run = {"2x8": {"processes": 2, "fuse": 8, "samples_per_s": 3e7, "mps": True}}
    simple = {"model": "simple_cnn", "input_size": 28, "fused": fused}
    gpu = tmp_path / "gpu.json"
    gpu.write_text(
        json.dumps(
            {"gpu": "H200", "models": {"simple_cnn": {**simple, "fused_mps": {"per_run": per_run}}}}
        )
    )
    argv = ["--grids", "paper-table3-cmnist", "--table", str(table), "--from-gpu-json", str(gpu)]
    assert grid_cost.main([*argv, "--write-table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    hours = {
        line.split(None, 2)[2].rsplit(None, 2)[0].strip(): float(line.split()[-2])
        for line in lines
        if line.startswith("paper-table3-cmnist ")
    }
    assert 0 < hours["fused 8 x 2 processes + MPS"] < hours["fused 8, 1 process/GPU"]
    assert hours["fused 8, 1 process/GPU"] < hours["4 trials/GPU"]
    assert ThroughputTable.load(table).fused[("simple_cnn", 28, 64)].mps == {(2, 8): 3e7}
    doc = json.loads(gpu.read_text())
    assert doc["paper_all_fused_mode"] == "fused 8 x 2 processes + MPS"
    assert 0 < doc["paper_all_h100_hours_fused"] < doc["paper_all_h100_hours"]


def test_fused_cost_is_a_groups_start_up_and_its_members_work_at_the_fused_rate():
    """GPU-hours of 5 same-shape trials as --fuse 4 (a group of 4 and one trial alone), exactly:
    the group's start-up (a plain trial's plus its extra) over P processes and 4 trials' work
    at the fused aggregate; the one left over at the plain default share (4 per GPU)."""
    from search_spaces import GRIDS, expand
    from search_spaces.makespan import shipped_table, trial_work
    from trainables.fusion import fuse_key

    trials = [t for t in expand(GRIDS.get("paper-table3-cmnist")).trials if fuse_key(t)]
    trials = [t for t in trials if fuse_key(t) == fuse_key(trials[0])][:5]
    run = {"samples": 1000, "epochs": 10, "build_s": 0.0}
    fused = {
        "per_k": {
            "1": {**run, "samples_per_s": 100.0, "warm_s": 11.0},
            "4": {**run, "samples_per_s": 250.0, "warm_s": 16.0},
        }
    }
    per_run = {"2x4": {"processes": 2, "fuse": 4, "samples_per_s": 400.0, "mps": True}}
    doc = {
        "models": {
            "simple_cnn": {"input_size": 28, "fused": fused, "fused_mps": {"per_run": per_run}}
        }
    }
    table = shipped_table().with_gpu_json(doc)
    plain = table.lookup("simple_cnn", 28, 64)
    work = trial_work(trials[0])[3] * (1 + plain.epoch_overhead)
    # extra start-up of 4: (16 - 1000/10/250) - (11 - 1000/10/100) = 15.6 - 10 = 5.6 s
    alone = plain.startup_s / 4 + work / (plain.per_trial(4) * 4)
    one = grid_cost.fused_cost(table, trials, 4, 1)
    assert one == (pytest.approx((plain.startup_s + 5.6 + 4 * work / 250.0 + alone) / 3600), 0.0)
    mps = table.with_mps().lookup("simple_cnn", 28, 64)
    alone_mps = mps.startup_s / 4 + work / (mps.per_trial(4) * 4)
    two = grid_cost.fused_cost(table, trials, 4, 2)
    group = (mps.startup_s + 5.6) / 2 + 4 * work / 400.0
    assert two == (pytest.approx((group + alone_mps) / 3600), 0.0)
