"""The stage runner: a staged trial (``MethodInfo.stages``) as a sequence of ordinary trials.

Each stage is :func:`~trainables.train.loop.run_lifecycle` in ``<trial>/stages/<stage>/``,
unchanged: idempotent (a stage with a summary returns it and trains nothing), resumable on its
own from its newest checkpoint, bit-identically on the CPU. Before (re)starting a stage the
runner asks the method's :class:`~trainables.stages.StagePlan` for its start, which the plan
decides from the earlier stages' stored results only, so a stage never depends on anything held
in memory by the process that ran the stage before it.

The trial folder itself is what everyone else reads, as for any trial: the runner writes its
``config.json``, its ``metrics.jsonl`` (every stage's rows, epochs numbered across the stages,
train FLOPs cumulative across them, each row with the stage's label columns), its
``state.json`` (``epoch`` of ``epochs`` across the stages, the stage's title, a failed stage's
error) and, once every stage finished, its ``summary.json`` (the last stage's, with the totals
across stages and ``stages``: one result per stage). Tune reports carry the same rows. Asking
a finished trial for more stages (prune's ``levels`` is outside the identity) trains only the
new ones. A finished trial whose results fail their check (damaged: a torn summary, a garbled
or short ``metrics.jsonl``) is rebuilt from its stages' folders, each repaired by its own
lifecycle first where it is damaged too, with a warning.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
from typing import Any

from trainables.config import TrialConfig
from trainables.errors import error_line
from trainables.results import (
    ERROR_FILE,
    METRICS_SHA256,
    SUMMARY_FILE,
    Location,
    MetricsFileError,
    TrialStore,
    json_safe,
    metrics_digest,
)
from trainables.stages import Stage, StagePlan, StageStart
from trainables.train.loop import run_lifecycle
from trainables.train.metrics import selection_score

Report = Callable[[dict[str, Any]], None]
# What a stage's result keeps of its last row (besides its label, density, epoch and FLOPs).
RESULT_KEPT = ("train_loss", "train_acc")
RESULT_PREFIXES = ("valid_", "test_")


def run_stages(
    config: TrialConfig,
    report: Report | None,
    trial_dir: str | Location,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Train every stage of ``config`` in ``trial_dir`` and return the trial's summary."""
    plan = config.method_info.stages
    assert plan is not None, f"method {config.method} has no stages"
    store = TrialStore(trial_dir, keep_checkpoints=config.keep_checkpoints)
    runner: _Runner | None = None
    try:
        runner = _Runner(config, plan, store, plan.stages(config), report, progress)
        return runner.start()
    except (KeyboardInterrupt, SystemExit):
        _record_failure(store, "interrupted", None, runner.lifecycle if runner else None)
        raise
    except BaseException as error:
        # Recorded at the trial level whatever failed (planning, adoption, a stage's start or
        # its lifecycle), where status, the failure recorder and Tune retries look.
        _record_failure(store, "errored", error, runner.lifecycle if runner else None)
        raise


def _record_failure(
    store: TrialStore, state: str, error: BaseException | None, stage: TrialStore | None
) -> None:
    """The trial folder's record of a failure: ``state.json`` (``error``: the failed stage's own
    line when its lifecycle failed, else the error's first line) and ``error.txt`` (the stage's
    traceback, else this one). Never raises: the failure matters more than its record."""
    try:
        own = (stage.read_state() or {}) if stage is not None else {}
        kept = {k: own[k] for k in ("error", "diverged", "attempt") if k in own}
        if error is not None and "error" not in kept:
            kept.update(error=error_line(error), diverged=False)
        store.write_state(state, **kept)
        if error is not None:
            text = (stage.read_error() if stage is not None else None) or traceback.format_exc()
            store.loc.write_bytes(ERROR_FILE, text.encode())
    except Exception:
        pass


