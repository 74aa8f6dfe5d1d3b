"""benchmarks/gpu_throughput.py keeps working: its --tiny CPU run covers every code path the
lent GPU machine runs (synthetic trials, K child processes behind one common window, start-up
children, the REST reference, fused groups in-process and in child processes, the budget), so a
GPU call is not the first time the code runs.
No time thresholds: only the JSON schema and that every measured figure is positive."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("simple_cnn", "resnet18", "resnet18_224")


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and value > 0


@pytest.mark.slow
def test_tiny_cpu_run_writes_the_documented_schema(tmp_path: Path) -> None:
    out = tmp_path / "results" / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "benchmarks/gpu_throughput.py", "--tiny", "--device", "cpu"]
    done = subprocess.run(
        [*cmd, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    for key in ("gpu", "date", "command", "torch", "models", "skipped", "errors", "elapsed_s"):
        assert key in report
    assert report["device"] == "cpu" and report["tiny"] is True
    assert report["errors"] == []
    assert _positive(report["peak_bf16_tflops"])
    skipped = {s["what"]: s["reason"] for s in report["skipped"]}
    assert skipped["mps"] == "no CUDA device"

    assert set(report["models"]) == set(MODELS)
    for key in MODELS:
        entry = report["models"][key]
        assert _positive(entry["reference"]) and _positive(entry["single"])
        ref = entry["reference_detail"]
        fields = ("step_s", "epoch_start_s", "first_batch_s", "shutdown_s")
        for k in (*fields, "real_epoch_samples", "files", "workers"):
            assert _positive(ref[k]), (key, k, ref[k])
        assert ref["epoch_start_s"] == pytest.approx(ref["first_batch_s"] + ref["shutdown_s"])
        assert isinstance(ref["extrapolated_start_s"], float)  # a cross-check: may be < 0
        assert ref["real_epoch_samples"] == {"cmnist": 55_000, "cifar10c": 45_000}.get(
            entry["dataset"], 19_200
        )
        assert ref["real_epoch_steps"] == math.ceil(ref["real_epoch_samples"] / ref["batch_size"])
        assert len(ref["epoch_s"]) == ref["epochs"] and all(map(_positive, ref["epoch_s"]))
        assert "epoch_start_s" in ref["method"] and "step_s" in ref["method"]
        # One real epoch = its steps at the steady step time + one worker (re-)spawn.
        real_epoch_s = (ref["real_epoch_steps"] - 1) * ref["step_s"] + ref["epoch_start_s"]
        assert entry["reference"] == pytest.approx(ref["real_epoch_samples"] / real_epoch_s)
        assert ref["samples_per_s"] == entry["reference"]
        assert _positive(entry["mfu"]) and _positive(entry["train_flops_per_sample"])
        assert entry["input_size"] == (
            224 if key == "resnet18_224" else 28 if key == "simple_cnn" else 32
        )
        precisions = {"fp32", "tf32"} if key == "simple_cnn" else {"fp32", "tf32", "bf16"}
        assert set(entry["variants"]) == precisions
        for variant in entry["variants"].values():
            assert all(_positive(variant[k]) for k in ("samples_per_s", "tflops", "mfu"))

    aggregate = report["models"]["simple_cnn"]["aggregate"]
    assert set(aggregate["per_k"]) == {"1", "2"}
    assert (
        aggregate["samples_per_s"] == aggregate["per_k"][str(aggregate["best_k"])]["samples_per_s"]
    )
    for k, row in aggregate["per_k"].items():
        assert len(row["per_process"]) == int(k) and all(map(_positive, row["per_process"]))
        assert _positive(row["window_s"])
    assert skipped["aggregate resnet18"] == "--tiny"

    # Fused groups (issue 25): K = 1, 2 in this process for both 32-px models; 2 child
    # processes of a fused K = 2 (plain on the CPU: no MPS daemon) for the Simple CNN.
    for key in ("simple_cnn", "resnet18"):
        fused = report["models"][key]["fused"]
        assert set(fused["per_k"]) == {"1", "2"}
        assert fused["samples_per_s"] == fused["per_k"][str(fused["best_k"])]["samples_per_s"]
        assert fused["precision"] == report["aggregate_precision"][key]
        for row in fused["per_k"].values():
            for k in ("samples_per_s", "seconds", "samples", "tflops", "mfu", "build_s", "warm_s"):
                assert _positive(row[k]), (key, k, row[k])
            assert row["graphed"] is False  # no CUDA graphs on the CPU
            assert row["shared_data"] is True  # the synthetic members load one split
    own = report["models"]["simple_cnn"]["fused_own_batches"]
    shared = report["models"]["simple_cnn"]["fused"]["per_k"]["2"]["samples_per_s"]
    assert (
        own["k"] == 2 and own["shared_samples_per_s"] == shared and _positive(own["samples_per_s"])
    )
    assert own["shared_over_own"] == pytest.approx(shared / own["samples_per_s"])
    assert report["models"]["resnet18"]["fused_own_batches"] is None
    fused_mps = report["models"]["simple_cnn"]["fused_mps"]
    run = fused_mps["per_run"]["2x2"]
    assert fused_mps["best"] == "2x2" and fused_mps["samples_per_s"] == run["samples_per_s"]
    assert run["processes"] == 2 and run["fuse"] == 2 and run["mps"] is False
    assert run["graphed"] is False and aggregate["per_k"]["1"]["graphed"] is False
    assert len(run["per_process"]) == 2 and all(map(_positive, run["per_process"]))
    assert _positive(run["mfu"]) and _positive(run["window_s"])
    assert report["models"]["resnet18"]["fused_mps"] is None
    assert report["models"]["resnet18_224"]["fused"] is None
    assert skipped["fused resnet18_224"] == "--tiny" and skipped["fused_mps resnet18"] == "--tiny"
    ratio = report["ratios"]["simple_cnn"]
    best_fused = max(report["models"]["simple_cnn"]["fused"]["samples_per_s"], run["samples_per_s"])
    assert ratio["fused"] == best_fused and ratio["baseline"] == aggregate["samples_per_s"]
    assert ratio["ratio"] == pytest.approx(best_fused / aggregate["samples_per_s"])
    assert ratio["at_least_1_5x"] == (ratio["ratio"] >= 1.5)
    assert report["ratios"]["resnet18"]["ratio"] is None  # no resnet18 aggregate in --tiny
    assert "resnet18_224" not in report["ratios"]
    assert all(report["models"][key]["reference_valid"] is False for key in MODELS)

    startup = report["models"]["resnet18"]["startup"]
    assert set(startup) == {"on", "off", "cut"}
    for row in startup.values():
        for k in ("build_s", "first_epoch_s", "steady_epoch_s"):
            assert _positive(row[k])

    # The planning table reads exactly this document (grid_cost.py --from-gpu-json).
    from search_spaces.makespan import shipped_table

    assert done.stdout.strip().splitlines()[-1] == "GPU_JSON " + json.dumps(report)
    table = shipped_table().with_gpu_json(report)
    simple = report["models"]["simple_cnn"]
    row = table.rows[("simple_cnn", simple["input_size"], 64)]
    measured = {int(k): v["samples_per_s"] for k, v in simple["aggregate"]["per_k"].items()}
    assert row.aggregate == measured and row.basis == "measured"
    groups = table.fused[("simple_cnn", simple["input_size"], 64)]
    fused_k = {int(k): v["samples_per_s"] for k, v in simple["fused"]["per_k"].items()}
    assert groups.single == fused_k and set(groups.extra_startup_s) == set(fused_k)
    assert groups.mps == {}  # the CPU's fused processes ran without MPS: not an MPS figure
    # --tiny measures no resnet18 aggregate: K=1 is its single trial in the aggregates' precision
    alone = report["models"]["resnet18"]["variants"][report["aggregate_precision"]["resnet18"]]
    assert table.rows[("resnet18", 32, 64)].aggregate == {1: alone["samples_per_s"]}


def test_every_save_summarises_the_aggregates_so_far(tmp_path: Path) -> None:
    """An outer timeout ends the script between jobs: the JSON saved before it must already
    hold the aggregates and start-up measured so far, in the documented keys."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_throughput import Budget

    entry = {"model": "simple_cnn", "variants": {}, "aggregate": None, "startup": None}
    entry["_aggregate"] = {"1": {"samples_per_s": 5.0}, "2": {"samples_per_s": 8.0}}
    entry["_startup"] = {"cut": {"startup_s": 1.5}}
    report = {"peak_bf16_tflops": None, "models": {"simple_cnn": entry}}
    out = tmp_path / "gpu.json"
    Budget(60.0, report, out).save()
    saved = json.loads(out.read_text())["models"]["simple_cnn"]
    assert saved["aggregate"]["best_k"] == 2 and saved["aggregate"]["samples_per_s"] == 8.0
    assert saved["startup"] == {"cut": {"startup_s": 1.5}}
    assert not [k for k in saved if k.startswith("_")]  # working keys stay in memory


