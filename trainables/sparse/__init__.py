"""Sparse training: layer densities, exact-count masks, prune-and-grow updates, FLOPs.

See ``docs/sparse.md`` for how masks are enforced and how RigL and REST differ.
"""

from trainables.sparse.densities import DENSITY_RULES, layer_densities
from trainables.sparse.engine import SparseEngine
from trainables.sparse.flops import layer_flops, sparse_forward_flops, training_step_flops
from trainables.sparse.masks import layer_counts, maskable_parameters
from trainables.sparse.schedules import SCHEDULES, DropSchedule
from trainables.sparse.updaters import GROWTH

__all__ = [
    "DENSITY_RULES",
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