def _prepare(runner: _Runner) -> dict[str, Any] | None:
    """The stored summary when it already answers the config; else the folder made ready for
    the stages to (re)run (legacy layout adopted, a stale or damaged summary set aside)."""
    config, plan, store, stages = runner.config, runner.plan, runner.store, runner.stages
    damaged = False
    if store.is_finished():
        check = store.check_results()
        if check.intact and _covers(check.summary, stages):
            return check.summary
        if not check.intact:
            damaged = True
            warnings.warn(
                f"{check.problem}; rebuilding the trial's rows and summary from its stages' "
                "folders (a damaged stage continues from its newest checkpoint)",
                RuntimeWarning,
                stacklevel=2,
            )
    note = plan.adopt_legacy(config, store)
    if note:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    if damaged:  # its summary goes aside (kept), the trial reads as running again
        store.set_aside_results()
    elif store.is_finished():  # more stages asked of a finished trial: it reads as running again
        store.loc.delete(SUMMARY_FILE)
    store.write_config(config.to_dict())
    return None


def _covers(summary: dict[str, Any], stages: list[Stage]) -> bool:
    """Whether a stored summary holds every stage (a summary from before stages existed
    lists prune's ``levels``)."""
    held = summary.get("stages")
    if held is None:
        return len(summary.get("levels") or []) >= len(stages)
    names = [r.get("stage") for r in held]
    return names[: len(stages)] == [s.name for s in stages]


