"""Trial schedulers a launch can use: ``fifo`` (the reported grid) and ``asha`` (exploration).

ASHA stops trials early on a metric reported per epoch. It is asynchronous, so which trials
it stops depends on the order in which trials reach a rung: the same grid in another order
stops other trials. Use it to explore, never for the numbers of a table. A trial it stops is
recorded in the ledger as *stopped early* (terminal, not an error, not resumed;
:class:`rest_sweep.asha.RecordingASHA`).

:data:`SCHEDULERS` is the one list of schedulers: ``--scheduler``'s choices and help come from
it (``rest_sweep.launch_settings``). Nothing here imports Ray until a launch builds one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainables.registry import Registry

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler


@dataclass(frozen=True)
class SchedulerSpec:
    """How the launch builds the scheduler, the TuneConfig metric/mode it needs, and what it
    does (``--scheduler``'s help)."""

    build: Callable[..., TrialScheduler]
    needs_metric: bool
    summary: str
    # Whether it stops single trials early: a fused group (--fuse) is one Ray trial, and its
    # members cannot be stopped one by one.
    stops_trials: bool = False


def _fifo(**_: Any) -> TrialScheduler:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha(*, storage: str, name: str, launch_id: str, max_epochs: int, **_: Any) -> TrialScheduler:
    from rest_sweep.asha import RecordingASHA

    # max_t above the last epoch: ASHA never stops a trial for having reached the end.
    return RecordingASHA(
        storage,
        name,
        launch_id,
        max_t=max_epochs + 1,
        grace_period=max(1, max_epochs // 10),
        reduction_factor=3,
    )


SCHEDULERS: Registry[SchedulerSpec] = Registry("scheduler")
SCHEDULERS.register(
    "fifo", SchedulerSpec(_fifo, needs_metric=False, summary="runs every trial to the end")
)
SCHEDULERS.register(
    "asha",
    SchedulerSpec(
        _asha,
        needs_metric=True,
        summary="stops weak trials early (order-dependent: exploration only)",
        stops_trials=True,
    ),
)
