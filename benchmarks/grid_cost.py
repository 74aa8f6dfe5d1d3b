"""GPU-hours of the paper grids, from measured training throughput.

Input: one or more JSON files written by ``trainer_throughput.py --json-out`` (one per model,
same device). For each grid and each way of running it (the public REST pipeline, our single
trial, N single trials sharing one GPU, a packed process), the cost is

    hours = sum over trials of epochs x train samples x (1 + epoch overhead) / samples per second

with the real bundles' train-set sizes (``trainables.datasets`` when importable).
``epoch overhead`` is what a real epoch costs beyond its training steps (valid and test passes,
metrics, checkpoint), as a fraction: 0.45 was measured on an H100 (a real 100-epoch-recipe
trial's steady epoch time against the benchmark's training throughput, both models), and is
applied to every mode alike. Trial start-up and the first epoch's cuDNN autotuning are not
counted.

BFFHQ trains ResNet-18 on 128 px (rest-code) or 224 px (paper/DisEnt) images, which was not
measured: its cost is the 32 px ResNet-18 cost scaled by the FLOP ratio (input area), an upper
bound, since a 128 px network keeps the GPU far busier per launch. It is listed separately.

    python benchmarks/grid_cost.py simple_cnn.json resnet18.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Documented counts (used when search_spaces is not importable): runnable trials per grid
# and model, MRM/DisEnt rows excluded. paper-all is ~860 with the pending baselines.
DOCUMENTED_GRIDS: dict[str, dict[tuple[str, str], int]] = {
    "paper-table3-cmnist": {("cmnist", "simple_cnn"): 336},
    "paper-table3-cifar10c": {("cifar10c", "resnet18"): 336},
    "paper-table3-bffhq": {("bffhq", "resnet18"): 84},
    "paper-all": {
        ("cmnist", "simple_cnn"): 360,
        ("cifar10c", "resnet18"): 360,
        ("bffhq", "resnet18"): 90,
    },
}
DOCUMENTED_TRAIN_SAMPLES = {"cmnist": 55_000, "cifar10c": 45_000, "bffhq": 19_200}
BFFHQ_SIZE = {"paper": 224, "rest-code": 128}
EPOCHS = 100


def grid_counts(names: list[str]) -> tuple[dict[str, dict[tuple[str, str], int]], str]:
    """Trials per (dataset, model) of each grid, and where the counts came from."""
    try:
        from collections import Counter

        from search_spaces import GRIDS, expand
    except Exception:  # search_spaces absent or broken: fall back to the documented counts
        return {n: DOCUMENTED_GRIDS[n] for n in names if n in DOCUMENTED_GRIDS}, "documented"
    out = {}
    for name in names:
        expansion = expand(GRIDS.get(name))
        out[name] = dict(Counter((t.dataset, t.model) for t in expansion.trials))
    return out, "search_spaces"


def train_samples() -> dict[str, int]:
    try:
        from trainables.datasets import DATASETS

        return {name: DATASETS.get(name).train_samples for name in DATASETS}
    except Exception:
        return dict(DOCUMENTED_TRAIN_SAMPLES)


def modes_of(report: dict[str, Any]) -> dict[str, float]:
    """Samples/s per way of running one model: reference, single (best variant), pack (best)."""
    results = report["results"]
    modes: dict[str, float] = {}
    if "reference" in results:
        modes["reference"] = results["reference"]["samples_per_s"]
    singles = {k: v["samples_per_s"] for k, v in results.items() if k.startswith("single")}
    if "single fp32" in singles:
        modes["single fp32"] = singles["single fp32"]
    if singles:
        best = max(singles, key=singles.get)
        modes[f"best single ({best.removeprefix('single ')})"] = singles[best]
    for key, value in report.get("shared", {}).items():
        modes[f"{key} processes/GPU"] = value
    packs = {k: v["samples_per_s"] for k, v in results.items() if k.startswith("pack")}
    if packs:
        best = max(packs, key=packs.get)
        modes[f"best pack ({best.removeprefix('pack ')})"] = packs[best]
    return modes


def cost_table(
    reports: dict[str, dict[str, Any]], grids: list[str], epoch_overhead: float, recipe: str
) -> tuple[list[dict[str, Any]], str]:
    """One row per (grid, mode): H100-hours without and with BFFHQ."""
    counts, source = grid_counts(grids)
    sizes = train_samples()
    bffhq_scale = (BFFHQ_SIZE[recipe] / 32) ** 2
    rows = []
    for grid, cells in counts.items():
        mode_names: list[str] = []
        for report in reports.values():
            mode_names += [m for m in modes_of(report) if m not in mode_names]
        for mode in mode_names:
            hours = bffhq = 0.0
            complete = True
            for (dataset, model), n in cells.items():
                rate = modes_of(reports[model]).get(mode) if model in reports else None
                if rate is None:
                    complete = False
                    continue
                seconds = n * EPOCHS * sizes[dataset] * (1 + epoch_overhead) / rate
                if dataset == "bffhq":
                    bffhq += seconds * bffhq_scale / 3600
                else:
                    hours += seconds / 3600
            rows.append(
                {
                    "grid": grid,
                    "mode": mode,
                    "gpu_hours": hours,
                    "bffhq_gpu_hours": bffhq,
                    "complete": complete,
                }
            )
    return rows, source


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", nargs="+", help="trainer_throughput --json-out files (one per model)")
    p.add_argument("--grids", default="paper-table3-cmnist,paper-table3-cifar10c,paper-all")
    p.add_argument(
        "--epoch-overhead",
        type=float,
        default=0.45,
        help="evaluation, metrics and checkpoint time as a fraction of the training "
        "time of an epoch (default 0.45, measured)",
    )
    p.add_argument(
        "--recipe",
        default="paper",
        choices=sorted(BFFHQ_SIZE),
        help="BFFHQ image size: paper 224 px, rest-code 128 px",
    )
    p.add_argument(
        "--shared",
        action="append",
        default=[],
        metavar="MODEL:K=SAMPLES_PER_S",
        help="aggregate rate of K single-trial processes on one GPU (measured)",
    )
    args = p.parse_args(argv)
    reports: dict[str, dict[str, Any]] = {}
    for path in args.json:
        report = json.loads(Path(path).read_text())
        reports[report["model"]] = report
    for item in args.shared:
        model, _, rest = item.partition(":")
        k, _, rate = rest.partition("=")
        reports[model].setdefault("shared", {})[k] = float(rate)
    rows, source = cost_table(reports, args.grids.split(","), args.epoch_overhead, args.recipe)
    device = ", ".join(sorted({r["machine"] for r in reports.values()}))
    print(
        f"# GPU-hours on {device}; trial counts from {source}; {EPOCHS} epochs; epoch overhead "
        f"{args.epoch_overhead:.0%}; BFFHQ ({BFFHQ_SIZE[args.recipe]} px) FLOP-scaled from "
        "ResNet-18 at 32 px (upper bound, not measured)"
    )
    print(f"{'grid':<24} {'mode':<36} {'GPU-h':>8} {'BFFHQ':>8}")
    for row in rows:
        mark = "" if row["complete"] else "  (a model was not measured)"
        print(
            f"{row['grid']:<24} {row['mode']:<36} {row['gpu_hours']:8.2f} "
            f"{row['bffhq_gpu_hours']:8.2f}{mark}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
