"""``run_trial``: the library entry point for one trial, ordinary or staged.

An ordinary trial is one lifecycle (:func:`trainables.train.loop.run_lifecycle`); a staged
method (``MethodInfo.stages``: prune's levels) runs as stages, each that same lifecycle in a
folder of its own (:func:`trainables.train.staged.run_stages`). Both are idempotent and
resumable from the trial folder alone.
"""

from __future__ import annotations

import tempfile
from typing import Any

from trainables.config import TrialConfig
from trainables.train.loop import Report, run_lifecycle
from trainables.train.staged import run_stages


def run_trial(
    config: TrialConfig,
    report: Report | None = None,
    checkpoint_dir: str | None = None,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``config`` and return its summary (see docs/architecture.md for the keys).

    ``checkpoint_dir`` is the trial folder (local path or pyarrow URI). Each epoch ends with a
    metrics row, an atomic checkpoint on the epochs of ``config.checkpoint_every`` and the last
    one (the newest ``config.keep_checkpoints`` are kept), and a call to ``report(row)``. A
    crash leaves the folder resumable: the next call continues from the newest checkpoint,
    recomputes the epochs after it and never duplicates a row. A non-finite training loss
    raises :class:`DivergenceError` (the trial is marked errored).

    A staged method (``MethodInfo.stages``: prune's levels) runs as stages, each this same
    lifecycle in a folder of its own (:mod:`trainables.train.staged`).
    """
    if checkpoint_dir is None:
        checkpoint_dir = tempfile.mkdtemp(prefix=f"trial-{config.trial_hash}-")
    if config.method_info.stages is not None:
        return run_stages(config, report, checkpoint_dir, progress=progress)
    return run_lifecycle(config, report, checkpoint_dir, progress=progress)
