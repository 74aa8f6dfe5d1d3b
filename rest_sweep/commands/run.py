"""``rest-sweep run``: plan a grid in an experiment and run its unfinished trials on Ray."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  rest-sweep run --grid demo --data-root data --storage results --name demo
  rest-sweep run --grid paper-table3-cmnist --data-root /nfs/data --storage /nfs/sweeps \\
      --name t3-cmnist --address auto --gpus-per-trial 0.25 --cpus-per-trial 2
  rest-sweep run --grid paper-table2-cifar10c --set recipe=rest-code --data-root data \\
      --storage s3://bucket/sweeps --name t2-code --max-failures 3
  rest-sweep run --grid my_grid.yaml --data-root data --storage results --name explore \\
      --scheduler asha --metric valid_worst_group_acc
  rest-sweep run --grid paper-table3-cmnist --data-root data --storage results --name t3 \
      --gpus-per-trial 1 --pack-size 32     # 32 trials per process, one process per GPU
Running the same command again continues the experiment: finished trials are never rerun,
interrupted ones continue from their newest checkpoint, and a grid that gained trials (more
seeds or densities) runs only the new ones. Every node reads --data-root at the same path."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run (or continue) a grid as an experiment on Ray Tune",
        description="Plan GRID in experiment NAME and run its trials that are not finished.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--grid", required=True, help="registered grid name or YAML grid file")
    p.add_argument("--data-root", required=True, help="folder holding <dataset>/<pct>/ bundles")
    add_launch_arguments(p, resume=False)
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
        help="set a TrialConfig field for every trial (repeatable), e.g. recipe=rest-code",
    )  # fmt: skip
    p.add_argument("--scheduler", default="fifo", choices=("fifo", "asha"),
                   help="fifo runs every trial to the end; asha stops weak trials early "
                   "(order-dependent: exploration only)")  # fmt: skip
    p.add_argument("--metric", default="valid_worst_group_acc",
                   help="metric ASHA maximises (any per-epoch metric)")  # fmt: skip
    p.set_defaults(func=run)


def add_launch_arguments(p: argparse.ArgumentParser, *, resume: bool) -> None:
    """Options shared by run and resume (resume defaults to the previous launch's)."""
    same = " (default: as the last launch)" if resume else ""
    p.add_argument("--storage", required=True, help="local folder or pyarrow URI (s3://...)")
    p.add_argument("--name", required=True, help="experiment name (a folder under --storage)")
    p.add_argument("--address", default=None,
                   help="join a Ray cluster (auto or HOST:PORT); default: embedded Ray")  # fmt: skip
    p.add_argument("--cpus-per-trial", type=float, default=None if resume else 1.0,
                   help=f"CPUs reserved per trial{same or ' (default 1)'}")  # fmt: skip
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None if resume else 0.0,
        help=f"GPUs per trial; 0.25 packs 4 trials per GPU{same or ' (default 0)'}",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="at most N trials at once (default: as many as resources allow)",
    )
    p.add_argument("--max-failures", type=int, default=None if resume else 2,
                   help=f"retries per failed trial, each from its newest checkpoint; -1 forever"
                   f"{same or ' (default 2)'}")  # fmt: skip
    p.add_argument(
        "--pack-size", default=None if resume else "auto", metavar="auto|N",
        help="trials trained together in one process (one vmapped step; see docs/performance.md);"
        " auto: the measured default per model on GPU (32), 1 on CPU; with N > 1, "
        "--cpus/--gpus-per-trial are per packed process" + (same or " (default auto)"),
    )  # fmt: skip
    p.add_argument("--num-cpus", type=int, default=None, help="embedded Ray: CPUs to use")
    p.add_argument("--num-gpus", type=int, default=None, help="embedded Ray: GPUs to use")
    p.add_argument("--reuse-actors", action="store_true",
                   help="reuse worker processes between trials (~1-9 s less per trial; for "
                   "CPU-only sweeps of small trials, not for GPU training)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from rest_sweep.service import run as run_sweep

    result = run_sweep(
        args.grid, args.data_root, args.storage, args.name, overrides=args.sets,
        address=args.address, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
        scheduler=args.scheduler, metric=args.metric, max_failures=args.max_failures,
        num_cpus=args.num_cpus, num_gpus=args.num_gpus, reuse_actors=args.reuse_actors,
        quiet=args.quiet, pack_size=args.pack_size,
    )  # fmt: skip
    print_result(result)
    return result.exit_code


def print_result(result) -> None:
    c = result.counts
    print(
        f"{result.name}: {result.outcome}; {c.get('finished', 0)}/{c.get('trials', 0)} "
        f"finished, {c.get('errored', 0)} errored, {c.get('stopped', 0)} stopped early "
        f"(see `rest-sweep status --storage {result.storage} --name {result.name}`)"
    )
