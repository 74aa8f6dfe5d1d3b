"""``prune``: iterative pruning with retraining (the Sparse Double Descent trunk, OpenLTH style).

One trial holds every level as checkpointed epochs of the core loop:

* **Level 0** trains the dense network for ``epochs`` epochs.
* **Level L >= 1** prunes ``prune_fraction`` of the weights still active (by ``criterion``,
  over all maskable layers or per layer, ``prune_scope``) from level L-1's trained weights,
  then retrains by ``retrain``: ``lottery`` (the level-0 weights of iteration ``rewind_step``,
  the data order and LR schedule restarted at that iteration), ``lr_rewind`` (keep the weights,
  replay the whole schedule), ``finetune`` (keep the weights, constant ``finetune_lr`` for
  ``finetune_steps``) or ``scratch`` (a new initialisation per level). With ``oneshot`` every
  level prunes level 0's dense weights straight to its count instead (the one-shot branch).

The active count after L levels is ``round(N (1 - p)^L)`` over the maskable weights (global
scope) or per layer (``layer`` scope, at least 1 per layer), so level L of any run holds
exactly the same number of weights. Masks live in a static :class:`~trainables.sparse.SparseEngine`
(``mask_updates=False``), re-applied after every step. The learning rate follows a step
schedule (``milestones``, ``gamma``, ``warmup_steps``), set before every step from the
level-local iteration. ``levels`` is not part of the trial's identity: asking a finished trial
for more levels continues it from its last checkpoint (:meth:`Prune.summary_covers`).

Every finished level leaves ``<trial>/levels/level_NNNN.pt`` (its bool masks and final weights);
a lottery trunk also stores its rewind point once, ``<trial>/levels/rewind.pt``.
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
from trainables.steps import Step, parse_steps

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainables.config import TrialConfig
    from trainables.data import Batch
    from trainables.methods.base import TrialContext
    from trainables.results import TrialStore
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
        p = cfg.prune_fraction
        check(0 < p < 1, "prune_fraction", p, "a number in (0, 1)")
        check(cfg.levels >= 0, "levels", cfg.levels, "an integer >= 0")
        check(cfg.rewind_step >= 0, "rewind_step", cfg.rewind_step, "an integer >= 0")
        check(cfg.finetune_lr > 0, "finetune_lr", cfg.finetune_lr, "a positive number")
        check(cfg.gamma > 0, "gamma", cfg.gamma, "a positive number")
        check(cfg.gradient_batches > 0, "gradient_batches", cfg.gradient_batches, "an integer > 0")
        for name in ("finetune_steps", "warmup_steps", "redense_step"):
            text = getattr(cfg, name)
            if text:
                check(_parses(lambda t=text, n=name: Step.parse(t, n)), name, text, _STEP)
        if cfg.milestones:
            ok = _parses(lambda: parse_steps(cfg.milestones, "milestones"))
            check(ok, "milestones", cfg.milestones, "a comma list of steps such as 80,120")
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


# ---------------------------------------------------------------------- the level plan
@dataclass(frozen=True)
class Slot:
    """One epoch of the core loop: which level, which data epoch, which of its batches."""

    level: int
    data_epoch: int  # 1-based epoch of the data order and augmentation draws
    first: int  # first batch trained (after a rewind to mid-epoch)
    stop: int | None  # batch index training stops at (None: the whole epoch)
    start_iteration: int  # level-local iteration of the first trained batch
    last: bool  # the level's last epoch


def level_span(cfg: TrialConfig, level: int, per_epoch: int) -> tuple[int, int]:
    """(first, end) level-local iterations of ``level``."""
    total = cfg.epochs * per_epoch
    if cfg.branch != "none":  # from the parent's rewind point, as SDD's lottery branches
        return cfg.rewind_step, total
    if level == 0:
        return 0, total
    if cfg.retrain == "lottery":
        return cfg.rewind_step, total
    if cfg.retrain == "finetune" and cfg.finetune_steps:
        return 0, Step.parse(cfg.finetune_steps, "finetune_steps").to_iterations(per_epoch)
    return 0, total


def level_plan(cfg: TrialConfig, per_epoch: int) -> list[Slot]:
    """Every core epoch of the trial, level by level (its length is ``total_epochs``); a
    branch's one stage is labelled ``branch_level``."""
    slots = []
    branch = cfg.branch != "none"
    for level in [cfg.branch_level] if branch else range(cfg.levels + 1):
        start, end = level_span(cfg, level, per_epoch)
        if not start < end:
            field, value = ("rewind_step", start) if start else ("finetune_steps", end)
            raise UserError(
                f"{field}: {value!r} is not allowed; allowed: a point inside the training "
                f"length of {cfg.epochs} epochs x {per_epoch} iterations"
            )
        first_epoch, last_epoch = start // per_epoch + 1, math.ceil(end / per_epoch)
        for data_epoch in range(first_epoch, last_epoch + 1):
            base = (data_epoch - 1) * per_epoch
            first = max(start - base, 0)
            stop = end - base if end - base < per_epoch else None
            last = data_epoch == last_epoch
            slots.append(Slot(level, data_epoch, first, stop, base + first, last))
    return slots


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


