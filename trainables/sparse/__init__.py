"""Sparse training: layer densities, exact-count masks, prune-and-grow updates, FLOPs.

See ``docs/sparse.md`` for how masks are enforced and how RigL and REST differ. Names are
resolved lazily (PEP 562), so the pure-Python parts (``densities``, ``schedules``) can be
imported by planning code without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DENSITY_RULES": "densities",
    "layer_densities": "densities",
    "SparseEngine": "engine",
    "layer_flops": "flops",
    "sparse_forward_flops": "flops",
    "training_step_flops": "flops",
    "layer_counts": "masks",
    "maskable_parameters": "masks",
    "SCHEDULES": "schedules",
    "DROP_ROUNDING": "schedules",
    "DropSchedule": "schedules",
    "GROWTH": "updaters",
}

__all__ = [
    "DENSITY_RULES",
    "DROP_ROUNDING",
    "GROWTH",
    "SCHEDULES",
    "DropSchedule",
    "SparseEngine",
    "layer_counts",
    "layer_densities",
    "layer_flops",
    "maskable_parameters",
    "sparse_forward_flops",
    "training_step_flops",
]

if TYPE_CHECKING:
    from trainables.sparse.densities import DENSITY_RULES, layer_densities
    from trainables.sparse.engine import SparseEngine
    from trainables.sparse.flops import layer_flops, sparse_forward_flops, training_step_flops
    from trainables.sparse.masks import layer_counts, maskable_parameters
    from trainables.sparse.schedules import DROP_ROUNDING, SCHEDULES, DropSchedule
    from trainables.sparse.updaters import GROWTH


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainables.sparse' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"trainables.sparse.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
