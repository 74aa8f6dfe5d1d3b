"""``rest-sweep analyze``: an experiment folder to Parquet, the paper's tables and figures."""

from __future__ import annotations

import argparse

from trainables.errors import UserError

EPILOG = """examples:
  rest-sweep analyze --storage results --name paper-cmnist
  rest-sweep analyze --storage s3://bucket/sweeps --name fig3 --out analysis/fig3 --png
  rest-sweep analyze --storage results --name demo --metric conflicting --epoch final \\
      --min-seeds 2 --curves 2ee8a857 9f01c2aa
Reads only the experiment folder (no Ray): the ledger experiment.json decides which trials
exist. Writes OUT/trials.parquet (one row per planned trial), OUT/epochs.parquet (one row per
trial and epoch), OUT/cells.csv, OUT/tables/{table1,table2,table3,methods,paper_comparison}.{md,csv,tex}
and OUT/figures/*.html (+ .png with --png). OUT defaults to STORAGE/NAME/analysis. A damaged
trial (its stored results fail their check) is listed with the command that repairs it and left
out of the tables; the other trials are analysed as usual.
Schema and choices: docs/analysis.md."""


def add_common(p: argparse.ArgumentParser) -> None:
    """The experiment and table options shared by ``analyze`` and ``report``."""
    p.add_argument("--storage", required=True, help="storage root (local path or pyarrow URI)")
    p.add_argument("--name", required=True, help="experiment name (folder under --storage)")
    p.add_argument("--out", default=None, help="output folder (default: STORAGE/NAME/analysis)")
    p.add_argument(
        "--metric",
        default="paper",
        help="table metric: paper (unbiased for cmnist/cifar10c, conflicting for bffhq), "
        "unbiased, conflicting, worst-group, aligned or accuracy",
    )
    p.add_argument("--epoch", default="selected", help="selected (the trial's rule) or final")
    p.add_argument(
        "--min-seeds",
        type=int,
        default=None,
        help="finished seeds a cell needs to be shown (default: all planned seeds)",
    )


def options(args: argparse.Namespace):
    """Table options; trial states use the ledger's launch liveness, as ``rest-sweep status``."""
    from analysis.api import Options
    from rest_sweep.ledger import launch_alive

    return Options(
        metric=args.metric, epoch=args.epoch, min_seeds=args.min_seeds, launch_alive=launch_alive
    )


def out_dir(args: argparse.Namespace) -> str:
    """``--out`` (default ``STORAGE/NAME/analysis``), after the one-line checks of
    ``--storage``, ``--name`` and ``--out`` (a file where a folder is expected), before any
    work."""
    from rest_sweep.storage import check_folder, check_name, check_storage
    from trainables.results import join

    check_storage(args.storage)
    check_name(args.name)
    return check_folder("--out", args.out or join(args.storage.rstrip("/"), args.name, "analysis"))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="write trials/epochs Parquet, the paper's tables and figures",
        description="Turn an experiment folder into Parquet files, tables and plotly figures.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    p.add_argument("--no-figures", action="store_true", help="only Parquet and tables")
    p.add_argument(
        "--png",
        action="store_true",
        help="also write PNGs (kaleido with a local Chromium/Chrome; BROWSER_PATH names one)",
    )
    p.add_argument(
        "--curves",
        nargs="+",
        default=None,
        metavar="HASH",
        help="trial-hash prefixes whose training curves to plot (figures/training_curves.html)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.api import analyze, damaged_trials

    if args.no_figures and (args.png or args.curves):
        raise UserError("--no-figures: cannot be combined with --png or --curves")
    result = analyze(
        args.storage,
        args.name,
        out_dir(args),
        options(args),
        figures_too=not args.no_figures,
        png=args.png,
        curves=args.curves,
    )
    counts = result.analysis.frame["status"].value_counts().to_dict()
    print(
        f"{len(result.analysis.frame)} planned trials: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    damaged = damaged_trials(result.analysis)
    for trial in damaged[:20]:
        print(f"damaged {trial.label} ({trial.trial_hash}): {trial.problem}")
    if len(damaged) > 20:
        print(f"... {len(damaged) - 20} more damaged trials (status damaged in trials.parquet)")
    if damaged:
        print(
            f"damaged trials are left out of the tables; repair: {result.analysis.experiment.repair}"
        )
    print(f"wrote {len(result.files)} files under {result.out}")
    if result.png_note:
        print(result.png_note)
    timings = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
    print(f"timings (s): {timings}")
    return 0