class Prune(Method):
    """Dense level 0, then prune-and-retrain levels under a static engine's masks."""

    mask_updates = False  # the engine holds masks; only level switches change them

    def __init__(self, ctx: TrialContext) -> None:
        super().__init__(ctx)
        from trainables.sparse import maskable_parameters

        cfg = self.cfg
        self.plan = level_plan(cfg, ctx.steps_per_epoch)
        self.milestones = [
            s.to_iterations(ctx.steps_per_epoch) for s in parse_steps(cfg.milestones, "milestones")
        ]
        warmup = Step.parse(cfg.warmup_steps, "warmup_steps") if cfg.warmup_steps else Step()
        self.warmup = warmup.to_iterations(ctx.steps_per_epoch)
        self.weights = maskable_parameters(self.model, cfg.dense_first_layer, cfg.dense_last_layer)
        self.level = 0
        self.iteration = 0  # level-local iterations done
        self.results: list[dict[str, Any]] = []
        self.rewind: dict[str, torch.Tensor] | None = None
        self.dense: dict[str, torch.Tensor] | None = None  # oneshot: level 0's final weights
        if cfg.retrain == "lottery" and cfg.rewind_step == 0 and cfg.branch == "none":
            self.rewind = self._copy_state()
        self._pending_flops = 0.0
        self._flops_cache: float | None = None
        self.redense_at: int | None = None  # redense: level-local iteration the masks open at
        if cfg.branch != "none":
            self._start_branch()

    def build_engine(self, model: nn.Module) -> SparseEngine:
        from trainables.sparse import SparseEngine

        cfg = self.cfg
        return SparseEngine(
            model,
            None,
            density=1.0,  # level 0 is dense: all-ones masks
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

    def _copy_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    # ------------------------------------------------------------------ the core's hooks
    def total_epochs(self) -> int:
        return len(self.plan)

    @classmethod
    def cost_schedule(cls, cfg: TrialConfig) -> list[tuple[int, float]]:
        # every level trains ``epochs`` at (1 - p)^L (rewinding and fine-tuning lengths aside)
        keep = 1.0 - cfg.prune_fraction
        if cfg.branch != "none":  # one stage at the parent level's density (redense: then dense)
            sparse = cfg.epochs
            if cfg.branch == "redense":
                at = Step.parse(cfg.redense_step, "redense_step") if cfg.redense_step else Step()
                sparse = min(at.epochs, cfg.epochs)  # whole epochs: a planning estimate
            return [(sparse, keep**cfg.branch_level), (cfg.epochs - sparse, 1.0)]
        return [(cfg.epochs, keep**level) for level in range(cfg.levels + 1)]

    @classmethod
    def checkpoint_schedule(cls, cfg: TrialConfig, steps_per_epoch: int) -> list[CheckpointStage]:
        # Every level: the network, its optimizer and the engine's masks (all-ones at level 0),
        # plus lottery's rewind point and, from level 1, oneshot's level-0 weights; each level
        # of a non-branch run leaves its level file (weights and masks), kept, and level 0 of a
        # lottery trunk the rewind file too (one more network, kept).
        branch = cfg.branch != "none"
        levels = [cfg.branch_level] if branch else list(range(cfg.levels + 1))
        try:
            plan = level_plan(cfg, steps_per_epoch)
            epochs = {level: sum(1 for slot in plan if slot.level == level) for level in levels}
        except UserError:  # a rewind or fine-tuning length the real split may still fit
            epochs = dict.fromkeys(levels, cfg.epochs)
        rewind = 1.0 if cfg.retrain == "lottery" and not branch else 0.0
        level_file = None if branch else CheckpointTensors(masks=1.0)
        moments = optimizer_moments(cfg)
        stages = []
        for level in levels:
            dense = 1.0 if cfg.oneshot and level > 0 and not branch else 0.0
            holds = CheckpointTensors(weight_sized=moments + rewind + dense, masks=1.0)
            kept = level_file
            if level_file is not None and level == 0 and rewind:
                kept = level_file.plus(networks=1.0)
            stages.append(CheckpointStage(epochs[level], holds, kept))
        return stages

    @classmethod
    def summary_covers(cls, cfg: TrialConfig, summary: Mapping[str, Any]) -> bool:
        wanted = 1 if cfg.branch != "none" else cfg.levels + 1
        return len(summary.get("levels") or []) >= wanted

    def epoch_batches(self, epoch: int) -> tuple[int, int, int | None]:
        slot = self.plan[epoch - 1]
        if slot.level > self.level:
            self._enter_level(slot.level)
        self.iteration = slot.start_iteration
        return slot.data_epoch, slot.first, slot.stop

    def row_fields(self, epoch: int) -> dict[str, Any]:
        return {"level": self.plan[epoch - 1].level}

    def status_fields(self) -> dict[str, Any]:
        return {"level": self.level}

    def summary_fields(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"levels": list(self.results)}

    # ------------------------------------------------------------------ training
    def lr_at(self, iteration: int) -> float:
        """The learning rate of level-local ``iteration`` (0-based) at the current level."""
        cfg = self.cfg
        if self.level > 0 and cfg.retrain == "finetune" and cfg.branch == "none":
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
        self.iteration += 1
        cfg = self.cfg
        if (
            self.level == 0
            and cfg.retrain == "lottery"
            and cfg.branch == "none"
            and self.iteration == cfg.rewind_step
        ):
            self.rewind = self._copy_state()
        if self.iteration == self.redense_at:
            self._redense()
        return False

    def before_evaluate(self, epoch: int) -> float:
        spent, self._pending_flops = self._pending_flops, 0.0
        return spent

    def after_epoch(self, epoch: int, row: Mapping[str, Any]) -> None:
        slot = self.plan[epoch - 1]
        if not slot.last:
            return
        kept = ("train_loss", "train_acc")
        metrics = {k: v for k, v in row.items() if k.startswith(("test_", "valid_")) or k in kept}
        self.results.append(
            {
                "level": slot.level,
                "density": self.density(),
                "epoch": epoch,
                **metrics,
                "train_flops": row["train_flops"],
            }
        )
        if self.cfg.branch == "none" and self.ctx.trial_dir is not None:
            self._store_level(slot.level)

    # ------------------------------------------------------------------ level switches
    def _enter_level(self, level: int) -> None:
        """Prune level ``level - 1``'s trained weights (``oneshot``: level 0's), then reset by the
        retraining policy."""
        assert self.engine is not None and level == self.level + 1
        cfg = self.cfg
        masks = self.engine.masks()
        if cfg.oneshot:  # score level 0's final weights under all-ones masks
            if self.dense is None:
                self.dense = self._copy_state()  # entering level 1: the weights are level 0's
            self.model.load_state_dict(self.dense)
            masks = {name: torch.ones_like(m) for name, m in masks.items()}
        numels = {name: w.numel() for name, w in self.weights.items()}
        counts = target_counts(numels, level, cfg.prune_fraction, cfg.prune_scope)
        new = select(self.scores(level), masks, counts)
        if cfg.retrain == "lottery":
            assert self.rewind is not None, "the rewind point was never reached"
            self.model.load_state_dict(self.rewind)
        elif cfg.retrain == "scratch":
            self._reinitialise(level)
        self._set_masks(new)
        self.level = level

    def _set_masks(self, masks: Mapping[str, torch.Tensor], fresh_optimizer: bool = True) -> None:
        """Install ``masks`` (re-applied to the weights) and, unless told otherwise, start a fresh
        optimizer."""
        from trainables.train.optim import build_optimizer

        assert self.engine is not None
        state = self.engine.state_dict()
        state["masks"] = {name: m.to(torch.bool).cpu() for name, m in masks.items()}
        state["counts"] = {name: int(m.sum()) for name, m in masks.items()}
        self.engine.load_state_dict(state)  # re-applies the masks
        if fresh_optimizer:
            self.optimizer = build_optimizer(self.model.parameters(), self.cfg, self.ctx.device)
            self.engine.bind_optimizer(self.optimizer)
        self._flops_cache = None

    # ------------------------------------------------------------------ level files, branches
    def _store_level(self, level: int) -> None:
        """``<trial>/levels/level_NNNN.pt``: the level's final bool masks and weights; and a
        lottery trunk's rewind point ``<trial>/levels/rewind.pt`` (where branches start), written
        (over any older one) with level 0's file, or with a later level's when absent (a trunk
        run before rewind files existed). Rewritten at level 0: a trunk re-run from scratch
        rewrites every level file, so a rewind point kept from an earlier run would pair its
        masks with another run's weights."""
        from trainables.results import TrialStore

        assert self.engine is not None and self.ctx.trial_dir is not None
        store = TrialStore(self.ctx.trial_dir)
        if self.rewind is not None and (level == 0 or not store.has_rewind()):
            model = {k: v.detach().cpu().clone() for k, v in self.rewind.items()}
            store.save_rewind({"step": self.cfg.rewind_step, "model": model})
        state = {
            "masks": {name: m.cpu().clone() for name, m in self.engine.masks().items()},
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
        }
        store.save_level(level, state)

    def _parent(self) -> TrialStore:
        """The parent trial ``branch_of`` (a sibling folder); a one-line error naming the trials
        there when it is missing."""
        from trainables.results import Location, TrialStore

        cfg = self.cfg
        if self.ctx.trial_dir is None:
            raise UserError(
                f"branch_of: {cfg.branch_of!r} is not allowed here; allowed: a branch run in a "
                "trial folder (run_trial, rest-sweep train --out, run)"
            )
        own = Location.of(self.ctx.trial_dir)
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

    def _parent_level(self, parent: TrialStore) -> dict[str, Any]:
        """Level ``branch_level``'s file of ``parent``; a one-line error naming the stored levels
        when it is missing."""
        cfg = self.cfg
        state = parent.load_level(cfg.branch_level)
        if state is None:
            have = ", ".join(str(n) for n in parent.level_numbers())
            raise UserError(
                f"branch_level: {cfg.branch_level} is not allowed; allowed: a level trial "
                f"{cfg.branch_of} stored ({have or 'none: it stored no level files'})"
            )
        return state

    def _parent_rewind(self, parent: TrialStore, weights: bool) -> dict[str, torch.Tensor] | None:
        """The parent's rewind point (level 0's weights and buffers at iteration ``rewind_step``)
        when ``weights``: ``levels/rewind.pt``, or, for a parent run before rewind files existed,
        its newest checkpoint (read only). One-line errors for a parent that is not a lottery
        trunk, one that rewinds elsewhere than this branch starts, or one that kept neither."""
        from trainables.results import REWIND_FILE

        cfg = self.cfg
        config = parent.read_config() or {}
        retrain = config.get("retrain", "lottery")
        if retrain != "lottery":
            raise UserError(
                f"branch_of: {cfg.branch_of!r} is not allowed; allowed: a lottery trunk "
                f"(retrain=lottery; it has retrain={retrain}): a branch starts from its "
                "parent's rewind point"
            )
        stored = parent.load_rewind() if weights else None
        if stored is not None:
            step = int(stored["step"])
        else:
            step = int(config.get("rewind_step", cfg.rewind_step))
        if step != cfg.rewind_step:
            raise UserError(
                f"rewind_step: {cfg.rewind_step} is not allowed; allowed: {step} (trial "
                f"{cfg.branch_of} rewinds there, and a branch starts at its parent's rewind point)"
            )
        if not weights:
            return None
        if stored is not None:
            return stored["model"]
        found = parent.load_latest_checkpoint()
        model = (found[1].get("prune") or {}).get("rewind") if found is not None else None
        if model is None:
            where = parent.levels.file(REWIND_FILE)
            raise UserError(
                f"branch_of: {cfg.branch_of!r} is not allowed; allowed: a trunk with its rewind "
                f"point ({where} is missing and no checkpoint of it holds the point: it ran "
                "before rewind files existed; run it again from scratch, e.g. delete its folder "
                "and resume its grid, and it stores the file)"
            )
        return model

    def _start_branch(self) -> None:
        """Set up a branch's one stage from the parent's level (the parent is only read)."""
        cfg = self.cfg
        spe = self.ctx.steps_per_epoch
        self.level = cfg.branch_level  # the one stage: no level switch ever runs
        if cfg.branch == "redense":
            at = cfg.rewind_step  # '': regain at the start (the rewind point)
            if cfg.redense_step:
                at = Step.parse(cfg.redense_step, "redense_step").to_iterations(spe)
            self.redense_at = at
            if not cfg.rewind_step <= at < cfg.epochs * spe:
                raise UserError(
                    f"redense_step: {cfg.redense_step!r} is not allowed; allowed: a point from "
                    f"rewind_step ({cfg.rewind_step} iterations) to before the training length "
                    f"of {cfg.epochs} epochs x {spe} iterations"
                )
        parent = self._parent()
        level = self._parent_level(parent)
        masks = level["masks"]
        shapes = {name: tuple(w.shape) for name, w in self.weights.items()}
        if {name: tuple(m.shape) for name, m in masks.items()} != shapes:
            raise UserError(
                f"branch_of: {cfg.branch_of!r} is not allowed; allowed: a parent with this "
                f"trial's model, width and kept-dense layers (its masks cover {list(masks)})"
            )
        masks = {name: masks[name] for name in self.weights}  # the engine's layer order
        if cfg.branch == "random_prune":
            gen = torch.Generator().manual_seed(
                cfg.seed * 100_003 + _BRANCH_DRAW + cfg.branch_level
            )
            masks = {name: _random_mask(m, gen) for name, m in masks.items()}
        # redense, random_prune: the rewind-point weights (OpenLTH's start_at=rewind)
        rewind = self._parent_rewind(parent, weights=cfg.branch != "reinit")
        if rewind is None:
            self._reinitialise(_BRANCH_DRAW + cfg.branch_level)
        else:
            self.model.load_state_dict(rewind)
        self._set_masks(masks)
        if self.redense_at == cfg.rewind_step:
            self._redense()

    def _redense(self) -> None:
        """Open every mask: the pruned weights (exactly zero: the masks zero them after every
        step) train again. The optimizer is kept, as SDD's: its momentum goes on, including
        the pruned weights' (their gradients were never masked)."""
        assert self.engine is not None
        ones = {name: torch.ones_like(m) for name, m in self.engine.masks().items()}
        self._set_masks(ones, fresh_optimizer=False)

    def _reinitialise(self, level: int) -> None:
        """A new initialisation per level, drawn from (seed, level); the global RNG is kept
        (branches draw with ``level`` offset by ``_BRANCH_DRAW``)."""
        from trainables.models import build_model

        cfg = self.cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * 100_003 + level)
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
        rewind = None
        if self.rewind is not None:
            rewind = {k: v.cpu().clone() for k, v in self.rewind.items()}
        dense = None
        if self.dense is not None:
            dense = {k: v.cpu().clone() for k, v in self.dense.items()}
        prune = {
            "level": self.level,
            "results": list(self.results),
            "rewind": rewind,
            "dense": dense,
        }
        return {**super().state_dict(), "prune": prune}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        prune = state["prune"]
        self.level = int(prune["level"])
        self.results = list(prune["results"])
        if prune["rewind"] is not None:
            device = self.ctx.device
            self.rewind = {k: v.to(device) for k, v in prune["rewind"].items()}
        if prune["dense"] is not None:
            device = self.ctx.device
            self.dense = {k: v.to(device) for k, v in prune["dense"].items()}
        self._flops_cache = None

    # ------------------------------------------------------------------ FLOPs
    def forward_flops(self) -> float:
        if self._flops_cache is None:
            self._flops_cache = super().forward_flops()
        return self._flops_cache


METHOD = MethodInfo(
    "prune",
    "iterative pruning and retraining (lottery, LR rewinding, fine-tuning, scratch)",
    Prune,
    params=(SparseParams, PruneParams),
    labels="none",
    can_graph=False,
    display_name="Prune",
)
