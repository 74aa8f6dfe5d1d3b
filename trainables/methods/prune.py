"""``prune``: iterative pruning with retraining (the Sparse Double Descent trunk, OpenLTH style).

A prune trial is staged (:mod:`trainables.stages`): every level is a stage, an ordinary trial
lifecycle in ``<trial>/stages/level_NNNN/``, and :class:`PrunePlan` decides each level's start
from the stored results of the levels before it (OpenLTH's ``lottery/runner.py``):

* **Level 0** trains the dense network for ``epochs`` epochs.
* **Level L >= 1** prunes ``prune_fraction`` of the weights still active (by ``criterion``,
  over all maskable layers or per layer, ``prune_scope``) from level L-1's stored final
  weights, then retrains by ``retrain``: ``lottery`` (the level-0 weights of iteration
  ``rewind_step``, the data order and LR schedule restarted at that iteration: the stage's span
  starts there), ``lr_rewind`` (keep the weights, replay the whole schedule), ``finetune``
  (keep the weights, constant ``finetune_lr`` for ``finetune_steps``) or ``scratch`` (a new
  initialisation per level). With ``oneshot`` every level prunes level 0's dense weights
  straight to its count instead (the one-shot branch).

The active count after L levels is ``round(N (1 - p)^L)`` over the maskable weights (global
scope) or per layer (``layer`` scope, at least 1 per layer), so level L of any run holds
exactly the same number of weights. Masks live in a static :class:`~trainables.sparse.SparseEngine`
(``mask_updates=False``), re-applied after every step; every level starts a fresh optimizer.
The learning rate follows a step schedule (``milestones``, ``gamma``, ``warmup_steps``), set
before every step from the schedule's iteration. ``levels`` is not part of the trial's
identity: asking a finished trial for more levels trains only the new levels' stages.

A level's stored result is its stage's final weights and masks (``final_weights.pt``, or its
last checkpoint under ``final_checkpoint=full``); level 0 of a lottery trunk also stores its
rewind point, ``stages/level_0000/rewind.pt``, at iteration ``rewind_step``.
A **branch** (``branch=redense|reinit|random_prune``) is a prune trial of one stage that reads
level ``branch_level`` (0 included) of the lottery trunk ``branch_of`` (a sibling folder) and never
retrains it. Like SDD's and OpenLTH's lottery branches it starts at the parent's rewind point:
iteration ``rewind_step`` of the data order and LR schedule (the branch carries its parent's
``rewind_step``), with ``reinit`` the parent's mask on a new initialisation, ``random_prune`` a
random mask with the parent's per-layer counts on the rewind-point weights, ``redense`` the
level's mask on the rewind-point weights until ``redense_step``; there every mask opens (the
pruned weights return at exactly zero, the optimizer is kept) and training goes on dense, the
learning rate still following the schedule (SDD's ``lottery_branch retrain`` with
``regain_pruned_weights_steps``).
"""

from __future__ import annotations

import copy
import math
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.checkpoints import CheckpointStage, CheckpointTensors, optimizer_moments
from trainables.errors import UserError
from trainables.lazy import lazy_module
from trainables.methods.base import Method, MethodInfo
from trainables.methods.params import Check, ParamGroup, SparseParams, param
from trainables.results import (
    LEGACY_LEVELS_DIR,
    METRICS_SHA256,
    REWIND_FILE,
    Location,
    TrialStore,
    metrics_digest,
)
from trainables.stages import Stage, StagePlan, planned_steps_per_epoch
from trainables.steps import Span, Step, parse_steps

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainables.config import TrialConfig
    from trainables.data import Batch
    from trainables.methods.base import TrialContext
    from trainables.sparse import SparseEngine
else:
    torch = lazy_module("torch")  # planning imports this module without loading torch

RETRAIN = ("lottery", "lr_rewind", "finetune", "scratch")
CRITERIA = ("magnitude", "gradient", "random")
SCOPES = ("global", "layer")
BRANCHES = ("none", "redense", "reinit", "random_prune")
_BRANCH_DRAW = 1_000_000  # offsets the branches' seeded draws from the levels' own


