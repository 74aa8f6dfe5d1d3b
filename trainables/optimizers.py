"""Optimizers named by a TrialConfig: ``OPTIMIZERS``, the one list of them.

The config's ``optimizer`` choices and the checkpoint-volume estimate
(:func:`trainables.checkpoints.optimizer_moments`) read the registry, so this module is a
declaration: torch-free to import (``torch`` is loaded when an optimizer is built), importing
nothing of the package above the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainables.lazy import lazy_module
from trainables.registry import Registry

if TYPE_CHECKING:
    import torch

    from trainables.config import TrialConfig
else:
    torch = lazy_module("torch")


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


@dataclass(frozen=True)
class OptimizerInfo:
    """A registered optimizer: how to build it and the facts planning reads without torch.

    ``moments``: parameter-sized float32 tensors it keeps per network (Adam's m and v: 2, SGD's
    momentum buffer: 1); with ``moments_need_momentum`` there are none at ``momentum=0``.
    """

    build: Callable[[Iterable[torch.Tensor], TrialConfig, torch.device], torch.optim.Optimizer]
    moments: int
    moments_need_momentum: bool = False

    def state_tensors(self, momentum: float) -> int:
        """Weight-sized tensors one network's optimizer keeps at ``momentum``."""
        return 0 if self.moments_need_momentum and momentum == 0 else self.moments


OPTIMIZERS: Registry[OptimizerInfo] = Registry("optimizer")
OPTIMIZERS.register("adam", OptimizerInfo(_adam, moments=2))
OPTIMIZERS.register("sgd", OptimizerInfo(_sgd, moments=1, moments_need_momentum=True))


def build_optimizer(params, cfg: TrialConfig, device: torch.device) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.optimizer).build(params, cfg, device)
