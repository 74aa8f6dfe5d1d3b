"""``rest-sweep list``: the experiments in a storage location, with grid, counts and state."""

from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  rest-sweep list --storage results
  rest-sweep list --storage s3://bucket/sweeps --json
Reads only the ledgers and trial folders (no Ray)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "list",
        help="experiments in a storage location with grid, counts and state",
        description="List the experiments under --storage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--storage", required=True, help="local folder or pyarrow URI")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rest_sweep.storage import check_storage
    from rest_sweep.sweep_status import age, experiments

    reports = experiments(check_storage(args.storage))
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=1, default=str))
        return 0
    if not reports:
        print(f"no experiments in {args.storage}")
        return 0
    width = max(len("experiment"), *(len(r.name) for r in reports))
    print(
        f"{'experiment':<{width}}  {'state':<11} planned finished errored pending  "
        "last launch       grids"
    )
    for r in reports:
        started = age((r.last_launch or {}).get("started"))
        print(
            f"{r.name:<{width}}  {r.state:<11} {r.planned:>7} {r.finished:>8} {r.errored:>7} "
            f"{r.pending:>7}  {started:<16}  {', '.join(r.grids)}"
        )
        if r.unreadable:
            print(f"  {r.name}: {r.unreadable}")
    return 0