def test_fused_process_group_size_and_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused MPS processes take the fastest plain K that fits P times in memory; the ratio
    is the best fused figure over the best single-trial aggregate."""
    import argparse

    sys.path.insert(0, str(ROOT))
    from benchmarks import gpu_throughput
    from benchmarks.gpu_throughput import fuse_for_processes, fusion_ratios

    args = argparse.Namespace(fuse_mps_k=0, tiny=False, device="cpu")
    entry = {"_fused": {"8": {"samples_per_s": 5.0}, "32": {"samples_per_s": 9.0}}}
    assert fuse_for_processes("resnet18", 4, args, entry) == 32  # no memory figure: no cap
    assert fuse_for_processes("resnet18", 4, args, {}) == 8
    # 80 GB: 4 x (1.25 x 30 + 0.5) > 72, 2 x 38 = 76 > 72 too; 4 x (1.25 x 8 + 0.5) = 42 fits
    monkeypatch.setattr(gpu_throughput, "gpu_memory_gb", lambda _device: 80.0)
    entry["_fused"]["32"]["peak_mem_gb"] = 30.0
    entry["_fused"]["8"]["peak_mem_gb"] = 8.0
    assert fuse_for_processes("resnet18", 4, args, entry) == 8
    assert fuse_for_processes("resnet18", 1, args, entry) == 32
    args.fuse_mps_k = 16
    assert fuse_for_processes("resnet18", 4, args, entry) == 16

    entry = {
        "fused": {"best_k": 32, "samples_per_s": 900.0},
        "fused_mps": {"best": "2x16", "samples_per_s": 1000.0, "mps": True},
        "aggregate": {"best_k": 4, "samples_per_s": 300.0},
        "aggregate_mps": {"best_k": 4, "samples_per_s": 500.0},
    }
    got = fusion_ratios(entry)
    assert got is not None
    assert got["fused_mode"] == "fused_mps 2x16" and got["baseline_mode"] == "aggregate_mps K=4"
    assert got["ratio"] == 2.0 and got["ratio_plain"] == 1.8 and got["at_least_1_5x"] is True
    assert fusion_ratios({"aggregate": entry["aggregate"]}) is None


def test_a_failing_fused_graph_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA a failed graphed fused step is measured eager (with the error), and the later
    fused jobs go eager at once; out of memory is not retried."""
    import argparse

    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks import gpu_throughput

    calls: list[bool] = []

    def timed(key, k, args, graphs, share_data=True):
        calls.append(graphs)
        if graphs:
            raise RuntimeError("capture failed\ndetails")
        return {"samples_per_s": 1.0}

    monkeypatch.setattr(gpu_throughput, "timed_fused", timed)
    args = argparse.Namespace(device="cuda")
    got = gpu_throughput.measure_fused("simple_cnn", 2, args)
    assert got["graph_error"] == "RuntimeError: capture failed" and calls == [True, False]
    assert gpu_throughput.measure_fused("simple_cnn", 4, args)["graph_error"] == got["graph_error"]
    assert calls == [True, False, False]

    def oom(key, k, args, graphs, share_data=True):
        raise torch.cuda.OutOfMemoryError("out of memory")

    monkeypatch.setattr(gpu_throughput, "timed_fused", oom)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        gpu_throughput.measure_fused("simple_cnn", 32, argparse.Namespace(device="cuda"))
