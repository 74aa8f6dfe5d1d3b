"""The ``rest-sweep`` command line: the only module that reads ``sys.argv``.

Each sub-command lives in ``rest_sweep/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser (with examples in its epilog) and sets
``func(args) -> int``. Command modules import heavy libraries (torch, Ray) only inside ``func``,
so ``rest-sweep --help`` is fast and ``train``/``data``/``sparsity`` never import Ray.

Output piped into a reader that stops early (``rest-sweep grids show paper-all | head -1``)
ends the command quietly with exit status 141, the status of a program killed by SIGPIPE that
a shell reports for ``git log | head -1``: the output was cut, which a script running with
``set -o pipefail`` should be able to tell from a complete one (0 would claim it was read).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import select
import signal
import sys
from importlib import metadata

from trainables.errors import UserError

COMMANDS = (
    "data",
    "train",
    "sparsity",
    "grids",
    "run",
    "resume",
    "status",
    "verify",
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"rest_sweep.commands.{name.replace('-', '_')}")
        module.register(subparsers)
    return parser


def package_version() -> str:
    """The installed distribution's version (one source: pyproject.toml, via the metadata)."""
    try:
        return metadata.version("rest-sweep")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a reader that stopped early


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of the rest of the buffer
    cannot raise a second BrokenPipeError (the recipe of Python's ``signal`` docs)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # StringIO in tests
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _stdout_closed() -> bool:
    """Whether stdout's reader went away (``| head``): a pipe whose read end is closed polls
    as an error. Any other BrokenPipeError (a worker's pipe, a socket) is a real failure."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (not Linux), StringIO in tests
        return True


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
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a pipe closed early fails here, inside the handler below
        return code
    except BrokenPipeError as error:
        if not _stdout_closed():
            print(f"rest-sweep {args.command}: error: {error!r}", file=sys.stderr)
            return 1
        _stdout_to_devnull()
        return BROKEN_PIPE_EXIT
    except UserError as error:
        print(f"rest-sweep {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        what = "SIGTERM" if isinstance(error, Terminated) else "interrupted"
        hint = ""
        if args.command in LAUNCHERS:
            from rest_sweep.service import cluster_record, resume_hint

            where = cluster_record(getattr(args, "address", None))
            again = resume_hint(args.storage, args.name, where)
            if getattr(args, "embedded", False):
                again += " --embedded"
            hint = f"; nothing finished is lost: run the same command again, or `{again}`"
        print(f"rest-sweep {args.command}: {what}{hint}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
