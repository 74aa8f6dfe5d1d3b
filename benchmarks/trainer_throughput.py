"""Training throughput: the public REST pipeline vs our single-trial loop.

All loops run in one process on the same PNG bundle, model, batch size and method:

* ``reference``: the public REST pipeline, reproduced: a torch ``DataLoader`` with worker
  processes decodes every PNG per sample (PIL open -> convert RGB -> [RandomCrop(32, pad 4) ->
  RandomHorizontalFlip ->] ToTensor [-> Normalize]), fp32 eager model, SGD-momentum, the mask
  re-applied out of place per layer every step (``p.data = p.data * mask``), and ``.item()``
  logging every step.
* ``single``: ``trainables.train.trial.Trial`` (the lead's loop, imported, not copied): uint8
  data resident on the device, batched device augmentation, no per-step host sync, fused
  in-place mask multiply; variants ``fp32`` (the default path: on CUDA channels_last + CUDA
  graphs), ``fp32-eager`` (neither), ``+cl-eager``, ``-graphs-nocl``, ``bf16``, ``+compile``.

Packed trials (a vmap over N trials in one process) were measured here until the trial-core
rebuild and removed: the graphed single trial beat the eager pack of 32 (486k vs 404k
samples/s simple_cnn, 116k vs 100k resnet18, H100; docs/performance.md).

Samples/s count training images only (no evaluation). The last printed line is exactly
``speedup: X.XX`` = the first single variant over the reference. With no ``--data-root`` the
script writes a small Colored Fashion-MNIST bundle (28 px for simple_cnn, zero-padded to 32 px
in the cifar10c layout for resnet18) from the Debian Fashion-MNIST files with the project's own
generator. ``--quick`` is a smoke test (a few steps), not a measurement.

    python benchmarks/trainer_throughput.py --model simple_cnn --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MODEL_DATASET = {"simple_cnn": "cmnist", "resnet18": "cifar10c"}


# ---------------------------------------------------------------------- data


def make_bench_bundle(root: Path, dataset: str, n_train: int, n_eval: int, source: Path) -> Path:
    """A ratio-1% bundle of Colored Fashion-MNIST in the DisEnt layout under ``root``."""
    from trainables.data.bundle import BundlePlan, write_bundle
    from trainables.data.make_cmnist import DISENT_PALETTE, colorize, make_cmnist
    from trainables.data.sources import read_mnist_format

    if (root / dataset).is_dir():
        return root
    if dataset == "cmnist":
        make_cmnist(source, root, ratios=(1.0,), valid_size=n_eval, limit=n_train, test_size=n_eval)
        return root

    def render(gray, labels, bias, seed_sequence):  # colour as CMNIST, then pad 28 -> 32 px
        rgb = colorize(gray, bias, DISENT_PALETTE, 0.005, np.random.default_rng(seed_sequence))
        return np.pad(rgb, ((0, 0), (2, 2), (2, 2), (0, 0)))

    plan = BundlePlan(
        dataset=dataset,
        ratios=(1.0,),
        valid_size=n_eval,
        limit=n_train,
        test_size=n_eval,
        nested_valid=True,
    )
    train = read_mnist_format(source, "train")
    test = read_mnist_format(source, "test")
    provenance = {"generator": "benchmark: coloured MNIST-format images padded to 32 px"}
    write_bundle(plan, root, train, test, render, provenance=provenance)
    return root


def bench_config(model: str, root: Path, device: str, **overrides: Any):
    """The benchmarked trial: the REST code's recipe (SGD-momentum, as the reference), RigL."""
    from trainables.config import TrialConfig

    values = dict(
        dataset=MODEL_DATASET[model],
        model=model,
        ratio=1.0,
        method="rigl",
        density=0.05,
        data_root=str(root),
        device=device,
        seed=0,
        epochs=100,
        augment="rest-code",
    )
    values.update(overrides)
    return TrialConfig.from_recipe("rest-code", **values)


# ---------------------------------------------------------------------- reference loop


class PngDataset:
    """REST's per-sample dataset: decode one PNG per ``__getitem__`` (a torch Dataset)."""

    def __init__(self, files: list, transform) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        f = self.files[index]
        image = Image.open(f.path).convert("RGB")
        return self.transform(image), f.label, f.bias


def rest_transform(dataset: str):
    """The public REST code's train transform (it is also applied to valid/test there)."""
    import torchvision.transforms as T

    if dataset == "cmnist":
        return T.Compose([T.Resize(28), T.ToTensor()])
    return T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
        ]
    )


