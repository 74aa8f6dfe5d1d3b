"""Reproduce a paper grid on one machine without Ray, then write its result folder.

``run``: plan the grids (names or YAML files, in priority order) into one experiment and train
the unfinished trials with K worker processes sharing the device (``rest_sweep.local``), until
done or until ``--deadline`` seconds, after which nothing new starts. Running it again trains
only what is unfinished. The experiment folder is the one ``rest-sweep run`` writes.

``summarize``: ``rest-sweep analyze`` (Parquet, tables, PNG figures) on that experiment, plus
``tables.md`` in ``--out``: the paper's cells beside ours with a verdict each, REST - RigL and
REST - (ERM + RW) per density with their seed spread, the dense references, the paper's Table 2
and Table 3 layouts, and for pruning runs the levels; and ``density_curves.png`` (sparse
training) or ``double_descent.png`` (pruning levels).

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
        fuse=args.fuse,
    )
    timing = {
        "wall_s": time.time() - started,
        "trained": result.launched,
        "counts": result.counts,
        "outcome": result.outcome,
        "workers": args.workers,
        "fuse": args.fuse,
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
    methods = set(trials["cfg_method"])
    tables = out / "tables"
    text = [f"# {args.name}\n", paper_table(trials)]
    if "rigl" in methods and "rest" in methods:
        text.append(
            paired_table(trials, "rigl", "RigL", "REST vs RigL per density", sparse_base=True)
        )
    if "erm_rw" in methods and "rest" in methods:
        heading = "REST vs dense ERM + reweighting"
        text.append(paired_table(trials, "erm_rw", "ERM + RW", heading, sparse_base=False))
    if methods & {"erm", "erm_rw"}:
        text.append(dense_table(trials))
    if methods & {"disent", "mrm"} and (tables / "table2.md").exists():
        text.append((tables / "table2.md").read_text())
    if "rigl" in methods and (tables / "table3.md").exists():
        text.append((tables / "table3.md").read_text())
    if (out / "levels.parquet").exists():
        text.append(levels_table(pd.read_parquet(out / "levels.parquet")))
    (out / "tables.md").write_text("\n".join(t for t in text if t))
    copied = []
    if methods & {"rest", "rigl", "mrm"}:  # sparse training: accuracy against density
        pngs = sorted((out / "figures").glob("density_*.png"))
        for png in pngs:
            target = out / ("density_curves.png" if png == pngs[0] else f"{png.stem}.png")
            shutil.copyfile(png, target)
            copied.append(target.name)
    for png in sorted((out / "figures").glob("double_descent_*.png"))[:1]:  # pruning levels
        shutil.copyfile(png, out / "double_descent.png")
        copied.append("double_descent.png")
    print(f"wrote {out / 'tables.md'}; figures: {', '.join(copied) or 'none'}")
    if result.png_note:
        print(result.png_note)
    return 0


def verdict(mean: float | None, std: float | None, n: int, paper: float) -> str:
    """Where the paper's value lies against our seed spread (mean ± std, percent): ``within``,
    or ours ``above`` / ``below`` it; no verdict from fewer than 2 seeds."""
    if mean is None:
        return "pending"
    if n < 2 or std is None or math.isnan(std):
        return f"no spread ({n} seed)"
    if abs(mean - paper) <= std:
        return "within"
    return "above" if mean > paper else "below"


def paper_table(trials) -> str:
    """Every paper cell (Tables 2 and 3) this experiment has, ours beside it, with a verdict:
    whether the paper's value lies within our seed spread (mean ± std over seeds, the density
    chosen on validation), or ours is above or below it."""
    from analysis.cells import plain
    from analysis.paper import comparison

    table = comparison(plain(trials))
    if not table.rows:
        return ""
    lines = [
        "## Ours beside the paper (unbiased test accuracy, %, valid-selected epoch)\n",
        "| Table | Dataset | Ratio (%) | Method | Recipe | Paper | Ours (valid-chosen) "
        "| Ours (test-chosen) | Δ ours − paper | Verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.rows:
        label, dataset, ratio, method, recipe, paper_text, valid, test, delta = row
        paper = float(str(paper_text).split()[0])
        if not valid.n_planned:
            continue  # a paper cell this experiment does not plan (another table's method)
        if str(delta).startswith("not comparable"):
            judged = "not comparable"
        else:
            mean = valid.mean if valid.shown else None
            judged = verdict(mean, valid.std, valid.n_done, paper)
        cells = [label, dataset, ratio, method, recipe, paper_text, valid.text(), test.text()]
        lines.append("| " + " | ".join(str(c) for c in [*cells, delta, judged]) + " |")
    lines.append(
        "\n- Verdict: *within* when the paper's value lies within our mean ± std over seeds; "
        "*above* / *below*: ours is above / below the paper's value by more than that spread."
    )
    return "\n".join(lines) + "\n"


def levels_table(levels) -> str:
    """Sparse double descent: test accuracy and the memorised share of the noisy labels per
    pruning level and retraining policy (mean over seeds, %). Where accuracy falls after the
    best of the first half of the levels and rises again, the minimum and the best level after
    it are marked."""
    if levels.empty:
        return ""
    policies = sorted(levels["cfg_retrain"].dropna().unique())
    grouped = levels.groupby(["cfg_retrain", "level"])
    mean = grouped[["density", "test_acc", "memorised", "train_acc_noisy"]].mean()
    seeds = grouped["cfg_seed"].nunique()
    marks: dict[tuple[str, int], str] = {}
    for policy in policies:
        acc = mean.loc[policy, "test_acc"]
        if len(acc) < 3:
            continue
        peak = int(acc.loc[: acc.index[len(acc) // 2]].idxmax())  # the first descent's top
        low = int(acc.loc[peak:].idxmin())
        after = acc.loc[low:]
        if low == peak or after.max() <= acc.loc[low]:
            continue  # no descent followed by a rise (yet): nothing to mark
        marks[(policy, low)] = " (minimum)"
        marks[(policy, int(after.idxmax()))] = " (best after the minimum)"
    header = ["level", "density"]
    for policy in policies:
        header += [f"{policy} test acc", f"{policy} memorised", f"{policy} seeds"]
    lines = [
        "## Pruning levels (test accuracy at each level's last epoch, memorised share of the "
        "noisy training labels; %, mean over seeds)\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for level in sorted(levels["level"].unique()):
        row = [str(level), f"{levels[levels['level'] == level]['density'].mean():.4f}"]
        for policy in policies:
            if (policy, level) not in mean.index:
                row += ["—", "—", "0"]
                continue
            values = mean.loc[(policy, level)]
            memorised = values["memorised"]
            row += [
                f"{100 * values['test_acc']:.1f}{marks.get((policy, int(level)), '')}",
                "—" if math.isnan(memorised) else f"{100 * memorised:.1f}",
                str(int(seeds.loc[(policy, level)])),
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


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


def paired_table(trials, base: str, base_title: str, heading: str, *, sparse_base: bool) -> str:
    """REST against ``base`` per (dataset, ratio, epochs, recipe, density): mean ± std over
    seeds of the selected epoch's test accuracies, and the seed-paired difference REST − base
    (percentage points). ``sparse_base``: the base is paired at REST's density (RigL), else a
    dense base is paired with REST at every density (ERM + RW)."""
    done = trials[trials["status"] == "finished"]
    keys = ["cfg_dataset", "cfg_ratio", "cfg_epochs", "cfg_recipe"]
    base_keys = [*keys, "cfg_density"] if sparse_base else keys
    base_rows = done[done["cfg_method"] == base].set_index([*base_keys, "cfg_seed"])
    difference = f"REST − {base_title}" if " " not in base_title else f"REST − ({base_title})"
    lines = [
        f"## {heading} (test accuracy at the valid-selected epoch, %, mean ± std over seeds)\n",
        f"| dataset | ratio | epochs | recipe | density | seeds | {base_title} unbiased "
        f"| REST unbiased | {difference} unbiased | {base_title} conflicting "
        f"| REST conflicting | {difference} conflicting |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # A sparse base's cells without REST still get their (empty) row.
    cells = done[done["cfg_method"].isin(["rest", base] if sparse_base else ["rest"])]
    for (dataset, ratio, epochs, recipe, density), cell in cells.groupby([*keys, "cfg_density"]):
        ours_rows = cell[cell["cfg_method"] == "rest"].set_index("cfg_seed")
        at = (dataset, ratio, epochs, recipe, *((density,) if sparse_base else ()))
        seeds = sorted(s for s in ours_rows.index if (*at, s) in base_rows.index)
        row = [dataset, f"{ratio:g}", str(epochs), recipe, f"{density:g}", str(len(seeds))]
        for metric in ("unbiased", "conflicting"):
            column = METRICS[metric]
            theirs = [float(base_rows.loc[(*at, s), column]) for s in seeds]
            ours = [float(ours_rows.loc[s, column]) for s in seeds]
            row += [
                _spread(theirs),
                _spread(ours),
                _spread([b - a for a, b in zip(theirs, ours, strict=True)]),
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
    p.add_argument(
        "--fuse",
        type=int,
        default=1,
        help="train up to K same-shape trials as one fused group per worker (1: off; "
        "trainables/train/fused.py)",
    )
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
