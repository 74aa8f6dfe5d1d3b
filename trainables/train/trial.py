"""One trial's live state and lifecycle: data on the device, the method, counters, best epoch.

The loop in :mod:`trainables.train.loop` drives it epoch by epoch; the Ray trainable and every
benchmark use the same object. What differs between methods (networks, optimizers, loss, mask
updates, per-sample state) lives in the method (:mod:`trainables.methods`); this class owns
what every method shares. Everything needed to continue bit-for-bit (on the CPU) is in
:meth:`Trial.state_dict`; the data order and the augmentation draws come from generators seeded
by (seed, epoch), so they need no saved state.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from trainables.config import TrialConfig
from trainables.data import Batch, DeviceSplit, load_splits, make_transform
from trainables.data.provenance import bundle_source
from trainables.datasets import DATASETS
from trainables.errors import DivergenceError
from trainables.flops import PASSES_PER_STEP
from trainables.methods import Method, TrialContext
from trainables.optimizers import graphed
from trainables.stages import StageStart
from trainables.steps import EpochSlice, Span
from trainables.train.graphs import GraphedStep
from trainables.train.metrics import GroupAccumulator, NoiseAccumulator, selection_score

if TYPE_CHECKING:
    from trainables.train.fused import FusedGroup

EVAL_BATCH = {"cpu": 1024, "cuda": 4096}


def own_storage(state: Any) -> Any:
    """``state`` with every tensor that is a view of a larger storage copied out: ``torch.save``
    writes a tensor's whole storage, and a fused group's weights are slices of K trials'."""
    if isinstance(state, torch.Tensor):
        whole = state.untyped_storage().nbytes()
        return state.clone() if whole > state.numel() * state.element_size() else state
    if isinstance(state, dict):
        copied = type(state)((key, own_storage(value)) for key, value in state.items())
        if hasattr(state, "_metadata"):  # a module's state_dict: its version metadata
            copied._metadata = state._metadata  # type: ignore[attr-defined]
        return copied
    if isinstance(state, list | tuple):
        return type(state)(own_storage(value) for value in state)
    return state


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_precision(precision: str, device: torch.device) -> dict[str, bool]:
    """Apply ``precision``'s TF32 switches (process-wide; one trial per process) and return
    them for the summary. ``fp32`` turns TF32 off: Hopper otherwise runs "fp32" convolutions
    in TF32 (cuDNN's default). Both are CUDA numerics: on the CPU neither applies (the method's
    autocast is CUDA-only too), and the summary says so."""
    cuda = device.type == "cuda"
    tf32 = precision == "tf32"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return {"tf32": tf32 and cuda, "bf16": precision == "bf16" and cuda}