def _reference_setup(cfg, workers: int, files: list | None, transform) -> dict[str, Any]:
    """The REST pipeline's pieces (model, masks, optimiser, DataLoader), seeded as REST."""
    import torch
    from torch.utils.data import DataLoader

    from trainables.data.layout import list_split
    from trainables.models import build_model
    from trainables.sparse import layer_densities, maskable_parameters

    device = torch.device("cuda" if cfg.device.startswith("cuda") else "cpu")
    if files is None:
        files = list_split(cfg.data_root, cfg.dataset, cfg.ratio, "train")
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.model, cfg.num_classes, width=cfg.width, stem=cfg.stem, init=cfg.init
    ).to(device)
    params = maskable_parameters(model)
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    dens = layer_densities(shapes, cfg.density, "erk")
    masks = {n: (torch.rand(p.shape, device=device) < dens[n]).float() for n, p in params.items()}
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
    )
    loader = DataLoader(
        PngDataset(files, transform or rest_transform(cfg.dataset)),
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    model.train()
    return {
        "device": device,
        "model": model,
        "params": params,
        "masks": masks,
        "opt": opt,
        "loader": loader,
    }


def _reference_step(ref: dict[str, Any], x, y) -> int:
    """One REST training step on a loaded batch (ends with ``.item()``: host-synchronous)."""
    import torch.nn.functional as F

    device, model, opt = ref["device"], ref["model"], ref["opt"]
    x, y = x.to(device), y.to(device)
    out = model(x)
    loss = F.cross_entropy(out, y, reduction="none").mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    for name, p in ref["params"].items():
        p.data = p.data * ref["masks"][name]
    _ = loss.item(), (out.argmax(1) == y).float().mean().item()  # per-step logging
    return y.shape[0]


def reference_loop(
    cfg, steps: int, warmup: int, workers: int, files: list | None = None, transform=None
) -> tuple[int, float]:
    """REST pipeline; returns (timed samples, seconds) over ``steps`` steps after ``warmup``.

    ``files`` (objects with ``path``, ``label``, ``bias``) and ``transform`` default to the
    bundle's train split and :func:`rest_transform`; ``benchmarks/gpu_throughput.py`` times
    the same pipeline per epoch with :func:`reference_epoch_timing`.
    """
    import torch

    ref = _reference_setup(cfg, workers, files, transform)
    done, samples, started = 0, 0, 0.0
    while done < warmup + steps:
        for x, y, _b in ref["loader"]:  # a fresh iterator per epoch re-spawns workers, as in REST
            if done == warmup:
                if ref["device"].type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
            n = _reference_step(ref, x, y)
            if done >= warmup:
                samples += n
            done += 1
            if done >= warmup + steps:
                break
    return samples, time.perf_counter() - started


def reference_epoch_timing(
    cfg,
    epochs: int,
    workers: int,
    files: list,
    transform=None,
    warmup: int = 3,
    skip: int | None = None,
) -> dict[str, Any]:
    """The REST pipeline's cost split into a steady step and a per-epoch start (worker spawn).

    ``warmup`` steps of a first epoch (broken off: CUDA/cuDNN warm-up, not timed), then
    ``epochs`` whole epochs over ``files``, each from a fresh ``DataLoader`` iterator (REST
    re-spawns its workers every epoch). Per epoch: ``a`` before ``iter(loader)``, ``f`` when the
    first batch is in hand, ``b_i`` when step ``i`` ended (``.item()`` synchronises), ``c`` when
    the loop has ended (workers shut down).

    * ``step_s``: the mean interval ``b_i - b_{i-1}`` over ``i > skip`` of every timed epoch
      (workers warm, prefetch queue steady; ``skip`` defaults to ``min(workers + 1, n // 2)``);
    * ``epoch_start_s = first_batch_s + shutdown_s``, the means of ``f - a`` (worker spawn and
      the first batch's loading) and ``c - b_{n-1}``: wall times, so never negative. An epoch
      of ``m`` steps then takes ``(m - 1) * step_s + epoch_start_s`` (the first batch is
      loaded inside the start);
    * ``extrapolated_start_s = mean(c - a) - n * step_s``, a cross-check that also credits
      the burst of batches the workers loaded in parallel while the first one was awaited
      (it is noisy: a stall in a timed step moves it by seconds, and it can come out negative).
    """
    import torch

    ref = _reference_setup(cfg, workers, files, transform)
    loader = ref["loader"]
    n = len(loader)
    skip = min(workers + 1, n // 2) if skip is None else skip
    if n - 1 - skip < 1:
        raise ValueError(f"{n} steps per epoch leave no steady interval after {skip}")
    for i, (x, y, _b) in enumerate(loader):
        _reference_step(ref, x, y)
        if i + 1 >= warmup:
            break
    if ref["device"].type == "cuda":
        torch.cuda.synchronize()
    epoch_s: list[float] = []
    first_batch_s: list[float] = []
    shutdown_s: list[float] = []
    intervals: list[float] = []
    for _ in range(epochs):
        start = time.perf_counter()
        ends: list[float] = []
        for x, y, _b in loader:
            if not ends:
                first_batch_s.append(time.perf_counter() - start)
            _reference_step(ref, x, y)
            ends.append(time.perf_counter())
        end = time.perf_counter()
        epoch_s.append(end - start)
        shutdown_s.append(end - ends[-1])
        intervals += [b - a for a, b in zip(ends[skip:-1], ends[skip + 1 :], strict=True)]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    step_s = mean(intervals)
    return {
        "step_s": step_s,
        "epoch_start_s": mean(first_batch_s) + mean(shutdown_s),
        "first_batch_s": mean(first_batch_s),
        "shutdown_s": mean(shutdown_s),
        "extrapolated_start_s": mean(epoch_s) - n * step_s,
        "epoch_s": epoch_s,
        "steps_per_epoch": n,
        "skip": skip,
        "epochs": epochs,
    }


# ---------------------------------------------------------------------- our loops


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def single_loop(cfg, steps: int) -> tuple[int, float, float]:
    """Lead's ``Trial``: (samples, seconds, start-up seconds incl. first epoch's first step).

    Times whole epochs after one warm-up epoch (cudnn autotune, compilation).
    """
    from trainables.train.trial import Trial

    started = time.perf_counter()
    trial = Trial(cfg)
    train_epoch = trial.train_epoch
    built = time.perf_counter() - started
    t0 = time.perf_counter()
    train_epoch(1, None)
    _sync(cfg.device)
    first_epoch = time.perf_counter() - t0
    epochs = max(1, math.ceil(steps / trial.steps_per_epoch))
    t0 = time.perf_counter()
    for epoch in range(2, 2 + epochs):
        train_epoch(epoch, None)
    _sync(cfg.device)
    seconds = time.perf_counter() - t0
    return trial.train.n * epochs, seconds, built + first_epoch / trial.steps_per_epoch


VARIANTS = {
    # The default path on CUDA: channels_last + each full batch replayed as a CUDA graph. Every
    # variant names its precision: the recipes' default depends on the model (tf32 / bf16).
    "fp32": {"precision": "fp32"},
    "fp32-eager": {"precision": "fp32", "channels_last": False, "cuda_graphs": False},
    "tf32": {"precision": "tf32"},
    "fp32+cl-eager": {"precision": "fp32", "cuda_graphs": False},
    "fp32-graphs-nocl": {"precision": "fp32", "channels_last": False},
    "bf16": {"precision": "bf16"},
    "bf16-eager": {"precision": "bf16", "channels_last": False, "cuda_graphs": False},
    "fp32+compile": {"precision": "fp32", "compile": True, "channels_last": False},
    "bf16+compile": {"precision": "bf16", "compile": True, "channels_last": False},
    "bf16+cl+compile": {"precision": "bf16", "compile": True},
}


@dataclass
class Measured:
    name: str
    samples: int
    seconds: float
    extra: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="simple_cnn", choices=sorted(MODEL_DATASET))
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--steps", type=int, default=None, help="timed steps per loop (default 200)")
    p.add_argument(
        "--variants", default="fp32", help=f"single-trial variants: {','.join(VARIANTS)}"
    )
    p.add_argument("--only", default="reference,single", help="which loops to run")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="reference DataLoader workers (REST: 10; default min(10, cores))",
    )
    p.add_argument("--data-root", default="", help="bundle root (default: generate one)")
    p.add_argument("--source", default=str(FASHION_MNIST), help="Fashion-MNIST IDX folder")
    p.add_argument("--train-size", type=int, default=None, help="train images (default 4096)")
    p.add_argument("--width", type=int, default=None, help="model width (default 64, quick 16)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (no meaningful figures)")
    p.add_argument("--json-out", default="", help="write all figures to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = args.steps or (4 if args.quick else 200)
    n_train = args.train_size or (600 if args.quick else 4096)
    workers = args.workers if args.workers is not None else min(10, os.cpu_count() or 1)
    dataset = MODEL_DATASET[args.model]
    with tempfile.TemporaryDirectory(prefix="rest-bench-") as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp) / "data"
        t0 = time.perf_counter()
        make_bench_bundle(root, dataset, n_train, 256 if not args.quick else 128, Path(args.source))
        bundle_s = time.perf_counter() - t0
        os.environ.setdefault("REST_SWEEP_CACHE", str(Path(tmp) / "cache"))
        cfg = bench_config(args.model, root, device, width=args.width or (16 if args.quick else 64))
        if args.quick:
            cfg = cfg.replace(batch_size=64)
        results = run_all(args, cfg, steps, workers)
    report = {
        "model": args.model,
        "dataset": dataset,
        "device": device,
        "steps": steps,
        "batch_size": cfg.batch_size,
        "width": cfg.width,
        "train_size": n_train,
        "workers": workers,
        "bundle_s": bundle_s,
        "machine": machine(device),
        "torch": torch.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": sys.argv[1:],
        "results": {
            m.name: {"samples_per_s": m.rate, "samples": m.samples, "seconds": m.seconds, **m.extra}
            for m in results
        },
    }
    print_table(report, results)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1) + "\n")
    ref = next((m for m in results if m.name == "reference"), None)
    single = next((m for m in results if m.name.startswith("single")), None)
    speedup = single.rate / ref.rate if ref and single else float("nan")
    print(f"speedup: {speedup:.2f}")
    return 0


