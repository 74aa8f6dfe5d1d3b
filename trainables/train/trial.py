"""One trial's live state: data on the device, model, optimizer, sparse engine, counters.

The loop in :mod:`trainables.train.loop` drives it epoch by epoch. Everything needed to
continue bit-for-bit (on the CPU) is in :meth:`Trial.state_dict`; the data order and the
augmentation draws come from generators seeded by (seed, epoch), so they need no saved state.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainables.config import TrialConfig
from trainables.data import DeviceSplit, load_splits, make_transform
from trainables.methods import METHODS
from trainables.models import build_model
from trainables.sparse import SparseEngine, layer_flops, maskable_parameters, sparse_forward_flops
from trainables.train.graphs import GraphedStep
from trainables.train.metrics import GroupAccumulator, selection_score
from trainables.train.optim import EpochSchedule, build_optimizer, current_lr, graphed
from trainables.train.reweight import REWEIGHTING

EVAL_BATCH = {"cpu": 1024, "cuda": 4096}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def dense_gradient_steps(growth: str) -> str:
    """When RigL-style accounting charges a dense weight gradient: 'update', 'every' or 'never'."""
    return {"gradient": "update", "momentum": "every", "random": "never"}[growth]


class Trial:
    """Build once per process; :meth:`run_epoch` trains and evaluates one epoch."""

    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg = cfg
        self.spec = METHODS.get(cfg.method)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.reweighting = REWEIGHTING.get(cfg.reweight)
        # Measured on an H100 (benchmarks/README.md): faster on CUDA; on the CPU it only costs.
        self.channels_last = cfg.channels_last and self.device.type == "cuda"
        self._build_data()
        self._build_model()
        self.step = 0
        self.train_flops = 0.0
        self.best_score = -math.inf
        self.best_row: dict[str, Any] | None = None

    # ------------------------------------------------------------------ construction
    def _build_data(self) -> None:
        cfg = self.cfg
        splits = load_splits(cfg.data_root, cfg.dataset, cfg.ratio)
        train_tf = make_transform(cfg.augment, cfg.dataset, train=True)
        eval_tf = make_transform(cfg.augment, cfg.dataset, train=False)
        self.input_size = train_tf.output_size
        self.train = DeviceSplit(splits["train"], self.device, train_tf)
        self.valid = DeviceSplit(splits["valid"], self.device, eval_tf)
        self.test = DeviceSplit(splits["test"], self.device, eval_tf)
        self.sampling_weights = self.reweighting.sampling_weights(self.train.aligned, cfg.upweight)
        self.steps_per_epoch = math.ceil(self.train.n / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs

    def _build_model(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, cfg.num_classes, width=cfg.width, stem=cfg.stem)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # before masks: same strides
        self.model = model
        flops = layer_flops(model, self.input_size)
        self.layer_flops = flops
        self.dense_flops = float(sum(flops.values()))
        self.engine: SparseEngine | None = None
        if self.spec.sparse:
            self.engine = SparseEngine(
                model, None, density=cfg.density, sparse_init=cfg.sparse_init, growth=cfg.growth,
                drop_fraction=cfg.drop_fraction, drop_schedule=cfg.drop_schedule,
                drop_end=cfg.drop_end, update_frequency=cfg.update_frequency,
                total_steps=self.total_steps, reset_momentum=cfg.reset_momentum,
                mask_updates=self.spec.mask_updates, dense_first_layer=cfg.dense_first_layer,
                dense_last_layer=cfg.dense_last_layer,
                generator=torch.Generator().manual_seed(cfg.seed),
            )  # fmt: skip
        self.optimizer = build_optimizer(model.parameters(), cfg, self.device)
        if self.engine is not None:
            self.engine.bind_optimizer(self.optimizer)
        self.schedule = EpochSchedule(self.optimizer, cfg)
        self.forward = torch.compile(model) if cfg.compile else model
        self.use_graphs = graphed(cfg, self.device)
        self.graph: GraphedStep | None = None
        self.train_acc = GroupAccumulator(cfg.num_classes, self.device)
        self.maskable_total = sum(p.numel() for p in maskable_parameters(model).values())
        self.refresh_sparse_flops()

    def refresh_sparse_flops(self) -> None:
        self.forward_flops = forward_flops(self)

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self, epoch: int, progress=None, attempt: int = 1) -> dict[str, Any]:
        """Train one epoch (1-based), evaluate valid and test, return the metrics row."""
        started = time.perf_counter()
        lr = current_lr(self.optimizer)
        train = self.train_epoch(epoch, progress)
        row: dict[str, Any] = {"epoch": epoch, **train}
        row.update(self._evaluate(self.valid, "valid", epoch))
        row.update(self._evaluate(self.test, "test", epoch))
        row.update(
            density=self.engine.density() if self.engine else 1.0,
            train_flops=self.train_flops,
            lr=lr,
            epoch_time_s=time.perf_counter() - started,
            attempt=attempt,
        )
        finish_epoch(self, row)
        return row

    def train_epoch(self, epoch: int, progress=None) -> dict[str, float]:
        """Train one epoch (no evaluation); the benchmarks time this alone."""
        cfg = self.cfg
        self.model.train()
        acc = self.train_acc
        acc.reset()
        batches = self.train.batches(
            cfg.batch_size, epoch=epoch, seed=cfg.seed, shuffle=True, weights=self.sampling_weights
        )
        for batch in batches:
            if self.use_graphs and self.graph is None and batch.x.shape[0] == cfg.batch_size:
                state = [acc.count, acc.correct, acc.loss_sum]
                self.graph = GraphedStep(self._step, self.model, self.optimizer, state, batch)
            if self.graph is not None and self.graph.fits(batch):
                self.graph.replay(batch)
            else:
                # Once a graph exists its gradient tensors must stay the ones the engine reads.
                self.optimizer.zero_grad(set_to_none=self.graph is None)
                self._step(batch.x, batch.y, batch.b)
            self.step += 1
            updated = self.engine.step(self.step) if self.engine is not None else False
            self.train_flops += step_flops(self, batch.y.shape[0], updated)
            if updated:
                self.refresh_sparse_flops()
            if progress is not None:
                progress.update(1)
        metrics = acc.compute("train")
        return {"train_loss": metrics["train_loss"], "train_acc": metrics["train_acc"]}

    def _step(self, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor) -> None:
        """Forward, loss, backward, optimizer step, metric sums: what a CUDA graph records."""
        with self._autocast():
            logits = self.forward(self._prepare(x))
        losses = F.cross_entropy(logits.float(), y, reduction="none")
        weights = self.reweighting.loss_weights(y, b, self.cfg.upweight)
        loss = (losses * weights).mean() if weights is not None else losses.mean()
        loss.backward()
        self.optimizer.step()
        self.train_acc.update(logits, y, b, losses)

    @torch.no_grad()
    def _evaluate(self, split: DeviceSplit, prefix: str, epoch: int) -> dict[str, float]:
        self.model.eval()
        acc = GroupAccumulator(self.cfg.num_classes, self.device)
        batch_size = EVAL_BATCH.get(self.device.type, 1024)
        for batch in split.batches(batch_size, epoch=epoch, seed=self.cfg.seed, shuffle=False):
            with self._autocast():
                logits = self.forward(self._prepare(batch.x))
            losses = F.cross_entropy(logits.float(), batch.y, reduction="none")
            acc.update(logits, batch.y, batch.b, losses)
        self.model.train()
        metrics = acc.compute(prefix)
        metrics.pop(f"{prefix}_n")
        return metrics

    # ------------------------------------------------------------------ results
    def summary(self, rows: list[dict[str, Any]], attempts: int) -> dict[str, Any]:
        return trial_summary(self, rows, attempts, self.train.n, self.input_size)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, epoch: int) -> dict[str, Any]:
        return {
            **progress_state(self, epoch),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_owner(self.cfg, state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.use_graphs:  # the loaded lr is a host value; graphs read a device tensor
            for group in self.optimizer.param_groups:
                group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
        load_progress_state(self, state)


def forward_flops(trial: Any) -> float:
    """Forward FLOPs per example at the current layer densities (dense when not sparse)."""
    if trial.engine is None:
        return trial.dense_flops
    return sparse_forward_flops(trial.layer_flops, trial.engine.layer_densities())


def step_flops(trial: Any, n: int, updated: bool) -> float:
    """RigL-paper accounting of one step of ``n`` examples: 3 f_S, or 2 f_S + f_D when a dense
    weight gradient is used (every step for momentum growth, update steps for gradient growth)."""
    if trial.engine is None:
        return 3.0 * trial.dense_flops * n
    dense_grad = dense_gradient_steps(trial.cfg.growth)
    if dense_grad == "every" or (dense_grad == "update" and updated):
        return (2.0 * trial.forward_flops + trial.dense_flops) * n
    return 3.0 * trial.forward_flops * n


def finish_epoch(trial: Any, row: dict[str, Any]) -> None:
    """After an epoch's row is complete: the LR schedule on the valid loss, best-epoch tracking."""
    trial.schedule.step(row["valid_loss"])
    score = selection_score(row)
    if trial.best_row is None or score > trial.best_score:
        trial.best_score, trial.best_row = score, dict(row)


