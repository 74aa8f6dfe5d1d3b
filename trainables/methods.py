"""The method registry: what a method name means for one trial.

A method is data, not code paths scattered through the loop: whether the network is sparse,
whether bias-conflicting samples are up-weighted, and how the mask evolves. The training loop
reads these fields; later methods (MRM, DisEnt, the pruning-and-retraining family) register
here with their own ``trainer`` and the grids pick them up without change.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainables.registry import Registry


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """What a method name fixes for a trial.

    ``mask_updates`` is False for static sparse training; ``default_growth`` is the growth
    criterion used unless the trial overrides it; ``family`` groups methods that can share a
    packed process (same loop, same step structure).
    """

    name: str
    description: str
    sparse: bool
    reweight: bool
    mask_updates: bool = False
    default_growth: str = "gradient"
    family: str = "standard"
    trainer: str = "standard"


METHODS: Registry[MethodSpec] = Registry("method")

for _spec in (
    MethodSpec("erm", "dense ERM, no reweighting", sparse=False, reweight=False),
    MethodSpec(
        "erm_rw", "dense ERM with bias-conflicting up-weighting", sparse=False, reweight=True
    ),
    MethodSpec(
        "static", "static sparse mask (ERK/ER/uniform), no updates", sparse=True, reweight=False
    ),
    MethodSpec(
        "set",
        "SET: magnitude drop, random grow",
        sparse=True,
        reweight=False,
        mask_updates=True,
        default_growth="random",
    ),
    MethodSpec(
        "rigl",
        "RigL: magnitude drop, dense-gradient grow",
        sparse=True,
        reweight=False,
        mask_updates=True,
        default_growth="gradient",
    ),
    MethodSpec(
        "rest",
        "REST: RigL-style dynamic sparse training with up-weighting",
        sparse=True,
        reweight=True,
        mask_updates=True,
        default_growth="gradient",
    ),
):
    METHODS.register(_spec.name, _spec)

# Methods of the paper's grids that are not implemented yet. Grids keep their rows and report
# them as pending until a method of that name is registered above.
PAPER_BASELINES_PENDING: tuple[str, ...] = ("mrm", "disent")
