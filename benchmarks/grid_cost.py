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

In this mode (JSON files of ``trainer_throughput.py``, which has no BFFHQ-sized run) BFFHQ's
128 px (rest-code) or 224 px (paper/DisEnt) ResNet-18 is the 32 px cost scaled by the FLOP
ratio (input area), listed separately. The shipped table below has 224 px measured.

    python benchmarks/grid_cost.py simple_cnn.json resnet18.json

With no JSON file it reads the shipped table of measured figures instead
(``search_spaces/throughput.csv``, the one the ``grids show --cluster`` simulation uses): per
grid, GPU-hours with K trials per GPU for each measured K, including every trial's start-up
(``startup_s / K`` GPU-seconds) and the table's evaluation overhead, next to the reference
pipeline's (incomplete where a size has no valid reference figure: it is never FLOP-scaled),
and with CUDA MPS where the table has MPS rows; trials whose figures are FLOP-scaled (a size
not measured) are summed in their own column, marked estimated. ``--from-gpu-json gpu.json``
puts the GPU script's figures in place of the table's first; ``--write-table`` then saves them
into the shipped table and records ``paper_all_h100_hours`` in the gpu.json. Where the table has
fused-group figures (issue 25), each measured way of running them is a mode too: fused groups
of K in one process per GPU, and P such processes under MPS (trials that cannot fuse run plain
at their default share).

    python benchmarks/grid_cost.py --grids paper-table3-cmnist,paper-all
    python benchmarks/grid_cost.py --from-gpu-json benchmarks/results/gpu.json --write-table
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


PAPER_GRIDS = (
    "paper-table2-cmnist,paper-table2-cifar10c,paper-table2-bffhq,paper-table3-cmnist,"
    "paper-table3-cifar10c,paper-table3-bffhq,paper-fig3,paper-all"
)


def table_cost(table: Any, grids: list[str]) -> list[dict[str, Any]]:
    """One row per (grid, way of running): GPU-hours of its measured trials and, apart, of its
    trials with estimated (FLOP-scaled) figures, from the shipped throughput table. Ways: the
    REST pipeline, K trial processes per GPU, and (where the table has MPS rows) the same K
    with the CUDA MPS daemon up."""
    from search_spaces import GRIDS, expand
    from search_spaces.makespan import trial_work

    ks = sorted({k for t in table.rows.values() for k in t.aggregate})
    modes: list[tuple[str, Any, int | None]] = [("REST pipeline (reference)", table, None)]
    modes += [(f"{k} trials/GPU", table, k) for k in ks]
    if table.mps:
        with_mps = table.with_mps()
        ks_mps = sorted({k for t in table.mps.values() for k in t.aggregate if k > 1})
        modes += [(f"{k} trials/GPU + MPS", with_mps, k) for k in ks_mps]
    rows = []
    for grid in grids:
        configs = expand(GRIDS.get(grid)).trials
        trials = [trial_work(cfg) for cfg in configs]
        for label, source, k in modes:
            measured = estimated = 0.0
            complete = True
            for model, px, width, samples in trials:
                figures = source.lookup(model, px, width)
                if k is None:
                    # No FLOP-scaling: the pipeline is CPU-bound (PNG decoding) at 32 px and
                    # GPU-bound at 224 px, so a 32-px rate says nothing about 224 px.
                    rate = table.reference.get((model, px, width))
                    if rate is None:
                        complete = False
                        continue
                    seconds = samples * (1 + figures.epoch_overhead) / rate
                else:
                    seconds = figures.startup_s / k + samples * (1 + figures.epoch_overhead) / (
                        figures.per_trial(k) * k
                    )
                if figures.basis == "measured":
                    measured += seconds / 3600
                else:
                    estimated += seconds / 3600
            rows.append(cost_row(grid, label, len(trials), measured, estimated, complete))
        for label, k, processes in fused_modes(table):
            measured, estimated = fused_cost(table, configs, k, processes)
            rows.append(cost_row(grid, label, len(trials), measured, estimated, True))
    return rows


def cost_row(
    grid: str, mode: str, trials: int, measured: float, estimated: float, complete: bool
) -> dict[str, Any]:
    """One row of :func:`table_cost`: a grid's GPU-hours in one way of running it."""
    return {
        "grid": grid,
        "mode": mode,
        "trials": trials,
        "gpu_hours": measured,
        "estimated_gpu_hours": estimated,
        "complete": complete,
    }


def fused_modes(table: Any) -> list[tuple[str, int, int]]:
    """(label, K, P) of each way of running fused groups the table measured: one process of K
    per GPU, and P such processes under CUDA MPS."""
    ks = sorted({k for g in table.fused.values() for k in g.single if k > 1})
    runs = sorted({pk for g in table.fused.values() for pk in g.mps})
    modes = [(f"fused {k}, 1 process/GPU", k, 1) for k in ks]
    return modes + [(f"fused {k} x {p} processes + MPS", k, p) for p, k in runs]


