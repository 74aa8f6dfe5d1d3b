"""``groupdro``: online Group DRO (Sagawa et al. 2020; kohpangwei/group_DRO ``loss.py``).

Group weights q (uniform at the start) move by exponentiated gradient: every step computes the
mean loss of each group in the batch (0 for a group the batch lacks), multiplies q by
``exp(eta_q * (loss_g + C / sqrt(n_g)))``, renormalises, and back-propagates ``sum_g q_g
loss_g`` with the updated q. All of it stays on the device (no host sync), so the step is
graphable; q is checkpointed. Groups are the (label, bias) cells (default) or REST's two
groups, bias-aligned and bias-conflicting; either way training reads the bias label, so the
method's ``labels`` is ``group``. The recipes draw group-balanced batches, as every published
group_DRO command (``--reweight_groups``); ``groupdro_sampling=uniform`` shuffles instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.lazy import lazy_module
from trainables.methods.base import Method, MethodInfo
from trainables.methods.params import ParamGroup, param

if TYPE_CHECKING:
    import torch

    from trainables.data import Batch
else:
    torch = lazy_module("torch")  # planning imports this module without loading torch


@dataclass(frozen=True)
class GroupDroParams(ParamGroup):
    """Step size, generalisation adjustment, group definition and sampling of Group DRO."""

    order: ClassVar[int] = 41

    groupdro_eta: float = param(
        0.01, "GroupDRO: step size eta_q of the group weights (robust_step_size in group_DRO)"
    )
    groupdro_adjustment: float = param(
        0.0, "GroupDRO: generalisation adjustment C, added as C / sqrt(n_g) to group g's loss"
    )
    groupdro_groups: str = param(
        "cells",
        "GroupDRO: groups are the (label, bias) cells, or bias-aligned vs bias-conflicting",
        choices=("cells", "bias"),
    )
    groupdro_sampling: str = param(
        "uniform",
        "GroupDRO: data order: balanced (draws with replacement, probability 1 / n_group: "
        "group_DRO's --reweight_groups; the recipes' value) or uniform (a shuffle)",
        choices=("uniform", "balanced"),
    )

    # Every command of kohpangwei/group_DRO's README passes --reweight_groups with --robust
    # (README.md:62, :76, :105); data/dro_dataset.py:57-61 then draws len(dataset) samples with
    # replacement, weight len / group_count per sample. Both recipes (REST's code has no Group
    # DRO runs).
    RECIPES_GIVE: ClassVar[dict[str, Any]] = {"groupdro_sampling": "balanced"}

    @classmethod
    def check(cls, cfg: Any, method: MethodInfo, check) -> None:
        check(cfg.groupdro_eta >= 0, "groupdro_eta", cfg.groupdro_eta, "a number >= 0")
        check(
            cfg.groupdro_adjustment >= 0,
            "groupdro_adjustment",
            cfg.groupdro_adjustment,
            "a number >= 0",
        )


def group_ids(y: torch.Tensor, b: torch.Tensor, groups: str, num_classes: int) -> torch.Tensor:
    """Group index of each sample: ``y * K + b`` (cells) or 0 aligned / 1 conflicting (bias)."""
    if groups == "cells":
        return y * num_classes + b
    return (y != b).long()


def group_count(groups: str, num_classes: int) -> int:
    return num_classes * num_classes if groups == "cells" else 2


class GroupDro(Method):
    """ERM's network and optimizer; the loss is the q-weighted mean of the groups' losses."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        cfg = self.cfg
        self.num_groups = group_count(cfg.groupdro_groups, cfg.num_classes)
        self.q = torch.full((self.num_groups,), 1.0 / self.num_groups, device=ctx.device)
        train = ctx.train
        self.train_groups = group_ids(
            train.labels, train.bias, cfg.groupdro_groups, cfg.num_classes
        )
        counts = torch.bincount(self.train_groups, minlength=self.num_groups).float()
        self.train_counts = counts
        # C / sqrt(n_g) per group; a group absent from the training split gets n_g = 1 (it never
        # has a batch loss, so only q's normalisation sees it).
        self.adjustment = (cfg.groupdro_adjustment / counts.clamp(min=1).sqrt()).to(ctx.device)

    def group_losses(self, losses: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean loss of each group in the batch; 0 for a group it lacks (group_DRO's choice)."""
        group = group_ids(batch.y, batch.b, self.cfg.groupdro_groups, self.cfg.num_classes)
        sums = torch.zeros_like(self.q).index_add_(0, group, losses)
        counts = torch.zeros_like(self.q).index_add_(0, group, torch.ones_like(losses))
        return sums / counts.clamp(min=1)

    def loss(self, losses: torch.Tensor, batch: Batch) -> torch.Tensor:
        group_loss = self.group_losses(losses, batch)
        # group_DRO applies the adjustment only when every entry is positive, i.e. when C > 0.
        adjusted = group_loss.detach() + self.adjustment
        self.q.mul_(torch.exp(self.cfg.groupdro_eta * adjusted))
        self.q.div_(self.q.sum())
        return (self.q * group_loss).sum()

    def sampling_weights(self) -> torch.Tensor | None:
        if self.cfg.groupdro_sampling != "balanced":
            return None
        # group_DRO's reweight_groups (data/dro_dataset.py:57-61): each sample weighs
        # len / n_(its group); the same draw probabilities as 1 / n_(its group).
        return (1.0 / self.train_counts.to(self.ctx.device)[self.train_groups]).float()

    def graph_state(self) -> list[torch.Tensor]:
        return [self.q]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "groupdro_q": self.q.cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.q.copy_(state["groupdro_q"])


METHOD = MethodInfo(
    "groupdro",
    "online Group DRO: exponentiated-gradient weights over (label, bias) groups",
    GroupDro,
    params=(GroupDroParams,),
    labels="group",
    objective="groupdro",
    display_name="GroupDRO",
)