class _Runner:
    """One pass over the stages (a fresh object per ``run_stages`` call)."""

    def __init__(
        self,
        config: TrialConfig,
        plan: type[StagePlan],
        store: TrialStore,
        stages: list[Stage],
        report: Report | None,
        progress: bool,
    ) -> None:
        self.config, self.plan, self.store, self.stages = config, plan, store, stages
        self.report, self.progress = report, progress
        self.total: int | None = None  # epochs across stages, once the epoch length is known
        self.lifecycle: TrialStore | None = None  # the stage whose lifecycle runs now

    def start(self) -> dict[str, Any]:
        stored = _prepare(self)
        return stored if stored is not None else self.run()

    def run(self) -> dict[str, Any]:
        done: list[tuple[Stage, dict[str, Any], list[dict[str, Any]]]] = []
        epoch = 0
        flops = 0.0
        for stage in self.stages:
            sub = self.store.stage(stage.name)
            # A stage whose results fail their check is handed to its lifecycle, which repairs
            # it (from its checkpoint's rows, else training on from its newest checkpoint).
            check = sub.check_results() if sub.is_finished() else None
            summary = check.summary if check is not None and check.intact else None
            if summary is None:
                # The trial's rows so far: the finished stages', then this stage's up to the
                # checkpoint it resumes from (the rows after it are recomputed).
                rows = [r for _, _, stage_rows in done for r in stage_rows]
                resume = int((sub.read_state() or {}).get("checkpoint_epoch") or 0)
                rows += self._globalise(stage, sub, epoch, flops, up_to=resume)
                self.store.write_metrics(rows)
                summary = self._train(stage, sub, epoch, flops)
            stage_rows = self._globalise(stage, sub, epoch, flops)
            done.append((stage, summary, stage_rows))
            epoch += int(summary["epochs"])
            flops += float(summary["train_flops"])
        rows = [r for _, _, stage_rows in done for r in stage_rows]
        self.store.write_metrics(rows)  # authoritative: rebuilt from the stages' own files
        summary = self._summary(done, rows)
        self.store.write_summary(summary)
        last = self.stages[-1]
        self.store.write_state("finished", epoch=epoch, epochs=epoch, stage=last.title)
        return self.store.read_summary()

    # ------------------------------------------------------------------ one stage
    def _train(self, stage: Stage, sub: TrialStore, offset: int, flops: float) -> dict[str, Any]:
        start = StageStart(stage, self.plan.start(self.config, stage, self.store))
        # Every stage but the last keeps only its final weights (what the next stage and the
        # branches read); the last one what the config says.
        config = self.config
        if stage is not self.stages[-1] and config.final_checkpoint != "weights":
            values = {**config.to_dict(), "final_checkpoint": "weights"}  # not an identity field
            config = TrialConfig.from_dict(values, validated=True)

        def report(row: dict[str, Any]) -> None:
            if self.total is None:  # the stage's lifecycle recorded the epoch length
                per_epoch = (sub.read_state() or {}).get("steps_per_epoch")
                self.total = self.config.method_info.planned_epochs(self.config, per_epoch)
            out = self._global_row(stage, row, offset, flops)
            self.store.append_metrics(out)
            self.store.write_state(
                "running", epoch=out["epoch"], epochs=self.total, stage=stage.title
            )
            if self.report is not None:
                self.report(out)

        # A failed attempt's mirrored error is history now (the stage's lifecycle clears its own).
        earlier = (self.store.read_state() or {}).get("error")
        self.store.write_state(
            "running",
            epoch=offset,
            epochs=self.total or self.config.method_info.planned_epochs(self.config),
            stage=stage.title,
            error=None,
            diverged=False,
            **({"last_error": earlier} if earlier else {}),
        )
        self.lifecycle = sub
        summary = run_lifecycle(config, report, sub.loc, progress=self.progress, stage=start)
        self.lifecycle = None
        return summary

    # ------------------------------------------------------------------ rows and results
    def _global_row(
        self, stage: Stage, row: dict[str, Any], offset: int, flops: float
    ) -> dict[str, Any]:
        out = dict(row)
        out["epoch"] = offset + int(row["epoch"])
        if "train_flops" in out:
            out["train_flops"] = flops + float(out["train_flops"])
        out.update(stage.label)
        return out

    def _globalise(
        self, stage: Stage, sub: TrialStore, offset: int, flops: float, up_to: int | None = None
    ) -> list[dict[str, Any]]:
        try:
            rows = sub.read_metrics() if sub.loc.exists() else []
        except MetricsFileError as error:
            if up_to is None:  # the stage's lifecycle has just written (or checked) its rows
                raise
            rows = error.rows  # before the stage runs: its lifecycle rebuilds the rest
        if up_to is not None:
            rows = [r for r in rows if int(r["epoch"]) <= up_to]
        return [self._global_row(stage, r, offset, flops) for r in rows]

    def _summary(
        self, done: list[tuple[Stage, dict[str, Any], list[dict[str, Any]]]], rows: list[dict]
    ) -> dict[str, Any]:
        results = []
        best: dict[str, Any] | None = None
        for stage, summary, stage_rows in done:
            last = stage_rows[-1]
            kept = {
                k: v for k, v in last.items() if k in RESULT_KEPT or k.startswith(RESULT_PREFIXES)
            }
            results.append(
                {
                    "stage": stage.name,
                    **stage.label,
                    "density": summary["density"],
                    "epoch": last["epoch"],
                    **kept,
                    "train_flops": last["train_flops"],
                }
            )
            # The stage's selected row, numbered across stages.
            chosen = stage_rows[int(summary["selected_epoch"]) - 1]
            if best is None or selection_score(chosen) > selection_score(best):
                best = chosen
        final = rows[-1]
        selected = final if self.config.selection == "last" or best is None else best
        summaries = [s for _, s, _ in done]
        return json_safe(
            {
                **summaries[-1],
                "epochs": len(rows),
                "final": final,
                "selected": selected,
                "selected_epoch": selected["epoch"],
                "train_flops": sum(float(s["train_flops"]) for s in summaries),
                "dense_train_flops": sum(float(s["dense_train_flops"]) for s in summaries),
                "wall_time_s": sum(float(s["wall_time_s"]) for s in summaries),
                "attempts": max(int(s.get("attempts", 1)) for s in summaries),
                "stages": results,
                METRICS_SHA256: metrics_digest(rows),  # the trial's rows, not the last stage's
            }
        )
