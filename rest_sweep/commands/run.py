"""``rest-sweep run``: plan a grid in an experiment and run its unfinished trials on Ray."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rest_sweep.ledger import DEFAULT_METRIC, SCHEDULER_NAMES

if TYPE_CHECKING:
    from rest_sweep.service import SweepResult

EPILOG = """examples:
  rest-sweep run --grid demo --data-root data --storage results --name demo
  rest-sweep run --grid paper-table3-cmnist --data-root /nfs/data --storage /nfs/sweeps \\
      --name t3-cmnist --address auto --gpus-per-trial 0.25 --cpus-per-trial 2
  rest-sweep run --grid paper-table2-cifar10c --set recipe=rest-code --data-root data \\
      --storage s3://bucket/sweeps --name t2-code --max-failures 3
  rest-sweep run --grid my_grid.yaml --data-root data --storage results --name explore \\
      --scheduler asha --metric valid_worst_group_acc
Running the same command again continues the experiment: finished trials are never rerun,
interrupted ones continue from their newest checkpoint, and a grid that gained trials (more
seeds or densities) runs only the new ones. Every node reads --data-root at the same path.
--set KEY=VALUE applies to every trial whose method takes KEY (density: sparse methods only;
a line says how many trials it applied to); a key no method of the grid takes is an error, and
the method cannot be set (it is an axis of the grid). The launch's settings are kept in the
ledger: `rest-sweep resume` reuses them."""

SET_HELP = (
    "set a TrialConfig field for every trial whose method takes it (repeatable), e.g. "
    "epochs=2, density=0.05 (sparse methods only), recipe=rest-code; a key no method of the "
    "grid takes is an error; method cannot be set"
)


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
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="sets", help=SET_HELP
    )
    p.set_defaults(func=run)


def add_launch_arguments(p: argparse.ArgumentParser, *, resume: bool) -> None:
    """The launch settings (``LaunchSettings``); resume defaults each to the last launch's."""
    last = " (default: as the last launch)" if resume else ""

    def default(value: object, text: str) -> dict[str, object]:
        shown = "" if value is None else f" (default {value})"
        return {"default": None if resume else value, "help": text + (last or shown)}

    p.add_argument("--storage", required=True, help="local folder or pyarrow URI (s3://...)")
    p.add_argument("--name", required=True, help="experiment name (a folder under --storage)")
    p.add_argument(
        "--address",
        **default(None, "join a Ray cluster (auto or HOST:PORT); default: embedded Ray"),
    )
    p.add_argument("--cpus-per-trial", type=float, **default(1.0, "CPUs reserved per trial"))
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPUs per trial; 0.25 puts 4 trials on a GPU (default: the model's share from "
        "trainables.models.MODELS, 0.25 for simple_cnn and resnet18, when Ray has GPUs; else 0)"
        + last,
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="at most N trials at once (default: as many as resources allow)" + last,
    )
    p.add_argument(
        "--max-failures",
        type=int,
        **default(2, "retries per failed trial, each from its newest checkpoint; -1 forever"),
    )
    p.add_argument(
        "--scheduler",
        choices=SCHEDULER_NAMES,
        **default(
            "fifo",
            "fifo runs every trial to the end; asha stops weak trials early "
            "(order-dependent: exploration only)",
        ),
    )
    p.add_argument(
        "--metric",
        **default(DEFAULT_METRIC, "metric ASHA maximises"),
    )
    p.add_argument("--num-cpus", type=int, default=None, help="embedded Ray: CPUs to use" + last)
    p.add_argument("--num-gpus", type=int, default=None, help="embedded Ray: GPUs to use" + last)
    reuse_help = (
        "reuse worker processes between trials (~1-9 s less per trial; for CPU-only sweeps of "
        "small trials, not for GPU training)"
    )
    if resume:
        p.add_argument(
            "--reuse-actors",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=reuse_help + last,
        )
    else:
        p.add_argument("--reuse-actors", action="store_true", help=reuse_help)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--force",
        action="store_true",
        help="take over from a launch believed live (its driver is gone but looks alive, e.g. "
        "a fresh heartbeat from a lost host); prints a warning",
    )


def launch_options(args: argparse.Namespace) -> dict[str, object]:
    """The launch settings given on the command line, as keyword arguments of run/resume."""
    keys = (
        "address",
        "cpus_per_trial",
        "gpus_per_trial",
        "max_concurrent",
        "max_failures",
        "scheduler",
        "metric",
        "num_cpus",
        "num_gpus",
        "reuse_actors",
        "quiet",
        "force",
    )
    return {k: getattr(args, k) for k in keys}


def run(args: argparse.Namespace) -> int:
    from rest_sweep.service import run as run_sweep

    result = run_sweep(
        args.grid,
        args.data_root,
        args.storage,
        args.name,
        overrides=args.sets,
        **launch_options(args),
    )
    print_result(result)
    return result.exit_code


def print_result(result: SweepResult) -> None:
    c = result.counts
    print(
        f"{result.name}: {result.outcome}; {c.get('finished', 0)}/{c.get('trials', 0)} "
        f"finished, {c.get('errored', 0)} errored, {c.get('stopped', 0)} stopped early "
        f"(see `rest-sweep status --storage {result.storage} --name {result.name}`)"
    )
