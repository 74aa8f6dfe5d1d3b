"""``erm_rw``: dense ERM with bias-conflicting samples up-weighted (REST without sparsity)."""

from __future__ import annotations

from trainables.methods.base import Method, MethodInfo, Reweighted
from trainables.methods.params import ReweightParams


class ErmReweighted(Reweighted, Method):
    """Dense network, loss reweighting or resampling by the bias label."""


METHOD = MethodInfo(
    "erm_rw",
    "dense ERM with bias-conflicting up-weighting",
    ErmReweighted,
    params=(ReweightParams,),
    labels="bias",
    objective="reweight",
    display_name="ERM+RW",
    colour="#17becf",
    can_fuse=True,
)
