"""Measured launch defaults: trials per packed process, and GPU shares, per model and device.

Read by the service when it launches a grid; every value can be overridden by the user
(``--pack-size``, ``--gpus-per-trial``). The numbers come from ``benchmarks/trainer_throughput.py``
on one H100 80GB HBM3 (2026-11-22, torch 2.11; benchmarks/README.md, docs/performance.md):

* simple_cnn: one single trial on the default CUDA path (channels_last + CUDA graphs) = 486k
  samples/s (24.9x the REST pipeline); eager pack of 32 = 404k (16.2x); eager single = 90-100k.
* resnet18 (32 px, ImageNet stem): default single = 116k (9.3x); eager pack of 32 = 100k
  (7.6x), 45.5 GB peak; eager single = 24-28k.

Single trials are the default on GPUs (``pack_size`` 1) with four trials per GPU
(``single_gpus`` 0.25, measured with eager trials: 4 processes gave 362k / 70k; not yet
re-measured with graphed trials). Packs run only when asked for with ``--pack-size N``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackDefaults:
    """Launch defaults for one model on one kind of device."""

    pack_size: int  # trials per packed process (1 = do not pack)
    pack_gpus: float  # Ray GPU share of one packed process
    single_gpus: float  # Ray GPU share of one unpacked trial ("gpus-per-trial")
    measured_on: str  # where the numbers behind this row were taken


DEFAULTS: dict[tuple[str, str], PackDefaults] = {
    # A single trial replayed as a CUDA graph (the default CUDA path) outran the eager vmapped
    # pack of 32: 486k vs 404k samples/s (simple_cnn), 116k vs 100k (resnet18). So GPUs run
    # single trials, four per GPU; packing stays available with --pack-size N.
    ("simple_cnn", "cuda"): PackDefaults(1, 1.0, 0.25, "H100 80GB HBM3, 2026-11-22"),
    ("resnet18", "cuda"): PackDefaults(1, 1.0, 0.25, "H100 80GB HBM3, 2026-11-22"),
    # CPU training is compute-bound: packing measured no gain on the 2-core dev machine.
    ("simple_cnn", "cpu"): PackDefaults(1, 0.0, 0.0, "2-core EPYC dev VM, 2026-11-22"),
    ("resnet18", "cpu"): PackDefaults(1, 0.0, 0.0, "2-core EPYC dev VM, 2026-11-22"),
}


def defaults_for(model: str, device: str = "cuda") -> PackDefaults:
    """Defaults for ``model`` on ``device`` (``cuda``, ``cuda:N`` or ``cpu``).

    A model without a measured row packs alone and takes a whole GPU: the safe choice when
    nothing says how much memory and launch time it needs.
    """
    kind = "cuda" if device.startswith("cuda") else device
    fallback = PackDefaults(1, 1.0, 1.0 if kind == "cuda" else 0.0, "not measured")
    return DEFAULTS.get((model, kind), fallback)
