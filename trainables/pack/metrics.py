"""Per-trial group metrics for a pack, accumulated in one set of device tensors.

One :class:`trainables.train.metrics.GroupAccumulator` per trial would cost N index_add
launches per step; here the N trials' (label, bias) cells are one flat index space. Reading out
hands each trial's rows to a ``GroupAccumulator``, so the metric definitions are the single-trial
code's, not a copy.
"""

from __future__ import annotations

import torch

from trainables.train.metrics import GroupAccumulator


class PackAccumulator:
    """Counts, correct counts and loss sums of N trials; no host sync until :meth:`compute`."""

    def __init__(self, n: int, num_classes: int, device: torch.device) -> None:
        self.n = n
        self.num_classes = num_classes
        self.device = device
        cells = num_classes * num_classes
        self.count = torch.zeros(n * cells, dtype=torch.long, device=device)
        self.correct = torch.zeros(n * cells, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros(n, dtype=torch.float64, device=device)
        self._offsets = torch.arange(n, device=device).view(n, 1) * cells

    @torch.no_grad()
    def update(
        self, logits: torch.Tensor, y: torch.Tensor, b: torch.Tensor, losses: torch.Tensor
    ) -> None:
        """``logits`` (N, B, K); ``y``, ``b``, ``losses`` (N, B) (or (B,) shared by all trials)."""
        n, batch = logits.shape[:2]
        y = y.expand(n, batch)
        b = b.expand(n, batch)
        cell = (y * self.num_classes + b + self._offsets).reshape(-1)
        self.count.index_add_(0, cell, torch.ones_like(cell))
        right = (logits.argmax(dim=2) == y).long().reshape(-1)
        self.correct.index_add_(0, cell, right)
        self.loss_sum += losses.detach().double().sum(dim=1)

    def compute(self, prefix: str) -> list[dict[str, float]]:
        """One metrics dict per trial, computed by the single-trial ``GroupAccumulator``."""
        cells = self.num_classes * self.num_classes
        count = self.count.cpu().view(self.n, cells)
        correct = self.correct.cpu().view(self.n, cells)
        loss_sum = self.loss_sum.cpu()
        out = []
        for i in range(self.n):
            acc = GroupAccumulator(self.num_classes, torch.device("cpu"))
            acc.count, acc.correct, acc.loss_sum = count[i], correct[i], loss_sum[i]
            out.append(acc.compute(prefix))
        return out
