"""Optimizers and learning-rate schedules named by a TrialConfig."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from trainables.config import TrialConfig
from trainables.registry import Registry


def _fast_kwargs(device: torch.device) -> dict[str, bool]:
    # One fused kernel per step on CUDA; the multi-tensor (foreach) path on the CPU.
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def graphed(cfg: TrialConfig, device: torch.device) -> bool:
    """Whether the train step is replayed as a CUDA graph (needs a device-resident lr)."""
    return cfg.cuda_graphs and device.type == "cuda" and not cfg.compile


def _lr(cfg: TrialConfig, device: torch.device) -> float | torch.Tensor:
    # A graph bakes a Python float into its kernels; a device tensor can change between replays.
    return torch.tensor(cfg.lr, device=device) if graphed(cfg, device) else cfg.lr


def _adam(params: Iterable[torch.Tensor], cfg: TrialConfig, device: torch.device):
    extra = {"capturable": True} if graphed(cfg, device) else {}
    return torch.optim.Adam(
        params,
        lr=_lr(cfg, device),
        betas=(0.9, 0.999),
        weight_decay=cfg.weight_decay,
        **_fast_kwargs(device),
        **extra,
    )


def _sgd(params: Iterable[torch.Tensor], cfg: TrialConfig, device: torch.device):
    return torch.optim.SGD(
        params,
        lr=_lr(cfg, device),
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        **_fast_kwargs(device),
    )


OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("adam", _adam)
OPTIMIZERS.register("sgd", _sgd)


def build_optimizer(params, cfg: TrialConfig, device: torch.device) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.optimizer)(params, cfg, device)


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


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
