"""``rest-sweep report``: one self-contained HTML page (status, tables, figures)."""

from __future__ import annotations

import argparse

from rest_sweep.commands.analyze import add_common, options, out_dir

EPILOG = """examples:
  rest-sweep report --storage results --name paper-cmnist
  rest-sweep report --storage results --name paper-cmnist --out reports/cmnist --min-seeds 2
Writes OUT/report.html: the sweep's status (counts per state and method, missing cells,
errors), the recipes, Tables 1-3, the comparison with the paper's numbers and the density /
FLOPs figures. plotly.js is inlined once, so the page works offline. A partial sweep gives a
partial report that lists what is missing. OUT defaults to STORAGE/NAME/analysis."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of an experiment",
        description="Write one offline HTML page with the sweep's status, tables and figures.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.api import report

    path = report(args.storage, args.name, out_dir(args), options(args))
    print(f"wrote {path}")
    return 0
