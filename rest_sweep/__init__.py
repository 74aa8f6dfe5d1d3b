"""rest-sweep: launch, resume and report the REST paper's grid on Ray Tune.

The Python API mirrors the CLI verbs: :func:`run`, :func:`resume`, :func:`status`, with the
signatures of :func:`rest_sweep.service.run`, :func:`rest_sweep.service.resume` and
:func:`rest_sweep.sweep_status.status`. Importing this package does not import Ray (nor torch);
the verbs import Ray when they launch.
"""

from __future__ import annotations

from rest_sweep.launch_settings import LaunchSettings
from rest_sweep.service import SweepResult, resume, run
from rest_sweep.sweep_status import StatusReport, status

__all__ = ["LaunchSettings", "StatusReport", "SweepResult", "resume", "run", "status"]