def fused_cost(table: Any, configs: list[Any], k: int, processes: int) -> tuple[float, float]:
    """GPU-hours (measured, estimated) of ``configs`` run as ``--fuse k`` groups, ``processes``
    per GPU (under MPS when more than one). A group's GPU-seconds: its start-up (a plain
    trial's plus the group's extra) over ``processes``, and its members' work at the fused
    aggregate. Trials that do not fuse, or whose size has no fused figure, run plain at the
    catalogue's default share (1/share trials per GPU, with MPS when ``processes`` > 1)."""
    from search_spaces.makespan import trial_work
    from trainables.fusion import fuse_groups
    from trainables.models import MODELS

    mps = processes > 1
    plain_table = table.with_mps() if mps else table
    measured = estimated = 0.0
    for unit in fuse_groups(list(configs), k):
        model, px, width, _ = trial_work(unit[0])
        figures = plain_table.lookup(model, px, width)
        groups = table.fused.get((model, px, width)) if len(unit) > 1 else None
        work = sum(trial_work(cfg)[3] for cfg in unit) * (1 + figures.epoch_overhead)
        if groups is not None:
            startup = figures.startup_s + groups.startup(len(unit))
            seconds = startup / processes + work / groups.aggregate(len(unit), processes, mps)
        else:
            per_gpu = max(1, round(1 / MODELS.get(model).gpu_share))
            seconds = len(unit) * figures.startup_s / per_gpu + work / (
                figures.per_trial(per_gpu) * per_gpu
            )
        if figures.basis == "measured":
            measured += seconds / 3600
        else:
            estimated += seconds / 3600
    return measured, estimated


def record_paper_all(path: Path, table: Any) -> None:
    """Write ``paper_all_h100_hours`` into the gpu.json the table was updated from: measured
    trials of ``paper-all`` at the catalogue's default share (K = 1/share trials per GPU), and
    ``paper_all_h100_hours_mps`` with the MPS aggregates. GPU-hours of the GPU it was measured
    on (the field keeps the issue's name; an H200 has an H100's compute and more memory
    bandwidth, so an H100 takes somewhat longer on these launch- and memory-bound loops)."""
    from trainables.models import MODELS

    k = default = max(round(1 / MODELS.get(m).gpu_share) for m in ("simple_cnn", "resnet18"))
    rows = {r["mode"]: r for r in table_cost(table, ["paper-all"])}
    measured = sorted(int(m.split()[0]) for m in rows if m.endswith(" trials/GPU"))
    if k not in measured:  # the table never had K = 1/share: the largest K below it
        k = max([n for n in measured if n < k] or measured[:1])
        print(f"paper-all: no figure at the default share; recorded at {k} trials per GPU")
    doc = json.loads(path.read_text())
    plain, mps = rows[f"{k} trials/GPU"], rows.get(f"{k} trials/GPU + MPS")
    doc["paper_all_h100_hours"] = round(plain["gpu_hours"] + plain["estimated_gpu_hours"], 2)
    doc["paper_all_h100_hours_mps"] = mps and round(
        mps["gpu_hours"] + mps["estimated_gpu_hours"], 2
    )
    fused = [r for m, r in rows.items() if m.startswith("fused ")]
    best = min(fused, key=lambda r: r["gpu_hours"] + r["estimated_gpu_hours"], default=None)
    doc["paper_all_h100_hours_fused"] = best and round(
        best["gpu_hours"] + best["estimated_gpu_hours"], 2
    )
    doc["paper_all_fused_mode"] = best and best["mode"]
    share = "the default share" if k == default else f"the default share is 1/{default}"
    doc["paper_all_basis"] = (
        f"python benchmarks/grid_cost.py --from-gpu-json {path} --write-table: paper-all "
        f"(1,215 trials, BFFHQ included) at {k} trials per GPU ({share}), without and with "
        f"CUDA MPS; _fused: the cheapest measured fused mode (trials that cannot fuse at the "
        f"default share); {doc.get('gpu') or 'the measuring GPU'}-hours"
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    print(f"wrote paper_all_h100_hours into {path}")


def main_table(args: argparse.Namespace) -> int:
    """GPU-hours per grid from the shipped table (and a gpu.json, when given)."""
    from search_spaces.makespan import ThroughputTable

    table = ThroughputTable.load(args.table)
    if args.from_gpu_json:
        table = table.with_gpu_json(json.loads(Path(args.from_gpu_json).read_text()))
        if args.write_table:
            import datetime

            today = datetime.date.today().isoformat()
            table.write(args.table, source=str(args.from_gpu_json), date=today)
            print(f"wrote {args.table}")
    elif args.write_table:
        raise SystemExit("--write-table needs --from-gpu-json")
    rows = table_cost(table, args.grids.split(","))
    if args.from_gpu_json and args.write_table:
        record_paper_all(Path(args.from_gpu_json), table)
    print(
        f"# GPU-hours on {table.gpus()} from {Path(args.table).name}"
        f"{' + ' + str(args.from_gpu_json) if args.from_gpu_json else ''}; epochs, train-set "
        "sizes and trials from search_spaces; start-up per trial and evaluation overhead "
        "included (reference: overhead only); 'estimated' = trials at an unmeasured size, "
        "FLOP-scaled from the model's nearest measured size"
    )
    print(f"{'grid':<24} {'trials':>6} {'mode':<26} {'GPU-h':>8} {'estimated':>10}")
    for row in rows:
        mark = "" if row["complete"] else "  (a model has no reference figure)"
        print(
            f"{row['grid']:<24} {row['trials']:>6} {row['mode']:<26} {row['gpu_hours']:8.2f} "
            f"{row['estimated_gpu_hours']:10.2f}{mark}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "json",
        nargs="*",
        help="trainer_throughput --json-out files (one per model); none: the shipped table",
    )
    p.add_argument("--table", default=None, help="throughput table (default: the shipped one)")
    p.add_argument("--from-gpu-json", help="the GPU script's gpu.json, in place of the table's")
    p.add_argument(
        "--write-table", action="store_true", help="save --from-gpu-json's figures to --table"
    )
    p.add_argument("--grids", default=None, help="comma-separated grids (default: the paper's)")
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
    if not args.json:
        from search_spaces.makespan import TABLE

        args.table = args.table or TABLE
        args.grids = args.grids or PAPER_GRIDS
        return main_table(args)
    args.grids = args.grids or "paper-table3-cmnist,paper-table3-cifar10c,paper-all"
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
