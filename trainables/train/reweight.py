"""Reweighting strategies: how bias-conflicting samples get more weight.

``loss``: the paper's Eq. 6, the per-sample cross-entropy is multiplied by ``upweight`` for
conflicting samples and the batch loss is the mean of the weighted terms (an expectation, not
re-normalised by the sum of weights). ``resample``: the public code's WeightedRandomSampler,
each epoch draws N samples with replacement with probability proportional to 1 (aligned) or
``upweight`` (conflicting). ``none``: plain ERM. See docs/presets.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.registry import Registry


@dataclass(frozen=True)
class Reweighting:
    """``sampling`` gives per-sample draw weights for an epoch; ``loss`` per-batch loss weights."""

    uses_sampler: bool
    uses_loss_weights: bool

    def sampling_weights(self, aligned: torch.Tensor, upweight: float) -> torch.Tensor | None:
        if not self.uses_sampler:
            return None
        return torch.where(aligned, 1.0, float(upweight)).float()

    def loss_weights(
        self, y: torch.Tensor, b: torch.Tensor, upweight: float
    ) -> torch.Tensor | None:
        if not self.uses_loss_weights:
            return None
        return torch.where(y == b, 1.0, float(upweight))


REWEIGHTING: Registry[Reweighting] = Registry("reweighting")
REWEIGHTING.register("none", Reweighting(uses_sampler=False, uses_loss_weights=False))
REWEIGHTING.register("loss", Reweighting(uses_sampler=False, uses_loss_weights=True))
REWEIGHTING.register("resample", Reweighting(uses_sampler=True, uses_loss_weights=False))
