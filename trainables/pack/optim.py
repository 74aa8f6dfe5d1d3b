"""Functional Adam and SGD-momentum over a packed (trials x params) tensor.

``torch.optim`` keeps one learning rate per parameter group, so N packed trials with N learning
rates would need N groups and N times the kernel launches. Here the whole pack's weights are one
``(N, P)`` tensor, the per-trial learning rate and weight decay are ``(N, 1)`` tensors that
broadcast over a row, and the mask multiply is the last op of the same update. The arithmetic
follows ``torch.optim.Adam`` / ``torch.optim.SGD`` (coupled L2 weight decay, PyTorch's bias
correction and epsilon placement) so a packed trial matches an unpacked one to rounding.

Values that change during training (learning rate, bias corrections) are tensors, never Python
floats read inside the update, so a compiled update is not recompiled when they change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

TABLE_STEPS = 4096  # Adam bias-correction values precomputed per block of steps


@dataclass
class PackOptimizer:
    """Optimizer state for an ``(N, P)`` weight tensor; ``kind`` is ``adam`` or ``sgd``."""

    kind: str
    lr: torch.Tensor  # (N, 1)
    weight_decay: torch.Tensor  # (N, 1)
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    step: int = 0
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    bias_table: torch.Tensor | None = None
    bias_start: int = -1

    @classmethod
    def create(
        cls,
        kind: str,
        weights: torch.Tensor,
        lr: list[float],
        weight_decay: list[float],
        momentum: float = 0.9,
    ) -> PackOptimizer:
        """Zero state shaped like ``weights`` (what a fresh ``torch.optim`` would hold)."""
        if kind not in ("adam", "sgd"):
            raise ValueError(f"optimizer: {kind!r} is not allowed; allowed: adam, sgd")
        dev, dt = weights.device, weights.dtype
        opt = cls(
            kind=kind,
            lr=torch.tensor(lr, device=dev, dtype=dt).view(-1, 1),
            weight_decay=torch.tensor(weight_decay, device=dev, dtype=dt).view(-1, 1),
            momentum=momentum,
        )
        if kind == "adam":
            opt.state = {
                "exp_avg": torch.zeros_like(weights),
                "exp_avg_sq": torch.zeros_like(weights),
            }
        else:
            opt.state = {"momentum_buffer": torch.zeros_like(weights)}
        return opt

    def set_lr(self, index: int, value: float) -> None:
        """Change one trial's learning rate in place (schedulers, per epoch)."""
        self.lr[index].fill_(value)

    def scalars(self) -> torch.Tensor:
        """Adam's bias corrections ``(1 - b1^t, sqrt(1 - b2^t))`` for t = step + 1, as a view
        of a device table made once per 4096 steps: no host-to-device copy (a sync) per step."""
        t = self.step + 1
        start = t - t % TABLE_STEPS
        if self.bias_table is None or self.bias_start != start:
            b1, b2 = self.betas
            ts = torch.arange(start, start + TABLE_STEPS, dtype=torch.float64)
            rows = torch.stack([1.0 - b1**ts, (1.0 - b2**ts).sqrt()], dim=1)
            self.bias_table = rows.to(self.lr.device, self.lr.dtype)
            self.bias_start = start
        return self.bias_table[t - start]

    @torch.no_grad()
    def update(self, weights: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor) -> None:
        """One step for every trial, then ``weights *= mask`` (eager path)."""
        if self.kind == "adam":
            adam_update(
                weights, grad, self.state["exp_avg"], self.state["exp_avg_sq"], mask, self.lr,
                self.weight_decay, self.scalars(), self.betas[0], self.betas[1], self.eps,
            )  # fmt: skip
        else:
            sgd_update(
                weights, grad, self.state["momentum_buffer"], mask, self.lr, self.weight_decay,
                self.momentum, first=self.step == 0,
            )  # fmt: skip
        self.step += 1


def adam_update(
    w: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    lr: torch.Tensor,
    wd: torch.Tensor,
    scalars: torch.Tensor,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """``torch.optim.Adam`` (coupled weight decay, no amsgrad) with (N, 1) lr/wd, then mask."""
    g = g.addcmul(wd, w)
    m.lerp_(g, 1.0 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
    bias1, sqrt_bias2 = scalars[0], scalars[1]
    denom = (v.sqrt() / sqrt_bias2).add_(eps)
    w.addcdiv_(m, denom * (bias1 / lr), value=-1.0)
    w.mul_(mask)


def sgd_update(
    w: torch.Tensor,
    g: torch.Tensor,
    buf: torch.Tensor,
    mask: torch.Tensor,
    lr: torch.Tensor,
    wd: torch.Tensor,
    momentum: float,
    first: bool,
) -> None:
    """``torch.optim.SGD`` (momentum, dampening 0, no Nesterov) with (N, 1) lr/wd, then mask.

    As in torch, the first step initialises the buffer to the gradient itself.
    """
    g = g.addcmul(wd, w)
    if first:
        buf.copy_(g)
    else:
        buf.mul_(momentum).add_(g)
    w.addcmul_(buf, lr, value=-1.0)
    w.mul_(mask)
