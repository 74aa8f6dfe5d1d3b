"""SparseEngine: exact-count masks on a dense model, re-applied after every optimizer step.

The forward pass is the plain dense model (compile-friendly: no mask inside ``forward``);
weights stay zero at masked positions because the engine multiplies them by their masks in
place right after each optimizer step, with one fused ``torch._foreach_mul_``. Gradients are
never masked, so RigL's growth score (|grad| of inactive weights) is just ``weight.grad``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainables.errors import UserError
from trainables.sparse.densities import layer_densities
from trainables.sparse.masks import layer_counts, maskable_parameters, random_mask
from trainables.sparse.schedules import DROP_ROUNDING, DropSchedule
from trainables.sparse.updaters import (
    GROWTH,
    GrowthInputs,
    prune_and_grow,
    reset_optimizer_state,
)


class SparseEngine:
    """Owns the masks of one model: init (uniform/ER/ERK), enforcement, prune-and-grow updates.

    Build it after the model is on its device and in its final memory format (masks copy the
    weights' dtype and strides so the fused multiply takes its fast path); call
    :meth:`bind_optimizer` if the optimizer is created afterwards, and :meth:`step` right after
    every ``optimizer.step()``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        *,
        density: float,
        sparse_init: str,
        growth: str,
        drop_fraction: float,
        drop_schedule: str,
        drop_end: float,
        drop_rounding: str = "floor",
        update_frequency: int,
        total_steps: int,
        reset_momentum: bool,
        reset_second_moment: bool = True,
        mask_updates: bool,
        dense_first_layer: bool = False,
        dense_last_layer: bool = False,
        generator: torch.Generator,
    ) -> None:
        if growth not in GROWTH:
            raise UserError(f"growth: {growth!r} is not allowed; allowed: {', '.join(GROWTH)}")
        if update_frequency < 1:
            raise UserError(
                f"update_frequency: {update_frequency!r} is not allowed; allowed: an integer >= 1"
            )
        if drop_rounding not in DROP_ROUNDING:
            raise UserError(
                f"drop_rounding: {drop_rounding!r} is not allowed; allowed: "
                f"{', '.join(DROP_ROUNDING)}"
            )
        params = maskable_parameters(model, dense_first_layer, dense_last_layer)
        if not params:
            raise UserError(
                "model: no Conv2d/Linear weight left to mask; allowed: a model with one"
            )
        shapes = {name: tuple(p.shape) for name, p in params.items()}
        self._counts = layer_counts(shapes, layer_densities(shapes, density, sparse_init))
        self._numel = {name: p.numel() for name, p in params.items()}
        self._names = list(params)
        self._weights = list(params.values())
        self._masks = {
            name: random_mask(shapes[name], self._counts[name], generator, p.device)
            for name, p in params.items()
        }
        self._float_masks: list[torch.Tensor] = []
        self._generator = generator
        self._growth = GROWTH.get(growth)
        self._schedule = DropSchedule(drop_schedule, drop_fraction, total_steps, drop_end)
        self._update_frequency = update_frequency
        self._reset_momentum = reset_momentum
        self._reset_second_moment = reset_second_moment
        self._round = DROP_ROUNDING.get(drop_rounding)
        self._mask_updates = mask_updates
        self._optimizer = optimizer
        self._updates = 0
        self.last_update_changed = False
        # Whether step() multiplies the masks in; a fused group's step does it for all its
        # members in one launch instead, inside its CUDA graph (trainables/train/fused.py).
        self.masks_in_step = True
        self._sync_layout()
        self.apply_masks()

    # ------------------------------------------------------------------ enforcement
    def _sync_layout(self) -> None:
        """(Re)build the float masks with each weight's device, dtype and strides."""
        floats = []
        for name, weight in zip(self._names, self._weights, strict=True):
            mask = self._masks[name]
            if mask.device != weight.device:
                mask = self._masks[name] = mask.to(weight.device)
            floats.append(torch.empty_like(weight.detach()).copy_(mask))
        self._float_masks = floats

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Attach the optimizer whose state is reset (and read by momentum growth).

        Also re-copies the float masks to the weights' current layout, so a model converted to
        ``channels_last`` between engine and optimizer creation keeps the fast path.
        """
        self._optimizer = optimizer
        self._sync_layout()

    def mask_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(weights, float masks) that :meth:`apply_masks` multiplies: the live tensors, for a
        caller that enforces several engines' masks in one launch (a fused group)."""
        return list(self._weights), list(self._float_masks)

    def apply_masks(self) -> None:
        """Zero every masked weight in place: one multi-tensor kernel launch group, no sync."""
        with torch.no_grad():
            torch._foreach_mul_(self._weights, self._float_masks)

    def step(self, step: int) -> bool:
        """Call right after ``optimizer.step()`` with the 1-based global step count.

        Returns True iff a mask update ran at this step (it counts in :attr:`updates`).
        :attr:`last_update_changed` (reset at every call) says whether it changed a layer: an
        update whose drop counts all round to 0 reads no growth scores (no dense gradient), which
        the FLOPs accounting must not charge.
        """
        if self.masks_in_step:
            self.apply_masks()
        self.last_update_changed = False
        if not self._mask_updates or step % self._update_frequency != 0:
            return False
        fraction = self._schedule(step)
        if fraction <= 0:
            return False
        self.last_update_changed = self._update(fraction)
        self.apply_masks()
        return True

    # ------------------------------------------------------------------ updates
    def _update(self, fraction: float) -> bool:
        if self._reset_momentum and self._optimizer is None:
            raise RuntimeError("reset_momentum needs bind_optimizer() before the first update")
        changed = False
        for name, weight, float_mask in zip(
            self._names, self._weights, self._float_masks, strict=True
        ):
            k = min(self._round(fraction * self._counts[name]), self._counts[name])
            if k == 0:
                continue
            changed = True
            mask = self._masks[name]
            scores = self._growth(GrowthInputs(weight, self._optimizer, self._generator))
            new = prune_and_grow(weight, mask, scores, k)
            born = new & ~mask
            with torch.no_grad():
                weight.masked_fill_(born, 0)  # inactive weights are already 0; kept explicit
            if self._reset_momentum:
                reset_optimizer_state(
                    self._optimizer, weight, born, second_moment=self._reset_second_moment
                )
            mask.copy_(new)
            float_mask.copy_(new)
        self._updates += 1
        return changed

    # ------------------------------------------------------------------ queries
    @property
    def schedule(self) -> DropSchedule:
        return self._schedule

    @property
    def updates(self) -> int:
        """Mask updates done so far (checkpointed)."""
        return self._updates

    def nonzeros(self) -> int:
        """Active maskable weights (from host-side counts, no device sync)."""
        return sum(self._counts.values())

    def density(self) -> float:
        """Realised global density over the maskable weights."""
        return self.nonzeros() / sum(self._numel.values())

    def layer_counts(self) -> dict[str, int]:
        """Active weights per masked layer."""
        return dict(self._counts)

    def layer_densities(self) -> dict[str, float]:
        return {name: self._counts[name] / self._numel[name] for name in self._names}

    def masks(self) -> dict[str, torch.Tensor]:
        """The bool masks (live tensors: read, do not modify)."""
        return dict(self._masks)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "masks": {name: mask.cpu().clone() for name, mask in self._masks.items()},
            "counts": dict(self._counts),
            "updates": self._updates,
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks, counts, update count and generator; re-applies the masks."""
        if list(state["masks"]) != self._names:
            raise ValueError(
                f"sparse state has layers {list(state['masks'])}, the model has {self._names}"
            )
        for name in self._names:
            saved = state["masks"][name]
            if tuple(saved.shape) != tuple(self._masks[name].shape):
                raise ValueError(f"sparse state: mask {name} has shape {tuple(saved.shape)}")
            self._masks[name].copy_(saved.to(torch.bool))
        self._counts = {name: int(state["counts"][name]) for name in self._names}
        for name, mask in self._masks.items():  # load time only: one sync per layer is fine
            if int(mask.sum()) != self._counts[name]:
                raise ValueError(f"sparse state: mask {name} disagrees with its stored count")
        self._updates = int(state["updates"])
        self._generator.set_state(state["generator"])
        self._sync_layout()
        self.apply_masks()