def run_all(args: argparse.Namespace, cfg, steps: int, workers: int) -> list[Measured]:
    """Every requested loop; a loop that fails (OOM, compile error) is reported and skipped."""
    only = set(args.only.split(","))
    jobs: list[tuple[str, Any]] = []
    if "reference" in only:
        jobs.append(("reference", lambda: _reference(cfg, steps, workers)))
    if "single" in only:
        for name in [v for v in args.variants.split(",") if v]:
            if name not in VARIANTS:
                raise SystemExit(
                    f"--variants: {name!r} is not allowed; allowed: {', '.join(VARIANTS)}"
                )
            jobs.append(
                (f"single {name}", lambda n=name: _single(cfg.replace(**VARIANTS[n]), steps))
            )
    out: list[Measured] = []
    for name, job in jobs:
        try:
            samples, seconds, extra = job()
        except Exception as error:  # keep measuring the others; the error is in the output
            print(f"{name}: FAILED {type(error).__name__}: {str(error).splitlines()[0][:200]}")
            _free_cuda(cfg.device)
            continue
        extra.update(_peak_memory(cfg.device))
        out.append(Measured(name, samples, seconds, extra))
        print(f"{name}: {samples / seconds:,.0f} samples/s", flush=True)
    return out


def _reference(cfg, steps: int, workers: int) -> tuple[int, float, dict[str, Any]]:
    samples, seconds = reference_loop(cfg, steps, warmup=2, workers=workers)
    return samples, seconds, {"workers": workers}


