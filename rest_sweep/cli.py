"""The ``rest-sweep`` command line: the only module that reads ``sys.argv``.

Each sub-command lives in ``rest_sweep/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser (with examples in its epilog) and sets
``func(args) -> int``. Command modules import heavy libraries (torch, Ray) only inside ``func``,
so ``rest-sweep --help`` is fast and ``train``/``data``/``sparsity`` never import Ray.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from trainables.errors import UserError

COMMANDS = (
    "data",
    "train",
    "sparsity",
    "grids",
    "run",
    "resume",
    "status",
    "list",
    "analyze",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rest-sweep",
        description="Run the REST paper's grid on Ray Tune, resume it, and report the results.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `rest-sweep COMMAND --help` for the options and examples of each command.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"rest_sweep.commands.{name.replace('-', '_')}")
        module.register(subparsers)
    return parser


LAUNCHERS = ("run", "resume")  # SIGTERM stops them like Ctrl-C, before and after Ray starts


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so launches end their record and print a hint."""


def _sigterm(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if args.command in LAUNCHERS:
        try:
            previous = signal.signal(signal.SIGTERM, _sigterm)
        except ValueError:  # not the main thread (an embedding application)
            previous = None
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"rest-sweep {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        what = "SIGTERM" if isinstance(error, Terminated) else "interrupted"
        hint = ""
        if args.command in LAUNCHERS:
            hint = (
                f"; nothing finished is lost: run the same command again, or `rest-sweep resume "
                f"--storage {args.storage} --name {args.name}`"
            )
        print(f"rest-sweep {args.command}: {what}{hint}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