def trial_summary(
    trial: Any, rows: list[dict[str, Any]], attempts: int, train_n: int, input_size: int
) -> dict[str, Any]:
    """``summary.json`` of a finished trial (shared by single and packed trials)."""
    cfg = trial.cfg
    final = rows[-1]
    selected = final if cfg.selection == "last" else trial.best_row or final
    engine = trial.engine
    on_gpu = trial.device.type == "cuda"
    return {
        "trial_hash": cfg.trial_hash,
        "status": "finished",
        "epochs": len(rows),
        "final": final,
        "selected": selected,
        "selected_epoch": selected["epoch"],
        "selection": cfg.selection,
        "recipe": cfg.recipe,
        "density": engine.density() if engine else 1.0,
        "nonzero_params": engine.nonzeros() if engine else trial.maskable_total,
        "total_params": trial.maskable_total,
        "inference_flops": trial.forward_flops,
        "dense_inference_flops": trial.dense_flops,
        "train_flops": trial.train_flops,
        "dense_train_flops": 3.0 * trial.dense_flops * train_n * cfg.epochs,
        "train_samples": train_n,
        "input_size": input_size,
        "wall_time_s": float(sum(r["epoch_time_s"] for r in rows)),
        "device": trial.device.type,
        "gpu_name": torch.cuda.get_device_name(trial.device) if on_gpu else "",
        "attempts": attempts,
    }


def check_owner(cfg: TrialConfig, state: dict[str, Any]) -> None:
    if state["trial_hash"] != cfg.trial_hash:
        raise ValueError(f"checkpoint belongs to trial {state['trial_hash']}, not {cfg.trial_hash}")


def progress_state(trial: Any, epoch: int) -> dict[str, Any]:
    """The checkpoint entries besides weights and optimizer (shared with packed trials)."""
    return {
        "epoch": epoch,
        "trial_hash": trial.cfg.trial_hash,
        "engine": trial.engine.state_dict() if trial.engine is not None else None,
        "schedule": trial.schedule.state_dict(),
        "step": trial.step,
        "train_flops": trial.train_flops,
        "best_score": trial.best_score,
        "best_row": trial.best_row,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }


def load_progress_state(trial: Any, state: dict[str, Any]) -> None:
    """Inverse of :func:`progress_state` (after the weights and optimizer are in place)."""
    if trial.engine is not None:
        trial.engine.load_state_dict(state["engine"])
    trial.schedule.load_state_dict(state["schedule"])
    trial.step = state["step"]
    trial.train_flops = state["train_flops"]
    trial.best_score = state["best_score"]
    trial.best_row = state["best_row"]
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    trial.refresh_sparse_flops()
