"""``rigl``: Rigging the Lottery (Evci et al. 2020): magnitude drop, dense-gradient grow."""

from __future__ import annotations

from trainables.methods.base import MethodInfo, SparseMethod
from trainables.methods.params import ObjectiveParams, SparseParams


class Rigl(SparseMethod):
    """Dynamic sparse training, no reweighting: the baseline REST is compared with (Table 3)."""


METHOD = MethodInfo(
    "rigl",
    "RigL: magnitude drop, dense-gradient grow",
    Rigl,
    params=(SparseParams, ObjectiveParams),
    takes_objective=True,
    defaults={"growth": "gradient"},
    display_name="RigL",
    colour="#1f77b4",
    can_fuse=True,
)
