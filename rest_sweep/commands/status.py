"""``rest-sweep status``: an experiment's trials per state and method, read from storage."""

from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  rest-sweep status --storage results --name demo
  rest-sweep status --storage s3://bucket/sweeps --name t3-cmnist --json
Reads only experiment.json and the trial folders: works while the sweep runs, and with no Ray.
A finished trial whose results fail their check (a torn summary.json, a garbled, short or
edited metrics.jsonl) counts as damaged, listed with why; `rest-sweep verify --repair` repairs
it (docs/sweeps.md). A garbled state.json counts as absent and is noted.
JSON keys: planned, finished, running, errored, pending, damaged (integers), stopped,
interrupted, not_runnable, per_method, errors, damaged_trials, repair, notes, epochs_done,
epochs_total, eta_s, state. epochs_done counts what a restart keeps: a running or pending
trial's epochs up to its newest checkpoint; the rows after it (a trial's "redo") train again."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status",
        help="planned/running/finished/errored/pending trials of an experiment, with an ETA",
        description="Show where experiment NAME stands (no Ray needed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--storage", required=True, help="local folder or pyarrow URI")
    p.add_argument("--name", required=True, help="experiment name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--trials", action="store_true", help="also list every trial and its state")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rest_sweep.sweep_status import STATES, format_duration, status

    report = status(args.storage, args.name)
    if args.json:
        print(json.dumps(report.to_dict(with_trials=args.trials), indent=1, default=str))
        return 0
    live = f"running (launch {report.live_launch})" if report.live_launch else report.state
    print(f"{report.name}: {live}; grids: {', '.join(report.grids) or '-'}")
    print(
        f"planned {report.planned} | finished {report.finished} | running {report.running} | "
        f"errored {report.errored} | pending {report.pending} "
        f"(interrupted {report.interrupted}) | stopped early {report.stopped}"
        + (f" | damaged {report.damaged}" if report.damaged else "")
    )
    eta = f"; ETA {format_duration(report.eta_s)}" if report.eta_s is not None else ""
    redo = sum(t.redo for t in report.trials)
    redo_note = f" (+{redo} to redo: trained after the newest checkpoint)" if redo else ""
    print(f"epochs {report.epochs_done}/{report.epochs_total}{redo_note}{eta}")
    if report.not_runnable:
        print(f"not runnable (method not registered yet): {report.not_runnable} grid rows")
    width = max(len("method"), *(len(m) for m in report.per_method))
    print(f"{'method':<{width}}  " + "  ".join(f"{s:>8}" for s in STATES))
    for method, counts in report.per_method.items():
        print(f"{method:<{width}}  " + "  ".join(f"{counts.get(s, 0):>8}" for s in STATES))
    for error in report.errors[:20]:
        print(f"errored {error['name']} ({error['hash']}): {error['error']}")
    if len(report.errors) > 20:
        print(f"... {len(report.errors) - 20} more errored trials (--json)")
    for damaged in report.damaged_trials[:20]:
        print(f"damaged {damaged['name']} ({damaged['hash']}): {damaged['problem']}")
    if len(report.damaged_trials) > 20:
        print(f"... {len(report.damaged_trials) - 20} more damaged trials (--json)")
    if report.repair:
        print(f"repair the damaged trials with: {report.repair}")
    for note in report.notes[:20]:
        print(f"note {note['name']} ({note['hash']}): {note['note']}")
    if args.trials:
        for t in report.trials:
            stage = f" {t.stage}" if t.stage else ""
            redo = f" (+{t.redo} to redo)" if t.redo else ""
            print(f"  {t.hash}  {t.name:<32} {t.state:<9} epoch {t.epoch}/{t.epochs}{redo}{stage}")
    return 0
