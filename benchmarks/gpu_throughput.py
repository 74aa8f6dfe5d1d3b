"""GPU throughput in one call (issues 15, 25): everything the grid cost needs, into one JSON file.

The lent GPU machine has torch, torchvision, numpy, pandas and pyarrow but no Ray and nothing to
install, and a call must end within 9 minutes; so this one script measures the items below
under ``--budget-s`` (480 s by default; a measurement that no longer fits is recorded in
``skipped`` with the reason, never started), in the priority order of ``plan_jobs``: peak,
single, the fused groups (Simple CNN, then ResNet-18), reference, the fused processes under MPS,
each model's MPS aggregate at K = 4 (the ratios' baseline), the 224-px fused groups, what the
2026-11-30 call left out (ResNet-18 plain K = 8, MPS K = 2 and 8; 224-px start-up with
autotuning off), then the other aggregates and start-up variants (repeats of that call's):

1. ``peak_bf16_tflops``: a timed large bf16 matmul (the denominator of every MFU).
2. ``single``: one ``Trial`` (``trainables.train.trial``, the trials' own loop; on CUDA
   channels_last + the CUDA-graph step) on synthetic images, per precision: ResNet-18 at 224 px
   (BFFHQ, ``disent`` preset) and at 32 px in ``fp32`` (TF32 off), ``tf32``, ``bf16``; Simple
   CNN (28 px) in ``fp32`` and ``tf32``. Steps sized by timing one epoch first.
   ``--single-precisions aggregate``: only each model's aggregate precision (a shorter call).
3. ``aggregate``: K = 1, 2, 4, 8 separate processes of the graphed single trial (Simple CNN,
   ResNet-18 32 px) on one GPU. Each child warms up, reports ready, and the parent then gives
   all of them the same absolute wall-clock window; every child logs (time, samples) after each
   (synchronised) short epoch and the parent interpolates each child's samples at the window's
   start and end, so the sum is over ONE common window. A child reports ready after a warm
   epoch and one steady epoch; the window opens two of the slowest child's steady epochs later.
4. ``startup``: per-trial start cost in a fresh process for ``cudnn.benchmark`` ``on`` (the
   trials' default until 2026-11-30), ``off``, and ``cut`` (on for training, off around
   evaluation: what trials do since): build, the
   first epoch (train + valid/test evaluation, partial batches included) minus a steady one.
5. ``reference``: the public REST pipeline (``trainer_throughput.reference_epoch_timing``, the
   ``reference_loop``'s model, DataLoader and step, imported) on synthetic PNG files of the same
   size, scaled to one REAL epoch. REST starts a fresh DataLoader iterator every epoch, which
   re-spawns its 10 workers; over a toy epoch of a few steps that spawn dominates, so two
   parts are timed: ``step_s``, the steady step inside an epoch (workers warm), and
   ``epoch_start_s``, a fresh iterator's wait for its first batch (worker spawn) plus the worker
   shutdown at the epoch's end. ``reference = real_epoch_samples / ((real_epoch_steps - 1) *
   step_s + epoch_start_s)`` (the first batch is inside the start) with the dataset's real train split
   (``DatasetInfo.train_samples``: Colored MNIST 55,000 = 215 steps of 256, CIFAR-10-C 45,000
   = 176, BFFHQ 19,200 = 75).
6. ``mps``: the aggregate again under CUDA MPS when ``nvidia-cuda-mps-control -d`` can start
   (own pipe/log folders, stopped afterwards); else skipped with the reason.
7. ``fused`` (issue 25): K = 1, 2, 4, 8, 16, 32 (``--fuse-ks``) REST d0.05 trials (seeds
   0..K-1, one ``fuse_key``) trained as one step by ``trainables.train.fused.FusedTrainer``
   (weights stacked on a K axis, ``vmap(functional_call)``; on CUDA the stacked step is one
   CUDA graph) in this process, for Simple CNN and ResNet-18 32 px in the aggregates'
   precision, and the 224-px ResNet at K = 2, 4 (late). Timed as ``single``: a warm epoch
   (graph capture, autotuning), a calibration epoch, then whole epochs for ``--single-s``;
   samples/s = every member's samples / seconds. The members share one copy of the data and
   one gather per step (``group_batches``); Simple CNN's group is also
   measured with each member drawing its own batch (``fused_own_batches``, at the largest
   ``--fuse-ks`` up to 16, right after Simple CNN's fused K): the data path's share.
8. ``fused_mps``: P = 2, 4 (``--fuse-procs``) processes under MPS, each training one fused
   group (the child/window machinery of ``aggregate``, the child spec's ``fuse``) of K = the
   fastest plain fused K whose P copies fit in memory (``--fuse-mps-k`` fixes it). ``--tiny``
   runs them as plain processes (``mps: false``) so the CPU covers the children's path.
9. ``ratios`` (per model): the best fused figure (``fused`` or ``fused_mps``) over the best
   aggregate of single-trial processes of this run (``aggregate`` or ``aggregate_mps``); the
   issue's rule makes fusion the default at >= 1.5x.

Synthetic data: random uint8 images in memory (``SyntheticTrial`` replaces only the bundle
reading of ``Trial``; transforms, method, graph and counters are the trials' own), so no dataset
needs to be carried. Samples/s count training images only. ``--tiny`` runs every code path at
toy scale (width 8, batch 4, K = 1, 2, fused K = 1, 2 and 2 fused processes of K = 2, seconds)
so CI can test it on the CPU; its numbers mean nothing.

Output (``--out``, default ``benchmarks/results/gpu.json``)::

    {"gpu": str, "device": "cuda"|"cpu", "date": "YYYY-MM-DD HH:MM UTC", "command": str,
     "torch": str, "tiny": bool, "budget_s": float, "elapsed_s": float,
     "peak_bf16_tflops": float | null,       # measured bf16 matmul peak, TFLOP/s
     "models": {
       "<simple_cnn|resnet18|resnet18_224>": {
         "model": str, "dataset": str, "input_size": int, "batch_size": int,
         "train_flops_per_sample": float,    # dense, 3 passes, 2 FLOPs/MAC (trainables.flops)
         "reference": float | null,          # REST pipeline samples/s over one real epoch
         "reference_detail": {"samples_per_s", "step_s", "epoch_start_s", "first_batch_s",
                              "shutdown_s", "extrapolated_start_s", "real_epoch_samples",
                              "real_epoch_steps", "real_epoch_s", "batch_size", "files",
                              "steps_per_epoch", "epochs", "epoch_s": [..], "skip", "workers",
                              "method": str},  # absent when not measured
         "single": float | null,             # default-precision trial (cl + graph) samples/s
         "single_precision": str,            # which: the catalogue's cuda_precision
         "variants": {"fp32"|"tf32"|"bf16": {"samples_per_s", "seconds", "samples",
                      "tflops", "mfu", "peak_mem_gb"}},
         "mfu": float | null,                # best variant's achieved FLOP/s / peak_bf16
         "aggregate": {"best_k": int, "samples_per_s": float,
                       "per_k": {"<K>": {"samples_per_s", "per_process": [..], "window_s",
                                 "graphed"}}}
                      | null,
         "aggregate_mps": same shape | null,
         "fused": {"best_k": int, "samples_per_s": float, "precision": str,
                   "per_k": {"<K>": {"samples_per_s", "seconds", "samples", "epochs",
                             "precision", "graphed", "shared_data", "tflops", "mfu",
                             "build_s", "warm_s",
                             "peak_mem_gb" (CUDA), "graph_error" (if the graphed step
                             failed and this K was measured eager)}}} | null,
         "fused_own_batches": {"k", "samples_per_s", "shared_samples_per_s",
                               "shared_over_own"} | null,  # the same group, own batches
         "fused_mps": {"best": "<P>x<K>", "processes": int, "fuse": int, "samples_per_s",
                       "precision", "mps": bool,
                       "per_run": {"<P>x<K>": {"samples_per_s", "per_process": [..], "window_s",
                                  "processes", "fuse", "mps", "precision", "graphed",
                                  "tflops", "mfu"}}}
                      | null,
         "startup": {"<on|off|cut>": {"build_s", "first_epoch_s", "steady_epoch_s",
                     "startup_s"}} | null,
         "reference_valid": bool}},         # with reference; false for --tiny
     "ratios": {"<model>": {"fused", "fused_mode", "baseline", "baseline_mode", "ratio",
                            "ratio_plain", "at_least_1_5x"}},  # models with a fused figure
     "skipped": [{"what": str, "reason": str}], "errors": [{"what": str, "error": str}]}

``benchmarks/grid_cost.py`` reads ``models.*.single`` / ``aggregate`` / ``startup`` / ``fused``
/ ``fused_mps`` from it (``search_spaces.makespan.ThroughputTable.with_gpu_json``).

    PYTHONPATH=$PWD timeout 540 python3 benchmarks/gpu_throughput.py --out "$OUT/gpu.json"

On the lent GPU machine only files under ``$OUT`` come back; the JSON is also printed on the
last line of stdout (``GPU_JSON {...}``). Commit it as ``benchmarks/results/gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.errors import error_line  # noqa: E402  (torch-free: the one-line error rule)

# The three networks the grid trains; overrides on top of trainer_throughput.bench_config.
MODELS: dict[str, dict[str, Any]] = {
    "simple_cnn": {"model": "simple_cnn", "dataset": "cmnist"},
    "resnet18": {"model": "resnet18", "dataset": "cifar10c"},
    "resnet18_224": {"model": "resnet18", "dataset": "bffhq", "augment": "disent", "ratio": 0.5},
}
PRECISIONS = {"simple_cnn": ("fp32", "tf32"), "resnet18": ("fp32", "tf32", "bf16")}
PRECISIONS["resnet18_224"] = ("fp32", "tf32", "bf16")
AGGREGATE_MODELS = ("simple_cnn", "resnet18")
# Fused groups (issue 25): K REST d0.05 trials of one shape trained as one step
# (trainables/train/fused.py). Group sizes per model; the 224-px ResNet only at small K (its
# single trial already runs at 20 % MFU, and a group's memory grows with K).
FUSED_METHOD = "rest"
FUSE_KS = (1, 2, 4, 8, 16, 32)
FUSE_KS_224 = (2, 4)
FUSE_PROCS = (2, 4)  # fused processes under MPS
# Simple CNN's fused group measured once more, right after its fused K, with each member
# drawing its own batch (no one-gather data path, trainables.data.loader.group_batches): what
# sharing the data saves, at the largest measured K up to this one.
OWN_BATCHES_MAX_K = 16
BASELINE_K = 4  # the best MPS K of both models on 2026-11-30: the ratios' baseline, measured early


# ---------------------------------------------------------------------- synthetic trial


def synthetic_trial_class():
    """``Trial`` with the bundle reading replaced by random uint8 splits (torch imported late)."""
    import torch

    from trainables.data import DeviceSplit, SplitTensors, make_transform
    from trainables.train.trial import Trial

    def split(n: int, size: int, classes: int, seed: int) -> SplitTensors:
        gen = torch.Generator().manual_seed(seed)
        pool = torch.randint(0, 256, (min(n, 64), 3, size, size), dtype=torch.uint8, generator=gen)
        images = pool.repeat(math.ceil(n / pool.shape[0]), 1, 1, 1)[:n].contiguous()
        labels = torch.randint(0, classes, (n,), generator=gen)
        bias = torch.where(torch.rand(n, generator=gen) < 0.5, labels, (labels + 1) % classes)
        return SplitTensors(images, labels, bias, [f"s{i}" for i in range(n)])

    class SyntheticTrial(Trial):
        """The trials' loop on random images of the dataset's trained size (why: no bundle on
        the lent machine, and the data's content does not change the speed)."""

        n_train = 1024
        n_eval = 256

        def _build_data(self) -> None:
            cfg = self.cfg
            train_tf = make_transform(cfg.augment, cfg.dataset, True, cfg.normalisation)
            eval_tf = make_transform(cfg.augment, cfg.dataset, False, cfg.normalisation)
            size, k = train_tf.output_size, cfg.num_classes
            self.input_size = size
            self.train = DeviceSplit(split(self.n_train, size, k, 0), self.device, train_tf)
            self.noisy_labels = 0
            self.valid = DeviceSplit(split(self.n_eval, size, k, 1), self.device, eval_tf)
            self.test = DeviceSplit(split(self.n_eval, size, k, 2), self.device, eval_tf)
            self.steps_per_epoch = math.ceil(self.train.n / cfg.batch_size)

    return SyntheticTrial


def make_trial(cfg, n_train: int, n_eval: int):
    cls = synthetic_trial_class()
    cls.n_train, cls.n_eval = n_train, n_eval
    return cls(cfg)


def model_config(key: str, device: str, tiny: bool, **overrides: Any):
    """The benchmarked trial of ``key``: trainer_throughput's (RigL d0.05, rest-code recipe)."""
    from benchmarks.trainer_throughput import bench_config

    values = {k: v for k, v in MODELS[key].items() if k != "model"}
    if tiny:
        values.update(width=8, batch_size=4)
    values.update(overrides)
    return bench_config(MODELS[key]["model"], Path("/nonexistent"), device, **values)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------------- measurements


def peak_bf16(device: str, tiny: bool, seconds: float) -> float:
    """TFLOP/s of a large square bf16 matmul, timed for about ``seconds`` after a warm-up."""
    import torch

    n = 256 if tiny else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    a @ b
    sync(device)
    reps = max(3, int(seconds / max(time.perf_counter() - t0, 1e-6)))
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def steps_per_epoch(tiny: bool, key: str) -> int:
    return 4 if tiny else (8 if key == "resnet18_224" else 16)


def measure_single(key: str, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """One trial in this process: warm epoch (autotune, graph capture), one calibration epoch,
    then as many whole epochs as fill ``args.single_s``."""
    import torch

    cfg = model_config(key, args.device, args.tiny, precision=precision)
    trial = make_trial(cfg, cfg.batch_size * steps_per_epoch(args.tiny, key), 64)
    trial.train_epoch(1, None)
    sync(args.device)
    t0 = time.perf_counter()
    trial.train_epoch(2, None)
    sync(args.device)
    per_epoch = time.perf_counter() - t0
    epochs = max(1, min(10_000, round(args.single_s / max(per_epoch, 1e-6))))
    t0 = time.perf_counter()
    for epoch in range(3, 3 + epochs):
        trial.train_epoch(epoch, None)
    sync(args.device)
    seconds = time.perf_counter() - t0
    samples = trial.train.n * epochs
    from trainables.flops import PASSES_PER_STEP

    flops = PASSES_PER_STEP * trial.method.dense_flops  # one dense training step per sample
    out = {
        "samples_per_s": samples / seconds,
        "seconds": seconds,
        "samples": samples,
        "graphed": trial.graph is not None,
        "tflops": flops * samples / seconds / 1e12,
        "_meta": {
            "input_size": trial.input_size,
            "batch_size": cfg.batch_size,
            "train_flops_per_sample": flops,
        },
    }
    if args.device.startswith("cuda"):
        out["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
    del trial
    free(args.device)
    return out


def precision_of(key: str, args: argparse.Namespace) -> str:
    """The aggregates' precision of ``key`` (the 224-px ResNet takes the 32-px one's)."""
    return args.precisions.get(key, args.precisions["resnet18"])


def fused_trainer(
    key: str,
    k: int,
    device: str,
    tiny: bool,
    precision: str,
    graphs: bool = True,
    share_data: bool = True,
):
    """A :class:`~trainables.train.fused.FusedTrainer` over ``k`` synthetic REST d0.05 trials of
    ``key`` (seeds 0..k-1: their own weights, masks and data order; one ``fuse_key``).
    ``graphs=False``: the trials' ``cuda_graphs`` off (the eager fused step); ``share_data=False``:
    each member draws its own batch and the batches are stacked (no one-gather path)."""
    from trainables.fusion import fuse_key
    from trainables.train.fused import FusedTrainer

    trials = []
    for seed in range(k):
        cfg = model_config(
            key,
            device,
            tiny,
            precision=precision,
            method=FUSED_METHOD,
            seed=seed,
            **({} if graphs else {"cuda_graphs": False}),
        )
        trials.append(make_trial(cfg, cfg.batch_size * steps_per_epoch(tiny, key), 64))
    keys = {fuse_key(t.cfg) for t in trials}
    if None in keys or len(keys) > 1:
        raise ValueError(f"fused {key}: the trials do not share one fuse_key")
    return FusedTrainer(trials, share_data)


def train_fused_epoch(trainer, epoch: int) -> int:
    """Epoch ``epoch`` of every member (a member's error is raised); samples trained."""
    for got in trainer.train_epoch(epoch).values():
        if isinstance(got, BaseException):
            raise got
    return sum(member.train.n for member in trainer.members)


def measure_fused(
    key: str, k: int, args: argparse.Namespace, share_data: bool = True
) -> dict[str, Any]:
    """``k`` trials fused into one step in this process, timed as :func:`measure_single`: build,
    a warm epoch (on CUDA the stacked step's graph capture and autotuning), a calibration epoch,
    then whole epochs filling ``args.single_s``. Samples count every member's.

    If the graphed fused step fails (other than out of memory), it is measured eager instead,
    with ``graph_error``, and later fused jobs (children included) go eager at once: one bug in
    the capture must not cost the call all its fused figures."""
    import torch

    if not getattr(args, "fused_graphs", True):
        return {
            **timed_fused(key, k, args, graphs=False, share_data=share_data),
            "graph_error": args.fused_graph_error,
        }
    try:
        return timed_fused(key, k, args, graphs=True, share_data=share_data)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as error:
        if not args.device.startswith("cuda"):
            raise  # no graphs to blame
        args.fused_graphs, args.fused_graph_error = False, error_line(error)
        print(f"fused {key} K={k}: graphed step failed ({error_line(error)}); eager", flush=True)
        return {
            **timed_fused(key, k, args, graphs=False, share_data=share_data),
            "graph_error": args.fused_graph_error,
        }


def timed_fused(
    key: str, k: int, args: argparse.Namespace, graphs: bool, share_data: bool = True
) -> dict[str, Any]:
    import torch

    from trainables.flops import PASSES_PER_STEP

    free(args.device)
    precision = precision_of(key, args)
    trainer = None
    try:
        t0 = time.perf_counter()
        trainer = fused_trainer(key, k, args.device, args.tiny, precision, graphs, share_data)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_fused_epoch(trainer, 1)
        sync(args.device)
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_fused_epoch(trainer, 2)
        sync(args.device)
        per_epoch = time.perf_counter() - t0
        epochs = max(1, min(10_000, round(args.single_s / max(per_epoch, 1e-6))))
        samples = 0
        t0 = time.perf_counter()
        for epoch in range(3, 3 + epochs):
            samples += train_fused_epoch(trainer, epoch)
        sync(args.device)
        seconds = time.perf_counter() - t0
        first = trainer.members[0]
        flops = PASSES_PER_STEP * first.method.dense_flops  # one dense training step per sample
        out = {
            "samples_per_s": samples / seconds,
            "seconds": seconds,
            "samples": samples,
            "epochs": epochs,
            "precision": precision,
            "graphed": trainer.graph is not None,
            "shared_data": trainer.shared_data,
            "tflops": flops * samples / seconds / 1e12,
            "build_s": build_s,
            "warm_s": warm_s,
            "_meta": {
                "input_size": first.input_size,
                "batch_size": first.cfg.batch_size,
                "train_flops_per_sample": flops,
            },
        }
        if args.device.startswith("cuda"):
            out["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
        return out
    finally:
        del trainer
        free(args.device)


def gpu_memory_gb(device: str) -> float | None:
    """The GPU's total memory in GB; None off CUDA."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 1e9


def fuse_for_processes(key: str, p: int, args: argparse.Namespace, entry: dict[str, Any]) -> int:
    """The group size of each of ``p`` fused processes: ``--fuse-mps-k``, else the fastest K
    measured in this process (``entry['_fused']``) whose ``p`` copies fit in the GPU's memory
    (1.25 x its peak allocation + 0.5 GB context each, under 90 %), else the smallest measured
    K; 8 (tiny: 2) when none was measured."""
    if args.fuse_mps_k:
        return args.fuse_mps_k
    per_k = entry.get("_fused") or {}
    if not per_k:
        return 2 if args.tiny else 8
    total_gb = gpu_memory_gb(args.device)
    for k in sorted(per_k, key=lambda k: -per_k[k]["samples_per_s"]):
        mem = per_k[k].get("peak_mem_gb")
        if total_gb is None or mem is None or p * (1.25 * mem + 0.5) <= 0.9 * total_gb:
            return int(k)
    return min(int(k) for k in per_k)


def reference_plan(key: str, tiny: bool) -> tuple[int, int, int]:
    """(steps per measured epoch, timed epochs, most distinct PNG files) of ``key``'s reference.

    224 px files take ~5 ms each to write, so that epoch is shorter and cycles 512 files (a
    sample's cost is its decode and transform, the same for a repeated path)."""
    if tiny:
        return 8, 2, 32
    return (24, 2, 512) if key == "resnet18_224" else (64, 3, 4096)


def measure_reference(key: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The REST pipeline (imported) on synthetic PNGs of the dataset's stored size, scaled to
    one real epoch (the dataset's approximate real train split, ``DatasetInfo.train_samples``):
    ``samples_per_s = real_epoch_samples / ((real_epoch_steps - 1) * step_s + epoch_start_s)`` with
    ``step_s``/``epoch_start_s`` from ``trainer_throughput.reference_epoch_timing``."""
    import numpy as np
    import torchvision.transforms as T
    from PIL import Image

    from benchmarks.trainer_throughput import reference_epoch_timing, rest_transform
    from trainables.data.layout import ImageFile
    from trainables.datasets import DATASETS

    cfg = model_config(key, args.device, args.tiny)
    info = DATASETS.get(cfg.dataset)
    size = info.trained_size(cfg.augment)
    steps, epochs, most_files = reference_plan(key, args.tiny)
    folder = tmp / f"png-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(min(most_files, cfg.batch_size * steps)):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    files = []
    for i in range(cfg.batch_size * steps):  # whole batches only: every step is a full one
        path = paths[i % len(paths)]
        label = int(rng.integers(cfg.num_classes))
        files.append(ImageFile(str(path), path.name, str(i), label, label, None))
    if cfg.dataset == "bffhq":  # DisEnt's 224 px BFFHQ train transform
        mean, std = info.normalisation
        transform = T.Compose(
            [
                T.RandomCrop(size, padding=4),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(mean, std),
            ]
        )
    else:
        transform = rest_transform(cfg.dataset)
    # Tiny: 2 workers, so the per-epoch re-spawn is timed (on CI too) as on the GPU machine.
    workers = 2 if args.tiny else min(10, os.cpu_count() or 1)
    timing = reference_epoch_timing(
        cfg, epochs, workers, files, transform, warmup=2 if args.tiny else 3
    )
    free(args.device)
    real_samples = info.train_samples
    real_steps = math.ceil(real_samples / cfg.batch_size)  # REST keeps the last partial batch
    # the first batch's loading is inside epoch_start_s: (steps - 1) more at the steady pace
    real_epoch_s = (real_steps - 1) * timing["step_s"] + timing["epoch_start_s"]
    return {
        "samples_per_s": real_samples / real_epoch_s,
        "step_s": timing["step_s"],
        "epoch_start_s": timing["epoch_start_s"],
        "first_batch_s": timing["first_batch_s"],
        "shutdown_s": timing["shutdown_s"],
        "extrapolated_start_s": timing["extrapolated_start_s"],
        "real_epoch_samples": real_samples,
        "real_epoch_steps": real_steps,
        "real_epoch_s": real_epoch_s,
        "batch_size": cfg.batch_size,
        "files": len(paths),
        "steps_per_epoch": timing["steps_per_epoch"],
        "epochs": timing["epochs"],
        "epoch_s": timing["epoch_s"],
        "skip": timing["skip"],
        "workers": workers,
        "method": (
            "samples_per_s = real_epoch_samples / ((real_epoch_steps - 1) * step_s + epoch_start_s), "
            "real_epoch_steps = ceil(real_epoch_samples / batch_size) (the dataset's approximate "
            "real train split, trainables.datasets train_samples); step_s = mean step interval "
            "after the first `skip` steps of `epochs` epochs of `steps_per_epoch` steps, each "
            "epoch a fresh DataLoader iterator over `files` synthetic PNGs (cycled) with "
            "`workers` workers; epoch_start_s = first_batch_s (fresh iter() to the first batch "
            "in hand: worker spawn + first batch) + shutdown_s (last step to the loop's end: "
            "worker shutdown), means over the epochs; extrapolated_start_s = mean(epoch_s) - "
            "steps_per_epoch * step_s is a cross-check only"
        ),
    }


# ---------------------------------------------------------------------- child processes


def child_main(spec: dict[str, Any]) -> int:
    """One process of an aggregate (``kind=aggregate``) or start-up (``kind=startup``) run."""
    import torch

    device, work = spec["device"], Path(spec["work"])
    if spec["tiny"]:
        torch.set_num_threads(1)  # K children share the CI machine's few cores
    cfg = model_config(spec["key"], device, spec["tiny"], precision=spec["precision"])
    result: dict[str, Any] = {}
    if spec["kind"] == "startup":
        t0 = time.perf_counter()
        trial = make_trial(cfg, spec["n_train"], spec["n_eval"])
        result["build_s"] = time.perf_counter() - t0
        benchmark = spec["variant"] in ("on", "cut")
        torch.backends.cudnn.benchmark = benchmark  # Trial turned it on for CUDA

        def epoch(e: int) -> float:
            t = time.perf_counter()
            trial.train_epoch(e, None)
            if spec["variant"] == "cut":
                torch.backends.cudnn.benchmark = False
            trial.evaluate(trial.valid, "valid", e)
            trial.evaluate(trial.test, "test", e)
            torch.backends.cudnn.benchmark = benchmark
            sync(device)
            return time.perf_counter() - t

        result["first_epoch_s"] = epoch(1)
        result["steady_epoch_s"] = min(epoch(2), epoch(3))
        result["startup_s"] = result["build_s"] + result["first_epoch_s"] - result["steady_epoch_s"]
    else:
        if spec.get("fuse"):  # a fused group of `fuse` trials (fused_mps)
            trainer = fused_trainer(
                spec["key"], spec["fuse"], device, spec["tiny"], cfg.precision, spec["graphs"]
            )

            def train(e: int) -> int:
                return train_fused_epoch(trainer, e)

            def graphed() -> bool:
                return trainer.graph is not None
        else:
            trial = make_trial(cfg, cfg.batch_size * steps_per_epoch(spec["tiny"], spec["key"]), 64)

            def train(e: int) -> int:
                trial.train_epoch(e, None)
                return trial.train.n

            def graphed() -> bool:
                return trial.graph is not None

        times = []
        for e in (1, 2):  # warm (autotune, graph capture), then one steady epoch
            t = time.perf_counter()
            train(e)
            sync(device)
            times.append(time.perf_counter() - t)
        ready = {"warm_s": times[0], "epoch_s": times[1]}
        (work / f"ready_{spec['index']}").write_text(json.dumps(ready))
        go_file, window = work / "go.json", None
        # (ready, 0) brackets a window that opens before this child's first timed epoch ends.
        records: list[tuple[float, int]] = [(time.time(), 0)]
        samples, epoch, deadline = 0, 3, time.time() + spec["wait_s"]
        while True:
            trained = train(epoch)
            sync(device)
            epoch += 1
            samples += trained
            now = time.time()
            records.append((now, samples))
            if window is None and go_file.exists():
                window = json.loads(go_file.read_text())
            if window is not None and now > window["end"]:
                break
            if window is None and now > deadline:
                raise TimeoutError("no go signal from the parent")
        before = [r for r in records if r[0] <= window["start"]][-1:]  # brackets the start
        result["records"] = before + [r for r in records if r[0] > window["start"]]
        result["window"] = window
        result["graphed"] = graphed()
    (work / f"result_{spec['index']}.json").write_text(json.dumps(result))
    return 0


def run_children(
    specs: list[dict[str, Any]], work: Path, timeout_s: float, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Start the children at once; for aggregates release them together into one window."""
    for spec in specs:
        (work / f"result_{spec['index']}.json").unlink(missing_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            env=env,
        )
        for spec in specs
    ]
    deadline = time.time() + timeout_s
    try:
        if specs[0]["kind"] == "aggregate":
            while not all((work / f"ready_{s['index']}").exists() for s in specs):
                if any(p.poll() not in (None, 0) for p in procs):
                    raise RuntimeError("a child failed before it was ready")
                if time.time() > deadline:
                    raise TimeoutError("children not ready in time")
                time.sleep(0.05)
            # Open the window once every child has run a couple of its own steady epochs.
            slowest = max(
                float(
                    json.loads((work / f"ready_{s['index']}").read_text() or "{}").get("epoch_s", 0)
                )
                for s in specs
            )
            start = time.time() + max(0.5, 2 * slowest)
            window = {"start": start, "end": start + specs[0]["window_s"]}
            (work / "go.tmp").write_text(json.dumps(window))
            os.replace(work / "go.tmp", work / "go.json")  # children never read half a file
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.time()))
            if p.returncode != 0:
                raise RuntimeError(f"a child exited with {p.returncode}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in [work / "go.json", *work.glob("ready_*")]:
            f.unlink(missing_ok=True)
    return [json.loads((work / f"result_{s['index']}.json").read_text()) for s in specs]


def samples_at(records: list[list[float]], t: float) -> float:
    """A child's cumulative samples at wall-clock ``t``, interpolated between its records."""
    for (t0, s0), (t1, s1) in zip(records, records[1:], strict=False):
        if t0 <= t <= t1:
            return s0 + (s1 - s0) * (t - t0) / max(t1 - t0, 1e-9)
    raise ValueError("the records do not cover the window")


def measure_aggregate(
    key: str,
    k: int,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str] | None = None,
    fuse: int | None = None,
) -> dict[str, Any]:
    """``k`` processes of one trial each (or, with ``fuse``, of one fused group of ``fuse``
    trials each) over one common window; their summed training samples/s."""
    window_s = args.window_s
    spec = {
        "kind": "aggregate",
        "key": key,
        "device": args.device,
        "tiny": args.tiny,
        "precision": precision_of(key, args),
        "work": str(work),
        "window_s": window_s,
        "wait_s": args.child_timeout_s,
        "fuse": fuse,
        "graphs": getattr(args, "fused_graphs", True),  # False after a fused capture failed
    }
    specs = [{**spec, "index": i} for i in range(k)]
    timeout = min(args.child_timeout_s + window_s, args.deadline - time.time())
    results = run_children(specs, work, timeout, env)
    window = results[0]["window"]
    start, end = window["start"], window["end"]
    rates = [
        (samples_at(r["records"], end) - samples_at(r["records"], start)) / (end - start)
        for r in results
    ]
    graphed = all(r.get("graphed", False) for r in results)
    return {
        "samples_per_s": sum(rates),
        "per_process": rates,
        "window_s": end - start,
        "graphed": graphed,
    }


def measure_fused_processes(
    key: str, p: int, args: argparse.Namespace, work: Path, entry: dict[str, Any], env
) -> dict[str, Any]:
    """``p`` processes each training one fused group (:func:`fuse_for_processes`), over one
    common window; ``mps`` says whether the daemon was up (--tiny on the CPU: plain processes,
    so CI runs the children's fused path)."""
    k = fuse_for_processes(key, p, args, entry)
    got = measure_aggregate(key, p, args, work, env=env, fuse=k)
    return {
        **got,
        "processes": p,
        "fuse": k,
        "mps": env is not None,
        "precision": precision_of(key, args),
    }


def measure_startup(key: str, variant: str, args: argparse.Namespace, work: Path) -> dict:
    cfg = model_config(key, args.device, args.tiny, precision=precision_of(key, args))
    steps = 3 if args.tiny else 8
    spec = {
        "kind": "startup",
        "key": key,
        "device": args.device,
        "tiny": args.tiny,
        "precision": cfg.precision,
        "work": str(work),
        "variant": variant,
        "index": f"startup_{variant}",
        "n_train": cfg.batch_size * steps + max(2, cfg.batch_size // 3),  # + a partial batch
        "n_eval": 24 if args.tiny else 1000,
    }
    return run_children([spec], work, min(args.child_timeout_s, args.deadline - time.time()))[0]


# ---------------------------------------------------------------------- MPS


class Mps:
    """The CUDA MPS control daemon with its own pipe/log folders, for the children's env."""

    def __init__(self, work: Path) -> None:
        self.env = dict(os.environ)
        self.env["CUDA_MPS_PIPE_DIRECTORY"] = str(work / "mps-pipe")
        self.env["CUDA_MPS_LOG_DIRECTORY"] = str(work / "mps-log")
        self.started = False

    def start(self) -> str | None:
        """Start the daemon; the reason it cannot, or None."""
        control = shutil.which("nvidia-cuda-mps-control")
        if control is None:
            return "nvidia-cuda-mps-control not on PATH"
        for name in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"):
            Path(self.env[name]).mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [control, "-d"], env=self.env, capture_output=True, text=True, timeout=20
        )
        if done.returncode != 0:
            return f"nvidia-cuda-mps-control -d failed: {(done.stderr or done.stdout).strip()}"
        self.started = True
        return None

    def stop(self) -> None:
        """Quit the daemon and wait (up to 20 s) until its processes are gone: a plain
        aggregate started while the MPS server still holds the GPU would not be plain."""
        if self.started:
            subprocess.run(
                ["nvidia-cuda-mps-control"], input="quit\n", env=self.env, text=True, timeout=20
            )
            deadline = time.time() + 20
            while mps_processes() and time.time() < deadline:
                time.sleep(0.1)
            self.started = False


def mps_processes() -> list[int]:
    """PIDs of running ``nvidia-cuda-mps-*`` processes (from /proc; empty off Linux)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"nvidia-cuda-mps" in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # the process ended while we looked
            continue
    return pids


# ---------------------------------------------------------------------- driver


class Budget:
    """Seconds left of ``--budget-s``; a job starts only if its estimate still fits."""

    def __init__(self, total: float, report: dict[str, Any], out: Path) -> None:
        self.total, self.t0, self.report, self.out = total, time.perf_counter(), report, out

    def save(self) -> None:
        """Write the JSON so far (atomically): an outer ``timeout`` still leaves the figures."""
        finish(self.report, self)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(public(self.report), indent=1) + "\n")
        os.replace(tmp, self.out)

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.t0)

    def run(self, what: str, estimate_s: float, job) -> Any:
        """``job()``, or None when it does not fit or fails (both recorded in the report)."""
        self.save()  # the figures of the jobs before (the caller stores them after run)
        if self.left() < estimate_s:
            self.report["skipped"].append(
                {
                    "what": what,
                    "reason": f"budget: {self.left():.0f} s left, needs ~{estimate_s:.0f}",
                }
            )
            return None
        t = time.perf_counter()
        try:
            value = job()
        except Exception as error:  # keep measuring the rest; the error is in the JSON
            line = error_line(error)
            self.report["errors"].append({"what": what, "error": line})
            print(f"{what}: FAILED {line}", flush=True)
            return None
        print(f"{what}: done in {time.perf_counter() - t:.1f} s", flush=True)
        return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/gpu.json", help="the JSON written")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--budget-s", type=float, default=480.0, help="stop starting jobs after this")
    p.add_argument("--tiny", action="store_true", help="every code path at toy scale (CI)")
    p.add_argument("--ks", default="", help="processes per GPU (default 1,2,4,8; tiny 1,2)")
    p.add_argument("--window-s", type=float, default=None, help="aggregate window (default 4)")
    p.add_argument("--single-s", type=float, default=None, help="timed seconds per single run")
    p.add_argument(
        "--aggregate-precision",
        default="fp32",
        help="precision of the aggregates and start-up: one, or simple_cnn=tf32,resnet18=bf16",
    )
    p.add_argument(
        "--single-precisions",
        choices=("all", "aggregate"),
        default="all",
        help="single-trial variants: every precision, or each model's aggregate precision only",
    )
    p.add_argument(
        "--fuse-ks", default="", help="fused group sizes (default 1,2,4,...,32; tiny 1,2)"
    )
    p.add_argument(
        "--fuse-procs", default="", help="fused processes under MPS (default 2,4; tiny 2)"
    )
    p.add_argument(
        "--fuse-mps-k",
        type=int,
        default=0,
        help="group size of each fused MPS process (default: the fastest plain K that fits)",
    )
    p.add_argument("--child-timeout-s", type=float, default=None, help="per child process")
    p.add_argument(
        "--only",
        default="peak,single,fused,reference,fused_mps,aggregate,mps,startup",
        help="the kinds measured (comma-separated; the order is plan_jobs')",
    )
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def parse_precisions(text: str) -> dict[str, str]:
    """``tf32`` (every aggregated model) or ``simple_cnn=tf32,resnet18=bf16``."""
    if "=" not in text:
        return dict.fromkeys(AGGREGATE_MODELS, text)
    chosen = dict(item.split("=", 1) for item in text.split(","))
    unknown = set(chosen) - set(AGGREGATE_MODELS)
    if unknown:
        raise SystemExit(f"--aggregate-precision: unknown model(s) {sorted(unknown)}")
    return {key: chosen.get(key, "fp32") for key in AGGREGATE_MODELS}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(json.loads(args.child))
    # An outer `timeout` sends SIGTERM: exit through `finally`, so the MPS daemon is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    on_gpu = args.device.startswith("cuda")
    ks = (
        [int(k) for k in args.ks.split(",")] if args.ks else ([1, 2] if args.tiny else [1, 2, 4, 8])
    )
    args.fuse_ks = (
        [int(k) for k in args.fuse_ks.split(",")]
        if args.fuse_ks
        else ([1, 2] if args.tiny else list(FUSE_KS))
    )
    args.fuse_procs = (
        [int(p) for p in args.fuse_procs.split(",")]
        if args.fuse_procs
        else ([2] if args.tiny else list(FUSE_PROCS))
    )
    args.window_s = args.window_s or (0.5 if args.tiny else 4.0)
    args.single_s = args.single_s or (0.2 if args.tiny else 3.0)
    args.child_timeout_s = args.child_timeout_s or (60.0 if args.tiny else 120.0)
    args.precisions = parse_precisions(args.aggregate_precision)
    only = set(args.only.split(","))
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if on_gpu else "",
        "device": "cuda" if on_gpu else "cpu",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python3", "benchmarks/gpu_throughput.py", *sys.argv[1:]]),
        "torch": torch.__version__,
        "tiny": args.tiny,
        "budget_s": args.budget_s,
        "aggregate_precision": args.precisions,
        "peak_bf16_tflops": None,
        "models": {},
        "ratios": {},
        "skipped": [],
        "errors": [],
    }
    out = Path(args.out)
    budget = Budget(args.budget_s, report, out)
    args.deadline = time.time() + args.budget_s + 20  # children are killed past it
    for key, info in MODELS.items():
        report["models"][key] = {
            "model": info["model"],
            "dataset": info["dataset"],
            **dict.fromkeys(("input_size", "batch_size", "train_flops_per_sample"), None),
            "reference": None,
            "single": None,
            "variants": {},
            "mfu": None,
            "aggregate": None,
            "aggregate_mps": None,
            "fused": None,
            "fused_mps": None,
            "startup": None,
        }
    with tempfile.TemporaryDirectory(prefix="gpu-throughput-") as tmp:
        work = Path(tmp)
        mps = Mps(work)
        try:
            for job in plan_jobs(args, ks, only, report, work):
                run_job(job, args, budget, report, mps)
        finally:
            mps.stop()
    budget.save()
    print(f"wrote {out} in {report['elapsed_s']:.0f} s", flush=True)
    # Also on stdout: a copy that survives if only the console output comes back.
    print("GPU_JSON " + json.dumps(public(report)), flush=True)
    return 0


MPS_MIN_S = 40.0  # the daemon, a probe and one K: not started with less time left


@dataclass
class Job:
    """One measurement in the plan: its name and estimated seconds, the measurement (given the
    children's environment), where its figure goes, and whether the MPS daemon must be up
    (True), down (False: plain processes never share the GPU with an MPS server) or either."""

    what: str
    estimate_s: float
    measure: Callable[[dict[str, str] | None], Any]
    store: Callable[[Any], None]
    needs_mps: bool | None = None


def run_job(
    job: Job, args: argparse.Namespace, budget: Budget, report: dict[str, Any], mps: Mps
) -> None:
    env = None
    if job.needs_mps:
        env = mps_env(args, budget, report, mps)
        if env is None:
            return
    elif job.needs_mps is False and mps.started:
        mps.stop()
    got = budget.run(job.what, job.estimate_s, lambda: job.measure(env))
    if got is not None:
        job.store(got)


def mps_env(
    args: argparse.Namespace, budget: Budget, report: dict[str, Any], mps: Mps
) -> dict[str, str] | None:
    """The children's environment with the daemon up; None (recorded once) if it is not."""
    if mps.started:
        return mps.env
    if any(s["what"] == "mps" for s in report["skipped"]):
        return None
    reason = None
    if not args.device.startswith("cuda"):
        reason = "no CUDA device"
    elif budget.left() < MPS_MIN_S:
        reason = f"under {MPS_MIN_S:g} s left"
    else:
        reason = mps.start()
    if reason is not None:
        report["skipped"].append({"what": "mps", "reason": reason})
        return None
    return mps.env


def plan_jobs(
    args: argparse.Namespace, ks: list[int], only: set[str], report: dict[str, Any], work: Path
) -> list[Job]:
    """Every measurement in priority order (``only`` picks the kinds): peak; the single-trial
    variants (MFU); the fused groups in this process, Simple CNN then ResNet-18, K ascending;
    the references; the fused processes under MPS; each model's MPS aggregate at
    ``BASELINE_K`` (the ratios' baseline); the 224-px fused groups; what the 2026-11-30 call
    left out (the ResNet's plain K = 8 and MPS K = 2 and 8, 224-px start-up with autotuning
    off); then the other aggregates (per model plain, then MPS) and start-up variants, which
    repeat that call's figures."""
    scale = 0.05 if args.tiny else 1.0  # estimates (s) below are for an H100/H200
    models = report["models"]
    jobs: list[Job] = []
    if "peak" in only:
        seconds = 2 * scale + 0.1
        jobs.append(
            Job(
                "peak_bf16",
                5 * scale,
                lambda _env: peak_bf16(args.device, args.tiny, seconds),
                lambda got: report.update(peak_bf16_tflops=got),
            )
        )

    def store_meta(got: dict[str, Any], key: str) -> dict[str, Any]:
        meta = got.pop("_meta")
        for field, value in meta.items():
            if models[key].get(field) is None:
                models[key][field] = value
        return got

    def store_single(got: dict[str, Any], key: str, precision: str) -> None:
        models[key].update(got.pop("_meta"))
        models[key]["variants"][precision] = got

    def store_reference(got: dict[str, Any], key: str) -> None:
        # Over a real epoch since 2026-11-30 (the worker re-spawn amortised): valid at full
        # scale; a --tiny run's figure means nothing.
        models[key].update(
            reference=got["samples_per_s"], reference_detail=got, reference_valid=not args.tiny
        )

    if "single" in only:
        for key in ("resnet18_224", "simple_cnn", "resnet18"):
            precisions = PRECISIONS[key]
            if args.single_precisions == "aggregate":
                precisions = (precision_of(key, args),)
            for precision in precisions:
                jobs.append(
                    Job(
                        f"single {key} {precision}",
                        (25 if key == "resnet18_224" else 12) * scale,
                        lambda _env, k=key, p=precision: measure_single(k, p, args),
                        lambda got, k=key, p=precision: store_single(got, k, p),
                    )
                )

    def fused(key: str, fuse_ks: list[int]) -> list[Job]:
        if "fused" not in only:
            return []
        per_k_s = {"simple_cnn": 0.15, "resnet18": 0.3, "resnet18_224": 4.0}[key]
        base_s = {"simple_cnn": 5, "resnet18": 6, "resnet18_224": 15}[key]
        return [
            Job(
                f"fused {key} K={k}",
                (base_s + per_k_s * k) * scale,
                lambda _env, key=key, k=k: measure_fused(key, k, args),
                lambda got, key=key, k=k: (
                    models[key].setdefault("_fused", {}).update({str(k): store_meta(got, key)})
                ),
                needs_mps=False,
            )
            for k in fuse_ks
        ]

    jobs += fused("simple_cnn", args.fuse_ks)
    if "fused" in only:  # the one-gather data path's share: the same group, own batches
        own_k = max([k for k in args.fuse_ks if k <= OWN_BATCHES_MAX_K] or args.fuse_ks)
        jobs.append(
            Job(
                f"fused simple_cnn K={own_k} own batches",
                (5 + 0.15 * own_k) * scale,
                lambda _env: measure_fused("simple_cnn", own_k, args, share_data=False),
                lambda got: models["simple_cnn"].update(_fused_own={str(own_k): got}),
                needs_mps=False,
            )
        )
    jobs += fused("resnet18", args.fuse_ks)
    if "reference" in only:
        jobs += [
            Job(
                f"reference {key}",
                20 * scale,
                lambda _env, k=key: measure_reference(k, args, work),
                lambda got, k=key: store_reference(got, k),
            )
            for key in MODELS
        ]
    # Tiny (CI): one model per child-process path; the code is the same for every model.
    aggregate_models = AGGREGATE_MODELS[:1] if args.tiny else AGGREGATE_MODELS
    startup_models = ("resnet18",) if args.tiny else ("resnet18", "resnet18_224", "simple_cnn")
    for key in set(AGGREGATE_MODELS) - set(aggregate_models):
        report["skipped"].append({"what": f"aggregate {key}", "reason": "--tiny"})
        if "fused_mps" in only:
            report["skipped"].append({"what": f"fused_mps {key}", "reason": "--tiny"})
    for key in set(MODELS) - set(startup_models):
        report["skipped"].append({"what": f"startup {key}", "reason": "--tiny"})
    if "fused_mps" in only:
        # On the CPU (--tiny) the same children run as plain processes: the code path is tested.
        estimate = (14 + args.window_s + 0.25 * max(args.fuse_ks)) * scale
        for key in aggregate_models:
            for p in args.fuse_procs:
                jobs.append(
                    Job(
                        f"fused_mps {key} P={p}",
                        estimate,
                        lambda env, key=key, p=p: measure_fused_processes(
                            key, p, args, work, models[key], env
                        ),
                        lambda got, key=key: (
                            models[key]
                            .setdefault("_fused_mps", {})
                            .update({f"{got['processes']}x{got['fuse']}": got})
                        ),
                        needs_mps=None if args.tiny else True,
                    )
                )

    planned: set[tuple[str, int, bool]] = set()
    planned_startups: set[tuple[str, str]] = set()

    def aggregate(key: str, k: int, with_mps: bool) -> list[Job]:
        if (
            ("mps" if with_mps else "aggregate") not in only
            or key not in aggregate_models
            or k not in ks
            or (with_mps and k == 1)
            or (key, k, with_mps) in planned
        ):
            return []
        planned.add((key, k, with_mps))
        field = "_aggregate_mps" if with_mps else "_aggregate"
        return [
            Job(
                f"{field[1:]} {key} K={k}",
                (12 + args.window_s + k) * scale,
                lambda env: measure_aggregate(key, k, args, work, env=env),
                lambda got: models[key].setdefault(field, {}).update({str(k): got}),
                needs_mps=with_mps,
            )
        ]

    def startup(key: str, variant: str) -> list[Job]:
        if "startup" not in only or key not in startup_models or (key, variant) in planned_startups:
            return []
        planned_startups.add((key, variant))
        return [
            Job(
                f"startup {key} cudnn.benchmark={variant}",
                {"resnet18": 30, "resnet18_224": 40, "simple_cnn": 10}[key] * scale,
                lambda _env: measure_startup(key, variant, args, work),
                lambda got: models[key].setdefault("_startup", {}).update({variant: got}),
                needs_mps=False,
            )
        ]

    baseline_k = BASELINE_K if BASELINE_K in ks else max(ks)
    for key in AGGREGATE_MODELS:
        jobs += aggregate(key, baseline_k, True)
    if args.tiny and "fused" in only:
        report["skipped"].append({"what": "fused resnet18_224", "reason": "--tiny"})
    else:
        jobs += fused("resnet18_224", list(FUSE_KS_224))
    jobs += aggregate("resnet18", 8, False) + aggregate("resnet18", 2, True)
    jobs += aggregate("resnet18", 8, True) + startup("resnet18_224", "off")
    for key in AGGREGATE_MODELS:
        for with_mps in (False, True):
            for k in ks:
                jobs += aggregate(key, k, with_mps)
    order = [("resnet18", "on"), ("resnet18", "cut"), ("resnet18_224", "on")]
    order += [("resnet18_224", "cut"), ("resnet18", "off"), ("simple_cnn", "on")]
    order += [("simple_cnn", "cut"), ("simple_cnn", "off")]
    for key, variant in order:
        jobs += startup(key, variant)
    return jobs


def summarize_k(per_k: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if not per_k:
        return None
    best = max(per_k, key=lambda k: per_k[k]["samples_per_s"])
    return {"best_k": int(best), "samples_per_s": per_k[best]["samples_per_s"], "per_k": per_k}


def summarize_fused(per_k: dict[str, dict[str, Any]], peak: float | None) -> dict[str, Any] | None:
    """``fused``: the per-K rows (with their MFU) and the best K's figure."""
    if not per_k:
        return None
    for row in per_k.values():
        row["mfu"] = row["tflops"] / peak if peak else None
    summary = summarize_k(per_k)
    assert summary is not None
    return {**summary, "precision": per_k[str(summary["best_k"])]["precision"]}


def summarize_fused_mps(
    runs: dict[str, dict[str, Any]], peak: float | None, flops: float | None
) -> dict[str, Any] | None:
    """``fused_mps``: the runs by ``<P>x<K>`` (with their MFU) and the best one's figure."""
    if not runs:
        return None
    for row in runs.values():
        tflops = flops * row["samples_per_s"] / 1e12 if flops else None
        row["tflops"] = tflops
        row["mfu"] = tflops / peak if peak and tflops else None
    best = max(runs, key=lambda r: runs[r]["samples_per_s"])
    return {
        "best": best,
        "processes": runs[best]["processes"],
        "fuse": runs[best]["fuse"],
        "samples_per_s": runs[best]["samples_per_s"],
        "precision": runs[best]["precision"],
        "mps": runs[best]["mps"],
        "per_run": runs,
    }


def fusion_ratios(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The best fused figure (one process, or P under MPS) over the best aggregate of single-
    trial processes (plain or MPS) of this run; ``at_least_1_5x``: issue 25's rule for making
    fusion the default. None when no fused figure; ``ratio`` None without a baseline."""
    ways: dict[str, float] = {}
    if entry.get("fused"):
        ways[f"fused K={entry['fused']['best_k']}"] = entry["fused"]["samples_per_s"]
    if entry.get("fused_mps"):
        mps = entry["fused_mps"]
        label = "fused_mps" if mps["mps"] else "fused processes (no MPS)"
        ways[f"{label} {mps['best']}"] = mps["samples_per_s"]
    if not ways:
        return None
    baselines: dict[str, float] = {}
    for field in ("aggregate", "aggregate_mps"):
        if entry.get(field):
            baselines[f"{field} K={entry[field]['best_k']}"] = entry[field]["samples_per_s"]
    fused_mode = max(ways, key=ways.get)  # type: ignore[arg-type]
    out: dict[str, Any] = {"fused": ways[fused_mode], "fused_mode": fused_mode}
    out.update(baseline=None, baseline_mode=None, ratio=None, ratio_plain=None, at_least_1_5x=None)
    if baselines:
        mode = max(baselines, key=baselines.get)  # type: ignore[arg-type]
        ratio = ways[fused_mode] / baselines[mode]
        plain = entry["fused"]["samples_per_s"] / baselines[mode] if entry.get("fused") else None
        out.update(
            baseline=baselines[mode],
            baseline_mode=mode,
            ratio=ratio,
            ratio_plain=plain,
            at_least_1_5x=ratio >= 1.5,
        )
    return out


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the jobs' working keys (``_aggregate``, ...): what is written."""
    models = {
        key: {k: v for k, v in entry.items() if not k.startswith("_")}
        for key, entry in report["models"].items()
    }
    return {**report, "models": models}


def own_batches(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The fused group with its members' own batches against the same K with one gather:
    ``{"k", "samples_per_s", "shared_samples_per_s", "shared_over_own"}``; None until both
    are measured, or when one step was graphed and the other not."""
    own = entry.get("_fused_own") or {}
    for k, run in own.items():
        shared = (entry.get("_fused") or {}).get(k)
        # a graph capture that failed in between would compare graphed with eager steps
        if shared and shared.get("graphed") == run.get("graphed"):
            rate = shared["samples_per_s"]
            return {
                "k": int(k),
                "samples_per_s": run["samples_per_s"],
                "shared_samples_per_s": rate,
                "shared_over_own": rate / run["samples_per_s"],
            }
    return None


def finish(report: dict[str, Any], budget: Budget) -> None:
    """The headline figures: ``single`` = the model's default CUDA precision (the catalogue's
    ``cuda_precision``, what a trial gets unless it sets one), ``mfu`` = best variant's."""
    from trainables.models import MODELS

    peak = report["peak_bf16_tflops"]
    for entry in report["models"].values():
        # The jobs collect per-K figures under "_" keys; every save summarises them, so a run
        # cut short by an outer timeout still leaves its aggregates and start-up readable.
        for field in ("aggregate", "aggregate_mps"):
            entry[field] = summarize_k(entry.get(f"_{field}", {}))
        entry["fused"] = summarize_fused(entry.get("_fused", {}), peak)
        entry["fused_own_batches"] = own_batches(entry)
        flops = entry.get("train_flops_per_sample")
        entry["fused_mps"] = summarize_fused_mps(entry.get("_fused_mps", {}), peak, flops)
        entry["startup"] = entry.get("_startup") or None
        variants = entry["variants"]
        default = MODELS.get(entry["model"]).cuda_precision
        chosen = default if default in variants else "fp32"
        if chosen in variants:
            entry["single"] = variants[chosen]["samples_per_s"]
            entry["single_precision"] = chosen
        for v in variants.values():
            v["mfu"] = v["tflops"] / peak if peak else None
        mfus = [v["mfu"] for v in variants.values() if v["mfu"] is not None]
        entry["mfu"] = max(mfus) if mfus else None
    ratios = {key: fusion_ratios(entry) for key, entry in report["models"].items()}
    report["ratios"] = {key: value for key, value in ratios.items() if value is not None}
    report["elapsed_s"] = budget.total - budget.left()


if __name__ == "__main__":
    sys.exit(main())
