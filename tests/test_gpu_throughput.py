"""benchmarks/gpu_throughput.py keeps working: its --tiny CPU run covers every code path the
lent GPU machine runs (synthetic trials, K child processes behind one common window, start-up
children, the REST reference, the budget), so a GPU call is not the first time the code runs.
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
