"""rest-sweep: launch, resume and report the REST paper's grid on Ray Tune.

The Python API mirrors the CLI verbs: :func:`run`, :func:`resume`, :func:`status`.
Importing this package does not import Ray; the verbs do, when called.
"""

from __future__ import annotations

from typing import Any


def run(*args: Any, **kwargs: Any) -> Any:
    """Launch (or continue) an experiment; see :func:`rest_sweep.service.run`."""
    from rest_sweep.service import run as _run

    return _run(*args, **kwargs)


def resume(*args: Any, **kwargs: Any) -> Any:
    """Continue an interrupted experiment; see :func:`rest_sweep.service.resume`."""
    from rest_sweep.service import resume as _resume

    return _resume(*args, **kwargs)


def status(*args: Any, **kwargs: Any) -> Any:
    """Counts per state and method, read from storage; see :func:`rest_sweep.sweep_status.status`."""
    from rest_sweep.sweep_status import status as _status

    return _status(*args, **kwargs)


__all__ = ["run", "resume", "status"]
