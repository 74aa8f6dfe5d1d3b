"""``mrm``: Modular Risk Minimization (Zhang, Ahuja, Xu, Wang, Courville, ICML 2021).

Three stages inside one trial (the REST paper's Sec. 4.1 description; MRM's own code is not
public, so the probing follows Csordas et al.'s masking code, which MRM builds on):

1. **ERM**: the dense network trains on the mean cross-entropy (``mrm_erm_fraction``).
2. **Probe**: the ERM weights are frozen; one real logit per Conv2d/Linear weight (the layers
   the sparse engine masks) learns a mask by a straight-through hard Gumbel-sigmoid, on the
   cross-entropy of the masked network plus ``mrm_alpha`` times the sum of the logits
   (Csordas' ``mask_loss``; ``mrm_penalty``) (``mrm_probe_fraction``).
3. **Retrain**: the top-k logits (global or per-layer ERK counts, ``mrm_allocation``) give a
   mask at exactly the target ``density``; the network is reset to the seed's initialisation
   and trains under that mask with a static :class:`~trainables.sparse.SparseEngine`.

Stages switch in :meth:`Mrm.after_epoch`; only retraining epochs can be the best-valid
selection (:meth:`Mrm.selectable`). The split of ``epochs`` is :func:`stage_epochs`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.checkpoints import CheckpointStage, CheckpointTensors, optimizer_moments
from trainables.lazy import lazy_module
from trainables.methods.base import Method, MethodInfo
from trainables.methods.params import Check, ParamGroup, SparseParams, param

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig
    from trainables.data import Batch
    from trainables.methods.base import TrialContext
else:
    torch = lazy_module("torch")  # planning imports this module without loading torch

ALLOCATIONS = ("global", "erk")
# The sparsity penalty of the probe loss. ``logit_sum``: alpha * sum of the logits, Csordas'
# mask_loss (RobertCsordas/modules masked_model.py:224-234) and the REST text's "alpha sum pi"
# (Sec. 4.1, Eq. 7): every logit is pushed down by alpha whatever the network's size.
# ``density_mean``: alpha * mean sigmoid(logit), the first reconstruction: its per-logit push
# alpha * sigmoid'(pi) / N shrinks with the N masked weights (at pi = 2 and alpha 1: 2.5e-6 on
# the width-16 Simple CNN, 1.6e-7 on the grid's width-64 one, 9.4e-9 on ResNet-18, where it is
# lost against the cross-entropy's gradient: tests/test_method_mrm.py), kept for old runs.
PENALTIES = ("logit_sum", "density_mean")
# The recipes' alpha for ``logit_sum``, matched to the old default's measured effect on the
# model it was calibrated on (docs/methods.md, "alpha, measured"): density_mean at alpha 1
# pushed each logit by sigmoid'(pi) / 42,368 on the width-16 Simple CNN, 2.5e-6 at the initial
# logit 2 and 5.9e-6 at 0; after 6 probing epochs its mask kept 0.440 of the weights, the sum
# form's 0.622 / 0.495 / 0.434 / 0.385 at alpha 2.5e-6 / 4e-6 / 5e-6 / 6e-6.
RECIPE_ALPHA = 5e-6
# The density ``rest-sweep train --method mrm`` gets without ``--density`` (MethodInfo.defaults):
# REST's best density on CMNIST at 0.5 % and 1 % (Table 2); MRM's paper gives none for it.
DEFAULT_DENSITY = 0.05


def stage_epochs(epochs: int, erm_fraction: float, probe_fraction: float) -> tuple[int, int, int]:
    """(ERM, probe, retrain) epochs of a trial of ``epochs`` epochs.

    Each stage gets ``fraction * epochs`` rounded half up; a stage with a non-zero fraction gets
    at least one epoch where the total allows it, in the order retrain (always >= 1), probe,
    ERM. 100 epochs at the defaults: 45 / 10 / 45; 3 epochs: 1 / 1 / 1; 2 epochs: 0 / 1 / 1;
    1 epoch: retraining only (the mask is then a seeded random draw, see ``_top_k``).
    """
    erm = math.floor(erm_fraction * epochs + 0.5)
    probe = math.floor(probe_fraction * epochs + 0.5)
    if probe_fraction > 0:
        probe = max(probe, 1)
    if erm_fraction > 0:
        erm = max(erm, 1)
    probe = min(probe, epochs - 1)
    erm = min(erm, epochs - 1 - probe)
    return erm, probe, epochs - erm - probe


@dataclass(frozen=True)
class MrmParams(ParamGroup):
    """MRM's stage split and mask probing (docs: the MRM section of docs/methods.md)."""

    order: ClassVar[int] = 50

    mrm_erm_fraction: float = param(
        0.45, "MRM: fraction of the epochs spent on dense ERM (stage 1)"
    )
    mrm_probe_fraction: float = param(
        0.1,
        "MRM: fraction of the epochs spent learning the mask logits (stage 2); the rest "
        "retrains the subnetwork from the initialisation (stage 3)",
    )
    mrm_allocation: str = param(
        "global",
        "MRM: how the top-k logits reach the density: global (one ranking over every masked "
        "weight, >= 1 weight per layer) or erk (per-layer ERK counts, as static/RigL)",
        choices=ALLOCATIONS,
    )
    mrm_alpha: float = param(
        1.0,
        "MRM: weight of the sparsity penalty in the probe loss (mrm_penalty; the recipes give "
        "5e-6 with logit_sum)",
    )
    mrm_penalty: str = param(
        "density_mean",
        "MRM: probe sparsity penalty: logit_sum (alpha * sum of the logits, Csordas' mask_loss; "
        "the recipes' value) or density_mean (alpha * mean sigmoid(logit); fades with the "
        "network's size, kept to reproduce old runs)",
        choices=PENALTIES,
    )
    mrm_probe_lr: float = param(0.01, "MRM: Adam learning rate of the mask logits")
    mrm_logit_init: float = param(2.0, "MRM: initial mask logit (sigmoid(2) = 0.88 kept)")
    mrm_tau: float = param(1.0, "MRM: Gumbel-sigmoid temperature of the probing masks")

    # Both recipes (REST's code has no MRM): Csordás' penalty at the calibrated alpha.
    RECIPES_GIVE: ClassVar[dict[str, Any]] = {"mrm_penalty": "logit_sum", "mrm_alpha": RECIPE_ALPHA}

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        fe, fp = cfg.mrm_erm_fraction, cfg.mrm_probe_fraction
        check(0 <= fe < 1, "mrm_erm_fraction", fe, "a number in [0, 1)")
        check(0 <= fp < 1, "mrm_probe_fraction", fp, "a number in [0, 1)")
        check(
            fe + fp < 1,
            "mrm_probe_fraction",
            fp,
            f"a number below 1 - mrm_erm_fraction = {1 - fe:g} (retraining needs epochs)",
        )
        check(cfg.mrm_alpha >= 0, "mrm_alpha", cfg.mrm_alpha, "a number >= 0")
        check(cfg.mrm_probe_lr > 0, "mrm_probe_lr", cfg.mrm_probe_lr, "a positive number")
        check(cfg.mrm_tau > 0, "mrm_tau", cfg.mrm_tau, "a positive number")


