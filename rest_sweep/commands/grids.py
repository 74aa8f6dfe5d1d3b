"""``rest-sweep grids``: the registered grids with their trial counts, or one grid in full."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EPILOG = """examples:
  rest-sweep grids                                   # every registered grid and its trial count
  rest-sweep grids show paper-table3-cmnist          # trials, count per method, cost estimate
  rest-sweep grids show paper-table2-cifar10c --set recipe=rest-code --set epochs=50
  rest-sweep grids show paper-all --set checkpoint_every=10 --set final_checkpoint=weights
  rest-sweep grids show search_spaces/examples/density_sweep.yaml --json
  rest-sweep grids show paper-all --cluster 4x8      # + estimated wall time on 4 nodes x 8 GPUs
  rest-sweep grids show paper-all --cluster 4x8 --gpus-per-trial resnet18=0.5
  rest-sweep grids show paper-all --cluster 4x8 --mps  # nodes run the CUDA MPS daemon
  rest-sweep grids show paper-all --cluster 4x8 --fuse 8  # fused groups (measured figures)
A grid is a registered name or the path of a YAML grid file (see docs/sweeps.md). The estimates
(training FLOPs; checkpoint bytes written and kept under the trials' checkpoint_every,
keep_checkpoints and final_checkpoint; wall time on --cluster, simulated from the measured
per-model throughput in search_spaces/throughput.csv) are approximate."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "grids",
        help="list the grids, or show one grid's trials, counts and estimated cost",
        description="List the registered grids, or expand one grid (name or YAML file).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("grid", nargs="?", help="grid name or YAML file (for show)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="sets",
        help="set a TrialConfig field for every trial whose method takes it (repeatable); a key "
        "no method of the grid takes is an error; recipe=rest-code picks the recipe; method "
        "cannot be set",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--limit", type=int, default=50, help="trials printed by show (text; 0: none)")
    p.add_argument(
        "--no-cost",
        action="store_true",
        help="skip the FLOPs and checkpoint-volume estimates (faster)",
    )
    p.add_argument(
        "--cluster",
        metavar="NODESxGPUS",
        help="show: estimate the makespan on NODES nodes of GPUS GPUs each (e.g. 4x8; 8 CPUs "
        "per GPU), simulating Ray placing the trials with their GPU shares",
    )
    p.add_argument(
        "--gpus-per-trial",
        metavar="SHARE|MODEL=SHARE,...",
        help="with --cluster: GPU share per trial, as for run (default: each model's share)",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        default=1.0,
        help="with --cluster: CPUs per trial, as for run (default 1)",
    )
    p.add_argument(
        "--mps",
        action="store_true",
        help="with --cluster: the nodes run the CUDA MPS daemon (measured aggregates with MPS "
        "where the table has them; docs/cluster.md)",
    )
    p.add_argument(
        "--fuse",
        type=int,
        default=1,
        metavar="K",
        help="with --cluster: plan fused groups of up to K same-shape trials, as run --fuse K "
        "(needs measured fused figures in the throughput table; default 1: every trial alone)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trainables.errors import UserError

    if args.action == "list":
        if args.grid:
            raise UserError(f"grids {args.grid}: use `rest-sweep grids show {args.grid}`")
        return _list(args)
    if not args.grid:
        raise UserError("grids show: a grid name or YAML file is required")
    if args.limit < 0:  # checked before the grid is expanded
        raise UserError(f"--limit: {args.limit} is not allowed; allowed: an integer >= 0")
    return _show(args)


def _list(args: argparse.Namespace) -> int:
    import search_spaces

    rows = []
    for name in search_spaces.GRIDS:
        grid = search_spaces.GRIDS.get(name)
        expansion = search_spaces.expand(grid, search_spaces.parse_overrides(args.sets))
        rows.append(
            {
                "name": name,
                "count": expansion.count,
                "pending": len(expansion.pending),
                "description": grid.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'grid':<{width}}  trials  pending  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['count']:>6}  {r['pending']:>7}  {r['description']}")
    return 0


def _trial_row(cfg: Any, set_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The axes a reader looks for, then every value the grid or a ``--set`` gives the trial
    (``set_keys``; shown even where it equals the field default, e.g. an SDD grid's weight
    decay), then every field that differs from its default."""
    from search_spaces.grid import takes

    main = ("dataset", "ratio", "method", "density", "seed", "epochs", "recipe")
    row = {"hash": cfg.trial_hash, "name": cfg.short_name()}
    row.update({k: getattr(cfg, k) for k in main})
    row.update({k: getattr(cfg, k) for k in set_keys if takes(cfg.method, k)})
    row.update(cfg.identity())
    return row


def _set_keys(grid: Any, overrides: dict[str, Any]) -> tuple[str, ...]:
    """Every key a block of ``grid`` (axis or fixed value) or a ``--set`` gives a value."""
    keys = [k for block in grid.blocks for k, _ in (*block.axes, *block.fixed)]
    return tuple(dict.fromkeys(k for k in [*keys, *overrides] if k not in ("method", "recipe")))


def _cluster(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """``--cluster`` and the shares, parsed and checked as ``run`` does (before the grid is
    expanded), so a comparison uses exactly what a launch would get; None without it."""
    from trainables.errors import UserError

    if args.cluster is None:
        for flag, given in (
            ("--gpus-per-trial", args.gpus_per_trial is not None),
            ("--mps", args.mps),
            ("--fuse", args.fuse != 1),
        ):
            if given:
                raise UserError(f"{flag}: only with --cluster NODESxGPUS in grids show")
        return None
    from rest_sweep.launch_settings import LaunchSettings, parse_gpu_shares
    from search_spaces.makespan import Cluster

    cluster = Cluster.parse(args.cluster)
    shares = parse_gpu_shares(args.gpus_per_trial)
    LaunchSettings(
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=shares, fuse=args.fuse
    ).validate()
    return cluster, shares


def _makespan(
    args: argparse.Namespace, checked: tuple[Any, Any] | None, trials: list[Any]
) -> dict[str, Any] | None:
    """The simulated wall time on ``--cluster`` (None without it; ``checked``: what
    :func:`_cluster` returned)."""
    if checked is None:
        return None
    from search_spaces.makespan import estimate_makespan, shipped_table

    cluster, shares = checked
    table = shipped_table().with_mps() if args.mps else shipped_table()
    result = estimate_makespan(trials, cluster, shares, args.cpus_per_trial, table, args.fuse)
    return {
        "cluster": {
            "nodes": cluster.nodes,
            "gpus_per_node": cluster.gpus,
            "cpus_per_node": cluster.cpus,
        },
        "gpus_per_trial": shares,
        "cpus_per_trial": args.cpus_per_trial,
        "mps": args.mps,
        "fuse": args.fuse,
        **result.to_dict(),
    }


def _makespan_line(doc: dict[str, Any]) -> str:
    from search_spaces.makespan import format_duration

    c = doc["cluster"]
    per_model = ", ".join(f"{m} {n}" for m, n in doc["trials_per_model"].items())
    used = doc["gpu_utilisation"]
    fused = f" in fused groups of up to {doc['fuse']}" if doc["fuse"] > 1 else ""
    line = (
        f"estimated makespan on {c['nodes']}x{c['gpus_per_node']} GPUs"
        f"{' with CUDA MPS' if doc['mps'] else ''}{fused}: "
        f"{format_duration(doc['seconds'])} ({doc['hours']:.2f} h; GPUs "
        f"{'-' if used is None else f'{used:.0%}'} allocated; trials: {per_model}); "
    )
    return line + "; ".join(doc["notes"])


def _show(args: argparse.Namespace) -> int:
    import search_spaces
    from search_spaces.cost import estimate
    from trainables.checkpoint_volume import estimate_volume

    cluster = _cluster(args)  # the flags first: one line before any work
    grid = search_spaces.resolve(args.grid, check=False)  # expanded (and checked) once, below
    overrides = search_spaces.parse_overrides(args.sets)
    expansion = search_spaces.expand_grid(args.grid, overrides)
    makespan = _makespan(args, cluster, expansion.trials)
    cost = None if args.no_cost else estimate(expansion.trials).to_dict()
    volume = None if args.no_cost else estimate_volume(expansion.trials)
    for note in expansion.set_notes():  # keys that skipped some trials (stderr with --json)
        print(note, file=sys.stderr if args.json else sys.stdout)
    keys = _set_keys(grid, overrides)
    doc: dict[str, Any] = {
        "name": grid.name,
        "description": grid.description,
        "source": grid.source,
        "recipe": expansion.recipe,
        "count": expansion.count,
        "per_method": expansion.per_method(),
        "trials": [_trial_row(t, keys) for t in expansion.trials],
        "pending": [{"method": p.method, "name": p.label(), **p.values} for p in expansion.pending],
        "cost": cost,
        "checkpoint_volume": volume.to_dict() if volume is not None else None,
        "makespan": makespan,
    }
    if args.json:
        print(json.dumps(doc, indent=1, default=str))
        return 0
    print(f"{grid.name}: {grid.description}")
    print(
        f"recipe {expansion.recipe}; {expansion.count} trials; per method: "
        + ", ".join(f"{m} {n}" for m, n in doc["per_method"].items())
    )
    if expansion.pending:
        per = expansion.pending_per_method()
        print(
            f"pending (method not registered yet, not runnable): {len(expansion.pending)} rows: "
            + ", ".join(f"{m} {n}" for m, n in per.items())
        )
    if cost:
        print(
            f"estimated training compute: {cost['train_flops']:.3g} FLOPs "
            f"(dense equivalent {cost['dense_train_flops']:.3g}); {cost['assumption']}"
        )
    if volume is not None and volume.trials:
        print(volume.summary_line())
    if makespan is not None:
        print(_makespan_line(makespan))
    shown = expansion.trials[: args.limit]
    for t in shown:
        print(f"  {t.trial_hash}  {t.short_name()}  epochs {t.epochs}")
    if len(expansion.trials) > len(shown):
        print(f"  ... {len(expansion.trials) - len(shown)} more (--limit N, or --json)")
    for p in expansion.pending[: args.limit]:
        print(f"  pending           {p.label()}")
    return 0
