"""Group-aware accuracy metrics, accumulated on the device and read once per epoch.

Groups follow REST: a sample is bias-aligned when its label equals its bias label, else
bias-conflicting. *Worst-group* accuracy is the minimum over those two groups; when a split lacks one of
them it is NaN, with a warning (a minimum over the one group left would silently be the
aligned accuracy). *Unbiased* accuracy is the mean accuracy over the (label, bias) cells present in
the split, the LfF/DisEnt definition; on an unbiased test set it is close to plain accuracy.
"""

from __future__ import annotations

import math
import warnings

import torch

from trainables.results import (
    ACC,
    ACC_ALIGNED,
    ACC_CONFLICTING,
    LOSS,
    UNBIASED_ACC,
    VALID,
    WORST_GROUP_ACC,
    split_metric,
)


class GroupAccumulator:
    """Sums per (label, bias) cell on the device; no host sync until :meth:`compute`."""

    def __init__(self, num_classes: int, device: torch.device, warn: bool = True) -> None:
        self.num_classes = num_classes
        self.warn = warn  # False on an unbiased dataset, where no split has a conflicting sample
        cells = num_classes * num_classes
        self.count = torch.zeros(cells, dtype=torch.long, device=device)
        self.correct = torch.zeros(cells, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        # Updates while ``loss_sum`` was still finite: a non-finite sum stays non-finite (the
        # losses are >= 0), so the first non-finite update is ``finite_updates + 1``. Counted
        # on the device, read only when the epoch's sum is not finite.
        self.finite_updates = torch.zeros((), dtype=torch.long, device=device)

    @property
    def tensors(self) -> list[torch.Tensor]:
        """Every sum (what a CUDA graph's warm-up must snapshot and restore)."""
        return [self.count, self.correct, self.loss_sum, self.finite_updates]

    def reset(self) -> None:
        """Zero in place (a CUDA graph keeps pointing at these tensors)."""
        for tensor in self.tensors:
            tensor.zero_()

    @torch.no_grad()
    def update(self, logits: torch.Tensor, y: torch.Tensor, b: torch.Tensor, losses: torch.Tensor):
        # index_add_ into fixed-size tensors: unlike bincount it never syncs with the host.
        cell = y * self.num_classes + b
        self.count.index_add_(0, cell, torch.ones_like(cell))
        self.correct.index_add_(0, cell, (logits.argmax(dim=1) == y).long())
        self.loss_sum += losses.detach().double().sum()
        self.finite_updates += torch.isfinite(self.loss_sum)

    def first_nonfinite_update(self) -> int | None:
        """1-based index of the update whose loss made the sum non-finite (a host sync)."""
        if torch.isfinite(self.loss_sum).item():
            return None
        return int(self.finite_updates.item()) + 1

    def compute(self, prefix: str) -> dict[str, float]:
        """Metrics named ``{prefix}_acc`` etc. (one device->host copy)."""
        count = self.count.cpu().view(self.num_classes, self.num_classes).double()
        correct = self.correct.cpu().view(self.num_classes, self.num_classes).double()
        total = count.sum().item()
        aligned_n = count.diagonal().sum().item()
        aligned_c = correct.diagonal().sum().item()
        conflict_n = total - aligned_n
        conflict_c = correct.sum().item() - aligned_c
        acc_aligned = aligned_c / aligned_n if aligned_n else math.nan
        acc_conflicting = conflict_c / conflict_n if conflict_n else math.nan
        present = count > 0
        cell_acc = correct[present] / count[present]
        absent = math.isnan(acc_aligned) or math.isnan(acc_conflicting)
        worst = math.nan if absent else min(acc_aligned, acc_conflicting)
        if total and absent and self.warn:
            missing = "bias-conflicting" if math.isnan(acc_conflicting) else "bias-aligned"
            warnings.warn(
                f"{prefix} split has no {missing} sample: {prefix}_worst_group_acc is NaN "
                "(and selection=best-valid cannot rank epochs on it; use selection=last)",
                stacklevel=2,
            )
        values = {
            LOSS: self.loss_sum.item() / total if total else math.nan,
            ACC: correct.sum().item() / total if total else math.nan,
            ACC_ALIGNED: acc_aligned,
            ACC_CONFLICTING: acc_conflicting,
            WORST_GROUP_ACC: worst,
            UNBIASED_ACC: cell_acc.mean().item() if present.any() else math.nan,
            "n": int(total),
        }
        return {split_metric(prefix, name): value for name, value in values.items()}


def selection_score(row: dict[str, float]) -> float:
    """Score of an epoch under ``best-valid``: valid worst-group accuracy (NaN counts as -1)."""
    score = row.get(split_metric(VALID, WORST_GROUP_ACC), math.nan)
    return -1.0 if score is None or math.isnan(score) else float(score)


class NoiseAccumulator:
    """Label-noise sums of one training epoch on the device (docs/data.md, "Label noise").

    Per update: predictions equal to the clean label, to the (noisy) training label, and, on
    the flipped samples, to their noisy label. In-place sums into one fixed-size tensor, as
    :class:`GroupAccumulator`, so nothing syncs with the host until :meth:`compute`.
    """

    def __init__(self, clean: torch.Tensor, flipped: torch.Tensor) -> None:
        device = clean.device
        self.clean = clean
        self.flipped = flipped.long()
        # [samples, clean correct, noisy correct, flipped samples, flipped predicted noisy]
        self.sums = torch.zeros(5, dtype=torch.long, device=device)

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.sums]

    def reset(self) -> None:
        self.sums.zero_()

    @torch.no_grad()
    def update(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> None:
        pred = logits.argmax(dim=1)
        flipped = self.flipped.index_select(0, index)
        noisy_hit = (pred == y).long()
        values = torch.stack(
            [
                torch.ones_like(pred),
                (pred == self.clean.index_select(0, index)).long(),
                noisy_hit,
                flipped,
                flipped * noisy_hit,
            ]
        ).sum(dim=1)
        self.sums += values  # in place: a CUDA graph keeps pointing at this tensor

    def compute(self) -> dict[str, float]:
        """``train_acc_clean``, ``train_acc_noisy`` and ``memorised`` (one host copy)."""
        n, clean, noisy, flipped, memorised = self.sums.tolist()
        return {
            "train_acc_clean": clean / n if n else math.nan,
            "train_acc_noisy": noisy / n if n else math.nan,
            "memorised": memorised / flipped if flipped else math.nan,
        }
