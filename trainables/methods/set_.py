"""``set``: Sparse Evolutionary Training (Mocanu et al. 2018): magnitude drop, random grow."""

from __future__ import annotations

from trainables.methods.base import MethodInfo, SparseMethod
from trainables.methods.params import ObjectiveParams, SparseParams


class Set(SparseMethod):
    """Dynamic sparse training whose growth never reads gradients (``growth=random``)."""


METHOD = MethodInfo(
    "set",
    "SET: magnitude drop, random grow",
    Set,
    params=(SparseParams, ObjectiveParams),
    takes_objective=True,
    defaults={"growth": "random"},
    display_name="SET",
    colour="#9467bd",
    can_fuse=True,
)
