"""GPU throughput in one call (issue 15): everything the grid cost needs, into one JSON file.

The lent GPU machine has torch, torchvision, numpy, pandas and pyarrow but no Ray and nothing to
install, and a call must end within 9 minutes; so this one script measures the items below
under ``--budget-s`` (480 s by default; a measurement that no longer fits is recorded in
``skipped`` with the reason, never started), in the priority order of ``plan_jobs``: peak,
single, reference, then per model the plain aggregates and the MPS ones, start-up, and the
ResNet's largest K last:

1. ``peak_bf16_tflops``: a timed large bf16 matmul (the denominator of every MFU).
2. ``single``: one ``Trial`` (``trainables.train.trial``, the trials' own loop; on CUDA
   channels_last + the CUDA-graph step) on synthetic images, per precision: ResNet-18 at 224 px
   (BFFHQ, ``disent`` preset) and at 32 px in ``fp32`` (TF32 off), ``tf32``, ``bf16``; Simple
   CNN (28 px) in ``fp32`` and ``tf32``. Steps sized by timing one epoch first.
3. ``aggregate``: K = 1, 2, 4, 8 separate processes of the graphed single trial (Simple CNN,
   ResNet-18 32 px) on one GPU. Each child warms up, reports ready, and the parent then gives
   all of them the same absolute wall-clock window; every child logs (time, samples) after each
   (synchronised) short epoch and the parent interpolates each child's samples at the window's
   start and end, so the sum is over ONE common window.
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

Synthetic data: random uint8 images in memory (``SyntheticTrial`` replaces only the bundle
reading of ``Trial``; transforms, method, graph and counters are the trials' own), so no dataset
needs to be carried. Samples/s count training images only. ``--tiny`` runs every code path at
toy scale (width 8, batch 4, K = 1, 2, seconds) so CI can test it on the CPU; its numbers mean
nothing.

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
                       "per_k": {"<K>": {"samples_per_s", "per_process": [..], "window_s"}}}
                      | null,
         "aggregate_mps": same shape | null,
         "startup": {"<on|off|cut>": {"build_s", "first_epoch_s", "steady_epoch_s",
                     "startup_s"}} | null}},
     "skipped": [{"what": str, "reason": str}], "errors": [{"what": str, "error": str}]}

``benchmarks/grid_cost.py`` reads ``models.*.single`` / ``aggregate`` / ``startup`` from it.

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

# The three networks the grid trains; overrides on top of trainer_throughput.bench_config.
MODELS: dict[str, dict[str, Any]] = {
    "simple_cnn": {"model": "simple_cnn", "dataset": "cmnist"},
    "resnet18": {"model": "resnet18", "dataset": "cifar10c"},
    "resnet18_224": {"model": "resnet18", "dataset": "bffhq", "augment": "disent", "ratio": 0.5},
}
PRECISIONS = {"simple_cnn": ("fp32", "tf32"), "resnet18": ("fp32", "tf32", "bf16")}
PRECISIONS["resnet18_224"] = ("fp32", "tf32", "bf16")
AGGREGATE_MODELS = ("simple_cnn", "resnet18")


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
        trial = make_trial(cfg, cfg.batch_size * steps_per_epoch(spec["tiny"], spec["key"]), 64)
        warm = time.perf_counter()
        trial.train_epoch(1, None)
        sync(device)
        warm_s = time.perf_counter() - warm
        (work / f"ready_{spec['index']}").write_text(json.dumps({"epoch_s": warm_s}))
        go_file, window = work / "go.json", None
        # (ready, 0) brackets a window that opens before this child's first timed epoch ends.
        records: list[tuple[float, int]] = [(time.time(), 0)]
        samples, epoch, deadline = 0, 2, time.time() + spec["wait_s"]
        while True:
            trial.train_epoch(epoch, None)
            sync(device)
            epoch += 1
            samples += trial.train.n
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
            # Open the window once every child has run a couple of its own epochs.
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
    key: str, k: int, args: argparse.Namespace, work: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    window_s = args.window_s
    spec = {
        "kind": "aggregate",
        "key": key,
        "device": args.device,
        "tiny": args.tiny,
        "precision": args.precisions[key],
        "work": str(work),
        "window_s": window_s,
        "wait_s": args.child_timeout_s,
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
    return {"samples_per_s": sum(rates), "per_process": rates, "window_s": end - start}


def measure_startup(key: str, variant: str, args: argparse.Namespace, work: Path) -> dict:
    precision = args.precisions.get(key, args.precisions["resnet18"])  # 224 px: the ResNet's
    cfg = model_config(key, args.device, args.tiny, precision=precision)
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
            line = (
                f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
            )
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
    p.add_argument("--child-timeout-s", type=float, default=None, help="per child process")
    p.add_argument("--only", default="peak,single,aggregate,startup,reference,mps")
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
    """Every measurement in priority order: what the headline figures need first (peak, the
    single-trial variants for MFU, the reference for the ratios, the Simple CNN aggregates with
    and without MPS), then the ResNet aggregates, start-up, and the largest K last."""
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

    def store_single(got: dict[str, Any], key: str, precision: str) -> None:
        models[key].update(got.pop("_meta"))
        models[key]["variants"][precision] = got

    def store_reference(got: dict[str, Any], key: str) -> None:
        models[key].update(reference=got["samples_per_s"], reference_detail=got)

    if "single" in only:
        for key in ("resnet18_224", "simple_cnn", "resnet18"):
            for precision in PRECISIONS[key]:
                jobs.append(
                    Job(
                        f"single {key} {precision}",
                        (25 if key == "resnet18_224" else 12) * scale,
                        lambda _env, k=key, p=precision: measure_single(k, p, args),
                        lambda got, k=key, p=precision: store_single(got, k, p),
                    )
                )
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
    for key in set(MODELS) - set(startup_models):
        report["skipped"].append({"what": f"startup {key}", "reason": "--tiny"})
    late: list[Job] = []  # the largest K of the ResNet: after start-up

    def aggregates(key: str, with_mps: bool) -> None:
        if ("mps" if with_mps else "aggregate") not in only:
            return
        field = "_aggregate_mps" if with_mps else "_aggregate"
        for k in ks:
            if with_mps and k == 1:
                continue
            job = Job(
                f"{field[1:]} {key} K={k}",
                (12 + args.window_s + k) * (scale if args.tiny else 1),
                lambda env, key=key, k=k: measure_aggregate(key, k, args, work, env=env),
                lambda got, key=key, k=k: models[key].setdefault(field, {}).update({str(k): got}),
                needs_mps=with_mps,
            )
            (late if key != "simple_cnn" and k >= 8 else jobs).append(job)

    for key in aggregate_models:
        aggregates(key, with_mps=False)
        aggregates(key, with_mps=True)
    if "startup" in only:
        order = [("resnet18", "on"), ("resnet18", "cut"), ("resnet18_224", "on")]
        order += [("resnet18_224", "cut"), ("resnet18", "off"), ("simple_cnn", "on")]
        order += [("simple_cnn", "cut"), ("resnet18_224", "off"), ("simple_cnn", "off")]
        for key, variant in order:
            if key in startup_models:
                jobs.append(
                    Job(
                        f"startup {key} cudnn.benchmark={variant}",
                        {"resnet18": 30, "resnet18_224": 40, "simple_cnn": 10}[key] * scale,
                        lambda _env, k=key, v=variant: measure_startup(k, v, args, work),
                        lambda got, k=key, v=variant: (
                            models[k].setdefault("_startup", {}).update({v: got})
                        ),
                        needs_mps=False,
                    )
                )
    return jobs + late


def summarize_k(per_k: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if not per_k:
        return None
    best = max(per_k, key=lambda k: per_k[k]["samples_per_s"])
    return {"best_k": int(best), "samples_per_s": per_k[best]["samples_per_s"], "per_k": per_k}


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the jobs' working keys (``_aggregate``, ...): what is written."""
    models = {
        key: {k: v for k, v in entry.items() if not k.startswith("_")}
        for key, entry in report["models"].items()
    }
    return {**report, "models": models}


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
    report["elapsed_s"] = budget.total - budget.left()


if __name__ == "__main__":
    sys.exit(main())
