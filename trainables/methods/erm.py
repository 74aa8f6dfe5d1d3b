"""``erm``: dense empirical risk minimisation, the unweighted baseline of every table."""

from __future__ import annotations

from trainables.methods.base import Method, MethodInfo


class Erm(Method):
    """The base method as it is: mean cross-entropy, one dense network."""


METHOD = MethodInfo(
    "erm",
    "dense ERM, no reweighting",
    Erm,
    objective="erm",
    display_name="ERM",
    colour="#2ca02c",
    can_fuse=True,
)
