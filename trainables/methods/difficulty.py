"""Relative difficulty from a biased and a debiased learner: the mechanism LfF and DisEnt share.

* :func:`gce_loss`: the generalized cross-entropy GCE(q) of Zhang & Sabuncu (2018) as LfF's
  public code writes it: a per-sample cross-entropy multiplied by the detached ``p_y ** q``,
  so that its gradient is the GCE gradient ``p_y ** q * grad CE``; samples the model already
  fits (large ``p_y``) dominate, which makes the trained model latch onto the easy (biased) cue.
* :class:`LossEma`: a per-sample exponential moving average of a loss over the training split,
  indexed by the samples' positions (``batch.index``), with the class-wise max normalisation of
  LfF/DisEnt's ``EMA.max_loss`` (alinlab/LfF ``util.py``; kakaoenterprise/
  Learning-Debiased-Disentangled ``util.py``).
* :func:`relative_difficulty`: ``W = L_b / (L_b + L_d + 1e-8)`` on the normalised EMAs.

Everything runs on the device without host syncs, so a step using it can be a CUDA graph.
Torch-free at import (planning imports the parameter group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.checkpoints import (
    LOSS_EMA_BYTES,
    CheckpointStage,
    add_to_every_stage,
    optimizer_moments,
)
from trainables.lazy import lazy_module
from trainables.methods.params import Check, ParamGroup, param

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainables.config import TrialConfig
    from trainables.methods.base import MethodInfo, TrialContext
else:
    torch = lazy_module("torch")

# Added to the denominator of the relative difficulty, as in both public codes.
DIFFICULTY_EPS = 1e-8
# Floor of a class's max EMA: a class whose EMAs are all 0 gives weights 0 instead of 0/0 = NaN
# (the public codes would stop on the NaN).
CLASS_MAX_FLOOR = 1e-12


@dataclass(frozen=True)
class DifficultyParams(ParamGroup):
    """GCE and loss-EMA settings shared by LfF and DisEnt (0.7 and 0.7 in both public codes,
    for every dataset: LfF ``train.py`` and ``module/loss.py``, DisEnt ``train.py``)."""

    order: ClassVar[int] = 30

    gce_q: float = param(0.7, "q of the generalized cross-entropy of the biased learner, (0, 1]")
    ema_alpha: float = param(
        0.7, "decay of the per-sample loss EMAs behind the relative difficulty, [0, 1)"
    )

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check: Check) -> None:
        check(0 < cfg.gce_q <= 1, "gce_q", cfg.gce_q, "a number in (0, 1]")
        check(0 <= cfg.ema_alpha < 1, "ema_alpha", cfg.ema_alpha, "a number in [0, 1)")


def gce_loss(logits: torch.Tensor, targets: torch.Tensor, q: float) -> torch.Tensor:
    """Per-sample GCE surrogate ``CE * p_y.detach() ** q``: its gradient is ``p_y ** q`` times
    the cross-entropy gradient, which is the gradient of ``(1 - p_y ** q) / q`` (its value is
    not). The public codes multiply this by ``q`` once more; the methods do so explicitly."""
    logits = logits.float()
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    p_y = torch.softmax(logits.detach(), dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)
    return ce * p_y.pow(q)


def relative_difficulty(biased: torch.Tensor, debiased: torch.Tensor) -> torch.Tensor:
    """``W = L_b / (L_b + L_d + 1e-8)``: near 1 where the biased learner fails and the debiased
    one does not (bias-conflicting samples), near 0 where the biased learner fits."""
    return biased / (biased + debiased + DIFFICULTY_EPS)


class LossEma:
    """Per-sample EMA of a loss over the training split, with class-wise max normalisation.

    ``update`` follows the public ``EMA.update``: ``ema = a * ema + (1 - a * seen) * loss``, so a
    sample's first loss is taken as is. ``normalised`` divides a batch's EMAs by the largest EMA
    of their class over the *whole* split (samples not seen yet count with 0), as ``max_loss``.
    """

    def __init__(
        self, labels: torch.Tensor, num_classes: int, alpha: float, device: torch.device
    ) -> None:
        self.labels = labels.to(device=device, dtype=torch.long)
        self.num_classes = num_classes
        self.alpha = float(alpha)
        n = self.labels.numel()
        self.value = torch.zeros(n, device=device)
        self.seen = torch.zeros(n, device=device)

    def update(self, losses: torch.Tensor, index: torch.Tensor) -> None:
        """Fold a batch's per-sample losses (detached) into the EMAs of ``index``."""
        losses = losses.detach().float()
        blended = self.alpha * self.value[index] + (1 - self.alpha * self.seen[index]) * losses
        self.value.index_copy_(0, index, blended)
        self.seen.index_fill_(0, index, 1.0)

    def class_max(self) -> torch.Tensor:
        """The largest EMA of each class over the whole split (0 for a class never seen)."""
        out = torch.zeros(self.num_classes, device=self.value.device)
        return out.scatter_reduce(0, self.labels, self.value, reduce="amax", include_self=True)

    def normalised(self, index: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The EMAs of ``index`` divided by their class's max EMA (after this step's update)."""
        maxima = self.class_max().clamp_min(CLASS_MAX_FLOOR)
        return self.value[index] / maxima[targets]

    def tensors(self) -> list[torch.Tensor]:
        """What the step writes (CUDA-graph warm-up snapshots)."""
        return [self.value, self.seen]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"value": self.value.cpu().clone(), "seen": self.seen.cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.value.copy_(state["value"])
        self.seen.copy_(state["seen"])


def difficulty_weights(
    biased: LossEma,
    debiased: LossEma,
    biased_losses: torch.Tensor,
    debiased_losses: torch.Tensor,
    index: torch.Tensor,
    targets: torch.Tensor,
) -> torch.Tensor:
    """One step of the shared mechanism: update both EMAs with the batch's cross-entropies, then
    the relative difficulty of each sample from the class-normalised EMAs (detached)."""
    biased.update(biased_losses, index)
    debiased.update(debiased_losses, index)
    return relative_difficulty(
        biased.normalised(index, targets), debiased.normalised(index, targets)
    )


def second_model(ctx: TrialContext) -> nn.Module:
    """Another network of the config, drawn from the global RNG *after* ``ctx.new_model()``
    (the public codes build their two networks one after the other from one seeded stream), so
    the two start from different weights and the evaluated one from ERM's weights."""
    from trainables.models import build_model

    cfg = ctx.cfg
    model = build_model(cfg.model, cfg.num_classes, width=cfg.width, stem=cfg.stem, init=cfg.init)
    model = model.to(ctx.device)
    if ctx.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def pair_state(prefix: str, model, optimizer, schedule) -> dict[str, Any]:
    """Checkpoint entries of a method's second network."""
    return {
        f"{prefix}_model": model.state_dict(),
        f"{prefix}_optimizer": optimizer.state_dict(),
        f"{prefix}_schedule": schedule.state_dict(),
    }


def load_pair_state(prefix: str, state, model, optimizer, schedule) -> None:
    model.load_state_dict(state[f"{prefix}_model"])
    optimizer.load_state_dict(state[f"{prefix}_optimizer"])
    schedule.load_state_dict(state[f"{prefix}_schedule"])


def with_biased_network(stages: list[CheckpointStage], cfg: TrialConfig) -> list[CheckpointStage]:
    """What LfF and DisEnt add to every checkpoint: the biased network (DisEnt: its encoder and
    head; the heads over ``[z_i, z_b]`` add a few thousand weights, left out) with its
    optimizer moments, and the two per-sample loss EMAs."""
    return add_to_every_stage(
        stages,
        networks=1.0,
        weight_sized=optimizer_moments(cfg),
        sample_bytes=2 * LOSS_EMA_BYTES,
    )
