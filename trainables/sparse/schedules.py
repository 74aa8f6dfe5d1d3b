"""Drop-fraction schedules: what fraction of a layer's active weights an update replaces.

``rigl``: RigL's cosine decay from ``initial`` to 0 at ``T_end = end_fraction * total_steps``,
no updates after. ``rest``: REST's CosineAnnealingLR(eta_min=0.005) stepped every iteration
over the whole run; it never reaches 0, so updates never stop. ``constant``: ``initial`` at
every step (never stops).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from trainables.errors import UserError
from trainables.registry import Registry

REST_MIN_FRACTION = 0.005  # eta_min of REST's CosineDecay

# kind -> f(step, initial, total_steps, end_fraction)
ScheduleFn = Callable[[int, float, int, float], float]
SCHEDULES: Registry[ScheduleFn] = Registry("drop schedule")


@SCHEDULES.decorator("rigl")
def _rigl(step: int, initial: float, total_steps: int, end_fraction: float) -> float:
    end = end_fraction * total_steps
    if step >= end or step < 0:
        return 0.0
    return initial / 2 * (1 + math.cos(math.pi * step / end))


@SCHEDULES.decorator("rest")
def _rest(step: int, initial: float, total_steps: int, end_fraction: float) -> float:
    t = min(max(step, 0), total_steps)  # past the last step the fraction stays at its minimum
    cosine = (1 + math.cos(math.pi * t / total_steps)) / 2
    return REST_MIN_FRACTION + (initial - REST_MIN_FRACTION) * cosine


@SCHEDULES.decorator("constant")
def _constant(step: int, initial: float, total_steps: int, end_fraction: float) -> float:
    return initial


# How a layer's drop count is rounded: floor (RigL's reference code) or ceil (the public REST
# code, ``math.ceil`` in its prune step), which still drops a weight when f * active < 1.
DROP_ROUNDING: Registry[Callable[[float], int]] = Registry("drop rounding")
DROP_ROUNDING.register("floor", math.floor)
DROP_ROUNDING.register("ceil", math.ceil)


class DropSchedule:
    """Fraction of active weights dropped at an update, by optimizer step ``t``."""

    def __init__(
        self, kind: str, initial: float, total_steps: int, end_fraction: float = 0.75
    ) -> None:
        if kind not in SCHEDULES:
            raise UserError(
                f"drop_schedule: {kind!r} is not allowed; allowed: {', '.join(SCHEDULES)}"
            )
        if not 0 <= initial < 1:
            raise UserError(
                f"drop_fraction: {initial!r} is not allowed; allowed: a number in [0, 1)"
            )
        if total_steps < 1:
            raise UserError(
                f"total_steps: {total_steps!r} is not allowed; allowed: an integer >= 1"
            )
        if not 0 < end_fraction <= 1:
            raise UserError(
                f"drop_end: {end_fraction!r} is not allowed; allowed: a number in (0, 1]"
            )
        self.kind = kind
        self.initial = initial
        self.total_steps = total_steps
        self.end_fraction = end_fraction
        self._fn = SCHEDULES.get(kind)

    def __call__(self, step: int) -> float:
        return self._fn(step, self.initial, self.total_steps, self.end_fraction)

    def __repr__(self) -> str:
        return (
            f"DropSchedule({self.kind!r}, initial={self.initial}, total_steps={self.total_steps},"
            f" end_fraction={self.end_fraction})"
        )
