"""Measured launch defaults: trials per packed process, and GPU shares, per model and device.

Read by the service when it launches a grid; every value can be overridden by the user
(``--pack-size``, ``--gpus-per-trial``). The numbers come from ``benchmarks/trainer_throughput.py``
on one H100 80GB HBM3 (2026-11-22, torch 2.11; benchmarks/README.md, docs/performance.md):

* simple_cnn: pack of 32 = 404k samples/s (16.2x the REST pipeline); four single-trial
  processes on one GPU = 362k (14.5x); one single trial = 100k.
* resnet18 (32 px, ImageNet stem): pack of 32 = 100k samples/s (7.6x), 45.5 GB peak; four
  single-trial processes = 70k (5.3x); one = 28k (fp32) / 35.5k (channels_last).

Packing is the default where it runs (fp32, a method family of the standard loop); trials that
cannot be packed run as single-trial processes sharing the GPU at ``single_gpus`` each.
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
    ("simple_cnn", "cuda"): PackDefaults(32, 1.0, 0.25, "H100 80GB HBM3, 2026-11-22"),
    ("resnet18", "cuda"): PackDefaults(32, 1.0, 0.25, "H100 80GB HBM3, 2026-11-22"),
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
