"""``rest-sweep verify``: check every trial's stored results; ``--repair`` repairs what it can.

A finished trial is *damaged* when its results fail their check
(:meth:`trainables.results.TrialStore.check_results`: a torn ``summary.json``; a garbled, empty,
short or edited ``metrics.jsonl``; rows that do not match the summary's checksum or epoch
count). Its repair (:func:`trainables.train.loop.plan_repair`): the rows come back from the
checkpoint (or ``final_weights.pt``) that keeps them, matching the summary, in place; otherwise
its summary is set aside (``summary.damaged.json``) and ``rest-sweep resume`` continues it from
its newest checkpoint, retraining only the epochs no checkpoint holds. A staged trial is rebuilt
from its stage folders (each an ordinary trial folder, checked and repaired the same way). A
garbled ``state.json`` is rewritten. Nothing trains here, and without ``--repair`` nothing is
written.
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import asdict, dataclass
from typing import Any

EPILOG = """examples:
  rest-sweep verify --storage results --name demo
  rest-sweep verify --storage results --name demo --repair
  rest-sweep verify --storage results --name demo --json
Checks each planned trial's folder (no Ray, no training): a finished trial's summary.json must
read, its metrics.jsonl must hold epochs 1..E with no gap and no garbled line, and match the
checksum in the summary. A damaged trial is rebuilt from the checkpoint (or final_weights.pt)
that keeps its rows; when none does, or the summary itself is torn, --repair sets the summary
aside (summary.damaged.json) and `rest-sweep resume` continues the trial from its newest
checkpoint, retraining only what no checkpoint holds. Without --repair nothing is written: it
says what it would do. Exit status: 0 when every finished trial is intact (or was repaired in
place), 1 when damage is left (repair it, then resume)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check every trial's stored results; --repair repairs what the checkpoints allow",
        description="Check the stored results of experiment NAME, trial by trial (no Ray).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--storage", required=True, help="local folder or pyarrow URI")
    p.add_argument("--name", required=True, help="experiment name")
    p.add_argument(
        "--repair",
        action="store_true",
        help="repair damaged trials from their checkpoints; mark the rest for `rest-sweep resume`",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


@dataclass
class Finding:
    """One trial's verdict: ``kind`` is intact, damaged, set aside (a damaged trial whose
    summary was set aside, waiting for ``resume``) or note (a file read as absent, or an
    unfinished trial's broken rows, which it rebuilds itself when it runs again)."""

    hash: str
    name: str
    kind: str
    problem: str = ""
    action: str = ""  # what --repair does (or did)
    repaired: bool = False  # repaired in place: intact now
    resume: bool = False  # left for `rest-sweep resume` (its summary set aside, or to be)


@dataclass
class Verification:
    name: str
    storage: str
    planned: int
    finished: int  # trials with a summary.json when checked
    findings: list[Finding]
    repair: bool

    @property
    def damaged(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "damaged"]

    @property
    def left(self) -> list[Finding]:
        """Damage not repaired in place (to repair, or to resume), and the trials set aside
        that wait for ``resume``."""
        return [f for f in self.findings if f.kind in ("damaged", "set aside") and not f.repaired]


def verify(storage: str, name: str, *, repair: bool = False) -> Verification:
    """Check (and with ``repair`` repair) every planned trial of experiment ``name``."""
    from rest_sweep.ledger import launch_alive, planned_hashes
    from rest_sweep.storage import open_store
    from trainables.errors import UserError
    from trainables.results import list_experiments

    store = open_store(storage, name, write=repair)
    if not store.exists():
        known = ", ".join(list_experiments(storage)) or "none"
        raise UserError(f"--name {name}: no experiment in {storage}; allowed: {known}")
    ledger = store.read_ledger()
    live = [x for x in ledger.get("launches", []) if not x.get("ended") and launch_alive(x)]
    if repair and live:
        raise UserError(
            f"experiment {name!r} is being run by launch {live[-1].get('id')}: --repair writes "
            "the trial folders that launch writes; wait for it (or stop it), then repair"
        )
    configs = ledger.get("trials", {})
    findings: list[Finding] = []
    finished = 0
    for trial_hash in planned_hashes(ledger):
        trial = store.trial(trial_hash)
        finished += trial.is_finished()
        findings += _verify_trial(trial, trial_hash, configs[trial_hash], repair)
    return Verification(name, storage, len(configs), finished, findings, repair)


def _verify_trial(trial: Any, trial_hash: str, cfg: dict[str, Any], repair: bool) -> list[Finding]:
    from trainables.config import trial_label
    from trainables.results import SUMMARY_DAMAGED_FILE, SUMMARY_FILE, MetricsFileError

    label = trial_label(cfg)
    names = set(trial.loc.list_names())
    found: list[Finding] = []
    if SUMMARY_FILE in names:
        staged = _staged_config(cfg)
        if staged is not None:
            found.append(_verify_staged(trial, trial_hash, label, staged, repair))
        else:
            found.append(_verify_finished(trial, trial_hash, label, repair))
    else:
        if SUMMARY_DAMAGED_FILE in names:
            found.append(
                Finding(
                    trial_hash,
                    label,
                    "set aside",
                    f"its damaged summary is set aside ({SUMMARY_DAMAGED_FILE})",
                    "`rest-sweep resume` continues it from its newest checkpoint",
                    resume=True,
                )
            )
        try:
            trial.read_metrics()
        except MetricsFileError as error:
            action = (
                "`rest-sweep resume` rebuilds its rows from its checkpoint (nothing to do here)"
            )
            found.append(Finding(trial_hash, label, "note", str(error), action))
    state, note = trial.read_state_checked()
    if note:
        now = "finished" if trial.is_finished() else "interrupted"
        finding = Finding(trial_hash, label, "note", note, f'rewrite state.json as "{now}"')
        if repair:
            trial.write_state(now)  # replaces the garbled file
            finding.repaired = True
        found.append(finding)
    return [f for f in found if f.kind != "intact"] or [Finding(trial_hash, label, "intact")]


def _verify_finished(trial: Any, trial_hash: str, label: str, repair: bool) -> Finding:
    from trainables.train.loop import apply_repair, plan_repair

    check = trial.check_results()
    if check.intact:
        return Finding(trial_hash, label, "intact")
    plan = plan_repair(trial, check)
    finding = Finding(
        trial_hash, label, "damaged", check.problem or "", plan.describe(), resume=plan.rows is None
    )
    if repair:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            apply_repair(trial, plan)
        finding.repaired = trial.is_finished() and trial.check_results().intact
        finding.resume = not finding.repaired
    return finding


def _verify_staged(trial: Any, trial_hash: str, label: str, config: Any, repair: bool) -> Finding:
    """A staged trial: its stage folders first (each repaired in place where it can be), then
    the trial's own rows and summary, which the stage runner rebuilds from intact stages."""
    from trainables.train.loop import apply_repair, plan_repair

    problems: list[str] = []
    actions: list[str] = []
    rebuilt: set[str] = set()  # stages whose rows come back in place
    resume = False
    for stage in trial.stage_names():
        sub = trial.stage(stage)
        if not sub.is_finished() or (check := sub.check_results()).intact:
            continue
        plan = plan_repair(sub, check)
        problems.append(check.problem or "")
        actions.append(f"stage {stage}: {plan.describe()}")
        if repair:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                apply_repair(sub, plan)
        resume = resume or plan.rows is None
        if plan.rows is not None:
            rebuilt.add(stage)
    check = trial.check_results()
    if check.intact and not problems:
        return Finding(trial_hash, label, "intact")
    if not check.intact:
        problems.insert(0, check.problem or "")
    stages = [s.name for s in config.method_info.stages.stages(config)]
    if resume or not _stages_intact(trial, stages, rebuilt):
        actions.append(
            "set summary.json aside; `rest-sweep resume` rebuilds the trial from its stage "
            "folders, training only what they miss"
        )
        resume = True
    elif not check.intact:
        actions.append("rebuild metrics.jsonl and summary.json from the stage folders")
    finding = Finding(
        trial_hash, label, "damaged", "; ".join(problems), "; ".join(actions), resume=resume
    )
    if repair:
        if resume:
            trial.set_aside_results()
            trial.write_state("interrupted", warning=finding.problem)
        else:
            from trainables.train.staged import run_stages

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if trial.is_finished():  # intact stages, a damaged trial: rebuilt from them
                    run_stages(config, None, trial.loc)
        finding.repaired = trial.is_finished() and trial.check_results().intact
        finding.resume = not finding.repaired
    return finding


def _stages_intact(trial: Any, stages: list[str], rebuilt: set[str]) -> bool:
    """Whether every planned stage finished with intact results, or results rebuilt in place
    (``rebuilt``): the stage runner would train nothing."""
    for stage in stages:
        sub = trial.stage(stage)
        if not sub.is_finished():
            return False
        if stage not in rebuilt and not sub.check_results().intact:
            return False
    return True


def _staged_config(cfg: dict[str, Any]) -> Any:
    """The trial's config when its method has stages (None: an ordinary trial, or a config that
    no longer loads, checked as an ordinary trial folder)."""
    from trainables.config import TrialConfig
    from trainables.errors import UserError

    try:
        config = TrialConfig.from_dict(cfg)
    except (UserError, ValueError, TypeError):
        return None
    return config if config.method_info.stages is not None else None


def run(args: argparse.Namespace) -> int:
    report = verify(args.storage, args.name, repair=args.repair)
    if args.json:
        doc = {
            "name": report.name,
            "planned": report.planned,
            "finished": report.finished,
            "damaged": len(report.damaged),
            "left": len(report.left),
            "findings": [asdict(f) for f in report.findings if f.kind != "intact"],
        }
        print(json.dumps(doc, indent=1))
        return 1 if report.left else 0
    intact = sum(f.kind == "intact" for f in report.findings)
    print(
        f"{report.name}: {report.planned} planned trials, {report.finished} finished: "
        f"{len(report.damaged)} damaged; {intact} trial folder(s) with nothing to repair"
    )
    for f in report.findings:
        if f.kind == "intact":
            continue
        print(f"{f.kind} {f.name} ({f.hash}): {f.problem}")
        if f.kind == "set aside":
            print(f"  next: {f.action}")
        elif report.repair:
            done = "repaired" if f.repaired else ("set aside for resume" if f.resume else "done")
            print(f"  {done}: {f.action}")
        else:
            print(f"  --repair would: {f.action}")
    common = f"--storage {report.storage} --name {report.name}"
    if any(f.kind == "damaged" for f in report.left) and not report.repair:
        print(f"repair with: rest-sweep verify {common} --repair")
    resume = [f for f in report.left if f.kind == "set aside" or (report.repair and f.resume)]
    if resume:
        print(
            f"{len(resume)} trial(s) set aside: `rest-sweep resume {common}` retrains only "
            "what their checkpoints do not hold"
        )
    return 1 if report.left else 0
