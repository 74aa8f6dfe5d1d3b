"""``static``: a sparse mask drawn once (ERK/ER/uniform) and never updated."""

from __future__ import annotations

from trainables.methods.base import MethodInfo, SparseMethod
from trainables.methods.params import ObjectiveParams, SparseParams


class Static(SparseMethod):
    """Sparse from scratch with a fixed mask: the no-update control of dynamic sparse training."""

    mask_updates = False


METHOD = MethodInfo(
    "static",
    "static sparse mask (ERK/ER/uniform), no updates",
    Static,
    params=(SparseParams, ObjectiveParams),
    takes_objective=True,
    display_name="Static",
    colour="#8c564b",
    can_fuse=True,
)
