"""Reproduce a paper grid on one machine without Ray, then write its result folder.

``run``: plan the grids (names or YAML files, in priority order) into one experiment and train
the unfinished trials with K worker processes sharing the device (``rest_sweep.local``), until
done or until ``--deadline`` seconds, after which nothing new starts. Running it again trains
only what is unfinished. The experiment folder is the one ``rest-sweep run`` writes.

``summarize``: ``rest-sweep analyze`` (Parquet, tables, PNG figures) on that experiment, plus
``tables.md`` (the paper's Table 3 layout, and REST - RigL per density with its seed spread)
and ``density_curves.png`` in ``--out``.

    python benchmarks/reproduce.py run --grid results/table3-cmnist/grids/core.yaml \\
        --data-root data --storage runs --name table3-cmnist --workers 8 --device cuda
    python benchmarks/reproduce.py summarize --storage runs --name table3-cmnist \\
        --out results/table3-cmnist
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

METRICS = {"unbiased": "sel_test_unbiased_acc", "conflicting": "sel_test_acc_conflicting"}


def run(args: argparse.Namespace) -> int:
    from rest_sweep.local import run_local

    started = time.time()
    result = run_local(
        args.grid,
        args.data_root,
        args.storage,
        args.name,
        overrides=args.set,
        workers=args.workers,
        device=args.device,
        deadline_s=args.deadline,
    )
    timing = {
        "wall_s": time.time() - started,
        "trained": result.launched,
        "counts": result.counts,
        "outcome": result.outcome,
        "workers": args.workers,
        "device": args.device,
    }
    print(json.dumps(timing))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(timing, indent=1) + "\n")
    return 0 if result.outcome in ("completed", "nothing to run", "deadline") else 1


def summarize(args: argparse.Namespace) -> int:
    import shutil

    import pandas as pd

    from analysis.api import analyze

    out = Path(args.out)
    result = analyze(args.storage, args.name, str(out), png=not args.no_png)
    trials = pd.read_parquet(out / "trials.parquet")
    table3 = (
        (out / "tables" / "table3.md").read_text()
        if (out / "tables" / "table3.md").exists()
        else ""
    )
    text = [f"# {args.name}\n", difference_table(trials), "\n", dense_table(trials), "\n", table3]
    (out / "tables.md").write_text("\n".join(text))
    pngs = sorted((out / "figures").glob("density_*.png"))
    for png in pngs:
        target = out / ("density_curves.png" if png == pngs[0] else f"{png.stem}.png")
        shutil.copyfile(png, target)
    print(f"wrote {out / 'tables.md'}; figures: {', '.join(p.name for p in pngs) or 'none'}")
    if result.png_note:
        print(result.png_note)
    return 0


def _spread(values: list[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "—"
    mean = sum(values) / len(values)
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        if len(values) > 1
        else 0.0
    )
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def difference_table(trials) -> str:
    """REST and RigL per (recipe, density): mean ± std over seeds of the selected epoch's test
    accuracies, and the seed-paired difference REST - RigL (percentage points)."""
    done = trials[trials["status"] == "finished"]
    sparse = done[done["cfg_method"].isin(["rest", "rigl"])]
    lines = [
        "## REST vs RigL per density (test accuracy at the valid-selected epoch, %, mean ± std over seeds)\n",
        "| dataset | ratio | epochs | recipe | density | seeds | RigL unbiased | REST unbiased "
        "| REST − RigL unbiased | RigL conflicting | REST conflicting | REST − RigL conflicting |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = ["cfg_dataset", "cfg_ratio", "cfg_epochs", "cfg_recipe", "cfg_density"]
    for (dataset, ratio, epochs, recipe, density), cell in sparse.groupby(keys):
        by = {m: cell[cell["cfg_method"] == m].set_index("cfg_seed") for m in ("rigl", "rest")}
        seeds = sorted(set(by["rigl"].index) & set(by["rest"].index))
        row = [dataset, f"{ratio:g}", str(epochs), recipe, f"{density:g}", str(len(seeds))]
        for metric in ("unbiased", "conflicting"):
            column = METRICS[metric]
            rigl = [float(by["rigl"].loc[s, column]) for s in seeds]
            rest = [float(by["rest"].loc[s, column]) for s in seeds]
            row += [
                _spread(rigl),
                _spread(rest),
                _spread([b - a for a, b in zip(rigl, rest, strict=True)]),
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def dense_table(trials) -> str:
    done = trials[trials["status"] == "finished"]
    dense = done[done["cfg_method"].isin(["erm", "erm_rw"])]
    lines = [
        "## Dense references (test accuracy at the valid-selected epoch, %)\n",
        "| dataset | ratio | epochs | recipe | method | seeds | unbiased | conflicting |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = ["cfg_dataset", "cfg_ratio", "cfg_epochs", "cfg_recipe", "cfg_method"]
    for (dataset, ratio, epochs, recipe, method), cell in dense.groupby(keys):
        lines.append(
            f"| {dataset} | {ratio:g} | {epochs} | {recipe} | {method} | {len(cell)} "
            f"| {_spread(list(cell[METRICS['unbiased']]))} "
            f"| {_spread(list(cell[METRICS['conflicting']]))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("run", help="train the grids' unfinished trials without Ray")
    p.add_argument("--grid", action="append", required=True, help="grid name or YAML (repeat)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data-root", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--workers", type=int, default=1, help="trials sharing the device at once")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--deadline", type=float, default=None, help="seconds; then start nothing new")
    p.add_argument("--json-out", default="", help="write wall time and counts here")
    p.set_defaults(func=run)
    s = commands.add_parser("summarize", help="analyze + tables.md + density_curves.png")
    s.add_argument("--storage", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--no-png", action="store_true")
    s.set_defaults(func=summarize)
    args = parser.parse_args(argv)
    from trainables.errors import UserError

    try:
        return args.func(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
