"""Epoch-level learning-rate schedules named by a TrialConfig (``lr_schedule``).

The optimizers themselves are declared in :mod:`trainables.optimizers` (the registry planning
reads); this module is the training side: the schedule stepped after each epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.lazy import lazy_module

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig
else:
    torch = lazy_module("torch")


class EpochSchedule:
    """An epoch-level LR schedule; ``step(valid_loss)`` runs once after each epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrialConfig) -> None:
        self.kind = cfg.lr_schedule
        self.scheduler: object | None = None
        if self.kind == "plateau":
            # The public REST code: ReduceLROnPlateau on the validation loss, patience 5.
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=0.1, patience=5, threshold=1e-4
            )
        elif self.kind == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)

    def step(self, valid_loss: float) -> None:
        groups = self.scheduler.optimizer.param_groups if self.scheduler is not None else []
        tensors = [g["lr"] for g in groups]
        if self.kind == "plateau":
            self.scheduler.step(valid_loss)
        elif self.kind == "cosine":
            self.scheduler.step()
        keep_device_lr(groups, tensors)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


def keep_device_lr(groups: list[dict], tensors: list) -> None:
    """Write a new lr into the device tensor a CUDA graph reads, if a scheduler replaced it."""
    for group, tensor in zip(groups, tensors, strict=True):
        if isinstance(tensor, torch.Tensor) and group["lr"] is not tensor:
            tensor.fill_(float(group["lr"]))
            group["lr"] = tensor


def match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every optimizer state tensor shaped like its parameter the parameter's layout.

    ``load_state_dict`` keeps a saved state's strides, and a fused group's weights are
    contiguous slices while a trial alone on CUDA is channels_last: a state saved in one
    layout and resumed in the other would meet CUDA's fused optimizer kernels, which need
    parameter, gradient and state to share strides (and the CPU's fused kernels would compute
    wrong values without saying so). Copies only what differs."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            for key, value in state.items():
                if (
                    torch.is_tensor(value)
                    and value.shape == p.shape
                    and value.stride() != p.stride()
                ):
                    state[key] = torch.empty_like(p).copy_(value)
