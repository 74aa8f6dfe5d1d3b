"""The method plug-in API: what a method declares (torch-free) and what its code may override.

A method is one module under ``trainables/methods/`` holding a :class:`MethodInfo` (its name,
parameters, the labels it reads at training time, whether its step can be replayed as a CUDA
graph) and a :class:`Method` subclass with its code. The trial core
(:mod:`trainables.train.trial`) owns everything methods share: data on the device, the loop,
evaluation, metrics, checkpoints, the summary. The method owns its networks, optimizers, sparse
engine and any per-sample state, and plugs in through a few hooks:

* ``train_step(batch)``: forward, loss, backward, optimizer steps; returns the logits and the
  per-sample losses the train metrics are summed from. With ``can_graph`` it must not sync with
  the host: the core records it once as a CUDA graph and replays it for every full batch.
* ``loss(losses, batch)``: per-sample losses (with ``batch.index``, ``batch.y``, ``batch.b`` at
  hand) to the scalar that is back-propagated; the usual override.
* ``sampling_weights()``: per-sample draw weights of the training split, or None.
* ``before_epoch(epoch)``, ``after_step(step)`` (eager, after every step),
  ``before_evaluate(epoch)`` and ``after_epoch(epoch, row)``; ``selectable(epoch)``.
* ``state_dict()`` / ``load_state_dict()``: everything the method needs to resume exactly.
* ``step_flops(n, dense_gradient)``, ``forward_flops()``: its own training-FLOPs accounting.
* ``checkpoint_schedule(cfg, steps_per_epoch)`` (classmethod, torch-free): what its checkpoints
  hold, for the storage estimate of ``grids show`` (:mod:`trainables.checkpoint_volume`).

A multi-stage protocol (prune's levels) is not a hook: its ``MethodInfo.stages`` plan makes
each stage an ordinary trial in its own folder (:mod:`trainables.stages`), and the method sees
its stage's start in ``TrialContext.stage``. ``MethodInfo`` answers what planning asks of a
method's length and cost (``planned_epochs``, ``cost_schedule``).

Importing this module (and every method module) does not import torch: planning code reads
the :class:`MethodInfo` entries, and torch is loaded when a trial really trains.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainables.checkpoints import (
    CheckpointStage,
    CheckpointTensors,
    add_to_every_stage,
    optimizer_moments,
)
from trainables.errors import UserError
from trainables.lazy import lazy_module
from trainables.methods.params import ParamGroup, ReweightParams, SparseParams
from trainables.sparse.updaters import GROWTH

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainables.config import TrialConfig
    from trainables.data import Batch, DeviceSplit
    from trainables.sparse import SparseEngine
    from trainables.stages import Stage, StagePlan, StageStart
else:
    torch = lazy_module("torch")

LABELS = ("none", "bias", "group")


@dataclass(frozen=True)
class MethodInfo:
    """What planning needs to know about a method, without importing its code's dependencies.

    ``labels`` is what the method reads at training time besides the class label: ``none``,
    ``bias`` (the bias label of each sample) or ``group`` ((label, bias) cells); the report
    shows it next to the method's numbers. ``defaults`` are values every recipe gives this
    method (e.g. SET grows at random).

    Sparsity x objective: a method with ``objective`` set (a name such as ``reweight``) can be
    the training objective of a sparse-training method that ``takes_objective`` (static, SET,
    RigL): ``method=rigl, objective=groupdro`` trains RigL's sparse network on GroupDRO's loss.
    :meth:`with_objective` builds that combination.

    Display facts the analysis reads (so it never keys anything by a method's name):
    ``display_name``, ``colour`` (its figure colour, ``#rrggbb``; "": one picked from the name),
    ``networks`` (how many networks it trains, each counted in its training FLOPs) and
    ``table2_test_chosen`` (Table 2 also shows it at its test-chosen density, as the paper
    appears to report its own method; docs/analysis.md, "Best density").
    """

    name: str
    description: str
    implementation: type[Method]
    params: tuple[type[ParamGroup], ...] = ()
    labels: str = "none"
    can_graph: bool = True
    # Whether K same-shape trials of it may train as one fused step (trainables/train/fused.py):
    # only a method whose step is the base one (one network, one optimizer, the per-sample
    # cross-entropy through ``loss``, an engine updated in ``after_step``).
    can_fuse: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    objective: str | None = None
    takes_objective: bool = False
    display_name: str = ""  # how reports name it ("GroupDRO"); default: the name
    colour: str = ""  # figure colour "#rrggbb"; default: one picked from the name
    networks: int = 1  # networks it trains (both counted in train_flops: LfF, DisEnt)
    table2_test_chosen: bool = False  # Table 2 adds its test-chosen column
    # A staged method's stage plan (prune's levels): the runner trains each stage as an
    # ordinary trial in its own folder (trainables/stages.py); None: one lifecycle.
    stages: type[StagePlan] | None = None

    def __post_init__(self) -> None:
        if self.labels not in LABELS:
            raise ValueError(f"method {self.name}: labels {self.labels!r} not in {LABELS}")
        hexdigits = "0123456789abcdefABCDEF"
        rgb = len(self.colour) == 7 and self.colour[0] == "#"
        if self.colour and not (rgb and all(c in hexdigits for c in self.colour[1:])):
            raise ValueError(f"method {self.name}: colour {self.colour!r} is not #rrggbb")
        if self.networks < 1:
            raise ValueError(f"method {self.name}: networks {self.networks!r} < 1")

    def takes(self, group: type[ParamGroup]) -> bool:
        return group in self.params

    # ------------------------------------------------------------ a trial's length, planned
    def planned_epochs(self, cfg: TrialConfig, steps_per_epoch: int | None = None) -> int:
        """The epochs (metrics rows) ``cfg`` trains: ``epochs``, or every stage's at
        ``steps_per_epoch`` (a trial knows it; planning counts the dataset catalogue's training
        set, :func:`trainables.stages.planned_steps_per_epoch`). The one answer for status,
        ASHA's ``max_t`` and the Tune reports."""
        if self.stages is None:
            return cfg.epochs
        from trainables.stages import planned_steps_per_epoch

        per_epoch = steps_per_epoch or planned_steps_per_epoch(cfg)
        return sum(_stage_epochs(s, cfg.epochs, per_epoch) for s in self.stages.stages(cfg))

    def cost_schedule(self, cfg: TrialConfig) -> list[tuple[int, float]]:
        """(network-epochs, density) pairs a planning estimate charges for ``cfg``: each of its
        ``networks`` for ``epochs`` at ``density`` (LfF and DisEnt train two), or each stage's."""
        if self.stages is None:
            return [(cfg.epochs * self.networks, cfg.density)]
        from trainables.stages import planned_steps_per_epoch

        per_epoch = planned_steps_per_epoch(cfg)
        schedule: list[tuple[int, float]] = []
        for stage in self.stages.stages(cfg):
            whole = [(_stage_epochs(stage, cfg.epochs, per_epoch), 1.0)]
            schedule.extend(stage.cost or whole)
        return schedule

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def sparse(self) -> bool:
        """Whether the method trains a sparse network (has a density axis in grids)."""
        return self.takes(SparseParams)

    @property
    def reweights(self) -> bool:
        return self.takes(ReweightParams)

    def with_objective(self, objective: MethodInfo | None) -> MethodInfo:
        """This sparse-training method trained on ``objective``'s loss (None: itself).

        The code is the two classes combined (the objective's hooks first, so its ``loss``,
        ``sampling_weights`` and stage logic wrap the sparse method's engine); the parameters,
        labels and graphability are the union of both.
        """
        if objective is None or objective.objective == "erm":
            return self
        labels = max(self.labels, objective.labels, key=LABELS.index)
        params = self.params + tuple(g for g in objective.params if g not in self.params)
        return dataclasses.replace(
            self,
            description=f"{self.description}, trained on the {objective.objective} objective",
            implementation=_combined(objective.implementation, self.implementation),
            params=params,
            labels=labels,
            can_graph=self.can_graph and objective.can_graph,
            can_fuse=self.can_fuse and objective.can_fuse,
            networks=max(self.networks, objective.networks),
            defaults={**objective.defaults, **self.defaults},
            takes_objective=False,
        )


def _stage_epochs(stage: Stage, epochs: int, per_epoch: int) -> int:
    """A stage's epochs at ``per_epoch``; ``epochs`` where its span does not fit (the trial
    itself refuses such a span in one line when it starts)."""
    try:
        return stage.span.epoch_count(epochs, per_epoch)
    except UserError:
        return epochs


@functools.cache
def _combined(objective: type[Method], sparse: type[Method]) -> type[Method]:
    """One class per (objective, sparse method) pair, built once."""

    def after_epoch(self: Method, epoch: int, row: Mapping[str, Any]) -> None:
        super(combined, self).after_epoch(epoch, row)
        if self.engine is not None:  # the objective may rewrite weights (JTT re-initialises)
            self.engine.apply_masks()

    name = f"{objective.__name__}On{sparse.__name__}"
    combined = type(name, (objective, sparse), {"after_epoch": after_epoch})
    return combined


@dataclass
class TrialContext:
    """What the trial core hands a method: the config, the device and the training split."""

    cfg: TrialConfig
    device: torch.device
    train: DeviceSplit
    input_size: int
    steps_per_epoch: int
    channels_last: bool
    # The validation split, for methods that fit on it (DFR's last layer); None when not given.
    valid: DeviceSplit | None = None
    # The trial folder (local path or URI) when the core runs in one (``run_trial``), else None:
    # a stage's folder for a staged trial (a method may keep files there through TrialStore).
    trial_dir: str | None = None
    # A staged trial's stage (trainables/stages.py): its span of the schedule and the start
    # its plan decided from the earlier stages; None for an ordinary trial.
    stage: StageStart | None = None

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for ``precision=bf16`` on CUDA; a no-op otherwise. ``precision`` is CUDA
        numerics only: a CPU trial computes in fp32 whatever it says (the recipes default it per
        model, so a CPU run of a bf16 model must not change what it computes)."""
        if self.cfg.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def new_model(self) -> nn.Module:
        """The config's network on the device, initialised from the trial seed."""
        from trainables.models import build_model

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model = build_model(
            cfg.model, cfg.num_classes, width=cfg.width, stem=cfg.stem, init=cfg.init
        )
        model = model.to(self.device)
        if self.channels_last:  # before masks are built: they copy the weights' strides
            model = model.to(memory_format=torch.channels_last)
        return model


class Method:
    """One network and one optimizer trained on the mean per-sample cross-entropy (ERM).

    Subclasses override the hooks listed in the module docstring. The attributes ``model``
    (the network that is evaluated), ``optimizer``, ``schedule`` and ``engine`` (None when
    dense) are what the base hooks use; a method with more networks adds its own and extends
    :meth:`modules`, :meth:`optimizers`, :meth:`state_dict` and the FLOPs hooks.
    """

    def __init__(self, ctx: TrialContext) -> None:
        from trainables.flops import dense_layer_flops
        from trainables.optimizers import build_optimizer
        from trainables.train.optim import EpochSchedule

        self.ctx = ctx
        self.cfg = ctx.cfg
        self.model = ctx.new_model()
        self.engine: SparseEngine | None = self.build_engine(self.model)
        self.optimizer = build_optimizer(self.model.parameters(), self.cfg, ctx.device)
        if self.engine is not None:
            self.engine.bind_optimizer(self.optimizer)
        self.schedule = EpochSchedule(self.optimizer, self.cfg)
        self.forward = torch.compile(self.model) if self.cfg.compile else self.model
        cfg = self.cfg
        # The analytic per-layer table (the one FLOPs accounting; tested equal to a counted pass)
        self.layer_flops = dense_layer_flops(
            cfg.model, cfg.num_classes, cfg.width, cfg.stem, ctx.input_size
        )
        self.dense_flops = float(sum(self.layer_flops.values()))

    def build_engine(self, model: nn.Module) -> SparseEngine | None:
        """The sparse engine of ``model``; dense methods have none."""
        return None

    # ------------------------------------------------------------------ training hooks
    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss, backward, optimizer step; returns (logits, per-sample losses)."""
        with self.ctx.autocast():
            logits = self.forward(self.ctx.prepare(batch.x))
        losses = torch.nn.functional.cross_entropy(logits.float(), batch.y, reduction="none")
        self.loss(losses, batch).backward()
        self.optimizer.step()
        return logits, losses

    def loss(self, losses: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The scalar back-propagated from the per-sample losses of ``batch``."""
        return losses.mean()

    def sampling_weights(self) -> torch.Tensor | None:
        """Per-sample draw weights of the training split (None: a plain permutation)."""
        return None

    def after_step(self, step: int) -> bool:
        """Eager work after optimizer step ``step`` (1-based); True if dense gradients were read."""
        return False

    def before_evaluate(self, epoch: int) -> float:
        """Eager work after epoch ``epoch``'s training, before its evaluation (DFR refits its last
        layer here); returns the training FLOPs it spent (0.0: nothing)."""
        return 0.0

    def after_epoch(self, epoch: int, row: Mapping[str, Any]) -> None:
        """After an epoch's metrics are complete: the epoch LR schedule on the valid loss."""
        self.schedule.step(row["valid_loss"])

    def selectable(self, epoch: int) -> bool:
        """Whether epoch ``epoch``'s model may be the one ``selection=best-valid`` reports (JTT's
        identification epochs may not)."""
        return True

    def before_epoch(self, epoch: int) -> None:
        """Eager work before epoch ``epoch``'s first batch (JTT arms its error-set recording)."""

    # ------------------------------------------------------------------ planning (torch-free)
    @classmethod
    def checkpoint_schedule(cls, cfg: TrialConfig, steps_per_epoch: int) -> list[CheckpointStage]:
        """What this method's checkpoints hold, stage by stage, in units of one network's weights
        (torch-free, no data; :mod:`trainables.checkpoints` prices it): one network and its
        optimizer moments for ``epochs`` by default. Overrides extend ``super()``'s schedule
        with :func:`~trainables.checkpoints.add_to_every_stage` (masks, a second network,
        per-sample state), so objective x sparse combinations add up; staged methods (MRM,
        prune) list their stages. ``steps_per_epoch`` serves methods whose stages are counted
        in iterations (prune's fine-tuning length)."""
        moments = optimizer_moments(cfg)
        return [CheckpointStage(cfg.epochs, CheckpointTensors(weight_sized=moments))]

    # ------------------------------------------------------------------ evaluation
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the evaluated network (in eval mode, under no_grad, set by the core)."""
        with self.ctx.autocast():
            return self.forward(self.ctx.prepare(x))

    # ------------------------------------------------------------------ what the core walks
    def modules(self) -> list[nn.Module]:
        """Every network the method trains (train/eval mode, graph warm-up snapshots)."""
        return [self.model]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def graph_state(self) -> list[torch.Tensor]:
        """Tensors besides weights, buffers and optimizer state that ``train_step`` writes."""
        return []

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "engine": self.engine.state_dict() if self.engine is not None else None,
            "schedule": self.schedule.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from trainables.train.optim import match_state_layout

        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        match_state_layout(self.optimizer)  # saved by a fused group, or by a trial alone
        if self.engine is not None:
            self.engine.load_state_dict(state["engine"])
        self.schedule.load_state_dict(state["schedule"])

    # ------------------------------------------------------------------ size and FLOPs
    def layer_densities(self) -> dict[str, float]:
        """Density of every masked layer (empty when dense)."""
        return self.engine.layer_densities() if self.engine is not None else {}

    def forward_flops(self) -> float:
        """Inference FLOPs per example of the evaluated network at its current densities."""
        from trainables.flops import sparse_forward_flops

        return sparse_forward_flops(self.layer_flops, self.layer_densities())

    def step_flops(self, n: int, dense_gradient: bool) -> float:
        """Training FLOPs of one step on ``n`` examples (RigL appendix accounting)."""
        from trainables.flops import training_step_flops

        forward = self.forward_flops()
        return n * training_step_flops(forward, self.dense_flops, dense_gradient=dense_gradient)

    def parameter_counts(self) -> tuple[int, int]:
        """(non-zero, total) weights of the evaluated network's Conv2d/Linear layers."""
        from trainables.sparse import maskable_parameters

        weights = maskable_parameters(self.model)
        total = sum(p.numel() for p in weights.values())
        if self.engine is None:
            return total, total
        masked = self.engine.layer_counts()
        dense = sum(p.numel() for name, p in weights.items() if name not in masked)
        return sum(masked.values()) + dense, total

    def density(self) -> float:
        """Realised density over the masked layers (1.0 when dense): the trial's ``density``.
        ``parameter_counts`` also counts layers kept dense (``nonzero_params``)."""
        return self.engine.density() if self.engine is not None else 1.0


class SparseMethod(Method):
    """A sparse network from scratch: ERK/ER/uniform masks, prune-and-grow every
    ``update_frequency`` steps (``mask_updates``), weights re-masked after every step."""

    mask_updates = True
    _forward_flops: float | None = None  # cached; cleared when a mask changes or is loaded

    def build_engine(self, model: nn.Module) -> SparseEngine:
        from trainables.sparse import SparseEngine

        cfg = self.cfg
        return SparseEngine(
            model,
            None,
            density=cfg.density,
            sparse_init=cfg.sparse_init,
            growth=cfg.growth,
            drop_fraction=cfg.drop_fraction,
            drop_schedule=cfg.drop_schedule,
            drop_end=cfg.drop_end,
            drop_rounding=cfg.drop_rounding,
            update_frequency=cfg.update_frequency,
            total_steps=self.ctx.total_steps,
            reset_momentum=cfg.reset_momentum,
            reset_second_moment=cfg.reset_second_moment,
            mask_updates=self.mask_updates,
            dense_first_layer=cfg.dense_first_layer,
            dense_last_layer=cfg.dense_last_layer,
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    def after_step(self, step: int) -> bool:
        assert self.engine is not None
        if not (self.engine.step(step) and self.engine.last_update_changed):
            return False
        self._forward_flops = None  # the layer densities moved
        return GROWTH.get(self.cfg.growth).dense_gradient_at_updates  # RigL's |dL/dw|

    def forward_flops(self) -> float:
        # Cached: the per-step FLOPs count would otherwise rebuild it on every step.
        if self._forward_flops is None:
            self._forward_flops = super().forward_flops()
        return self._forward_flops

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._forward_flops = None

    @classmethod
    def checkpoint_schedule(cls, cfg: TrialConfig, steps_per_epoch: int) -> list[CheckpointStage]:
        # The engine's bool masks (one byte per maskable weight).
        return add_to_every_stage(super().checkpoint_schedule(cfg, steps_per_epoch), masks=1.0)

    def step_flops(self, n: int, dense_gradient: bool) -> float:
        # A criterion reading an optimizer statistic of every weight's gradient (SNFS momentum)
        # needs dense weight gradients at every step.
        every = GROWTH.get(self.cfg.growth).dense_gradient_every_step and self.mask_updates
        return super().step_flops(n, dense_gradient or every)


class Reweighted(Method):
    """Up-weights bias-conflicting samples (label != bias label) by ``upweight``.

    ``reweight=loss`` (the paper's Eq. 6): the per-sample losses are multiplied by the weight;
    with ``reweight_normalise`` the batch loss is divided by the training set's mean weight, so
    the data gradient keeps the scale of ERM's and coupled weight decay acts the same as in an
    unweighted run. ``reweight=resample`` (the public code): each epoch draws N samples with
    replacement, with probability proportional to the weight. Mix in before the base class:
    ``class Rest(Reweighted, SparseMethod)``.
    """

    def __init__(self, ctx: TrialContext) -> None:
        super().__init__(ctx)
        aligned = ctx.train.aligned
        conflicting = aligned.numel() - int(aligned.sum())
        # E[weight] over the training split: 1.05, 1.29, 1.98, 4.95 at the paper's ratios.
        self.mean_weight = (aligned.numel() + (self.cfg.upweight - 1.0) * conflicting) / max(
            aligned.numel(), 1
        )

    def loss(self, losses: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.cfg.reweight != "loss":
            return losses.mean()
        weights = torch.where(batch.y == batch.b, 1.0, float(self.cfg.upweight))
        weighted = (losses * weights).mean()
        return weighted / self.mean_weight if self.cfg.reweight_normalise else weighted

    def sampling_weights(self) -> torch.Tensor | None:
        if self.cfg.reweight != "resample":
            return None
        return torch.where(self.ctx.train.aligned, 1.0, float(self.cfg.upweight)).float()