def _single(cfg, steps: int) -> tuple[int, float, dict[str, Any]]:
    samples, seconds, startup = single_loop(cfg, steps)
    return samples, seconds, {"startup_s": startup}


def _peak_memory(device: str) -> dict[str, float]:
    """Peak GPU memory of the loop just run (then reset), in GB."""
    if not device.startswith("cuda"):
        return {}
    import torch

    peak = torch.cuda.max_memory_allocated() / 1e9
    torch.cuda.reset_peak_memory_stats()
    return {"peak_mem_gb": peak}


def _free_cuda(device: str) -> None:
    if device.startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


def machine(device: str) -> str:
    import torch

    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}; {cpu}"
    return cpu


def print_table(report: dict[str, Any], results: list[Measured]) -> None:
    ref = next((m.rate for m in results if m.name == "reference"), None)
    print(
        f"# {report['model']} on {report['dataset']}-like data, {report['device']} "
        f"({report['machine']}), batch {report['batch_size']}, torch {report['torch']}"
    )
    for m in results:
        ratio = f"{m.rate / ref:7.2f}x ref" if ref else ""
        extra = " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.extra.items()
        )
        print(f"{m.name:<24} {m.rate:>12,.0f} samples/s {ratio}  {extra}")


if __name__ == "__main__":
    sys.exit(main())