@dataclass(frozen=True)
class PruneParams(ParamGroup):
    """Iterative pruning levels, retraining policy, criterion and step LR schedule."""

    order: ClassVar[int] = 60

    levels: int = param(
        10,
        "pruning levels after the dense level 0 (not in the identity: more levels extend a "
        "finished trial)",
        identity=False,
    )
    prune_fraction: float = param(0.2, "fraction of the remaining weights pruned per level")
    retrain: str = param("lottery", "retraining after each pruning step", choices=RETRAIN)
    rewind_step: int = param(
        0, "lottery: level-0 iteration the weights, data order and LR schedule rewind to"
    )
    finetune_steps: str = param(
        "", "finetune: training length of levels >= 1 (160ep, 1000it, 80ep50it; '': epochs)"
    )
    finetune_lr: float = param(0.001, "finetune: constant learning rate of levels >= 1")
    criterion: str = param("magnitude", "pruning score", choices=CRITERIA)
    prune_scope: str = param(
        "global",
        "one ranking over all pruned layers, or the same fraction per layer",
        choices=SCOPES,
    )
    oneshot: bool = param(
        False,
        "prune level 0's dense weights straight to level L's count at every level (the "
        "one-shot branch) instead of level L-1's weights",
    )
    gradient_batches: int = param(
        1, "gradient criterion: training batches |w * dL/dw| is accumulated over"
    )
    milestones: str = param(
        "", "steps where the lr is multiplied by gamma (80,120 = epochs; or 80ep,120ep50it)"
    )
    gamma: float = param(0.1, "lr factor at every milestone")
    warmup_steps: str = param("", "linear lr warm-up from 0 at the start of each level (5ep)")

    @classmethod
    def recipe_values(
        cls,
        recipe: str,
        dataset: Any,
        ratio: float,
        method: MethodInfo,
        given: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        # The epoch schedule is replaced by the step schedule above.
        return {"lr_schedule": "none"} if method.takes(cls) else {}

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        p = cfg.prune_fraction
        check(0 < p < 1, "prune_fraction", p, "a number in (0, 1)")
        check(cfg.levels >= 0, "levels", cfg.levels, "an integer >= 0")
        check(cfg.rewind_step >= 0, "rewind_step", cfg.rewind_step, "an integer >= 0")
        check(cfg.finetune_lr > 0, "finetune_lr", cfg.finetune_lr, "a positive number")
        check(cfg.gamma > 0, "gamma", cfg.gamma, "a positive number")
        check(cfg.gradient_batches > 0, "gradient_batches", cfg.gradient_batches, "an integer > 0")
        for name in ("finetune_steps", "warmup_steps"):
            text = getattr(cfg, name)
            if text:
                check(_parses(lambda t=text, n=name: Step.parse(t, n)), name, text, _STEP)
        if cfg.milestones:
            ok = _parses(lambda: parse_steps(cfg.milestones, "milestones"))
            check(ok, "milestones", cfg.milestones, "a comma list of steps such as 80,120")
        if not method.takes(cls):
            return
        check(
            cfg.rewind_step == 0 or cfg.retrain == "lottery",
            "rewind_step",
            cfg.rewind_step,
            f"0 (retrain={cfg.retrain} does not rewind; only lottery does)",
        )
        check(
            cfg.density == 1.0,
            "density",
            cfg.density,
            "1.0 (prune's density follows from levels and prune_fraction)",
        )
        check(
            cfg.lr_schedule == "none",
            "lr_schedule",
            cfg.lr_schedule,
            "none (prune's schedule is milestones, gamma and warmup_steps)",
        )


@dataclass(frozen=True)
class BranchParams(ParamGroup):
    """A branch of a lottery trunk's level (one stage from the parent's rewind point): fields
    only a branch has, so a grid's ``--set`` of one never reaches the branch's parent."""

    order: ClassVar[int] = 61

    branch: str = param(
        "none",
        "a branch of a lottery run's level, from its rewind point: redense (its mask, then "
        "dense), reinit (its mask, a new init) or random_prune (its per-layer counts, a random "
        "mask)",
        choices=BRANCHES,
    )
    branch_of: str = param("", "branch: the parent trial's hash (a folder beside this trial's)")
    branch_level: int = param(0, "branch: the parent's level read (>= 0)")
    redense_step: str = param(
        "",
        "redense: when every mask opens (a step such as 160ep, 500it; '': at the start, "
        "rewind_step)",
    )
    redense_lr: float = param(
        0.001,
        "retired: not read (after redense_step the lr follows milestones, as SDD's); kept so "
        "stored configs load",
    )

    @classmethod
    def plan_check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        # Planning only: a stored config with another (never read) redense_lr still loads.
        check(
            cfg.redense_lr == _REDENSE_LR_RETIRED,
            "redense_lr",
            cfg.redense_lr,
            f"{_REDENSE_LR_RETIRED} (retired: after redense_step the lr follows milestones and "
            "gamma, as SDD's; docs/methods.md, prune, re-dense)",
        )

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        if cfg.redense_step:
            ok = _parses(lambda: Step.parse(cfg.redense_step, "redense_step"))
            check(ok, "redense_step", cfg.redense_step, _STEP)
        if not method.takes(cls):
            return
        branch = cfg.branch != "none"
        check(
            not branch or cfg.branch_of != "",
            "branch_of",
            cfg.branch_of,
            f"the parent trial's hash (branch={cfg.branch} reads its levels)",
        )
        check(
            branch or cfg.branch_of == "",
            "branch_of",
            cfg.branch_of,
            "'' (only a branch reads a parent; set branch)",
        )
        check(
            cfg.branch_level >= 0 if branch else cfg.branch_level == 0,
            "branch_level",
            cfg.branch_level,
            "an integer >= 0" if branch else "0 (only a branch reads a level; set branch)",
        )
        check(
            cfg.redense_step == "" or cfg.branch == "redense",
            "redense_step",
            cfg.redense_step,
            "'' (only branch=redense opens its masks)",
        )


_STEP = "a step such as 160ep, 1000it or 80ep50it"
# redense_lr's old default, the only value allowed now: stored configs (every trial's
# config.json and ledger entry lists every field) keep loading and keep their hashes.
_REDENSE_LR_RETIRED = 0.001


def _parses(parse: Any) -> bool:
    try:
        parse()
    except UserError:
        return False
    return True


def target_counts(
    numels: Mapping[str, int], level: int, fraction: float, scope: str
) -> dict[str, int] | int:
    """Active weights after ``level`` levels: ``round(N (1-p)^L)`` over all layers (global, an
    int) or ``max(1, round(N_l (1-p)^L))`` per layer (a dict)."""
    keep = (1.0 - fraction) ** level
    if scope == "global":
        return round(sum(numels.values()) * keep)
    return {name: max(1, round(n * keep)) for name, n in numels.items()}


def select(
    scores: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    counts: Mapping[str, int] | int,
) -> dict[str, torch.Tensor]:
    """New bool masks keeping the highest scores among the active weights: ``counts`` over
    all layers (an int) or per layer (a dict). Ties keep the earlier position (stable sort)."""
    names = list(scores)

    def ranked(name: str) -> torch.Tensor:
        s = scores[name].detach().reshape(-1).float()
        return torch.where(masks[name].reshape(-1), s, torch.full_like(s, -math.inf))

    if isinstance(counts, int):
        flat = torch.cat([ranked(n) for n in names])
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        keep[torch.sort(flat, descending=True, stable=True).indices[:counts]] = True
        parts = torch.split(keep, [scores[n].numel() for n in names])
        return {n: p.view(scores[n].shape) for n, p in zip(names, parts, strict=True)}
    out = {}
    for name in names:
        flat = ranked(name)
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        keep[torch.sort(flat, descending=True, stable=True).indices[: counts[name]]] = True
        out[name] = keep.view(scores[name].shape)
    return out


def _random_mask(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random bool mask of ``mask``'s shape with ``mask``'s count."""
    keep = torch.zeros(mask.numel(), dtype=torch.bool)
    keep[torch.randperm(mask.numel(), generator=gen)[: int(mask.sum())]] = True
    return keep.view(mask.shape)


# ---------------------------------------------------------------------- the stage plan
def level_name(level: int) -> str:
    """A level's stage folder: ``level_0003``."""
    return f"level_{level:04d}"


class PrunePlan(StagePlan):
    """Prune's stages: levels 0..``levels`` of a trunk, or a branch's one level. A level's
    start is decided from stored results only: the previous level's final weights and masks
    (``oneshot``: level 0's), the trunk's rewind point, a branch's parent folder."""

    @classmethod
    def stages(cls, cfg: TrialConfig) -> list[Stage]:
        keep = 1.0 - cfg.prune_fraction
        if cfg.branch != "none":  # from the parent's rewind point, as SDD's lottery branches
            level = cfg.branch_level
            sparse = cfg.epochs
            if cfg.branch == "redense":  # sparse until redense_step, then dense
                at = Step.parse(cfg.redense_step, "redense_step") if cfg.redense_step else Step()
                sparse = min(at.epochs, cfg.epochs)  # whole epochs: a planning estimate
            cost = ((sparse, keep**level), (cfg.epochs - sparse, 1.0))
            span = Span(Step(0, cfg.rewind_step))
            return [
                Stage(
                    level_name(level),
                    {"level": level},
                    span,
                    ("rewind_step", cfg.rewind_step),
                    cost,
                )
            ]
        stages = []
        for level in range(cfg.levels + 1):
            span, blame = Span(), ("epochs", cfg.epochs)
            if level and cfg.retrain == "lottery":
                span, blame = Span(Step(0, cfg.rewind_step)), ("rewind_step", cfg.rewind_step)
            elif level and cfg.retrain == "finetune" and cfg.finetune_steps:
                end = Step.parse(cfg.finetune_steps, "finetune_steps")
                span, blame = Span(end=end), ("finetune_steps", cfg.finetune_steps)
            try:
                epochs = span.epoch_count(cfg.epochs, planned_steps_per_epoch(cfg))
            except UserError:  # a span the planned epoch length cannot hold: the trial says so
                epochs = cfg.epochs
            cost = ((epochs, keep**level),)
            stages.append(Stage(level_name(level), {"level": level}, span, blame, cost))
        return stages

    @classmethod
    def start(cls, cfg: TrialConfig, stage: Stage, trial: TrialStore) -> dict[str, Any]:
        level = int(stage.label["level"])
        if cfg.branch != "none":
            return _branch_start(cfg, trial)
        start: dict[str, Any] = {"level": level, "weights": None, "masks": None, "prune": None}
        if level == 0:
            if cfg.retrain == "lottery":
                start["keep_rewind_at"] = cfg.rewind_step
            return start
        source = stage_end(trial.stage(level_name(0 if cfg.oneshot else level - 1)))
        masks = source["masks"]
        if cfg.oneshot:  # level 0's dense weights straight to level L's count
            masks = {name: torch.ones_like(m) for name, m in masks.items()}
        start["prune"] = {"model": source["model"], "masks": masks}
        if cfg.retrain == "lottery":
            rewind = trial.stage(level_name(0)).load_tensors(REWIND_FILE)
            if rewind is None:
                raise UserError(
                    f"rewind_step: {cfg.rewind_step} is not allowed; allowed: a trunk whose level "
                    f"0 stored its rewind point ({trial.stage(level_name(0)).loc.file(REWIND_FILE)} "
                    "is missing: delete the trial's stages/ folder and run it again)"
                )
            start["weights"] = rewind["model"]
        elif cfg.retrain == "scratch":
            start["reinit"] = level
        else:  # lr_rewind, finetune: the weights just pruned
            start["weights"] = source["model"]
        return start

    @classmethod
    def adopt_legacy(cls, cfg: TrialConfig, trial: TrialStore) -> str | None:
        return _adopt_legacy(cfg, trial)


def stage_end(sub: TrialStore) -> dict[str, Any]:
    """A finished stage's final ``model`` (weights and buffers) and ``masks``: its
    ``final_weights.pt``, else its newest checkpoint."""
    final = sub.load_final_weights()
    if final is not None:
        return {"model": final["model"], "masks": final["masks"]}
    found = sub.load_latest_checkpoint()
    if found is None:
        raise UserError(
            f"levels: {sub.loc.path} is not allowed; allowed: a finished level with its final "
            "weights or a checkpoint (delete the folder to retrain it)"
        )
    state = found[1]
    return {"model": state["model"], "masks": state["engine"]["masks"]}


# ---------------------------------------------------------------------- branches
def _parent(cfg: TrialConfig, trial: TrialStore) -> TrialStore:
    """The parent trial ``branch_of`` (a sibling folder); a one-line error naming the trials
    there when it is missing."""
    own = trial.loc
    folder = Location(own.fs, posixpath.dirname(own.path))
    parent = TrialStore(folder.child(cfg.branch_of))
    if not parent.loc.exists():
        others = [n for n in folder.list_names() if n != posixpath.basename(own.path)]
        listed = ", ".join(others[:8]) + (", ..." if len(others) > 8 else "")
        raise UserError(
            f"branch_of: {cfg.branch_of!r} is not allowed; allowed: a trial in "
            f"{folder.path} ({listed or 'none there'})"
        )
    return parent


def _parent_level(cfg: TrialConfig, parent: TrialStore) -> dict[str, Any]:
    """Level ``branch_level``'s final masks and weights of ``parent`` (its stage, or the level
    file of a trunk stored before stages); a one-line error naming the levels it stored."""
    sub = parent.stage(level_name(cfg.branch_level))
    if sub.is_finished():
        return stage_end(sub)
    legacy = parent.loc.child(LEGACY_LEVELS_DIR)
    state = TrialStore(legacy).load_tensors(f"{level_name(cfg.branch_level)}.pt")
    if state is not None:
        return state
    have = [n for n in parent.stage_names() if parent.stage(n).is_finished()]
    have += [n.removesuffix(".pt") for n in legacy.list_names() if n.startswith("level_")]
    levels = ", ".join(str(int(n.removeprefix("level_"))) for n in sorted(set(have)))
    raise UserError(
        f"branch_level: {cfg.branch_level} is not allowed; allowed: a level trial "
        f"{cfg.branch_of} stored ({levels or 'none: it stored no level'})"
    )


def _parent_rewind(cfg: TrialConfig, parent: TrialStore, weights: bool) -> dict[str, Any] | None:
    """The parent's rewind point (level 0's weights and buffers at iteration ``rewind_step``)
    when ``weights``: its level-0 stage's ``rewind.pt``, or a trunk stored before stages: its
    ``levels/rewind.pt``, else its newest checkpoint (read only). One-line errors for a parent
    that is not a lottery trunk, one that rewinds elsewhere than this branch starts, or one
    that kept no rewind point."""
    config = parent.read_config() or {}
    retrain = config.get("retrain", "lottery")
    if retrain != "lottery":
        raise UserError(
            f"branch_of: {cfg.branch_of!r} is not allowed; allowed: a lottery trunk "
            f"(retrain=lottery; it has retrain={retrain}): a branch starts from its "
            "parent's rewind point"
        )
    stored = None
    if weights:
        stored = parent.stage(level_name(0)).load_tensors(REWIND_FILE)
        if stored is None:
            stored = TrialStore(parent.loc.child(LEGACY_LEVELS_DIR)).load_tensors(REWIND_FILE)
    step = int(stored["step"]) if stored is not None else int(config.get("rewind_step", 0))
    if step != cfg.rewind_step:
        raise UserError(
            f"rewind_step: {cfg.rewind_step} is not allowed; allowed: {step} (trial "
            f"{cfg.branch_of} rewinds there, and a branch starts at its parent's rewind point)"
        )
    if not weights:
        return None
    if stored is not None:
        return stored["model"]
    found = parent.load_latest_checkpoint()  # a trunk stored before rewind files existed
    model = (found[1].get("prune") or {}).get("rewind") if found is not None else None
    if model is None:
        where = parent.stage(level_name(0)).loc.file(REWIND_FILE)
        raise UserError(
            f"branch_of: {cfg.branch_of!r} is not allowed; allowed: a trunk with its rewind "
            f"point ({where} is missing and no checkpoint of it holds the point: run it again "
            "from scratch, e.g. delete its folder and resume its grid, and it stores the file)"
        )
    return model


def _branch_start(cfg: TrialConfig, trial: TrialStore) -> dict[str, Any]:
    """A branch's one stage, from its parent's level and rewind point (only read)."""
    parent = _parent(cfg, trial)
    masks = dict(_parent_level(cfg, parent)["masks"])
    if cfg.branch == "random_prune":  # the parent's per-layer counts, a random mask
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + _BRANCH_DRAW + cfg.branch_level)
        # drawn in the stored (the engine's) layer order, as before stages
        masks = {name: _random_mask(m, gen) for name, m in masks.items()}
    rewind = _parent_rewind(cfg, parent, weights=cfg.branch != "reinit")
    start: dict[str, Any] = {"level": cfg.branch_level, "masks": masks, "weights": rewind}
    if rewind is None:  # reinit: the parent's mask on a new initialisation
        start["reinit"] = _BRANCH_DRAW + cfg.branch_level
    if cfg.branch == "redense":
        start["redense_at"] = Step.parse(cfg.redense_step or f"{cfg.rewind_step}it", "redense_step")
    return start


def _adopt_legacy(cfg: TrialConfig, trial: TrialStore) -> str | None:
    """A trunk stored before stages (every level in one folder: ``levels/level_NNNN.pt``, rows
    labelled by level, checkpoints at the top) becomes stage folders: each finished level's
    stage gets its rows, its final weights and a summary; level 0 gets the rewind point. The
    level in progress (top-level checkpoints) is retrained from its start."""
    legacy = TrialStore(trial.loc.child(LEGACY_LEVELS_DIR))
    if trial.stage_names() or not legacy.loc.exists():
        return None
    rows = trial.read_metrics()
    # A trunk killed before its summary: each level's own facts (the rest were never stored).
    summary = trial.read_summary() or {
        "trial_hash": cfg.trial_hash,
        "status": "finished",
        "recipe": cfg.recipe,
        "selection": cfg.selection,
        "labels_used": "none",
        "networks": 1,
    }
    adopted = []
    dense_per_epoch = float(summary.get("dense_train_flops") or 0.0) / max(cfg.epochs, 1)
    for name in legacy.loc.list_names():
        if not name.startswith("level_"):
            continue
        level = int(name.removeprefix("level_").removesuffix(".pt"))
        level_rows = [r for r in rows if int(r.get("level", -1)) == level]
        state = legacy.load_tensors(name)
        if not level_rows or state is None:
            continue
        sub = trial.stage(level_name(level))
        first = int(level_rows[0]["epoch"]) - 1
        local = [{**r, "epoch": int(r["epoch"]) - first} for r in level_rows]
        for row in local:
            row.pop("level", None)
        sub.write_config(cfg.to_dict())
        sub.save_final_weights({"epoch": len(local), "trial_hash": cfg.trial_hash, **state})
        flops_before = float(rows[first - 1]["train_flops"]) if first else 0.0
        for row in local:
            row["train_flops"] = float(row["train_flops"]) - flops_before
        sub.write_metrics(local)
        last = local[-1]
        weights = [v for v in state["model"].values() if v.dim() > 1]  # conv and linear
        total = sum(w.numel() for w in weights)
        pruned = sum(int((~m).sum()) for m in state["masks"].values())
        sub.write_summary(
            {
                **{k: v for k, v in summary.items() if k not in ("levels", "stages")},
                METRICS_SHA256: metrics_digest(local),  # the stage's own rows
                "nonzero_params": total - pruned,
                "total_params": total,
                "epochs": len(local),
                "final": last,
                "selected": last,
                "selected_epoch": len(local),
                "density": float(last.get("density", 1.0)),
                "train_flops": float(last["train_flops"]),
                # Before stages the summary held one dense run (level 0's `epochs`): a level
                # costs that per epoch it trained (exact for whole epochs).
                "dense_train_flops": dense_per_epoch * len(local),
                "wall_time_s": float(sum(float(r.get("epoch_time_s", 0.0)) for r in local)),
                "adopted_from": LEGACY_LEVELS_DIR,
            }
        )
        sub.write_state("finished", epoch=len(local), epochs=len(local))
        adopted.append(level)
    rewind = legacy.load_tensors(REWIND_FILE)
    if rewind is None:  # a trunk from before rewind files: its checkpoints kept the point
        found = trial.load_latest_checkpoint()
        model = (found[1].get("prune") or {}).get("rewind") if found is not None else None
        if model is not None:
            rewind = {"step": cfg.rewind_step, "model": model}
    if rewind is not None:
        trial.stage(level_name(0)).save_tensors(REWIND_FILE, rewind)
    trial.delete_checkpoints()  # the level in progress restarts in its own stage
    return (
        f"{trial.loc.path}: stored before stages; levels {adopted} became stage folders "
        f"(stages/level_NNNN), the level in progress restarts from its start"
    )


# ---------------------------------------------------------------------- one level's training
class Prune(Method):
    """One level of a prune run (a stage): the network under a static engine's masks, trained
    on the step schedule from the start its plan decided (:class:`PrunePlan`)."""

    def __init__(self, ctx: TrialContext) -> None:
        super().__init__(ctx)
        from trainables.sparse import maskable_parameters

        if ctx.stage is None:
            raise UserError(
                "method: 'prune' is not allowed here; allowed: a trial run by run_trial (prune "
                "runs as stages, one per level: trainables/train/staged.py)"
            )
        cfg, spe = self.cfg, ctx.steps_per_epoch
        self.start = ctx.stage.start
        self.level = int(self.start["level"])
        self.milestones = [s.to_iterations(spe) for s in parse_steps(cfg.milestones, "milestones")]
        warmup = Step.parse(cfg.warmup_steps, "warmup_steps") if cfg.warmup_steps else Step()
        self.warmup = warmup.to_iterations(spe)
        self.weights = maskable_parameters(self.model, cfg.dense_first_layer, cfg.dense_last_layer)
        self.first_iteration = ctx.stage.stage.span.start.to_iterations(spe)
        self.iteration = self.first_iteration  # the schedule's iteration of the next step
        self.finetuning = self.level > 0 and cfg.retrain == "finetune" and cfg.branch == "none"
        self.keep_rewind_at: int | None = self.start.get("keep_rewind_at")
        self.rewind: dict[str, torch.Tensor] | None = None  # kept in memory when no folder
        self.redense_at: int | None = None
        if self.start.get("redense_at") is not None:
            self.redense_at = self.start["redense_at"].to_iterations(spe)
            if not self.first_iteration <= self.redense_at < cfg.epochs * spe:
                raise UserError(
                    f"redense_step: {cfg.redense_step!r} is not allowed; allowed: a point from "
                    f"rewind_step ({cfg.rewind_step} iterations) to before the training length "
                    f"of {cfg.epochs} epochs x {spe} iterations"
                )
        self._pending_flops = 0.0
        self._flops_cache: float | None = None
        if self.level == 0 and cfg.branch == "none":  # every level's span, checked up front
            for stage in PrunePlan.stages(cfg):
                stage.span.slices(cfg.epochs, spe, stage.blame)
        self._begin()
        for group in self.optimizer.param_groups:  # the row's lr is the schedule's from the start
            group["lr"] = self.lr_at(self.iteration)

    def build_engine(self, model: nn.Module) -> SparseEngine:
        from trainables.sparse import SparseEngine

        cfg = self.cfg
        return SparseEngine(
            model,
            None,
            density=1.0,  # all-ones masks until the start installs the level's
            sparse_init="uniform",
            growth="random",
            drop_fraction=0.0,
            drop_schedule="constant",
            drop_end=1.0,
            update_frequency=1,
            total_steps=self.ctx.total_steps,
            reset_momentum=False,
            mask_updates=False,
            dense_first_layer=cfg.dense_first_layer,
            dense_last_layer=cfg.dense_last_layer,
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    def _begin(self) -> None:
        """Install the start: prune the source weights to the level's count (the mask), then
        the starting weights (rewind point, the pruned weights, or a new initialisation)."""
        start, cfg = self.start, self.cfg
        masks = start.get("masks")
        if start.get("prune") is not None:
            source = start["prune"]
            self.model.load_state_dict(source["model"])
            numels = {name: w.numel() for name, w in self.weights.items()}
            counts = target_counts(numels, self.level, cfg.prune_fraction, cfg.prune_scope)
            current = {name: source["masks"][name].to(self.ctx.device) for name in self.weights}
            masks = select(self.scores(self.level), current, counts)
        if masks is not None:
            self._check_shapes(masks)
        if start.get("weights") is not None:
            self.model.load_state_dict(start["weights"])
        elif start.get("reinit") is not None:
            self._reinitialise(int(start["reinit"]))
        if masks is not None:
            self._set_masks({name: masks[name] for name in self.weights})
        if self.keep_rewind_at == self.iteration:
            self._keep_rewind()
        if self.redense_at == self.iteration:
            self._redense()

    def _check_shapes(self, masks: Mapping[str, torch.Tensor]) -> None:
        shapes = {name: tuple(w.shape) for name, w in self.weights.items()}
        if {name: tuple(m.shape) for name, m in masks.items()} != shapes:
            raise UserError(
                f"branch_of: {self.cfg.branch_of!r} is not allowed; allowed: a parent with this "
                f"trial's model, width and kept-dense layers (its masks cover {list(masks)})"
            )

    # ------------------------------------------------------------------ training
    def lr_at(self, iteration: int) -> float:
        """The learning rate of the schedule's ``iteration`` (0-based)."""
        cfg = self.cfg
        if self.finetuning:
            return cfg.finetune_lr
        lr = cfg.lr * cfg.gamma ** sum(iteration >= m for m in self.milestones)
        if self.warmup:
            lr *= min(1.0, iteration / self.warmup)
        return lr

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        lr = self.lr_at(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return super().train_step(batch)

    def after_step(self, step: int) -> bool:
        assert self.engine is not None
        self.engine.step(step)  # re-masks the weights; static: reads no gradient
        self.iteration = self.first_iteration + step
        if self.iteration == self.keep_rewind_at:
            self._keep_rewind()
        if self.iteration == self.redense_at:
            self._redense()
        return False

    def before_evaluate(self, epoch: int) -> float:
        spent, self._pending_flops = self._pending_flops, 0.0
        return spent

    def _keep_rewind(self) -> None:
        """Level 0 of a lottery trunk at ``rewind_step``: the weights (and buffers) every later
        level and every branch start from, stored in the stage's folder as ``rewind.pt``."""
        model = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        self.rewind = model
        if self.ctx.trial_dir is not None:
            store = TrialStore(self.ctx.trial_dir)
            store.save_tensors(REWIND_FILE, {"step": self.cfg.rewind_step, "model": model})

    def _set_masks(self, masks: Mapping[str, torch.Tensor], fresh_optimizer: bool = True) -> None:
        """Install ``masks`` (re-applied to the weights) and, unless told otherwise, start a fresh
        optimizer (its state must not hold the weights' history from before the masks)."""
        from trainables.optimizers import build_optimizer

        assert self.engine is not None
        state = self.engine.state_dict()
        state["masks"] = {name: m.to(torch.bool).cpu() for name, m in masks.items()}
        state["counts"] = {name: int(m.sum()) for name, m in masks.items()}
        self.engine.load_state_dict(state)  # re-applies the masks
        if fresh_optimizer:
            self.optimizer = build_optimizer(self.model.parameters(), self.cfg, self.ctx.device)
            self.engine.bind_optimizer(self.optimizer)
        self._flops_cache = None

    def _redense(self) -> None:
        """Open every mask: the pruned weights (exactly zero: the masks zero them after every
        step) train again. The optimizer is kept, as SDD's: its momentum goes on, including
        the pruned weights' (their gradients were never masked)."""
        assert self.engine is not None
        ones = {name: torch.ones_like(m) for name, m in self.engine.masks().items()}
        self._set_masks(ones, fresh_optimizer=False)

    def _reinitialise(self, draw: int) -> None:
        """A new initialisation drawn from (seed, ``draw``); the global RNG is kept."""
        from trainables.models import build_model

        cfg = self.cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * 100_003 + draw)
            fresh = build_model(
                cfg.model, cfg.num_classes, width=cfg.width, stem=cfg.stem, init=cfg.init
            )
        self.model.load_state_dict(fresh.state_dict())

    def scores(self, level: int) -> dict[str, torch.Tensor]:
        """The criterion's score of every maskable weight (higher is kept)."""
        cfg = self.cfg
        if cfg.criterion == "magnitude":
            return {n: w.detach().abs() for n, w in self.weights.items()}
        if cfg.criterion == "random":
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + level)
            return {
                n: torch.rand(w.shape, generator=gen).to(w.device) for n, w in self.weights.items()
            }
        return self._gradient_scores(level)

    def _gradient_scores(self, level: int) -> dict[str, torch.Tensor]:
        """|w * dL/dw| with dL/dw summed over ``gradient_batches`` training batches (a copy of
        the network in train mode, so the real one's BatchNorm statistics stay untouched)."""
        cfg = self.cfg
        model = copy.deepcopy(self.model).train()
        names = dict(model.named_parameters())
        weights = {n: names[n] for n in self.weights}
        batches = self.ctx.train.batches(cfg.batch_size, epoch=-level, seed=cfg.seed, shuffle=True)
        for count, batch in enumerate(batches):
            if count >= cfg.gradient_batches:
                break
            with self.ctx.autocast():
                logits = model(self.ctx.prepare(batch.x))
            torch.nn.functional.cross_entropy(logits.float(), batch.y).backward()
            self._pending_flops += 3.0 * self.dense_flops * batch.y.shape[0]
        return {n: (w.detach() * w.grad).abs() for n, w in weights.items()}

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "prune": {"iteration": self.iteration}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.iteration = int(state["prune"]["iteration"])
        self._pending_flops = 0.0  # the scoring pass was counted in the checkpointed epochs
        self._flops_cache = None

    @classmethod
    def checkpoint_schedule(cls, cfg: TrialConfig, steps_per_epoch: int) -> list[CheckpointStage]:
        # Every level is a stage (a trial folder of its own, priced as one: its checkpoints hold
        # its network, optimizer and the engine's masks, and its final weights or last
        # checkpoints stay, what the next level and branches read); level 0 of a lottery trunk
        # also keeps its rewind point (one network, a stage file).
        stages = PrunePlan.stages(cfg)
        moments = optimizer_moments(cfg)
        out = []
        for stage in stages:
            try:
                epochs = stage.span.epoch_count(cfg.epochs, steps_per_epoch)
            except UserError:  # a rewind or fine-tuning length the real split may still fit
                epochs = cfg.epochs
            holds = CheckpointTensors(weight_sized=moments, masks=1.0)
            lottery_trunk = cfg.retrain == "lottery" and cfg.branch == "none"
            rewind = stage.label["level"] == 0 and lottery_trunk
            out.append(CheckpointStage(epochs, holds, CheckpointTensors() if rewind else None))
        return out

    # ------------------------------------------------------------------ FLOPs
    def forward_flops(self) -> float:
        if self._flops_cache is None:
            self._flops_cache = super().forward_flops()
        return self._flops_cache


METHOD = MethodInfo(
    "prune",
    "iterative pruning and retraining (lottery, LR rewinding, fine-tuning, scratch)",
    Prune,
    params=(SparseParams, PruneParams, BranchParams),
    labels="none",
    can_graph=False,
    display_name="Prune",
    stages=PrunePlan,
)