class _AutotuneOff:
    """``torch.backends.cudnn.benchmark`` off inside, restored after (also on an error).

    The trial autotunes cuDNN for training only: evaluation runs other shapes (the eval batch
    size, partial last batches, JTT's and DFR's passes), and autotuning each costs start-up for
    no gain. Measured on an H200 (fresh process, first epoch with valid and test evaluation):
    ResNet-18 at 32 px 5.35 s with benchmark on everywhere, 4.00 s on for training only, 0.89 s
    off everywhere; at 224 px 6.63 s against 3.52 s; the 8-step steady epochs (28.7, 31.4 and
    29.9 ms at 32 px) are too short to tell the variants apart. On the CPU the flag does
    nothing.

    The flag is the process's, and a fused group's members evaluate at once in their threads
    (:mod:`trainables.train.fused`): the first to enter saves it, the last to leave restores
    it, so no interleaving leaves it off for the training that follows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._saved = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._inside == 0:
                self._saved = torch.backends.cudnn.benchmark
                torch.backends.cudnn.benchmark = False
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if self._inside == 0:
                    torch.backends.cudnn.benchmark = self._saved


cudnn_autotune_off = _AutotuneOff()


class Trial:
    """Build once per process; :meth:`run_epoch` trains and evaluates one epoch.

    ``trial_dir`` is the trial folder (``run_trial`` passes it; None when built on its own):
    methods that keep files beside the checkpoints read it from their context. ``stage`` is
    set for one stage of a staged trial (:mod:`trainables.train.staged`): the trial trains its
    span of the schedule and hands its start to the method; nothing else changes."""

    # Set by _build_data; None (unknown) for a subclass that makes up its own data.
    data_source: dict[str, Any] | None = None

    def __init__(
        self, cfg: TrialConfig, trial_dir: str | None = None, stage: StageStart | None = None
    ) -> None:
        self.cfg = cfg
        self.info = cfg.method_info
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # for training: off in evaluation (run_epoch)
        self.numerics = set_precision(cfg.precision, self.device)
        # Measured on an H100 (benchmarks/README.md): faster on CUDA; on the CPU it only costs.
        self.channels_last = cfg.channels_last and self.device.type == "cuda"
        self._build_data()
        span, blame = (stage.stage.span, stage.stage.blame) if stage else (Span(), ("epochs", None))
        # The epochs this trial trains (rows, checkpoints): 1..epochs, or its stage's span.
        self.slices = span.slices(cfg.epochs, self.steps_per_epoch, blame)
        self.total_epochs = len(self.slices)
        self.method: Method = self.info.implementation(
            TrialContext(
                cfg=cfg,
                device=self.device,
                train=self.train,
                input_size=self.input_size,
                steps_per_epoch=self.steps_per_epoch,
                channels_last=self.channels_last,
                valid=self.valid,
                trial_dir=trial_dir,
                stage=stage,
            )
        )
        self.use_graphs = graphed(cfg, self.device) and self.info.can_graph
        self.graph: GraphedStep | None = None
        self.biased = DATASETS.get(cfg.dataset).biased  # else worst-group metrics are NaN
        self.train_acc = GroupAccumulator(cfg.num_classes, self.device, warn=self.biased)
        self.noise_acc = (
            NoiseAccumulator(self.train.clean_labels, self.train.flipped)
            if self.train.flipped is not None
            else None
        )
        self.step = 0
        self.train_flops = 0.0
        self.dense_train_flops = 0.0  # what the same steps cost a dense network
        self.best_score = -math.inf
        self.best_row: dict[str, Any] | None = None
        # Set while the trial trains in a fused group (trainables/train/fused.py): its weights
        # are then slices of the group's stacked tensors and the group trains its epochs.
        self.fused: FusedGroup | None = None
        self.fused_max = 1  # the most trials it trained with in one step (1: alone)
        self.fused_graphs = False  # a fused group replayed its steps as a CUDA graph

    def _build_data(self) -> None:
        cfg = self.cfg
        splits = load_splits(cfg.data_root, cfg.dataset, cfg.ratio)
        # Which data the numbers come from (the bundle's source.json), read once: the summary's
        # data_source, which the report uses to name the data and to refuse a stand-in's
        # comparison with the paper (docs/analysis.md).
        self.data_source = bundle_source(cfg.data_root, cfg.dataset)
        train_tf = make_transform(cfg.augment, cfg.dataset, True, cfg.normalisation)
        eval_tf = make_transform(cfg.augment, cfg.dataset, False, cfg.normalisation)
        self.input_size = train_tf.output_size
        train = splits["train"]
        if cfg.train_on_valid:  # the whole source training set (docs/data.md): noise covers it
            train = train.joined(splits["valid"])
        self.train = DeviceSplit(train, self.device, train_tf)
        self.noisy_labels = self._apply_noise()
        self.valid = DeviceSplit(splits["valid"], self.device, eval_tf)
        self.test = DeviceSplit(splits["test"], self.device, eval_tf)
        self.steps_per_epoch = math.ceil(self.train.n / cfg.batch_size)

    def _apply_noise(self) -> int:
        """Replace the training labels by their seeded noisy draw (docs/data.md); the count of
        changed labels. Valid and test keep their clean labels (with ``train_on_valid`` the
        valid images are trained on with their share of the draw; the valid split evaluated
        keeps the clean labels)."""
        cfg = self.cfg
        if cfg.noise_type == "none" and cfg.random_labels_fraction == 0:
            return 0
        from trainables.data.noise import noisy_labels

        kind, fraction = (
            ("random", cfg.random_labels_fraction)
            if cfg.noise_type == "none"
            else (cfg.noise_type, cfg.noise_fraction)
        )
        clean = self.train.clean_labels.cpu().numpy()
        noisy, _ = noisy_labels(clean, cfg.num_classes, kind, fraction, cfg.seed, cfg.dataset)
        return self.train.set_noisy_labels(torch.from_numpy(noisy))

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self, epoch: int, progress=None, attempt: int = 1) -> dict[str, Any]:
        """Train one epoch (1-based), evaluate valid and test, return the metrics row."""
        started = time.perf_counter()
        lr = float(self.method.optimizers()[0].param_groups[0]["lr"])  # the current stage's
        train = self.train_epoch(epoch, progress)
        row: dict[str, Any] = {"epoch": epoch, **train}
        with cudnn_autotune_off():  # autotune training shapes only (see the docstring)
            self.train_flops += self.method.before_evaluate(epoch)
            row.update(self.evaluate(self.valid, "valid", epoch))
            row.update(self.evaluate(self.test, "test", epoch))
        row.update(
            density=self.method.density(),
            train_flops=self.train_flops,
            lr=lr,
            epoch_time_s=time.perf_counter() - started,
            attempt=attempt,
        )
        self.method.after_epoch(epoch, row)
        score = selection_score(row)
        if self.method.selectable(epoch) and (self.best_row is None or score > self.best_score):
            self.best_score, self.best_row = score, dict(row)
        return row

    def train_epoch(self, epoch: int, progress=None) -> dict[str, float]:
        """Train one epoch (no evaluation); the benchmarks time this alone. A member of a fused
        group (:mod:`trainables.train.fused`) trains it together with the group's other trials,
        through these same parts: :meth:`epoch_batches`, :meth:`after_batch`, :meth:`end_epoch`."""
        if self.fused is not None:
            return self.fused.train_epoch(self, epoch, progress)
        for batch in self.epoch_batches(epoch):
            if self.use_graphs and self.graph is None and batch.x.shape[0] == self.cfg.batch_size:
                self.graph = GraphedStep(
                    self._step,
                    self.zero_grad,
                    self.method.modules(),
                    self.method.optimizers(),
                    [*self.graph_tensors(), *self.method.graph_state()],
                    batch,
                )
            if self.graph is not None and self.graph.fits(batch):
                self.graph.replay(batch)
            else:
                # Once a graph exists its gradient tensors must stay the ones the engine reads.
                self.zero_grad(set_to_none=self.graph is None)
                self._step(batch)
            self.after_batch(batch.y.shape[0], progress)
        return self.end_epoch(epoch)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """Start epoch ``epoch`` now (:meth:`start_epoch`) and return the batches this trial
        trains in it: its slice of the seeded epoch order, drawn as they are iterated."""
        return self.slice_batches(*self.start_epoch(epoch))

    def slice_batches(self, where: EpochSlice, weights: torch.Tensor | None) -> Iterator[Batch]:
        """The batches of a started epoch's slice ``where``, in this trial's own order."""
        batches = self.train.batches(
            self.cfg.batch_size,
            epoch=where.data_epoch,
            seed=self.cfg.seed,
            shuffle=True,
            weights=weights,
        )
        return where.select(batches)

    def start_epoch(self, epoch: int) -> tuple[EpochSlice, torch.Tensor | None]:
        """Start epoch ``epoch`` (train mode, metric sums zeroed, the method's ``before_epoch``):
        which batches of which data epoch it trains, and its sampling weights (read each
        epoch, after ``before_epoch``: JTT changes them). A fused group starts its members'
        epochs with this and draws their batches together."""
        for module in self.method.modules():
            module.train()
        self.train_acc.reset()
        for tensor in [] if self.noise_acc is None else self.noise_acc.tensors:
            tensor.zero_()
        self.method.before_epoch(epoch)
        # Past the trial's own epochs (benchmarks time more): the whole data epoch.
        where = (
            self.slices[epoch - 1] if epoch <= len(self.slices) else EpochSlice(epoch, 0, None, 0)
        )
        return where, self.method.sampling_weights()

    def graph_tensors(self) -> list[torch.Tensor]:
        """The core's tensors a recorded step writes besides the method's: the metric sums."""
        return [
            *self.train_acc.tensors,
            *([] if self.noise_acc is None else self.noise_acc.tensors),
        ]

    def after_batch(self, n: int, progress=None) -> None:
        """After the optimizer step on a batch of ``n`` samples: the step count, the method's
        eager work (mask updates) and the FLOPs accounting."""
        self.step += 1
        dense_gradient = self.method.after_step(self.step)
        self.train_flops += self.method.step_flops(n, dense_gradient)
        self.dense_train_flops += PASSES_PER_STEP * self.method.dense_flops * n
        if progress is not None:
            progress.update(1)

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """The epoch's train metrics; a non-finite loss raises :class:`DivergenceError`."""
        metrics = self.train_acc.compute("train")
        if not math.isfinite(metrics["train_loss"]):
            # The loss sums live on the device: checked once per epoch, with no per-step sync.
            raise DivergenceError(
                f"non-finite loss at epoch {epoch} step {self.train_acc.first_nonfinite_update()}"
            )
        row = {"train_loss": metrics["train_loss"], "train_acc": metrics["train_acc"]}
        if self.noise_acc is not None:  # rows of trials without noise stay as they were
            row.update(self.noise_acc.compute())
        return row

    def zero_grad(self, set_to_none: bool) -> None:
        for optimizer in self.method.optimizers():
            optimizer.zero_grad(set_to_none=set_to_none)

    def _step(self, batch: Batch) -> None:
        """The method's step plus the train-metric sums: what a CUDA graph records."""
        logits, losses = self.method.train_step(batch)
        self.record_step(batch, logits, losses)

    def record_step(self, batch: Batch, logits: torch.Tensor, losses: torch.Tensor) -> None:
        """Add a trained batch to the epoch's train-metric sums (on the device, no sync)."""
        self.train_acc.update(logits, batch.y, batch.b, losses)
        if self.noise_acc is not None:
            self.noise_acc.update(logits, batch.y, batch.index)

    @torch.no_grad()
    def evaluate(self, split: DeviceSplit, prefix: str, epoch: int) -> dict[str, float]:
        for module in self.method.modules():
            module.eval()
        acc = GroupAccumulator(self.cfg.num_classes, self.device, warn=self.biased)
        batch_size = EVAL_BATCH.get(self.device.type, 1024)
        for batch in split.batches(batch_size, epoch=epoch, seed=self.cfg.seed, shuffle=False):
            logits = self.method.predict(batch.x)
            losses = F.cross_entropy(logits.float(), batch.y, reduction="none")
            acc.update(logits, batch.y, batch.b, losses)
        for module in self.method.modules():
            module.train()
        metrics = acc.compute(prefix)
        metrics.pop(f"{prefix}_n")
        return metrics

    # ------------------------------------------------------------------ results
    def summary(self, rows: list[dict[str, Any]], attempts: int) -> dict[str, Any]:
        """``summary.json`` of a finished trial."""
        cfg = self.cfg
        final = rows[-1]
        selected = final if cfg.selection == "last" else self.best_row or final
        method = self.method
        nonzero, total = method.parameter_counts()
        train_n = self.train.n
        on_gpu = self.device.type == "cuda"
        return {
            "trial_hash": cfg.trial_hash,
            "status": "finished",
            "epochs": len(rows),
            "final": final,
            "selected": selected,
            "selected_epoch": selected["epoch"],
            "selection": cfg.selection,
            "recipe": cfg.recipe,
            "labels_used": self.info.labels,
            "networks": len(method.modules()),
            "density": method.density(),
            "nonzero_params": nonzero,
            "total_params": total,
            "inference_flops": method.forward_flops(),
            "dense_inference_flops": method.dense_flops,
            "train_flops": self.train_flops,
            "dense_train_flops": self.dense_train_flops,
            "train_samples": train_n,
            "input_size": self.input_size,
            "wall_time_s": float(sum(r["epoch_time_s"] for r in rows)),
            "device": self.device.type,
            "gpu_name": torch.cuda.get_device_name(self.device) if on_gpu else "",
            "precision": cfg.precision,
            **self.numerics,
            "cuda_graphs": self.graph is not None or self.fused_graphs,
            "fused": self.fused_max,
            "attempts": attempts,
            "noisy_labels": self.noisy_labels,
            "data_source": self.data_source,
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, epoch: int) -> dict[str, Any]:
        """The checkpoint of the end of ``epoch``: the method's state plus the core's."""
        method_state = self.method.state_dict()
        if self.fused is not None:  # slices of the group's stacks: saved as this trial's alone
            method_state = own_storage(method_state)
        return {
            **method_state,
            "epoch": epoch,
            "trial_hash": self.cfg.trial_hash,
            "step": self.step,
            "train_flops": self.train_flops,
            "dense_train_flops": self.dense_train_flops,
            "best_score": self.best_score,
            "best_row": self.best_row,
            "fused_max": self.fused_max,
            "fused_graphs": self.fused_graphs,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["trial_hash"] != self.cfg.trial_hash:
            raise ValueError(
                f"checkpoint belongs to trial {state['trial_hash']}, not {self.cfg.trial_hash}"
            )
        self.method.load_state_dict(state)
        if self.use_graphs:  # the loaded lr is a host value; graphs read a device tensor
            for optimizer in self.method.optimizers():
                for group in optimizer.param_groups:
                    group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
        self.step = state["step"]
        self.train_flops = state["train_flops"]
        # Checkpoints written before the dense count was kept: every step was a full batch
        # of an ordinary trial, so it is the dense cost of the epochs done.
        self.dense_train_flops = state.get("dense_train_flops")
        if self.dense_train_flops is None:
            epochs = int(state["epoch"])
            self.dense_train_flops = (
                PASSES_PER_STEP * self.method.dense_flops * self.train.n * epochs
            )
        self.best_score = state["best_score"]
        self.best_row = state["best_row"]
        # How the epochs so far were trained (checkpoints from before fusion: alone).
        self.fused_max = max(self.fused_max, int(state.get("fused_max", 1)))
        self.fused_graphs = self.fused_graphs or bool(state.get("fused_graphs", False))
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
