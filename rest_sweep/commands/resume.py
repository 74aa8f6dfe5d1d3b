"""``rest-sweep resume``: run every planned, unfinished trial of an experiment again."""

from __future__ import annotations

import argparse

from rest_sweep.commands.run import add_launch_arguments, launch_options, report

EPILOG = """examples:
  rest-sweep resume --storage results --name demo
  rest-sweep resume --storage /nfs/sweeps --name t3-cmnist --address auto
  rest-sweep resume --storage results --name t3-cmnist --data-root /new/data/path
After a driver crash, Ctrl-C, SIGTERM or a lost node: unfinished and errored trials run again
from their newest checkpoint on storage; finished trials are never rerun. Every launch setting
(address, resources, retries, scheduler, metric, embedded Ray size, actor reuse, tracking
callbacks) is that of the last launch unless given here; --gpus-per-trial and --callback replace
the last launch's as a whole (--no-callbacks drops them). Trials that errored from a divergence
(state.json error "non-finite loss ...") are not run again unless --retry-errored is given.
Where it runs: inside a Ray job, that job's cluster; else the cluster the last launch recorded
(refused in one line if it cannot be reached), unless --address or --embedded says otherwise.
--json prints the result as one JSON object on stdout (the progress lines go to stderr)."""


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
    p.add_argument(
        "--retry-errored",
        action="store_true",
        help="also run again the trials that errored from a divergence (non-finite loss); "
        "other errored trials are always retried",
    )
    p.add_argument(
        "--embedded",
        action="store_true",
        help="run on an embedded Ray on this machine, not on the cluster the last launch "
        "recorded (default outside a Ray job: that cluster)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rest_sweep.service import resume

    return report(
        args,
        lambda: resume(
            args.storage,
            args.name,
            data_root=args.data_root,
            retry_errored=args.retry_errored,
            embedded=args.embedded,
            **launch_options(args),
        ),
    )
