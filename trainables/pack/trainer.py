"""PackTrainer: N compatible trials trained in lockstep by one vmapped step per batch.

Per step: one gather of the N trials' batches, one stacked forward/backward (grouped convs,
BN over N*C channels with per-trial running stats), one fused optimizer-plus-mask update over
the (N, P) weight tensor with per-trial learning rates, and metrics accumulated on the device.
Mask updates (RigL/SET/REST every ``update_frequency`` steps) run eagerly, per trial, through
that trial's own ``SparseEngine`` on its row of the pack. No host sync inside an epoch.

The numbers a trial produces are its single-trial numbers (same init, masks, data order,
augmentation, loss, optimizer arithmetic, schedules and metrics) up to floating-point rounding:
grouped convolutions sum in another order than N separate ones. See docs/performance.md.

Knobs: ``compile`` compiles the packed loss (forward + loss; its backward through AOT autograd),
checked equal to eager on the CPU, not yet measured on a GPU; ``channels_last`` is accepted and
ignored (the stacked weights are one contiguous (N, P) tensor); ``precision="bf16"`` is not
packed (see ``plan.pack_key``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from trainables.config import TrialConfig
from trainables.data import DeviceSplit, load_splits, make_transform
from trainables.pack.data import PackSplit
from trainables.pack.member import PackMember
from trainables.pack.metrics import PackAccumulator
from trainables.pack.optim import PackOptimizer
from trainables.pack.plan import pack_key
from trainables.pack.stacked import StackedNet
from trainables.train.trial import EVAL_BATCH, resolve_device

# Memory guard for evaluation: images per eval forward across the whole pack.
EVAL_IMAGES = {"cpu": 2048, "cuda": 16384}


class PackTrainer:
    """Build once per pack; :meth:`run_epoch` trains and evaluates one epoch of every trial."""

    def __init__(self, configs: Sequence[TrialConfig]) -> None:
        if not configs:
            raise ValueError("a pack needs at least one config")
        keys = {pack_key(c, by_ratio=False) for c in configs}
        if None in keys or len(keys) != 1:
            raise ValueError("these configs cannot share a pack; use plan_packs() to group them")
        self.configs = list(configs)
        self.n = len(configs)
        first = configs[0]
        self.device = resolve_device(first.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._build_data()
        self.members = [
            PackMember(i, c, self.device, self.input_size, self.total_steps)
            for i, c in enumerate(configs)
        ]
        self.net = StackedNet([m.model for m in self.members], self.device)
        self.offsets = self.net.offsets()
        self.optimizer = PackOptimizer.create(
            first.optimizer, self.net.weights.detach(), [c.lr for c in configs],
            [c.weight_decay for c in configs], momentum=first.momentum,
        )  # fmt: skip
        for member in self.members:
            member.bind(self.net.weights, self.offsets, self.optimizer.state, self.net.buffers)
        self.mask = torch.stack(
            [m.mask_row(self.offsets, self.net.num_params) for m in self.members]
        )
        self.upweight = torch.tensor(
            [c.upweight if m.reweighting.uses_loss_weights else 1.0
             for c, m in zip(configs, self.members, strict=True)],
            device=self.device,
        ).view(-1, 1)  # fmt: skip
        self.sampling_weights = [
            m.reweighting.sampling_weights(s.aligned, c.upweight)
            for m, s, c in zip(self.members, self.train.splits, configs, strict=True)
        ]
        self.seeds = [c.seed for c in configs]
        self.step = 0
        self._loss_fn = self._make_loss_fn(first.compile)

    # ------------------------------------------------------------------ construction
    def _build_data(self) -> None:
        first = self.configs[0]
        train_tf = make_transform(first.augment, first.dataset, train=True)
        eval_tf = make_transform(first.augment, first.dataset, train=False)
        self.input_size = train_tf.output_size
        cache: dict[tuple[str, float], dict[str, DeviceSplit]] = {}
        per_trial: list[dict[str, DeviceSplit]] = []
        for cfg in self.configs:
            key = (cfg.data_root, cfg.ratio)
            if key not in cache:
                splits = load_splits(cfg.data_root, cfg.dataset, cfg.ratio)
                cache[key] = {
                    name: DeviceSplit(splits[name], self.device, train_tf if name == "train" else eval_tf)
                    for name in ("train", "valid", "test")
                }  # fmt: skip
            per_trial.append(cache[key])
        self.train = PackSplit([d["train"] for d in per_trial])
        self.valid = PackSplit([d["valid"] for d in per_trial])
        self.test = PackSplit([d["test"] for d in per_trial])
        self.steps_per_epoch = math.ceil(self.train.size / first.batch_size)
        self.total_steps = self.steps_per_epoch * first.epochs

    def _autocast(self):
        if self.configs[0].precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _make_loss_fn(self, compile_it: bool) -> Callable[..., tuple[torch.Tensor, ...]]:
        def loss_fn(x: torch.Tensor, y: torch.Tensor, b: torch.Tensor):
            with self._autocast():
                logits = self.net.forward(x, train=True)
            n, batch, k = logits.shape
            losses = F.cross_entropy(
                logits.float().reshape(n * batch, k), y.reshape(-1), reduction="none"
            ).view(n, batch)
            weights = torch.where(y == b, torch.ones_like(self.upweight), self.upweight)
            per_trial = (losses * weights).mean(dim=1)
            return per_trial.sum(), logits, losses

        return torch.compile(loss_fn) if compile_it else loss_fn

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self, epoch: int) -> list[dict[str, Any]]:
        """Train one epoch (1-based), evaluate valid and test; one metrics row per trial."""
        started = time.perf_counter()
        lrs = [m.lr() for m in self.members]
        train = self.train_epoch(epoch)
        valid = self.evaluate(self.valid, "valid", epoch)
        test = self.evaluate(self.test, "test", epoch)
        elapsed = time.perf_counter() - started
        rows = []
        for i, member in enumerate(self.members):
            row: dict[str, Any] = {"epoch": epoch, **train[i], **valid[i], **test[i]}
            row.update(
                density=member.engine.density() if member.engine else 1.0,
                train_flops=member.train_flops,
                lr=lrs[i],
                epoch_time_s=elapsed,
            )
            member.finish_epoch(row)  # LR schedule on the valid loss, best epoch tracked
            self.optimizer.set_lr(i, member.lr())
            rows.append(row)
        return rows

    def train_epoch(self, epoch: int) -> list[dict[str, float]]:
        """Train every trial for one epoch; returns per-trial ``train_loss`` / ``train_acc``."""
        first = self.configs[0]
        acc = PackAccumulator(self.n, first.num_classes, self.device)
        batches = self.train.batches(
            first.batch_size, epoch=epoch, seeds=self.seeds, shuffle=True,
            weights=self.sampling_weights,
        )  # fmt: skip
        weights = self.net.weights
        for batch in batches:
            loss, logits, losses = self._loss_fn(batch.x, batch.y, batch.b)
            weights.grad = None
            loss.backward()
            self.optimizer.update(weights.detach(), weights.grad, self.mask)
            self.step += 1
            batch_n = batch.y.shape[1]
            for member in self.members:
                member.step = self.step
                updated = self._maybe_update_masks(member)
                member.charge_flops(batch_n, updated)
            acc.update(logits.detach(), batch.y, batch.b, losses.detach())
        return [
            {"train_loss": m["train_loss"], "train_acc": m["train_acc"]}
            for m in acc.compute("train")
        ]

    def _maybe_update_masks(self, member: PackMember) -> bool:
        """Eager prune-and-grow of one trial through its own engine, on its pack row."""
        if not member.mask_update_due(self.step):
            return False
        member.bind_grads(self.net.weights.grad, self.offsets)
        updated = member.engine.step(self.step)
        if updated:
            self.mask[member.index].copy_(member.mask_row(self.offsets, self.net.num_params))
            member.refresh_sparse_flops()
        return updated

    @torch.no_grad()
    def evaluate(self, split: PackSplit, prefix: str, epoch: int) -> list[dict[str, float]]:
        """Eval-mode metrics of every trial (running BN stats, no augmentation unless the
        preset augments evaluation, in which case each trial draws as it would alone)."""
        first = self.configs[0]
        acc = PackAccumulator(self.n, first.num_classes, self.device)
        kind = self.device.type
        batch_size = max(1, min(EVAL_BATCH.get(kind, 1024), EVAL_IMAGES.get(kind, 2048) // self.n))
        if split.shared and not split.transform.augments:
            source = split.splits[0]
            for batch in source.batches(batch_size, epoch=epoch, seed=first.seed, shuffle=False):
                with self._autocast():
                    logits = self.net.forward(batch.x, train=False, shared_input=True)
                losses = self._eval_losses(logits, batch.y.expand(self.n, -1))
                acc.update(logits, batch.y, batch.b, losses)
        else:
            batches = split.batches(
                batch_size, epoch=epoch, seeds=self.seeds, shuffle=False,
                weights=[None] * self.n,
            )  # fmt: skip
            for batch in batches:
                with self._autocast():
                    logits = self.net.forward(batch.x, train=False)
                acc.update(logits, batch.y, batch.b, self._eval_losses(logits, batch.y))
        metrics = acc.compute(prefix)
        for m in metrics:
            m.pop(f"{prefix}_n")
        return metrics

    @staticmethod
    def _eval_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, batch, k = logits.shape
        return F.cross_entropy(
            logits.float().reshape(n * batch, k), y.reshape(-1), reduction="none"
        ).view(n, batch)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, index: int, epoch: int) -> dict[str, Any]:
        """Trial ``index``'s checkpoint, in the single-trial format."""
        return self.members[index].state_dict(epoch)

    @torch.no_grad()
    def load_state_dict(self, index: int, state: dict[str, Any]) -> None:
        """Load a single-trial-format checkpoint into row ``index``."""
        member = self.members[index]
        self.net.load_state_dict(index, state["model"])
        saved = state["optimizer"]
        for position, name in enumerate(self.net.names):
            start, stop = self.offsets[name]
            for key, value in saved["state"].get(position, {}).items():
                if key in self.optimizer.state:
                    self.optimizer.state[key][index, start:stop].copy_(value.reshape(-1))
        for group, saved_group in zip(
            member.optimizer.param_groups, saved["param_groups"], strict=True
        ):
            group["lr"] = saved_group["lr"]
        member.load_state_dict(state)
        self.optimizer.set_lr(index, member.lr())
        self.mask[index].copy_(member.mask_row(self.offsets, self.net.num_params))
        self.step = member.step
        self.optimizer.step = member.step
