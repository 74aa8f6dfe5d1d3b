"""One trial inside a pack: the single-trial objects that keep it identical to ``run_trial``.

Each member builds its network, ``SparseEngine``, optimizer and LR schedule exactly as
``trainables.train.trial.Trial`` does (same seeds, same order of random draws), so its initial
weights and masks are the single trial's. After stacking, the member's parameters and its
optimizer's state are re-pointed at its row of the pack's tensors: the engine's prune-and-grow,
its optimizer-state reset and the scheduler then act on the pack in place, and a checkpoint is
the single trial's checkpoint format (a pack trial can be resumed alone and vice versa).

The member's torch optimizer never steps (the pack's fused update does); it exists for the
engine, the scheduler and the checkpoint format.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainables.config import TrialConfig
from trainables.methods import METHODS
from trainables.models import build_model
from trainables.sparse import SparseEngine, layer_flops, maskable_parameters
from trainables.train.optim import EpochSchedule, build_optimizer, current_lr
from trainables.train.reweight import REWEIGHTING
from trainables.train.trial import (
    check_owner,
    finish_epoch,
    forward_flops,
    load_progress_state,
    progress_state,
    step_flops,
    trial_summary,
)


class PackMember:
    """Per-trial objects and counters; ``index`` is the trial's row in the pack."""

    def __init__(
        self, index: int, cfg: TrialConfig, device: torch.device, input_size: int, total_steps: int
    ) -> None:
        self.index = index
        self.cfg = cfg
        self.spec = METHODS.get(cfg.method)
        self.device = device
        self.reweighting = REWEIGHTING.get(cfg.reweight)
        torch.manual_seed(cfg.seed)  # as Trial._build_model: the seed fixes the init
        model = build_model(cfg.model, cfg.num_classes, width=cfg.width, stem=cfg.stem)
        self.model = model.to(device)
        self.layer_flops = layer_flops(self.model, input_size)
        self.dense_flops = float(sum(self.layer_flops.values()))
        self.engine: SparseEngine | None = None
        if self.spec.sparse:
            self.engine = SparseEngine(
                self.model, None, density=cfg.density, sparse_init=cfg.sparse_init,
                growth=cfg.growth, drop_fraction=cfg.drop_fraction,
                drop_schedule=cfg.drop_schedule, drop_end=cfg.drop_end,
                update_frequency=cfg.update_frequency, total_steps=total_steps,
                reset_momentum=cfg.reset_momentum, mask_updates=self.spec.mask_updates,
                dense_first_layer=cfg.dense_first_layer, dense_last_layer=cfg.dense_last_layer,
                generator=torch.Generator().manual_seed(cfg.seed),
            )  # fmt: skip
        self.optimizer = build_optimizer(self.model.parameters(), cfg, device)
        if self.engine is not None:
            self.engine.bind_optimizer(self.optimizer)
        self.schedule = EpochSchedule(self.optimizer, cfg)
        self.maskable = maskable_parameters(self.model)
        self.maskable_total = sum(p.numel() for p in self.maskable.values())
        self.step = 0
        self.train_flops = 0.0
        self.best_score = -math.inf
        self.best_row: dict[str, Any] | None = None
        self.refresh_sparse_flops()

    # ------------------------------------------------------------------ binding to the pack
    def bind(
        self,
        weights: torch.Tensor,
        offsets: dict[str, tuple[int, int]],
        state: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
    ) -> None:
        """Alias this trial's parameters, BN buffers and optimizer state to its pack row."""
        row = weights.detach()[self.index]
        for name, buffer in self.model.named_buffers():
            buffer.data = buffers[name][self.index]
        params = dict(self.model.named_parameters())
        for name, param in params.items():
            start, stop = offsets[name]
            param.data = row[start:stop].view(param.shape)
        for name, param in params.items():
            start, stop = offsets[name]
            entry: dict[str, Any] = {
                key: value[self.index, start:stop].view(param.shape) for key, value in state.items()
            }
            if "exp_avg" in entry:
                entry["step"] = torch.tensor(0.0)
            self.optimizer.state[param] = entry

    def bind_grads(self, grad: torch.Tensor, offsets: dict[str, tuple[int, int]]) -> None:
        """Point the parameters' ``.grad`` at this trial's row of the pack gradient."""
        row = grad[self.index]
        for name, param in self.model.named_parameters():
            start, stop = offsets[name]
            param.grad = row[start:stop].view(param.shape)

    def mask_row(self, offsets: dict[str, tuple[int, int]], width: int) -> torch.Tensor:
        """The trial's mask as one (P,) float row: 1 everywhere but masked weights."""
        row = torch.ones(width, device=self.device)
        if self.engine is not None:
            for name, mask in self.engine.masks().items():
                start, stop = offsets[name]
                row[start:stop] = mask.reshape(-1).float()
        return row

    # ------------------------------------------------------------------ bookkeeping
    def refresh_sparse_flops(self) -> None:
        self.forward_flops = forward_flops(self)

    def charge_flops(self, n: int, updated: bool) -> None:
        """RigL-paper accounting of one step of ``n`` examples, as a single trial."""
        self.train_flops += step_flops(self, n, updated)

    def mask_update_due(self, step: int) -> bool:
        return (
            self.engine is not None
            and self.spec.mask_updates
            and step % self.cfg.update_frequency == 0
        )

    def lr(self) -> float:
        return current_lr(self.optimizer)

    def finish_epoch(self, row: dict[str, Any]) -> None:
        """LR schedule on the valid loss and best-epoch tracking, as ``Trial.run_epoch``."""
        finish_epoch(self, row)

    # ------------------------------------------------------------------ results
    def summary(
        self, rows: list[dict[str, Any]], attempts: int, train_n: int, input_size: int
    ) -> dict[str, Any]:
        """``Trial.summary`` for this member (same keys and meaning)."""
        return trial_summary(self, rows, attempts, train_n, input_size)

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """The checkpoint in ``Trial.state_dict``'s format (compact CPU copies, no pack views)."""
        optimizer = self.optimizer.state_dict()
        optimizer["state"] = {
            k: {
                name: torch.tensor(float(self.step)) if name == "step" else v.detach().cpu().clone()
                for name, v in entry.items()
            }
            for k, entry in optimizer["state"].items()
        }
        return {
            **progress_state(self, epoch),
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": optimizer,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counters, engine and schedule; weights/optimizer rows go via the pack."""
        check_owner(self.cfg, state)
        load_progress_state(self, state)