class Mrm(Method):
    """Dense ERM, then mask-logit probing on the frozen ERM weights, then the top-k subnetwork
    retrained from the seed's initialisation under a static mask."""

    mask_updates = False  # the retraining engine never updates its mask (no SPARSE_ONLY values)

    def __init__(self, ctx: TrialContext) -> None:
        super().__init__(ctx)  # a dense network: build_engine is None until retraining
        from trainables.sparse import maskable_parameters
        from trainables.train.optim import EpochSchedule

        cfg = self.cfg
        self.stages = stage_epochs(cfg.epochs, cfg.mrm_erm_fraction, cfg.mrm_probe_fraction)
        self.schedule = EpochSchedule(self.optimizer, cfg.replace(epochs=self.stages[0] or 1))
        # The seed's initialisation (weights and buffers), restored for retraining.
        self.init_state: dict[str, torch.Tensor] | None = {
            k: v.detach().clone() for k, v in self.model.state_dict().items()
        }
        self.weights = maskable_parameters(self.model, cfg.dense_first_layer, cfg.dense_last_layer)
        self.noise = torch.Generator(device=ctx.device).manual_seed(cfg.seed)
        self.logits: dict[str, torch.Tensor] = {}
        self.probe_optimizer: torch.optim.Optimizer | None = None
        self.stage = "erm"
        self._advance(0)

    # ------------------------------------------------------------------ stages
    def stage_at(self, done: int) -> str:
        """The stage that trains epoch ``done + 1`` (after ``done`` complete epochs)."""
        erm, probe, _ = self.stages
        return "erm" if done < erm else "probe" if done < erm + probe else "retrain"

    def _advance(self, done: int) -> None:
        target = self.stage_at(done)
        if self.stage == "erm" and target != "erm":
            self._enter_probe()
        if self.stage == "probe" and target == "retrain":
            self._enter_retrain(self._top_k())

    def _enter_probe(self) -> None:
        """Freeze the ERM weights; one logit per masked weight, its own Adam."""
        for p in self.model.parameters():
            p.requires_grad_(False)
            p.grad = None
        init = float(self.cfg.mrm_logit_init)
        self.logits = {
            name: torch.full_like(w.detach(), init).requires_grad_(True)
            for name, w in self.weights.items()
        }
        fast = {"fused": True} if self.ctx.device.type == "cuda" else {"foreach": True}
        self.probe_optimizer = torch.optim.Adam(
            list(self.logits.values()), lr=self.cfg.mrm_probe_lr, betas=(0.9, 0.999), **fast
        )
        self.stage = "probe"

    def _enter_retrain(self, masks: Mapping[str, torch.Tensor] | None) -> None:
        """Seed's initialisation, a static engine holding ``masks`` (None: the caller loads a
        checkpoint next), a fresh optimizer and schedule."""
        from trainables.optimizers import build_optimizer
        from trainables.sparse import SparseEngine
        from trainables.train.optim import EpochSchedule

        cfg = self.cfg
        for p in self.model.parameters():
            p.requires_grad_(True)
        engine = SparseEngine(
            self.model,
            None,
            density=cfg.density,
            sparse_init="erk" if cfg.mrm_allocation == "erk" else cfg.sparse_init,
            growth=cfg.growth,
            drop_fraction=cfg.drop_fraction,
            drop_schedule=cfg.drop_schedule,
            drop_end=cfg.drop_end,
            update_frequency=cfg.update_frequency,
            total_steps=self.ctx.total_steps,
            reset_momentum=False,
            mask_updates=False,
            dense_first_layer=cfg.dense_first_layer,
            dense_last_layer=cfg.dense_last_layer,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        if masks is not None:
            state = engine.state_dict()
            state["masks"] = {name: m.cpu() for name, m in masks.items()}
            state["counts"] = {name: int(m.sum()) for name, m in masks.items()}
            engine.load_state_dict(state)  # the engine zeroed its own random draw: reset next
            assert self.init_state is not None
            self.model.load_state_dict(self.init_state)
            engine.apply_masks()
        self.engine = engine
        self.optimizer = build_optimizer(self.model.parameters(), cfg, self.ctx.device)
        engine.bind_optimizer(self.optimizer)
        self.schedule = EpochSchedule(self.optimizer, cfg.replace(epochs=self.stages[2]))
        self.logits, self.probe_optimizer, self.init_state = {}, None, None
        self.stage = "retrain"

    def _top_k(self) -> dict[str, torch.Tensor]:
        """Bool masks of the largest logits at exactly the target count.

        ``erk``: the engine's per-layer ERK counts (``round(d_l N_l)``, >= 1), top-k in each
        layer. ``global``: ``max(round(d N), L)`` weights over all L masked layers, the largest
        logit of every layer first (no layer is cut off), then the largest of the rest. Ties
        (e.g. logits never trained) are broken by a permutation seeded from the trial seed.
        """
        from trainables.sparse import layer_counts, layer_densities

        cfg = self.cfg
        names = list(self.weights)
        flat = torch.cat([self.logits[n].detach().reshape(-1).float() for n in names])
        sizes = [self.weights[n].numel() for n in names]
        order = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(cfg.seed))
        order = order.to(flat.device)
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        if cfg.mrm_allocation == "erk":
            shapes = {n: tuple(self.weights[n].shape) for n in names}
            counts = layer_counts(shapes, layer_densities(shapes, cfg.density, "erk"))
            offset = 0
            for name, size in zip(names, sizes, strict=True):
                local = order[(order >= offset) & (order < offset + size)]
                ranked = torch.sort(flat[local], descending=True, stable=True).indices
                keep[local[ranked[: counts[name]]]] = True
                offset += size
        else:
            total = max(round(cfg.density * flat.numel()), len(names))
            keys = flat.clone()
            offset = 0
            for size in sizes:
                keys[offset + int(torch.argmax(flat[offset : offset + size]))] = math.inf
                offset += size
            ranked = torch.sort(keys[order], descending=True, stable=True).indices
            keep[order[ranked[:total]]] = True
        parts = torch.split(keep, sizes)
        return {n: part.view(self.weights[n].shape) for n, part in zip(names, parts, strict=True)}

    def selectable(self, epoch: int) -> bool:
        """Only retraining epochs are MRM's result (ERM and probing rows are not selected)."""
        erm, probe, _ = self.stages
        return epoch > erm + probe

    # ------------------------------------------------------------------ training hooks
    def _masked(self, sample: bool) -> dict[str, torch.Tensor]:
        """Frozen weights times masks: straight-through hard Gumbel-sigmoid samples (training)
        or the deterministic ``1[logit > 0]`` (evaluation)."""
        out = {}
        for name, w in self.weights.items():
            pi = self.logits[name]
            if sample:
                u = torch.rand(
                    pi.shape, generator=self.noise, device=pi.device, dtype=pi.dtype
                ).clamp_(1e-10, 1 - 1e-10)
                soft = torch.sigmoid((pi + torch.log(u) - torch.log1p(-u)) / self.cfg.mrm_tau)
                mask = (soft > 0.5).to(soft.dtype) + soft - soft.detach()
            else:
                mask = (pi > 0).to(w.dtype)
            out[name] = w.detach() * mask
        return out

    def _probe_forward(self, x: torch.Tensor, sample: bool) -> torch.Tensor:
        with self.ctx.autocast():
            return torch.func.functional_call(
                self.model, self._masked(sample), (self.ctx.prepare(x),)
            )

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stage != "probe":
            return super().train_step(batch)
        assert self.probe_optimizer is not None
        logits = self._probe_forward(batch.x, sample=True)
        losses = torch.nn.functional.cross_entropy(logits.float(), batch.y, reduction="none")
        (losses.mean() + self.cfg.mrm_alpha * self.penalty()).backward()
        self.probe_optimizer.step()
        return logits, losses

    def penalty(self) -> torch.Tensor:
        """The probe's sparsity penalty (times ``mrm_alpha`` in the loss): the sum of the
        logits (``logit_sum``: Csordas' mask_loss, a push of alpha on every logit) or their
        mean sigmoid (``density_mean``: the expected mask density, a push that fades as
        1 / N with the N masked weights)."""
        logits = list(self.logits.values())
        if self.cfg.mrm_penalty == "logit_sum":
            return sum(pi.sum() for pi in logits)
        return sum(torch.sigmoid(pi).sum() for pi in logits) / sum(pi.numel() for pi in logits)

    def after_step(self, step: int) -> bool:
        if self.engine is not None:
            self.engine.step(step)  # re-masks the weights; static: never reads gradients
        return False

    def after_epoch(self, epoch: int, row: Mapping[str, Any]) -> None:
        if self.stage != "probe":
            self.schedule.step(row["valid_loss"])
        self._advance(epoch)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.stage == "probe":
            return self._probe_forward(x, sample=False)
        return super().predict(x)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        if self.stage == "probe":
            assert self.probe_optimizer is not None
            return [self.probe_optimizer]
        return [self.optimizer]

    # ------------------------------------------------------------------ checkpoint
    @classmethod
    def checkpoint_schedule(cls, cfg: TrialConfig, steps_per_epoch: int) -> list[CheckpointStage]:
        # ERM and probing keep the seed's initialisation (one copy); probing adds a logit per
        # weight and its Adam moments beside the frozen ERM optimizer's; retraining keeps the
        # static engine's masks.
        erm, probe, retrain = stage_epochs(cfg.epochs, cfg.mrm_erm_fraction, cfg.mrm_probe_fraction)
        moments = optimizer_moments(cfg)
        return [
            CheckpointStage(erm, CheckpointTensors(weight_sized=moments + 1)),
            CheckpointStage(probe, CheckpointTensors(weight_sized=moments + 1 + 3)),
            CheckpointStage(retrain, CheckpointTensors(weight_sized=moments, masks=1.0)),
        ]

    def state_dict(self) -> dict[str, Any]:
        mrm: dict[str, Any] = {"stage": self.stage, "noise": self.noise.get_state()}
        if self.init_state is not None:
            mrm["init"] = {k: v.cpu().clone() for k, v in self.init_state.items()}
        if self.stage == "probe":
            assert self.probe_optimizer is not None
            mrm["logits"] = {k: v.detach().cpu().clone() for k, v in self.logits.items()}
            mrm["probe_optimizer"] = self.probe_optimizer.state_dict()
        return {**super().state_dict(), "mrm": mrm}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        mrm = state["mrm"]
        if mrm["stage"] == "probe" and self.stage == "erm":
            self._enter_probe()
        if mrm["stage"] == "retrain" and self.stage != "retrain":
            self._enter_retrain(None)
        super().load_state_dict(state)
        self.noise.set_state(mrm["noise"])
        if "init" in mrm and self.init_state is not None:
            for k, v in self.init_state.items():
                v.copy_(mrm["init"][k])
        if mrm["stage"] == "probe":
            assert self.probe_optimizer is not None
            with torch.no_grad():
                for k, v in self.logits.items():
                    v.copy_(mrm["logits"][k])
            self.probe_optimizer.load_state_dict(mrm["probe_optimizer"])

    # ------------------------------------------------------------------ size and FLOPs
    def _probe_counts(self) -> dict[str, int]:
        return {name: int((pi > 0).sum()) for name, pi in self.logits.items()}

    def layer_densities(self) -> dict[str, float]:
        if self.stage == "probe":
            counts = self._probe_counts()
            return {name: counts[name] / w.numel() for name, w in self.weights.items()}
        return super().layer_densities()

    def parameter_counts(self) -> tuple[int, int]:
        if self.stage != "probe":
            return super().parameter_counts()
        from trainables.sparse import maskable_parameters

        every = maskable_parameters(self.model)
        total = sum(p.numel() for p in every.values())
        unmasked = sum(p.numel() for n, p in every.items() if n not in self.weights)
        return sum(self._probe_counts().values()) + unmasked, total

    def density(self) -> float:
        """Dense during ERM; the ``1[logit > 0]`` mask's density while probing; the retrained
        mask's realised density over the masked weights (as static) afterwards."""
        if self.stage == "retrain":
            assert self.engine is not None
            return self.engine.density()
        if self.stage == "probe":
            numel = sum(w.numel() for w in self.weights.values())
            return sum(self._probe_counts().values()) / numel
        return 1.0

    def step_flops(self, n: int, dense_gradient: bool) -> float:
        # ERM: 3 f_D. Probing: a dense forward of the masked weights and two dense backward
        # passes (inputs, and the weight-shaped gradient the logits need): 3 f_D.
        if self.stage == "retrain":
            return super().step_flops(n, dense_gradient)  # 3 f_S of the static mask
        return 3.0 * self.dense_flops * n


METHOD = MethodInfo(
    "mrm",
    "MRM: dense ERM, mask-logit probing, top-k subnetwork retrained from the initialisation",
    Mrm,
    params=(SparseParams, MrmParams),
    labels="none",
    can_graph=False,
    defaults={"density": DEFAULT_DENSITY},
    display_name="MRM",
    colour="#ff7f0e",
)
