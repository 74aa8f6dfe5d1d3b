"""``rest-sweep resume``: run every planned, unfinished trial of an experiment again."""

from __future__ import annotations

import argparse

from rest_sweep.commands.run import add_launch_arguments, print_result

EPILOG = """examples:
  rest-sweep resume --storage results --name demo
  rest-sweep resume --storage /nfs/sweeps --name t3-cmnist --address auto
  rest-sweep resume --storage results --name t3-cmnist --data-root /new/data/path
After a driver crash, Ctrl-C, SIGTERM or a lost node: unfinished and errored trials run again
from their newest checkpoint on storage; finished trials are never rerun. Resources, retries
and scheduler default to those of the last launch."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "resume",
        help="continue an interrupted experiment (unfinished and errored trials)",
        description="Run every planned trial of experiment NAME that has not finished.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-root", default=None, help="default: the data root of the last launch")
    add_launch_arguments(p, resume=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rest_sweep.service import resume

    result = resume(
        args.storage, args.name, data_root=args.data_root, address=args.address,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent, max_failures=args.max_failures,
        num_cpus=args.num_cpus, num_gpus=args.num_gpus, reuse_actors=args.reuse_actors,
        quiet=args.quiet, pack_size=args.pack_size,
    )  # fmt: skip
    print_result(result)
    return result.exit_code
