"""Test-only fault injection into Ray trial workers; never on a product code path.

A test starts a sweep driver in a subprocess with this folder first on ``PYTHONPATH`` and
``REST_SWEEP_TEST_FAULT="epoch=N;dir=PATH[;mode=raise|exit|kill|enospc]"`` in its environment. Python runs
this ``sitecustomize`` at start-up in the driver and in every Ray worker it spawns (workers
inherit the environment), and it wraps ``ray.tune.report`` when ``ray.tune`` is first imported:
each trial fails once, right after reporting epoch N (``raise``: a ``RuntimeError`` inside
``run_trial``; ``exit``: the worker process dies, as after an OOM kill; ``kill``: it SIGKILLs
itself; ``enospc``: an ``OSError`` ENOSPC, as a full disk raises). ``PATH/<trial hash>``
is created first (``O_EXCL``), so the retry runs clean. Without the variable nothing happens.
"""

from __future__ import annotations

import errno
import importlib.machinery
import os
import signal
import sys
from typing import Any

ENV = "REST_SWEEP_TEST_FAULT"
MODES = ("raise", "exit", "kill", "enospc")


def parse(spec: str) -> dict[str, str]:
    fields = dict(part.split("=", 1) for part in spec.split(";") if "=" in part)
    if fields.get("mode", "raise") not in MODES or not {"epoch", "dir"} <= set(fields):
        raise ValueError(f"{ENV}={spec!r}: expected 'epoch=N;dir=PATH[;mode={'|'.join(MODES)}]'")
    return fields


def maybe_fail(spec: dict[str, str], metrics: dict[str, Any]) -> None:
    """Fail once per trial (by ``trial_hash``) when ``metrics`` is epoch ``spec['epoch']``."""
    epoch = int(metrics.get("epoch", 0))
    if epoch != int(spec["epoch"]) or not metrics.get("trial_hash"):
        return
    marker = os.path.join(spec["dir"], str(metrics["trial_hash"]))
    try:  # O_EXCL: exactly one attempt of this trial fails, whatever the retries
        os.makedirs(spec["dir"], exist_ok=True)
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    mode = spec.get("mode", "raise")
    if mode == "exit":
        os._exit(17)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "enospc":
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected: {ENV} test hook)")
    raise RuntimeError(f"injected failure after epoch {epoch} ({ENV} test hook)")


def _wrap(module: Any, spec: dict[str, str]) -> None:
    real = module.report

    def report(metrics: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        out = real(metrics, *args, **kwargs)
        maybe_fail(spec, metrics)
        return out

    module.report = report


class _Finder:
    """Finds ``ray.tune`` as usual, and wraps its ``report`` once the module has run."""

    def __init__(self, spec: dict[str, str]) -> None:
        self.spec = spec

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "ray.tune":
            return None
        found = importlib.machinery.PathFinder.find_spec(name, path)
        if found is None or found.loader is None:
            return found
        run_module = found.loader.exec_module

        def exec_module(module: Any) -> None:
            run_module(module)
            _wrap(module, self.spec)

        found.loader.exec_module = exec_module  # type: ignore[method-assign]
        return found


if os.environ.get(ENV):
    sys.meta_path.insert(0, _Finder(parse(os.environ[ENV])))


# ---------------------------------------------------------------------------------------------
# A second, Ray-free hook: ``REST_SWEEP_TEST_CRASH_IN_CHECKPOINT=DIR`` makes the first
# checkpoint write of the whole run (any process that inherits the variable) write half of its
# temporary file and then SIGKILL its entire process group: the driver and every worker die in
# the middle of a checkpoint write, as on a power loss. ``DIR/crashed`` (O_EXCL) makes it fire
# once, so the rerun is clean.
CRASH_ENV = "REST_SWEEP_TEST_CRASH_IN_CHECKPOINT"


class _CrashFinder:
    """Wraps ``trainables.results.Location.write_bytes`` once that module has run."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "trainables.results":
            return None
        found = importlib.machinery.PathFinder.find_spec(name, path)
        if found is None or found.loader is None:
            return found
        run_module = found.loader.exec_module
        folder = self.folder

        def exec_module(module: Any) -> None:
            run_module(module)
            real = module.Location.write_bytes

            def write_bytes(self: Any, name: str, data: bytes) -> None:
                if name.startswith("epoch_") and name.endswith(".pt"):
                    try:
                        os.makedirs(folder, exist_ok=True)
                        marker = os.path.join(folder, "crashed")
                        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    except FileExistsError:
                        return real(self, name, data)
                    self.makedirs()
                    with open(self.file(f".{name}.deadbeef.tmp"), "wb") as half:
                        half.write(data[: len(data) // 2])
                    os.killpg(os.getpgrp(), signal.SIGKILL)
                return real(self, name, data)

            module.Location.write_bytes = write_bytes

        found.loader.exec_module = exec_module  # type: ignore[method-assign]
        return found


if os.environ.get(CRASH_ENV):
    sys.meta_path.insert(0, _CrashFinder(os.environ[CRASH_ENV]))
