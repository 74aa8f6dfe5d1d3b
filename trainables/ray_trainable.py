"""The Ray Tune function trainable: a thin adapter around ``run_trial``.

Keep this module and :func:`train_trial` at this import path: Tune pickles the trainable by
reference. The trial folder on storage is the checkpoint, not Tune's: every (re)start of a trial
(a Tune retry after a failure, or a new launch after a driver crash) calls ``run_trial`` with
``checkpoint_dir=<experiment>/trials/<hash>``, which continues from the newest checkpoint there
and trains nothing if ``summary.json`` exists. Ray's experiment snapshot is never consulted, so
its snapshot gap (a restore starting from an older checkpoint) cannot happen.

Param space of one Tune trial (built by ``rest_sweep.tuner``)::

    {"trial": {"hash": str, "name": str, "uri": str, "config": TrialConfig.to_dict(),
               "size": 1},
     "fault": str}   # optional test hook, see FAULT_ENV

A *packed* Tune trial (``--pack-size``) carries ``"members": [<entry as above>, ...]`` and
``size`` > 1: :func:`trainables.pack.run_pack` trains them in one process, each into its own
trial folder, and Tune sees one row per epoch with the members' mean metrics. The pack is the
unit Ray schedules and retries; each member resumes from its own newest checkpoint.

The final epoch's metrics are reported only after ``run_trial`` has written ``summary.json``:
a scheduler that stops a trial on that report (ASHA at ``max_t``) then stops a finished trial.
"""

from __future__ import annotations

import os
from typing import Any

# Test hook (documented in docs/sweeps.md): the *driver* reads this variable at launch and puts
# it in every trial's param space. "epoch=N;dir=PATH[;mode=raise|exit]" makes each trial fail
# once, right after reporting epoch N: it creates PATH/<hash> first, so a retry runs clean.
FAULT_ENV = "REST_SWEEP_FAULT"


def train_trial(params: dict[str, Any]) -> None:
    """Run one trial of a sweep under Ray Tune (see the module docstring for ``params``)."""
    from ray import tune

    from trainables.config import TrialConfig
    from trainables.train import run_trial

    trial = params["trial"]
    if trial.get("members"):
        _train_pack(trial)
        return
    config = TrialConfig.from_dict(trial["config"])
    extra = {"trial_hash": trial["hash"], "node_id": _node_id()}
    fault = Fault.parse(params.get("fault", ""), trial["hash"])
    held: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any]) -> None:
        row = {**_numeric(metrics), **extra}
        if int(metrics.get("epoch", 0)) >= config.epochs:
            held.append(row)  # reported after summary.json exists
        else:
            tune.report(row)
        fault.maybe_fail(int(metrics.get("epoch", 0)))

    run_trial(config, report=report, checkpoint_dir=trial["uri"])
    _record_node(trial["uri"])
    for row in held:
        tune.report(row)


def _train_pack(unit: dict[str, Any]) -> None:
    """Train a packed unit; report one Tune row per epoch once every member has reported it."""
    from ray import tune

    from trainables.config import TrialConfig
    from trainables.pack import run_pack

    members = unit["members"]
    configs = [TrialConfig.from_dict(m["config"]) for m in members]
    epochs = max(c.epochs for c in configs)
    rows: dict[int, dict[int, dict[str, Any]]] = {}

    def emit(epoch: int, reported: dict[int, dict[str, Any]]) -> dict[str, Any]:
        row = _mean_row(list(reported.values()))
        row.update(epoch=epoch, pack_size=len(members), members_reported=len(reported),
                   trial_hash=unit["hash"], node_id=_node_id())  # fmt: skip
        return row

    def report(i: int, metrics: dict[str, Any]) -> None:
        epoch = int(metrics.get("epoch", 0))
        rows.setdefault(epoch, {})[i] = _numeric(metrics)
        if len(rows[epoch]) == len(members) and epoch < epochs:
            tune.report(emit(epoch, rows.pop(epoch)))

    run_pack(configs, [m["uri"] for m in members], report)
    for member in members:
        _record_node(member["uri"])
    # Epochs not every member reported (members resumed from different checkpoints, or
    # already finished) and the last epoch go out now, after every summary.json exists.
    for epoch in sorted(rows):
        tune.report(emit(epoch, rows[epoch]))


def _record_node(uri: str) -> None:
    """Keep the Ray node that finished the trial in its own ``state.json`` (placement audits)."""
    from trainables.results import TrialStore

    store = TrialStore(uri)
    state = store.read_state() or {}
    store.write_state(state.get("state", "finished"), node_id=_node_id())


def _mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = set.intersection(*(set(r) for r in rows))
    out = {}
    for key in sorted(keys):
        values = [r[key] for r in rows if isinstance(r[key], int | float) and r[key] == r[key]]
        if values and not isinstance(values[0], bool):
            out[key] = sum(values) / len(values)
    return out


def _numeric(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool)}


def _node_id() -> str:
    """The Ray node this attempt runs on (kept in Tune's result.json; placement tests read it)."""
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker (unit tests call train_trial directly)
        return ""


class Fault:
    """The one-time failure of the ``REST_SWEEP_FAULT`` test hook (inactive when empty)."""

    def __init__(self, epoch: int | None, marker: str | None, mode: str) -> None:
        self.epoch, self.marker, self.mode = epoch, marker, mode

    @classmethod
    def parse(cls, spec: str, trial_hash: str) -> Fault:
        if not spec:
            return cls(None, None, "raise")
        fields = dict(part.split("=", 1) for part in spec.split(";") if "=" in part)
        mode = fields.get("mode", "raise")
        if mode not in ("raise", "exit") or "epoch" not in fields or "dir" not in fields:
            raise ValueError(f"{FAULT_ENV}={spec!r}: expected 'epoch=N;dir=PATH[;mode=raise|exit]'")
        return cls(int(fields["epoch"]), os.path.join(fields["dir"], trial_hash), mode)

    def maybe_fail(self, epoch: int) -> None:
        if self.epoch is None or epoch != self.epoch or self.marker is None:
            return
        try:  # O_EXCL: exactly one attempt of this trial fails, whatever the retries
            os.makedirs(os.path.dirname(self.marker), exist_ok=True)
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        if self.mode == "exit":
            os._exit(17)  # a dead worker, as after an OOM kill
        raise RuntimeError(f"injected failure after epoch {epoch} ({FAULT_ENV} test hook)")
