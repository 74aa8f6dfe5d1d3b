"""``lff``: Learning from Failure (Nam et al., NeurIPS 2020; public code alinlab/LfF).

Two networks of the config's architecture train together from scratch: a biased one on the
generalized cross-entropy (it fits the easy, biased cue first) and a debiased one on the
cross-entropy weighted per sample by the relative difficulty ``W = L_b / (L_b + L_d)`` of the
class-normalised loss EMAs of both (:mod:`trainables.methods.difficulty`). The debiased network
is the one evaluated. No bias labels are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trainables.checkpoints import CheckpointStage
from trainables.lazy import lazy_module
from trainables.methods.base import Method, MethodInfo
from trainables.methods.difficulty import (
    DifficultyParams,
    LossEma,
    difficulty_weights,
    gce_loss,
    load_pair_state,
    pair_state,
    second_model,
    with_biased_network,
)

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig
    from trainables.data import Batch
    from trainables.methods.base import TrialContext
else:
    torch = lazy_module("torch")


class Lff(Method):
    """``model`` is the debiased network (evaluated); ``biased`` is trained with GCE."""

    @classmethod
    def checkpoint_schedule(cls, cfg: TrialConfig, steps_per_epoch: int) -> list[CheckpointStage]:
        return with_biased_network(super().checkpoint_schedule(cfg, steps_per_epoch), cfg)

    def __init__(self, ctx: TrialContext) -> None:
        from trainables.optimizers import build_optimizer
        from trainables.train.optim import EpochSchedule

        super().__init__(ctx)
        cfg = self.cfg
        self.biased = second_model(ctx)
        self.biased_optimizer = build_optimizer(self.biased.parameters(), cfg, ctx.device)
        self.biased_schedule = EpochSchedule(self.biased_optimizer, cfg)
        self.forward_biased = torch.compile(self.biased) if cfg.compile else self.biased
        labels = ctx.train.labels
        self.ema_biased = LossEma(labels, cfg.num_classes, cfg.ema_alpha, ctx.device)
        self.ema_debiased = LossEma(labels, cfg.num_classes, cfg.ema_alpha, ctx.device)

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.ctx.prepare(batch.x)
        with self.ctx.autocast():
            logits_b = self.forward_biased(x)
            logits_d = self.forward(x)
        ce = torch.nn.functional.cross_entropy
        ce_b = ce(logits_b.float(), batch.y, reduction="none")
        ce_d = ce(logits_d.float(), batch.y, reduction="none")
        weight = difficulty_weights(
            self.ema_biased, self.ema_debiased, ce_b, ce_d, batch.index, batch.y
        )
        q = self.cfg.gce_q
        # The public GeneralizedCELoss multiplies the GCE gradient by q once more.
        loss_b = q * gce_loss(logits_b, batch.y, q)
        loss = loss_b.mean() + (weight * ce_d).mean()
        loss.backward()
        self.optimizer.step()
        self.biased_optimizer.step()
        return logits_d, ce_d

    def after_epoch(self, epoch: int, row: Mapping[str, Any]) -> None:
        super().after_epoch(epoch, row)
        self.biased_schedule.step(row["valid_loss"])

    def modules(self) -> list:
        return [self.model, self.biased]

    def optimizers(self) -> list:
        return [self.optimizer, self.biased_optimizer]

    def graph_state(self) -> list[torch.Tensor]:
        return [*self.ema_biased.tensors(), *self.ema_debiased.tensors()]

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            **pair_state("biased", self.biased, self.biased_optimizer, self.biased_schedule),
            "ema_biased": self.ema_biased.state_dict(),
            "ema_debiased": self.ema_debiased.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        load_pair_state("biased", state, self.biased, self.biased_optimizer, self.biased_schedule)
        self.ema_biased.load_state_dict(state["ema_biased"])
        self.ema_debiased.load_state_dict(state["ema_debiased"])

    def step_flops(self, n: int, dense_gradient: bool) -> float:
        # Both networks run a forward and a backward pass on every example (same architecture).
        return 2.0 * super().step_flops(n, dense_gradient)


METHOD = MethodInfo(
    "lff",
    "LfF: GCE-trained biased net reweights a debiased net by relative difficulty",
    Lff,
    params=(DifficultyParams,),
    labels="none",
    display_name="LfF",
    networks=2,
)
