"""``rest-sweep run``: plan a grid in an experiment and run its unfinished trials on Ray."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from rest_sweep.launch_settings import add_flags, given

if TYPE_CHECKING:
    from rest_sweep.service import SweepResult

EPILOG = """examples:
  rest-sweep run --grid demo --data-root data --storage results --name demo
  rest-sweep run --grid paper-table3-cmnist --data-root /nfs/data --storage /nfs/sweeps \\
      --name t3-cmnist --address auto --gpus-per-trial 0.25 --cpus-per-trial 2
  rest-sweep run --grid paper-all --data-root /nfs/data --storage /nfs/sweeps --name all \\
      --address auto --gpus-per-trial simple_cnn=0.125,resnet18=0.5 --callback mlflow
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
ledger: `rest-sweep resume` reuses them. --json prints the result as one JSON object on stdout
(the progress lines go to stderr)."""

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
    """The experiment, the launch settings (one flag per ``LaunchSettings`` field; resume
    defaults each to the last launch's) and the console options of ``run``/``resume``."""
    p.add_argument("--storage", required=True, help="local folder or pyarrow URI (s3://...)")
    p.add_argument("--name", required=True, help="experiment name (a folder under --storage)")
    add_flags(p, resume=resume)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON object on stdout (progress lines go to stderr)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="take over from a launch believed live (its driver is gone but looks alive, e.g. "
        "a fresh heartbeat from a lost host); prints a warning",
    )


def launch_options(args: argparse.Namespace) -> dict[str, object]:
    """The launch settings given on the command line and the console options, as keyword
    arguments of ``rest_sweep.service.run``/``resume``."""
    return {**given(args), "quiet": args.quiet, "force": args.force}


def run(args: argparse.Namespace) -> int:
    from rest_sweep.service import run as run_sweep

    return report(
        args,
        lambda: run_sweep(
            args.grid,
            args.data_root,
            args.storage,
            args.name,
            overrides=args.sets,
            **launch_options(args),
        ),
    )


def report(args: argparse.Namespace, launch: Callable[[], SweepResult]) -> int:
    """Run ``launch`` and print its result: the summary line, or with ``--json`` one JSON
    object that is all of stdout (every other line the launch prints goes to stderr)."""
    if not args.json:
        result = launch()
        print_result(result)
        return result.exit_code
    with contextlib.redirect_stdout(sys.stderr):
        result = launch()
    print(json.dumps(result_dict(result)), flush=True)
    return result.exit_code


def result_dict(result: SweepResult) -> dict[str, object]:
    """The ``--json`` result: what the summary line says, with the exit code."""
    return {
        "name": result.name,
        "storage": result.storage,
        "launch_id": result.launch_id,
        "outcome": result.outcome,
        "planned": result.planned,
        "launched": result.launched,
        "counts": dict(result.counts),
        "exit_code": result.exit_code,
    }


def print_result(result: SweepResult) -> None:
    c = result.counts
    print(
        f"{result.name}: {result.outcome}; {c.get('finished', 0)}/{c.get('trials', 0)} "
        f"finished, {c.get('errored', 0)} errored, {c.get('stopped', 0)} stopped early "
        f"(see `rest-sweep status --storage {result.storage} --name {result.name}`)"
    )
