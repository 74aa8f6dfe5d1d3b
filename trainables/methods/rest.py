"""``rest``: Reweighted Sparse Training (Zhao et al., ECML PKDD 2023): RigL plus up-weighting
of the bias-conflicting minority, by the loss (paper) or by resampling (public code)."""

from __future__ import annotations

from trainables.methods.base import MethodInfo, Reweighted, SparseMethod
from trainables.methods.params import ReweightParams, SparseParams


class Rest(Reweighted, SparseMethod):
    """RigL's prune-and-grow on a network trained with the reweighted loss."""


METHOD = MethodInfo(
    "rest",
    "REST: RigL-style dynamic sparse training with up-weighting",
    Rest,
    params=(SparseParams, ReweightParams),
    labels="bias",
    defaults={"growth": "gradient"},
    display_name="REST",
    colour="#d62728",
    table2_test_chosen=True,
    can_fuse=True,
)
